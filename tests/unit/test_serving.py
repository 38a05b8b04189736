"""BlockServer (node/peer/serving.py) over a real ROUTER/DEALER pair on loopback, with a real
reactor: what a remote's sent blocks count in the budget, and when they stop counting.

The test stands in for the dispatcher: it reads each request off the ROUTER and hands
BlockServer a block reply for it, as the data port's handlers do. Socket buffers are small,
so a block the client has not read cannot have left the seeder's process yet.
"""
from __future__ import annotations

import time

import pytest
import zmq

from node.budget import Limits
from node.peer.serving import BlockServer
from node.reactor import Reactor
from protocol import messages as m
from protocol.codec import decode, encode
from protocol.errors import ErrorCode
from tests.procs import wait_for

BLOCK_BYTES = 1024 * 1024            # one block fills far more than the small socket buffers below
SOCKET_BUFFER_BYTES = 64 * 1024
MAX_REQUESTS = 4
LIMITS = Limits(max_requests=MAX_REQUESTS, max_bytes=64 * BLOCK_BYTES, total_bytes=64 * BLOCK_BYTES,
                max_remotes=8, max_refusals=64)
BODY = bytes(range(256)) * (BLOCK_BYTES // 256)


class Pair:
    """A data ROUTER served by a BlockServer, and one DEALER client."""

    def __init__(self) -> None:
        self.zctx = zmq.Context()
        self.router = self.zctx.socket(zmq.ROUTER)
        for opt, value in ((zmq.LINGER, 0), (zmq.ROUTER_MANDATORY, 1), (zmq.SNDHWM, 256),
                           (zmq.SNDBUF, SOCKET_BUFFER_BYTES)):
            self.router.setsockopt(opt, value)
        port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.client = self.zctx.socket(zmq.DEALER)
        self.client.setsockopt(zmq.LINGER, 0)
        self.client.setsockopt(zmq.RCVBUF, SOCKET_BUFFER_BYTES)
        self.client.setsockopt(zmq.RCVHWM, 1)
        self.client.connect(f"tcp://127.0.0.1:{port}")
        self.reactor = Reactor()
        self.server = BlockServer(self.router, self.reactor, disk=None, rate_bps=0,
                                  read_failed=lambda file, err: None, limits=LIMITS)
        self.ident = b""
        self.next_id = 0

    def close(self) -> None:
        self.server.close()
        self.zctx.destroy(linger=0)

    def ask(self) -> int:
        """The client asks for a block; the 'dispatcher' hands the server its reply."""
        self.next_id += 1
        self.client.send(encode(m.Ping(), self.next_id)[0])
        assert self.router.poll(5000), "the request did not arrive"
        self.ident, header = self.router.recv_multipart()
        assert decode([header]).id == self.next_id
        reply = encode(m.Block(info_hash="ab" * 20, piece_index=self.next_id, block_offset=0), self.next_id)
        self.server.send(self.ident, [reply[0], BODY])
        return self.next_id

    def read(self) -> m.Message:
        """The next reply the client gets (the reactor turns meanwhile, as the peer's would)."""
        deadline = time.monotonic() + 10
        while not self.client.poll(0):
            assert time.monotonic() < deadline, "no reply"
            self.reactor.run_once(0.01)
        frames = self.client.recv_multipart()
        return decode(frames).msg

    def turn(self) -> bool:
        self.reactor.run_once(0.01)
        return True


@pytest.fixture
def pair():
    p = Pair()
    try:
        yield p
    finally:
        p.close()


def test_a_remote_refused_while_nothing_waits_is_admitted_once_its_blocks_have_gone(pair):
    """The stall (cb704c9): a remote at its request cap is refused, rightly, while its
    blocks are still in this process. Nothing waits, so no pump or timer runs. Once it has
    read its blocks, its next request must be admitted: it used to be refused for good
    (the sent blocks' tickets were only reaped by a pump), a real download then got 64
    refusals in a row, was cut off for 30 s, and after that still counted 128 requests."""
    asked = 0
    while not pair.server.budget.refusals:      # the client reads nothing yet: its blocks stay here
        assert asked < 4 * MAX_REQUESTS, "never refused"
        pair.ask()
        asked += 1
    assert pair.server.budget.usage(pair.ident)[0] == MAX_REQUESTS
    assert not pair.server.waiting
    replies = [pair.read() for _ in range(asked)]
    refused = [r for r in replies if isinstance(r, m.Error)]
    assert len(refused) == 1 and refused[0].code == ErrorCode.BUSY, replies
    # every block has been read, so libzmq has let go of each one (its tracker is done)
    wait_for(lambda: all(t.done for q in pair.server.sent.values() for t, _ in q) and pair.turn(),
             timeout_s=10, what="the sent blocks' trackers")
    for _ in range(MAX_REQUESTS):               # a reader that keeps the cap, round after round
        pair.ask()
        got = pair.read()
        assert isinstance(got, m.Block), got


def test_a_remote_whose_blocks_have_gone_counts_nothing_even_with_no_further_traffic(pair):
    """Once a remote has read its blocks, it holds no requests and no bytes here, though it
    never asks again: the shared budget's totals (and the count of remotes it admits, and
    what status reports) must not keep a gone block's bytes."""
    for _ in range(MAX_REQUESTS):
        pair.ask()
    assert pair.server.budget.usage(pair.ident)[0] > 0         # not all have left: the client reads nothing yet
    for _ in range(MAX_REQUESTS):
        assert isinstance(pair.read(), m.Block)
    wait_for(lambda: pair.turn() and pair.server.budget.usage(pair.ident) == (0, 0)
             and pair.server.budget.total_bytes == 0, timeout_s=10,
             what="the remote's requests and bytes to be released")
    assert not pair.server.budget.remotes


def test_an_idle_server_stops_polling_once_its_blocks_have_gone(pair):
    """Quiet when idle: once nothing is sent or waiting, the server arms no timer."""
    pair.ask()
    assert isinstance(pair.read(), m.Block)
    wait_for(lambda: pair.turn() and not pair.server.sent, timeout_s=10, what="the sent block's release")
    pair.turn()
    assert pair.server.timer is None
