"""Transmission (transmission-daemon from Debian, headless, driven by transmission-remote)
and zorrent, both ways, each finding the other through the tracker's HTTP door:
- Transmission downloads from a zorrent seed's BEP 3 port;
- a zorrent leecher downloads from a Transmission seed (it dials the address the HTTP door
  was announced from).

Transmission takes no peer on a loopback address: libtransmission's ``isMartianAddr``
(net.c) drops 0/8, 127/8 and 224/3 from every peer source, so with the tracker listing
the seed at 127.0.0.1 its log says "Got 1 peers from tracker" and it never connects.
So Transmission runs in a network namespace of its own (a one-host lab, ctl/lab.py, in
198.18.0.0/15) and the zorrent tracker and seed listen on the lab's bridge address.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ctl import lab as labmod
from tests.integration.bt_clients import bt_port, http_url, scrape, wrote
from tests.procs import kill_tree, wait_for, write_random

pytestmark = pytest.mark.xdist_group("heavy")   # it makes a namespace, as the lab tests do

TRANSMISSION = shutil.which("transmission-daemon")
REMOTE = shutil.which("transmission-remote")
RPC_PORT, PEER_PORT = 9091, 51413               # inside the namespace: nothing else listens there


def settings(download_dir, ip: str) -> dict:
    """A private transmission-daemon: no DHT, LPD, PEX, uTP or port mapping; plain handshakes."""
    return {"dht-enabled": False, "lpd-enabled": False, "pex-enabled": False, "utp-enabled": False,
            "port-forwarding-enabled": False, "bind-address-ipv4": ip, "bind-address-ipv6": "::1",
            "peer-port": PEER_PORT, "peer-port-random-on-start": False, "encryption": 0,
            "rpc-bind-address": "127.0.0.1", "rpc-port": RPC_PORT, "rpc-authentication-required": False,
            "rpc-whitelist-enabled": True, "rpc-whitelist": "127.0.0.1", "rpc-host-whitelist-enabled": False,
            "download-dir": str(download_dir), "incomplete-dir-enabled": False, "blocklist-enabled": False,
            "ratio-limit-enabled": False, "message-level": 3}


@contextlib.contextmanager
def transmission(host, tmp_path: Path, download_dir: Path):
    """A transmission-daemon in ``host``'s namespace; yields transmission-remote's argv. It is
    stopped (TERM, then KILL) even when the test fails."""
    config = tmp_path / "transmission"
    config.mkdir()
    download_dir.mkdir(exist_ok=True)
    (config / "settings.json").write_text(json.dumps(settings(download_dir, host.ip)))
    log = tmp_path / "transmission.log"
    daemon = host.popen([TRANSMISSION, "-f", "-g", str(config), "--log-debug", "-e", str(log)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    remote = host.argv(REMOTE, f"127.0.0.1:{RPC_PORT}")
    try:
        wait_for(lambda: subprocess.run(remote + ["-l"], capture_output=True).returncode == 0,
                 timeout_s=20, what="transmission-daemon's RPC")
        yield remote
    finally:
        kill_tree(daemon)


def tr_log(tmp_path: Path) -> str:
    log = tmp_path / "transmission.log"
    return log.read_text(errors="replace")[-1500:] if log.exists() else ""


def tr_add(remote: list[str], torrent: Path) -> None:
    added = subprocess.run(remote + ["-a", str(torrent)], capture_output=True, text=True, timeout=20)
    assert added.returncode == 0 and "success" in added.stdout, added.stdout + added.stderr


def test_transmission_downloads_from_a_zorrent_seed(swarm, tmp_path):
    assert TRANSMISSION and REMOTE, ("transmission-daemon is missing: run `make test`, which installs it "
                                     "(Debian packages transmission-daemon, transmission-cli)")
    with labmod.Lab() as lab:
        host = lab.add_host("tr")
        gw = lab.gateway                              # this namespace's address on the lab's bridge
        swarm.tracker("--http-host", gw)
        swarm.peer("z1", "--host", gw)
        http_port = (swarm.workdir / "tracker.ready.http").read_text().rsplit(":", 1)[1].split("/")[0]
        src = write_random(swarm.workdir / "in" / "track.bin", 3 * 1024 * 1024 + 77, seed=36)
        made = swarm.cli_json("create", "--input", str(src), "--http-announce",
                              f"http://{gw}:{http_port}/announce")[0]
        swarm.cli_json("upload", "--input", str(src), "--peer-id", "z1", "--peer-port", str(swarm.peer_ports["z1"]),
                       "--peer-host", gw)
        out = tmp_path / "tr-out"
        with transmission(host, tmp_path, out) as remote:
            tr_add(remote, swarm.workdir / made["torrent"])

            def done() -> bool:
                info = subprocess.run(remote + ["-t", "1", "-i"], capture_output=True, text=True, timeout=20).stdout
                return "Percent Done: 100%" in info

            wait_for(done, timeout_s=60, what=f"Transmission to download (its log: {tr_log(tmp_path)})")
            wrote(out / "track.bin", src)
            assert "(Transmission" in swarm.log("z1")            # it came over z1's BEP 3 port
            assert bt_port(swarm, "z1") > 0


def test_zorrent_downloads_from_a_transmission_seed(swarm, tmp_path):
    """Transmission verifies the file it has and seeds it, announcing to the HTTP door; a
    zorrent leecher gets it from the tracker as a standard peer and takes every piece over
    BEP 3, verified before it announces each."""
    assert TRANSMISSION and REMOTE, "transmission-daemon is missing: run `make test`, which installs it"
    with labmod.Lab() as lab:
        host = lab.add_host("ts")
        gw = lab.gateway
        swarm.tracker("--http-host", gw)
        swarm.peer("z2", "--host", gw)
        src = write_random(tmp_path / "tr-seed" / "reel.bin", 2 * 1024 * 1024 + 4321, seed=37)
        made = swarm.cli_json("create", "--input", str(src), "--http-announce", http_url(swarm))[0]
        with transmission(host, tmp_path, src.parent) as remote:
            tr_add(remote, swarm.workdir / made["torrent"])   # the data is there: it verifies, then seeds
            wait_for(lambda: scrape(http_url(swarm), made["info_hash"]).get(b"complete") == 1, timeout_s=30,
                     what=f"Transmission to announce itself as a seeder (its log: {tr_log(tmp_path)})")
            out = swarm.workdir / "dl" / "reel.bin"
            res = swarm.cli("download", "--torrent", made["torrent"], "--output", str(out), "--peer-id", "z2",
                            "--peer-port", str(swarm.peer_ports["z2"]), "--peer-host", gw, timeout_s=60)
            assert out.read_bytes() == src.read_bytes()
            assert "bt:" in res.stdout                   # the Download Statistics name the standard client
            assert "(Transmission" in swarm.log("z2")    # its pieces came over z2's BEP 3 wire
