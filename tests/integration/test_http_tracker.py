"""Standard BitTorrent clients use zorrent's HTTP tracker: libtorrent (PyPI) seeds, aria2
(Debian) leeches, both announce to the tracker zorrent runs, and the file arrives intact.
zorrent's own peers share the store with them without ever mistaking them for peers."""
import os
import shutil
import signal
import subprocess

import fastbencode
import libtorrent as lt

from ctl import client
from protocol import messages as m
from protocol.metainfo import read
from tests.integration.bt_clients import http_url, scrape
from tests.procs import free_port, wait_for, write_random

ARIA2 = shutil.which("aria2c")


def lt_session() -> lt.session:
    """A libtorrent on loopback only: no DHT, LSD, UPnP or NAT-PMP."""
    return lt.session({"listen_interfaces": f"127.0.0.1:{free_port()}", "enable_dht": False,
                       "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
                       "enable_incoming_utp": False, "enable_outgoing_utp": False,
                       "allow_multiple_connections_per_ip": True, "alert_mask": 0})


def test_libtorrent_seeds_aria2_leeches_through_the_http_tracker(swarm):
    assert ARIA2, "aria2c is missing: run `make test`, which installs it (Debian package aria2)"
    swarm.tracker()
    announce_url = http_url(swarm)
    swarm.peer("z1")
    src = write_random(swarm.workdir / "in" / "song.bin", 3 * 1024 * 1024 + 5, seed=12)
    # zorrent makes the torrent: its announce-list (BEP 12) names the HTTP tracker
    made = swarm.cli_json("create", "--input", str(src), "--http-announce", announce_url)[0]
    torrent = made["torrent"]
    top = fastbencode.bdecode(open(swarm.workdir / torrent, "rb").read())
    assert top[b"announce-list"] == [[swarm.tracker_endpoint.encode()], [announce_url.encode()]]
    info_hash = made["info_hash"]

    ses = lt_session()
    params = lt.add_torrent_params()
    params.ti, params.save_path = lt.torrent_info(str(swarm.workdir / torrent)), str(src.parent)
    handle = ses.add_torrent(params)
    try:
        wait_for(lambda: scrape(announce_url, info_hash).get(b"complete") == 1, timeout_s=30,
                 what="libtorrent to check the file and announce itself as a seeder")
        # no zorrent peer has registered the torrent yet: `get` still reports the standard clients
        assert swarm.cli_json("get", "--torrent", torrent)["standard_clients"] == {
            "seeders": 1, "leechers": 0, "completed": 0}
        swarm.upload(src, "z1")              # now a zorrent seeder too
        assert handle.status().is_seeding
        out = swarm.workdir / "aria2"
        res = subprocess.run(
            [ARIA2, "--dir", str(out), "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
             "--enable-peer-exchange=false", "--seed-time=0", f"--listen-port={free_port()}",
             "--file-allocation=none", "--summary-interval=0", "--console-log-level=warn",
             "--bt-stop-timeout=60", str(swarm.workdir / torrent)],
            capture_output=True, text=True, timeout=90)
        assert res.returncode == 0, res.stdout + res.stderr
        assert (out / "song.bin").read_bytes() == src.read_bytes()
        got = scrape(announce_url, info_hash)
        assert (got[b"complete"], got[b"downloaded"]) == (1, 1)   # aria2 finished (left=0), then stopped

        # `get` lists the zorrent seeder and the standard client, each flagged by kind
        peers = swarm.cli_json("get", "--torrent", torrent)["peers"]
        assert sorted((p["kind"], p["seeder"]) for p in peers) == [("bittorrent", True), ("zorrent", True)]
        lt_peer = next(p for p in peers if p["kind"] == "bittorrent")
        assert (lt_peer["host"], lt_peer["port"]) == ("127.0.0.1", ses.listen_port())
        # ... while a zorrent peer's view (what the download engine uses) holds zorrent peers only
        view = client.tracker(swarm.tracker_endpoint, m.GetPeers(info_hash=info_hash))
        assert [(p.peer_id, p.kind) for p in view.peers] == [("z1", "zorrent")]

        # what the HTTP door acknowledged was durable (group commit): it survives kill -9
        tracker = next(proc for name, proc, _ in swarm.procs if name == "tracker")
        os.kill(tracker.pid, signal.SIGKILL)
        tracker.wait(10)
        for ready in swarm.workdir.glob("tracker.ready*"):
            ready.unlink()
        swarm.tracker()
        got = scrape(http_url(swarm), info_hash)
        assert (got[b"complete"], got[b"downloaded"]) == (1, 1)
    finally:
        ses.remove_torrent(handle)
        del ses


def test_create_writes_announce_list_libtorrent_reads(swarm):
    src = write_random(swarm.workdir / "f.bin", 40_000, seed=3)
    swarm.cli("create", "--input", str(src), "--announce", "tcp://10.0.0.5:6969")
    meta = read(swarm.workdir / "output" / "torrents" / "f.bin.torrent")
    atp = lt.load_torrent_file(str(swarm.workdir / "output" / "torrents" / "f.bin.torrent"))
    top = fastbencode.bdecode(meta.raw)
    assert top[b"announce"] == b"tcp://10.0.0.5:6969"
    assert top[b"announce-list"] == [[b"tcp://10.0.0.5:6969"], [b"http://10.0.0.5:7969/announce"]]
    # libtorrent skips the ZeroMQ endpoint (not a scheme it speaks) and keeps the HTTP tracker
    assert (atp.trackers, atp.tracker_tiers) == (["http://10.0.0.5:7969/announce"], [1])
    assert str(atp.info_hashes.v1) == meta.info_hash
    swarm.cli("create", "--input", str(src), "--announce", "tcp://10.0.0.5:6969", "--http-announce", "")
    top = fastbencode.bdecode((swarm.workdir / "output" / "torrents" / "f.bin.torrent").read_bytes())
    assert b"announce-list" not in top
