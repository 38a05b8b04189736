"""Real supervisord: nodes are SIGKILLed and come back, and no download is lost."""
import filecmp
import json
import os
import signal
import subprocess
import sys
import xmlrpc.client
from pathlib import Path

import pytest
from supervisor.xmlrpc import Faults as xmlrpc_faults

from ctl import client, supervisor
from protocol import messages as m
from tests.conftest import free_port, wait_for, write_random

MIB = 1024 * 1024
SUPERVISORCTL = str(Path(sys.executable).parent / "supervisorctl")


@pytest.fixture
def supervised(swarm, tmp_path, monkeypatch):
    """Bring up tracker + peers under supervisord from a generated peers.json."""
    monkeypatch.chdir(tmp_path)     # this process talks to the same supervisord and sockets

    def up(peers: dict[str, int]) -> dict[str, int]:
        ports = {p: free_port() for p in peers}
        (tmp_path / "peers.json").write_text(json.dumps(
            {p: {"ip": "127.0.0.1", "port": ports[p], "upload_rate": rate} for p, rate in peers.items()}))
        tport = free_port()
        swarm.tracker_endpoint = f"tcp://127.0.0.1:{tport}"
        swarm.cli("swarm", "up", "--config", "peers.json", "--tracker-port", str(tport), "--web-port", str(free_port()))
        swarm.peer_ports.update(ports)
        for p in peers:
            wait_for(lambda: swarm.status(p)["registered"], what=f"{p} registered")
        return ports

    return up


def pid_of(name: str) -> int | None:
    for p in supervisor.process_info():
        if p["name"] == name and p["statename"] == "RUNNING":
            return p["pid"]
    return None


def kill9_and_wait_restart(name: str) -> int:
    old = pid_of(name)
    os.kill(old, signal.SIGKILL)
    return wait_for(lambda: (pid := pid_of(name)) and pid != old and pid, timeout_s=30,
                    what=f"supervisord to restart {name}")


def kill9_and_keep_down(name: str) -> None:
    """SIGKILL, then stop supervisord's restart. Right after the kill the process can be
    EXITED (not yet respawned), where stopProcess says NOT_RUNNING: retry until STOPPED."""
    os.kill(pid_of(name), signal.SIGKILL)

    def stopped() -> bool:
        try:
            supervisor.rpc().supervisor.stopProcess(f"swarm:{name}")
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != xmlrpc_faults.NOT_RUNNING:
                raise
        return any(p["name"] == name and p["statename"] == "STOPPED" for p in supervisor.process_info())

    wait_for(stopped, what=f"{name} stopped for good")


def start_download(swarm, torrent, out, peer_id):
    return swarm.spawn(f"download_{peer_id}", "download", "--torrent", torrent, "--output", out,
                       "--peer-id", peer_id, "--peer-port", str(swarm.peer_ports[peer_id]))


def test_supervisorctl_sees_the_swarm(supervised, swarm, tmp_path):
    supervised({"p1": 0})
    conf = tmp_path / "supervisor_conf" / "supervisord.conf"
    text = conf.read_text()
    assert "[group:swarm]" in text and "chmod=0700" in text and "autorestart=true" in text
    out = subprocess.run([SUPERVISORCTL, "-c", str(conf), "status"], capture_output=True, text=True,
                         env=swarm.env(), cwd=tmp_path)
    assert "swarm:p1" in out.stdout and "RUNNING" in out.stdout and "swarm:tracker" in out.stdout, out.stdout
    status = swarm.cli_json("swarm", "status", "--config", "peers.json")
    assert {r["name"]: r["state"] for r in status} == {"tracker": "RUNNING", "web": "RUNNING", "p1": "RUNNING"}
    stop = subprocess.run([SUPERVISORCTL, "-c", str(conf), "stop", "swarm:p1"], capture_output=True,
                          text=True, env=swarm.env(), cwd=tmp_path)
    assert "stopped" in stop.stdout
    # SIGTERM: the peer deregistered and exited 0 within stopwaitsecs
    assert "peer p1 stopped" in (tmp_path / "output" / "logs" / "p1.log").read_text()
    assert [p["exitstatus"] for p in supervisor.process_info() if p["name"] == "p1"] == [0]


def test_leecher_killed_at_half_resumes_without_refetching(supervised, swarm, tmp_path):
    supervised({"seeder": 6 * MIB, "leecher": 0})
    src = write_random(tmp_path / "in" / "big.bin", 24 * MIB, seed=7)
    info = swarm.upload(src, "seeder")
    start_download(swarm, info["torrent"], "out/big.bin", "leecher")
    half = info["num_pieces"] // 2
    job = wait_for(lambda: (j := swarm.job("leecher", info["info_hash"])) and j["have"] >= half and j,
                   what="leecher at half")
    kill9_and_wait_restart("leecher")
    # the restarted peer resumed the job by itself; `download` again re-attaches to it
    res = swarm.cli_json("download", "--torrent", info["torrent"], "--output", "out/big.bin",
                         "--peer-id", "leecher", "--peer-port", str(swarm.peer_ports["leecher"]))
    assert res["state"] == "seeding" and res["have"] == info["num_pieces"]
    refetched = max(0, job["have"] - res["resumed"])
    print(f"\nleecher: {job['have']}/{info['num_pieces']} verified at the last poll before kill -9, "
          f"{res['resumed']} found verified after the restart, {refetched} fetched again")
    assert refetched <= 0.05 * job["have"], (job["have"], res["resumed"])
    assert filecmp.cmp(src, tmp_path / "out" / "big.bin", shallow=False)


