"""The tracker hands out a heartbeat interval that grows with the swarm, peers follow it (every
heartbeat's reply carries it), and expiry follows the interval each peer was handed. The
load target is lowered through $ZORRENT_HEARTBEATS_PER_S so that three peers make a big swarm."""
import os
import re
import signal

from ctl import client
from node import config
from protocol import messages as m
from tests.conftest import wait_for


def intervals(swarm, peer_id: str) -> list[float]:
    return [float(s) for s in re.findall(r"heartbeat every ([0-9.]+) s", swarm.log(peer_id))]


def listed(swarm) -> list[str]:
    return [p.peer_id for p in client.tracker(swarm.tracker_endpoint, m.GetSwarm()).peers]


def test_peers_follow_an_interval_that_grows_and_shrinks_with_the_swarm(swarm, monkeypatch):
    monkeypatch.setenv("ZORRENT_HEARTBEATS_PER_S", "1")       # 3 live peers: 3 s
    swarm.tracker()
    monkeypatch.delenv("ZORRENT_HEARTBEATS_PER_S")
    for peer_id in ("p1", "p2", "p3"):
        swarm.peer(peer_id)
    wait_for(lambda: intervals(swarm, "p1")[-1:] == [3.0], what="p1 to heartbeat every 3 s", timeout_s=15)
    swarm.stop("p2")                                          # SIGTERM: they deregister
    swarm.stop("p3")
    # p1 hears the short interval with its next heartbeat's reply (within its 3 s)
    wait_for(lambda: intervals(swarm, "p1")[-1:] == [2.0], what="p1 back to 2 s", timeout_s=15)
    wait_for(lambda: listed(swarm) == ["p1"], what="p2 and p3 to be gone", timeout_s=15)  # one gone is enough for 2 s


def test_a_small_swarms_silent_peer_is_expired_within_seconds(swarm):
    swarm.tracker()
    swarm.peer("p1")
    swarm.peer("p2")
    pid = next(p.pid for name, p, _ in swarm.procs if name == "p2")
    os.kill(pid, signal.SIGKILL)                              # silent: no deregister
    # its record lives PEER_EXPIRY_S after its last beat, then the next expiry pass takes it:
    # seconds, where a big swarm's interval would give minutes (the deadline bounds it)
    wait_for(lambda: "expired silent peer p2" in swarm.log("tracker"), what="the tracker to expire p2",
             timeout_s=config.PEER_EXPIRY_S + 4 * config.HEARTBEAT_INTERVAL_S + 10, interval_s=0.2)
    assert listed(swarm) == ["p1"]
