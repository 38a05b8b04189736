"""A mixed swarm: one zorrent seed, two zorrent leechers, two libtorrent leechers and one
aria2, all finding each other through the tracker (ZeroMQ for zorrent peers, the HTTP door
for the others). Every copy is byte-identical, and `get` names every member's client."""
import subprocess

from tests.integration.bt_clients import ARIA2, lt_add, lt_session, lt_wait_done, wrote
from tests.integration.test_bt_wire import http_url
from tests.procs import free_port, wait_for, write_random


def test_a_mixed_swarm_finishes_byte_identical(swarm):
    assert ARIA2, "aria2c is missing: run `make test`, which installs it (Debian package aria2)"
    swarm.tracker()
    for peer_id in ("z1", "z2", "z3"):
        swarm.peer(peer_id)
    src = write_random(swarm.workdir / "in" / "mix.bin", 2 * 1024 * 1024 + 4321, seed=36)
    made = swarm.cli_json("create", "--input", str(src), "--http-announce", http_url(swarm))[0]
    torrent = swarm.workdir / made["torrent"]
    swarm.upload(src, "z1")
    zorrent = [subprocess.Popen(swarm.argv("download", "--torrent", made["torrent"], "--output",
                                           str(swarm.workdir / peer_id / "mix.bin"), "--peer-id", peer_id,
                                           "--peer-port", str(swarm.peer_ports[peer_id])),
                                cwd=swarm.workdir, env=swarm.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for peer_id in ("z2", "z3")]
    sessions = [lt_session() for _ in range(2)]
    handles = [lt_add(ses, torrent, swarm.workdir / f"lt{i}") for i, ses in enumerate(sessions)]
    aria2_out = swarm.workdir / "aria2"
    aria2 = subprocess.Popen(
        [ARIA2, "--dir", str(aria2_out), "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
         "--enable-peer-exchange=false", "--seed-time=1", f"--listen-port={free_port()}",
         "--file-allocation=none", "--summary-interval=0", "--console-log-level=warn", str(torrent)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for proc in zorrent:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, out.decode() + err.decode()
        for handle in handles:
            lt_wait_done(handle, timeout_s=60)
        want = src.read_bytes()      # aria2 keeps its control file while it seeds: compare the bytes
        wait_for(lambda: (aria2_out / "mix.bin").exists() and (aria2_out / "mix.bin").read_bytes() == want,
                 timeout_s=60, what="aria2 to finish")
        copies = [swarm.workdir / p / "mix.bin" for p in ("z2", "z3")] + \
                 [swarm.workdir / f"lt{i}" / "mix.bin" for i in range(2)] + [aria2_out / "mix.bin"]
        for copy in copies:
            wrote(copy, src)          # libtorrent's last pieces may still be on their way to the file
        peers = swarm.cli_json("get", "--torrent", made["torrent"])["peers"]
        clients = sorted(p["client"].split(" (")[0].split(" ")[0] for p in peers)
        assert clients == ["aria2", "libtorrent", "libtorrent", "zorrent", "zorrent", "zorrent"], peers
        table = swarm.cli("get", "--torrent", made["torrent"]).stdout
        assert "libtorrent 2.1.1" in table and "aria2 1." in table and "zorrent (BEP 3 :" in table
    finally:
        aria2.kill()
        aria2.wait()
