"""Strangers on an open network (issue 17): each attack is refused or bounded, and the
nodes keep serving afterwards."""
import filecmp
import os
import signal
import subprocess
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from ctl import client
from node.channel import call
from protocol import messages as m
from protocol.codec import decode, encode
from protocol.errors import ErrorCode, RemoteError
from tests.conftest import wait_for, write_random

MIB = 1024 * 1024


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def pid_of(swarm, name: str) -> int:
    return next(p.pid for n, p, _ in swarm.procs if n == name)


def dealer(zctx, endpoint: str, reads: bool = True) -> zmq.Socket:
    sock = zctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if not reads:                         # a client that never reads its replies
        sock.setsockopt(zmq.RCVHWM, 1)
        sock.setsockopt(zmq.RCVBUF, 4096)
    sock.connect(endpoint)
    return sock


def get_block(info, piece: int, requester: str = "") -> m.GetBlock:
    return m.GetBlock(info_hash=info["info_hash"], piece_index=piece, block_offset=0,
                      length=info["piece_length"], requester=requester)


def reply(sock: zmq.Socket, timeout_s: float = 5.0):
    assert sock.poll(int(timeout_s * 1000)), "no reply"
    return decode(sock.recv_multipart())


@pytest.fixture
def seeded(swarm):
    src, info = swarm.seeded("seeder", ["leecher"], "f.bin", 16 * MIB, seed=21)
    from protocol.metainfo import read

    meta = read(swarm.workdir / info["torrent"])
    info = {**info, "piece_length": meta.piece_length, "num_pieces": meta.num_pieces}
    return src, info


def test_a_flood_never_read_is_bounded_and_a_download_still_completes(swarm, seeded):
    """Three clients send 4,096 GetBlocks each (384 MiB of replies) and never read. The
    seeder's peak RSS grows by far less than the flood, the flooders are refused and then
    cut off, a polite client (100 requests at once) gets every block, and a legitimate
    download alongside is byte-identical."""
    src, info = seeded
    endpoint = f"tcp://127.0.0.1:{swarm.peer_ports['seeder']}"
    pid = pid_of(swarm, "seeder")
    before = vm_hwm_mib(pid)
    zctx = zmq.Context()
    try:
        flooders = [dealer(zctx, endpoint, reads=False) for _ in range(3)]
        for sock in flooders:
            for i in range(4096):
                sock.send_multipart(encode(get_block(info, i % info["num_pieces"]), i + 1))
        polite = dealer(zctx, endpoint)
        for i in range(100):
            polite.send_multipart(encode(get_block(info, i % info["num_pieces"]), i + 1))
        out = swarm.workdir / "out" / "f.bin"
        swarm.cli("download", "--torrent", info["torrent"], "--output", str(out), "--peer-id", "leecher",
                  "--peer-port", str(swarm.peer_ports["leecher"]))
        assert filecmp.cmp(src, out, shallow=False)
        got = [reply(polite, 15).msg for _ in range(100)]
        assert all(isinstance(msg, m.Block) for msg in got), [msg for msg in got if not isinstance(msg, m.Block)][:3]
        grown = vm_hwm_mib(pid) - before
        assert grown < 64, f"seeder peak RSS grew {grown:.0f} MiB under a 384 MiB flood"
        assert swarm.log("seeder").count("ignoring it for") == len(flooders)
        assert swarm.status("seeder")["registered"]      # alive and serving
        probe = dealer(zctx, endpoint)
        probe.send_multipart(encode(m.Ping(), 1))
        assert isinstance(reply(probe).msg, m.Pong)
    finally:
        zctx.destroy(linger=0)


def test_a_reader_at_its_request_cap_is_never_refused(swarm, seeded):
    """A client that keeps REMOTE_MAX_REQUESTS asked for, reads every reply and asks again
    at once is a legitimate downloader: no BUSY, never cut off. (Blocks it was sent used to
    count against it until something else made the seeder look, so a later round was
    refused, 64 refusals cut it off for 30 s, and a real download stalled.)"""
    from node import config

    _, info = seeded
    zctx = zmq.Context()
    try:
        # small receive buffers: the seeder's sends are still under way when it last looks
        sock = dealer(zctx, f"tcp://127.0.0.1:{swarm.peer_ports['seeder']}", reads=False)
        tag = 0
        for _ in range(4):
            for _ in range(config.REMOTE_MAX_REQUESTS):
                tag += 1
                sock.send_multipart(encode(get_block(info, tag % info["num_pieces"], requester="leecher"), tag))
            got = [reply(sock, 15).msg for _ in range(config.REMOTE_MAX_REQUESTS)]
            refused = [msg for msg in got if not isinstance(msg, (m.Block, m.Elsewhere))]
            assert not refused, refused[:2]
        assert "ignoring it for" not in swarm.log("seeder")
    finally:
        zctx.destroy(linger=0)


