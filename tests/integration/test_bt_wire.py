"""The BEP 3 peer wire beside the ZeroMQ path: standard clients download from a zorrent
seed (libtorrent from the PyPI wheel, aria2 from Debian), byte-identical, over each
peer's BEP 3 port, with the Fast, extension and ut_metadata extensions."""
import subprocess

from ctl import client
from protocol import messages as m
from protocol import metainfo
from tests.integration.bt_clients import (ARIA2, bt_port, http_url, lt_add, lt_session, lt_wait_done, scrape,
                                          wrote)
from tests.procs import free_port, kill_tree, wait_for, write_random


def test_libtorrent_downloads_from_a_zorrent_seed(swarm):
    src, up = swarm.seeded("z1", [], "movie.bin", 2 * 1024 * 1024 + 12345, seed=31)
    torrent = swarm.workdir / up["torrent"]
    ses = lt_session()
    out = swarm.workdir / "lt"
    handle = lt_add(ses, torrent, out)
    handle.connect_peer(("127.0.0.1", bt_port(swarm, "z1")))
    lt_wait_done(handle)
    wrote(out / "movie.bin", src)
    assert "bt 127.0.0.1" in swarm.log("z1")     # it came over the BEP 3 port


def test_libtorrent_resolves_a_magnet_from_a_zorrent_seed(swarm):
    src, up = swarm.seeded("z1", [], "album.bin", 700 * 1024 + 3, seed=32)
    ses = lt_session()
    out = swarm.workdir / "lt"
    handle = lt_add(ses, None, out, magnet=f"magnet:?xt=urn:btih:{up['info_hash']}&dn=album.bin")
    handle.connect_peer(("127.0.0.1", bt_port(swarm, "z1")))
    lt_wait_done(handle, what="libtorrent to fetch the metadata (ut_metadata) and the file")
    wrote(out / "album.bin", src)