def test_tracker_killed_mid_swarm_loses_nothing_acknowledged(supervised, swarm, tmp_path):
    supervised({"seeder": 6 * MIB, "leecher": 0})
    src = write_random(tmp_path / "in" / "t.bin", 16 * MIB, seed=8)
    info = swarm.upload(src, "seeder")
    start_download(swarm, info["torrent"], "out/t.bin", "leecher")
    job = wait_for(lambda: (j := swarm.job("leecher", info["info_hash"])) and j["announced"] >= 100 and j,
                   what="leecher announcing")
    acknowledged = job["announced"]
    kill9_and_wait_restart("tracker")
    peers = wait_for(lambda: _peers(swarm, info["info_hash"]), what="tracker answering after restart")
    print(f"\ntracker kill -9: leecher had {acknowledged} pieces acknowledged; after the restart the "
          f"tracker lists seeder {peers['seeder']}/{info['num_pieces']}, leecher {peers.get('leecher', 0)}")
    assert peers["seeder"] == info["num_pieces"]
    assert peers.get("leecher", 0) >= acknowledged
    done = swarm.cli_json("download", "--torrent", info["torrent"], "--output", "out/t.bin",
                          "--peer-id", "leecher", "--peer-port", str(swarm.peer_ports["leecher"]))
    assert done["state"] == "seeding"
    assert filecmp.cmp(src, tmp_path / "out" / "t.bin", shallow=False)
    wait_for(lambda: _peers(swarm, info["info_hash"]).get("leecher") == info["num_pieces"],
             what="every piece announced after the restart")


def _peers(swarm, info_hash):
    try:
        reply = client.tracker(swarm.tracker_endpoint, m.GetPeers(info_hash=info_hash), timeout_s=0.5, tries=1)
    except Exception:
        return None
    return {p.peer_id: p.have for p in reply.peers} or None


def test_seeder_killed_mid_download_the_leecher_finishes(supervised, swarm, tmp_path):
    supervised({"s1": 3 * MIB, "s2": 3 * MIB, "leecher": 0})
    src = write_random(tmp_path / "in" / "s.bin", 16 * MIB, seed=9)
    info = swarm.upload(src, "s1")
    swarm.upload(src, "s2")
    start_download(swarm, info["torrent"], "out/s.bin", "leecher")
    wait_for(lambda: (j := swarm.job("leecher", info["info_hash"])) and j["have"] >= info["num_pieces"] // 4,
             what="leecher at a quarter")
    kill9_and_keep_down("s1")
    done = swarm.cli_json("download", "--torrent", info["torrent"], "--output", "out/s.bin",
                          "--peer-id", "leecher", "--peer-port", str(swarm.peer_ports["leecher"]))
    assert done["state"] == "seeding"
    assert filecmp.cmp(src, tmp_path / "out" / "s.bin", shallow=False)
    assert {p["peer_id"]: p["pieces"] for p in done["peers"]}["s2"] > 0


def test_start_peer_and_swarm_up_return_only_once_supervisord_says_running(swarm, tmp_path, monkeypatch):
    """Like `supervisorctl start`: right after start-peer (and swarm up) returns, every
    program it started is RUNNING (past startsecs), not STARTING, and answers a ping."""
    monkeypatch.chdir(tmp_path)
    ports = {p: free_port() for p in ("p1", "p2")}
    (tmp_path / "peers.json").write_text(json.dumps({p: {"ip": "127.0.0.1", "port": n} for p, n in ports.items()}))
    tport = free_port()
    swarm.tracker_endpoint = f"tcp://127.0.0.1:{tport}"

    def states() -> dict[str, str]:
        return {p["name"]: p["statename"] for p in supervisor.process_info()}

    swarm.cli("start-peer", "--config", "peers.json", "--tracker-port", str(tport))
    assert states() == {"tracker": "STOPPED", "web": "STOPPED", "p1": "RUNNING", "p2": "RUNNING"}
    for p, port in ports.items():
        client.check_peer(p, "127.0.0.1", port, timeout_s=1.0)
    conf = tmp_path / "supervisor_conf" / "supervisord.conf"
    out = subprocess.run([SUPERVISORCTL, "-c", str(conf), "stop", "swarm:p2"], capture_output=True,
                         text=True, env=swarm.env(), cwd=tmp_path)
    assert "stopped" in out.stdout
    swarm.cli("swarm", "up", "--config", "peers.json", "--tracker-port", str(tport))
    assert states() == {"tracker": "RUNNING", "web": "RUNNING", "p1": "RUNNING", "p2": "RUNNING"}  # p2 again
    # peers never autostart with supervisord: swarm up starts p2 once the tracker is up (past startsecs)
    assert "autostart=true" not in conf.read_text().split("[program:web]")[1]
    started = {p["name"]: p["start"] for p in supervisor.process_info()}
    assert started["p2"] >= started["tracker"] + 1
    out = subprocess.run([SUPERVISORCTL, "-c", str(conf), "status"], capture_output=True, text=True,
                         env=swarm.env(), cwd=tmp_path)
    assert "STARTING" not in out.stdout and out.stdout.count("RUNNING") == 4, out.stdout