def test_send_once_trusts_the_connection_not_the_claimed_requester(swarm, seeded):
    """An origin seed sends a piece to one taker first. A second connection that claims no
    requester, or the first taker's name, is one more taker: it is sent elsewhere."""
    _, info = seeded
    endpoint = f"tcp://127.0.0.1:{swarm.peer_ports['seeder']}"
    zctx = zmq.Context()
    try:
        first, nobody, impostor = (dealer(zctx, endpoint) for _ in range(3))
        first.send_multipart(encode(get_block(info, 7, requester="leecher"), 1))
        assert isinstance(reply(first).msg, m.Block)
        nobody.send_multipart(encode(get_block(info, 7, requester=""), 2))
        assert isinstance(reply(nobody).msg, m.Elsewhere)
        impostor.send_multipart(encode(get_block(info, 7, requester="leecher"), 3))
        assert isinstance(reply(impostor).msg, m.Elsewhere)
        first.send_multipart(encode(get_block(info, 7, requester="anything"), 4))
        assert isinstance(reply(first).msg, m.Block)          # the first taker itself, again: served
    finally:
        zctx.destroy(linger=0)


def test_a_forged_register_peer_address_is_refused(swarm):
    """Nobody can list a third party's address as a peer: the tracker takes the address
    the connection comes from, unless the operator trusts that source to advertise."""
    swarm.tracker("--trust-advertise", "none")
    ep = swarm.tracker_endpoint
    with pytest.raises(RemoteError) as refused:
        client.tracker(ep, m.RegisterPeer(peer_id="forger", host="198.18.0.9", port=6881, token=""))
    assert refused.value.code == ErrorCode.NOT_AUTHORISED and "198.18.0.9" in refused.value.message
    swarm.peer("honest")                                      # an honest peer still registers
    listed = client.tracker(ep, m.GetSwarm()).peers
    assert [(p.peer_id, p.host) for p in listed] == [("honest", "127.0.0.1")]


def test_strangers_cannot_fill_the_torrents_collection_and_get_swarm_is_paged(swarm, tmp_path):
    swarm.tracker()
    ep = swarm.tracker_endpoint
    from protocol.metainfo import create

    meta = create(write_random(tmp_path / "x.bin", 1000, 3), ep)
    zctx = zmq.Context()
    try:
        sock = dealer(zctx, ep)
        old_style = msgpack.packb({"v": m.PROTOCOL_VERSION, "id": 1, "type": m.MsgType.REGISTER_TORRENT.value,
                                   "body": {"metainfo": meta.raw}}, use_bin_type=True)
        sock.send(old_style)                                  # no peer id, no token
        assert isinstance(reply(sock).msg, m.Error)
        sock.send_multipart(encode(m.RegisterTorrent(peer_id="nobody", token="x", metainfo=meta.raw), 2))
        assert reply(sock).msg.code == ErrorCode.UNKNOWN_PEER
        assert client.tracker(ep, m.GetSwarm()).torrents == []
        n = 620
        for i in range(n):                                    # pipelined: one round trip's worth of time
            sock.send_multipart(encode(m.RegisterPeer(peer_id=f"p{i:04d}", host="127.0.0.1", port=10000 + i,
                                                      token=""), 100 + i))
        for _ in range(n):
            assert isinstance(reply(sock).msg, m.Registered)
    finally:
        zctx.destroy(linger=0)
    first = client.tracker(ep, m.GetSwarm())
    assert 0 < len(first.peers) < n and first.peers_more
    from node.web.poller import Poller

    poller = Poller(ep)
    try:
        obs = poller.observe()
    finally:
        poller.close()
    assert obs.tracker is not None and len({p.peer_id for p in obs.tracker.peers}) == n


def test_a_twin_cannot_take_a_busy_peers_control_socket(swarm):
    """A second process with the same peer id, started while the first cannot answer a
    ping, is refused by the lock file instead of binding over the first one's socket."""
    swarm.tracker()
    swarm.peer("p1")
    pid = pid_of(swarm, "p1")
    os.kill(pid, signal.SIGSTOP)
    try:
        twin = swarm.spawn("twin", "peer", "--peer-id", "p1", "--port", "0", "--tracker", swarm.tracker_endpoint)
        wait_for(lambda: twin.poll() is not None, timeout_s=15, what="the twin to be refused")
        log = swarm.log("twin")
        assert twin.returncode != 0 and "already running" in log and "Traceback" not in log, log
    finally:
        os.kill(pid, signal.SIGCONT)
    assert swarm.status("p1")["registered"]                  # the first one still owns its socket