def test_aria2_finds_a_zorrent_seed_through_the_http_tracker(swarm):
    """aria2 knows only the torrent: the HTTP door hands it z1's BEP 3 address."""
    assert ARIA2, "aria2c is missing: run `make test`, which installs it (Debian package aria2)"
    swarm.tracker()
    swarm.peer("z1")
    src = write_random(swarm.workdir / "in" / "song.bin", 1024 * 1024 + 77, seed=33)
    made = swarm.cli_json("create", "--input", str(src), "--http-announce", http_url(swarm))[0]
    swarm.upload(src, "z1")
    out = swarm.workdir / "aria2"
    res = subprocess.run(
        [ARIA2, "--dir", str(out), "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
         "--enable-peer-exchange=false", "--seed-time=0", f"--listen-port={free_port()}",
         "--file-allocation=none", "--summary-interval=0", "--console-log-level=warn",
         "--bt-stop-timeout=30", str(swarm.workdir / made["torrent"])],
        capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (out / "song.bin").read_bytes() == src.read_bytes()


def download_from_standard_seed(swarm, made: dict, src, client: str):
    """Wait until the standard client ``client`` is listed as the torrent's seeder at the HTTP
    door, then have z2 download it there; the file must come out byte-identical."""
    wait_for(lambda: scrape(http_url(swarm), made["info_hash"]).get(b"complete") == 1, timeout_s=30,
             what=f"{client} to announce itself as a seeder")
    out = swarm.workdir / "dl" / src.name
    res = swarm.cli("download", "--torrent", made["torrent"], "--output", str(out), "--peer-id", "z2",
                    "--peer-port", str(swarm.peer_ports["z2"]), timeout_s=60)
    assert out.read_bytes() == src.read_bytes()
    assert "bt:" in res.stdout                     # the Download Statistics name the standard client
    return res


def test_zorrent_downloads_from_a_libtorrent_seed_found_through_the_tracker(swarm):
    """libtorrent seeds and announces to the HTTP door; a zorrent peer finds it there and
    takes every piece over BEP 3 (verified before it announces each)."""
    swarm.tracker()
    swarm.peer("z2")
    src = write_random(swarm.workdir / "in" / "film.bin", 3 * 1024 * 1024 + 999, seed=34)
    made = swarm.cli_json("create", "--input", str(src), "--http-announce", http_url(swarm))[0]
    ses = lt_session()
    handle = lt_add(ses, swarm.workdir / made["torrent"], src.parent, seed_mode=True)
    download_from_standard_seed(swarm, made, src, "libtorrent")
    assert handle.status().total_payload_upload >= src.stat().st_size


def test_zorrent_resolves_a_magnet_from_a_libtorrent_seed(swarm):
    """Only x.pe names the libtorrent seed: the metadata comes over ut_metadata (checked
    against the btih), the pieces over BEP 3."""
    swarm.tracker()
    swarm.peer("z2")
    src = write_random(swarm.workdir / "in" / "tape.bin", 900 * 1024 + 5, seed=35)
    made = swarm.cli_json("create", "--input", str(src), "--http-announce", "")[0]
    (swarm.workdir / made["torrent"]).rename(swarm.workdir / "lt.torrent")   # zorrent must not have it
    ses = lt_session()
    lt_add(ses, swarm.workdir / "lt.torrent", src.parent, seed_mode=True)
    link = f"magnet:?xt=urn:btih:{made['info_hash']}&dn=tape.bin&x.pe=127.0.0.1:{ses.listen_port()}"
    out = swarm.workdir / "dl" / "tape.bin"
    swarm.cli("download", "--magnet", link, "--output", str(out), "--peer-id", "z2",
              "--peer-port", str(swarm.peer_ports["z2"]), timeout_s=60)
    assert out.read_bytes() == src.read_bytes()



def test_zorrent_downloads_from_an_aria2_seed_found_through_the_http_tracker(swarm, tmp_path):
    """aria2 seeds a file it has (announcing to the HTTP door as a seeder); a zorrent
    leecher finds it there and takes every piece over BEP 3, verified before it announces each."""
    assert ARIA2, "aria2c is missing: run `make test`, which installs it (Debian package aria2)"
    swarm.tracker()
    swarm.peer("z2")
    src = write_random(tmp_path / "aria2-seed" / "clip.bin", 1024 * 1024 + 4097, seed=39)
    made = swarm.cli_json("create", "--input", str(src), "--http-announce", http_url(swarm))[0]
    log = tmp_path / "aria2.log"
    seeder = subprocess.Popen(
        [ARIA2, "--dir", str(src.parent), "--check-integrity=true", "--seed-ratio=0.0", "--enable-dht=false",
         "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
         f"--listen-port={free_port()}", "--summary-interval=0", "--console-log-level=warn",
         f"--log={log}", "--log-level=info", str(swarm.workdir / made["torrent"])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        download_from_standard_seed(swarm, made, src, "aria2")
        assert "(aria2" in swarm.log("z2")             # its pieces came over z2's BEP 3 wire
    finally:
        kill_tree(seeder)


def test_zorrent_downloads_from_a_standard_peer_that_hung_up_then_connected_to_it(swarm, monkeypatch):
    """Our dial reaches the libtorrent peer before it has added the torrent, so it hangs up
    (in a swarm where everyone starts at once, that is the common case); then the peer
    connects to our BEP 3 port itself. The download still takes every piece from it: over
    that connection (one connection per remote, whichever side opened it), or over a
    redial. Before, a standard peer that hung up once was never asked again."""
    monkeypatch.chdir(swarm.workdir)          # the control socket of z2, asked directly
    swarm.tracker()
    swarm.peer("z2")
    src = write_random(swarm.workdir / "in" / "late.bin", 2 * 1024 * 1024 + 5, seed=38)
    made = swarm.cli_json("create", "--input", str(src), "--http-announce", "")[0]
    meta = metainfo.read(swarm.workdir / made["torrent"])
    ses = lt_session()
    addr = f"127.0.0.1:{ses.listen_port()}"
    out = swarm.workdir / "dl" / "late.bin"
    client.peer_control("z2", m.Download(metainfo=meta.raw, output=str(out), peers=[addr]), timeout_s=5)
    hung_up = (f"bt {addr} (?): closed by remote", f"bt {addr} (?): receive failed: Connection reset")   # FIN or RST
    wait_for(lambda: any(line in swarm.log("z2") for line in hung_up), interval_s=0.02,
             what="libtorrent to hang up on our dial (it has no such torrent yet)")
    handle = lt_add(ses, swarm.workdir / made["torrent"], src.parent, seed_mode=True)
    handle.connect_peer(("127.0.0.1", bt_port(swarm, "z2")))
    wait_for(lambda: (j := client.peer_control("z2", m.Status(info_hash=meta.info_hash), timeout_s=2).jobs)
             and j[0].state == m.JobState.SEEDING.value, timeout_s=30, what="z2 to download from libtorrent")
    assert out.read_bytes() == src.read_bytes()
    log = swarm.log("z2")
    assert "downloading over its connection to us" in log or f"bt {addr} (libtorrent" in log


def test_a_bt_port_taken_is_one_line_and_exit_2(swarm):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        res = swarm.cli("peer", "--peer-id", "zx", "--port", "0", "--bt-port", str(port),
                        "--tracker", "tcp://127.0.0.1:1", check=False, timeout_s=30)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0 and f"BEP 3 port 127.0.0.1:{port}" in res.stderr
