"""start-peer with one peer that cannot start (its port is taken): the others start and
answer, as supervisord's autostart would have it, and one line on stderr names the peer
that failed and why (exit 1). Real supervisord, real peers, a real listener on the port."""
import json
import signal
import socket

import pytest

from node import config
from tests.conftest import free_port, wait_for

PEERS = ("p1", "p2", "p3")      # p2, in the middle, has the taken port


@pytest.fixture
def taken(swarm, tmp_path):
    """peers.json for PEERS, p2 on a port a listener holds for the test; the tracker runs."""
    swarm.tracker()
    with socket.create_server(("127.0.0.1", 0)) as held:
        ports = {p: free_port() for p in PEERS}
        ports["p2"] = held.getsockname()[1]
        (tmp_path / "peers.json").write_text(json.dumps(
            {p: {"ip": "127.0.0.1", "port": ports[p], "bt_port": config.BT_PORT_OFF} for p in PEERS}))
        swarm.peer_ports.update(ports)
        yield ports


def registered(swarm, peer_id: str) -> bool:
    res = swarm.cli("--json", "status", "--peer-id", peer_id, check=False)     # fails until it runs
    return res.returncode == 0 and json.loads(res.stdout)["registered"]


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_supervised_the_others_start_and_one_line_names_the_failed_peer(swarm, taken):
    res = swarm.cli("start-peer", "--config", "peers.json", "--tracker", swarm.tracker_endpoint, check=False)
    assert res.returncode == 1, res.stderr
    [line] = error_lines(res.stderr)
    assert line.startswith("error: 1 of 3 peers did not start: peer p2 on 127.0.0.1:") and "FATAL" in line, line
    assert "Address already in use" in line, line          # the peer's own last word, from its log
    for peer_id in ("p1", "p3"):                            # p3 comes after the failure: it started too
        wait_for(lambda: registered(swarm, peer_id), what=f"{peer_id} registered")
    states = {r["name"]: r["state"] for r in swarm.cli_json("swarm", "status", "--config", "peers.json")}
    assert (states["p1"], states["p2"], states["p3"]) == ("RUNNING", "FATAL", "RUNNING")
    assert "p2" in res.stdout and "FATAL" in res.stdout     # the table shows every program first


def test_foreground_the_others_run_and_the_exit_code_says_one_failed(swarm, taken, tmp_path):
    proc = swarm.spawn("start-peer", "start-peer", "--config", "peers.json", "--foreground",
                       "--tracker", swarm.tracker_endpoint)
    for peer_id in ("p1", "p3"):
        wait_for(lambda: registered(swarm, peer_id), what=f"{peer_id} registered")
    wait_for(lambda: "Ctrl-C stops them" in swarm.log("start-peer"), what="the foreground start to end")
    [line] = error_lines(swarm.log("start-peer"))
    assert line.startswith("error: 1 of 3 peers did not start: peer p2 on 127.0.0.1:"), line
    assert "exited with code 2" in line and "Address already in use" in line, line
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 1
