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

    def __init__(self, limits: Limits = LIMITS, rate_bps: int = 0) -> None:
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
        self.server = BlockServer(self.router, self.reactor, disk=None, rate_bps=rate_bps,
                                  read_failed=lambda file, err: None, limits=limits)
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
    """The stall (cb704c9): a remote asks for more than the cap while it reads nothing, so
    its blocks are still in this process (it may be refused for them). Nothing waits, so
    no pump or timer runs. Once it has read its blocks, its next requests must be
    admitted: before cb704c9 they were refused for good (the sent blocks' tickets were
    only reaped by a pump), a real download got 64 refusals in a row, was cut off for
    30 s, and after that still counted 128 requests."""
    for _ in range(2 * MAX_REQUESTS):           # the client reads nothing yet: its blocks stay here
        pair.ask()
    assert not pair.server.waiting
    replies = [pair.read() for _ in range(2 * MAX_REQUESTS)]
    assert all(isinstance(r, m.Block) or r.code == ErrorCode.BUSY for r in replies), replies
    # every block has been read, so libzmq has let go of each one (its tracker is done)
    wait_for(lambda: all(t.done for q in pair.server.sent.values() for t, *_ in q) and pair.turn(),
             timeout_s=10, what="the sent blocks' trackers")
    for _ in range(2):                          # a reader that keeps the cap, round after round
        for _ in range(MAX_REQUESTS):
            pair.ask()
        got = [pair.read() for _ in range(MAX_REQUESTS)]
        assert all(isinstance(r, m.Block) for r in got), got


def test_blocks_handed_to_libzmq_do_not_count_against_the_request_cap(pair):
    """Whether a queued block has left is learnt late: its tracker is set by pyzmq's gc
    thread, which a loaded machine may not run for tens of milliseconds, while the
    downloader already has the block and asks for the next. So a block in libzmq's hands
    counts its bytes (the byte cap bounds a remote that does not read), not its request: a
    client that has not read its blocks yet is not refused while its bytes are within the cap."""
    for _ in range(3 * MAX_REQUESTS):
        pair.ask()
    assert pair.server.budget.refusals == 0
    assert pair.server.budget.usage(pair.ident)[0] == 0       # nothing waits: every block is with libzmq
    replies = [pair.read() for _ in range(3 * MAX_REQUESTS)]
    assert all(isinstance(r, m.Block) for r in replies), [r for r in replies if not isinstance(r, m.Block)][:2]


def test_a_remote_over_its_byte_cap_waits_and_is_refused_beyond_the_request_cap():
    """The bound still holds for one that never reads: its blocks up to the byte cap are
    with libzmq, REMOTE_MAX_REQUESTS more wait (no bytes read for them), the rest are refused."""
    p = Pair(Limits(max_requests=MAX_REQUESTS, max_bytes=2 * BLOCK_BYTES, total_bytes=64 * BLOCK_BYTES,
                    max_remotes=8, max_refusals=64))
    try:
        for _ in range(4 * MAX_REQUESTS):      # the client's libzmq takes a block or two at most
            p.ask()
        waiting = sum(len(q) for q in p.server.waiting.values())
        assert 0 < waiting <= MAX_REQUESTS and p.server.budget.refusals >= MAX_REQUESTS
        assert p.server.budget.usage(p.ident) == (waiting, p.server.budget.total_bytes)
        assert p.server.budget.total_bytes <= 2 * BLOCK_BYTES
    finally:
        p.close()


def test_a_remote_whose_blocks_have_gone_counts_nothing_even_with_no_further_traffic(pair):
    """Once a remote has read its blocks, it holds no requests and no bytes here, though it
    never asks again: the shared budget's totals (and the count of remotes it admits, and
    what status reports) must not keep a gone block's bytes."""
    for _ in range(MAX_REQUESTS):
        pair.ask()
    assert pair.server.budget.usage(pair.ident)[1] > 0         # not all have left: the client reads nothing yet
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


def test_close_releases_what_the_upload_pacer_holds_and_stops_its_timer():
    """Blocks held back by --upload-rate hold budget tickets (their bytes count in the budget
    the BEP 3 wire shares); close() must hand them back and stop the pacer's timer, which
    would otherwise send on a closed socket."""
    p = Pair(rate_bps=BLOCK_BYTES // 100)         # one block in 100 s: the second and third wait
    try:
        for _ in range(3):
            p.ask()
        assert len(p.server.pacer.queue) == 2 and p.server.pacer.timer is not None
        assert p.server.budget.total_bytes >= 2 * BLOCK_BYTES
        p.server.close()
        assert not p.server.pacer.queue and p.server.pacer.timer is None
        assert p.server.budget.total_bytes == 0 and not p.server.budget.remotes
        assert p.server.timer is None
    finally:
        p.close()


def test_a_new_abuser_is_cut_off_though_the_cut_off_list_is_full_of_expired_ones():
    """Cut-off remotes are forgotten only when they come back, and a stranger that reconnects
    has a new identity each time: REMOTES_MAX such entries, long expired, used to fill the list
    for good, after which no abuser was ever cut off again."""
    from node import config

    p = Pair(Limits(max_requests=1, max_bytes=BLOCK_BYTES, total_bytes=64 * BLOCK_BYTES,
                    max_remotes=8, max_refusals=2))
    try:
        long_ago = time.monotonic() - 1
        p.server.cut_off.update({b"gone-%d" % i: long_ago for i in range(config.REMOTES_MAX)})
        for _ in range(8):                  # the client reads nothing: refused, then abusive
            p.ask()
        assert p.ident in p.server.cut_off and not p.server.accepts(p.ident)
        assert len(p.server.cut_off) <= config.REMOTES_MAX
    finally:
        p.close()


def test_blocks_read_for_the_port_reuse_their_buffers_once_libzmq_lets_go(pair, tmp_path):
    """A pooled buffer goes back only when its send's tracker is done, and is then reused:
    a seeder serving 1 GiB no longer maps (and faults in) a fresh buffer per block."""
    from node.peer.storage import PieceFile
    from protocol import metainfo
    src = tmp_path / "src.bin"
    src.write_bytes(BODY * 4)
    meta = metainfo.create(src, "tcp://127.0.0.1:1", BLOCK_BYTES)
    file = PieceFile.open_seed(meta, src)
    taken = []
    real_take = pair.server.pool.take
    pair.server.pool.take = lambda n: taken.append(real_take(n)) or taken[-1]
    for round_ in range(3):
        for piece in range(MAX_REQUESTS):
            rid = pair.next_id = pair.next_id + 1
            pair.client.send(encode(m.Ping(), rid)[0])
            assert pair.router.poll(5000)
            ident, _ = pair.router.recv_multipart()
            pair.ident = ident
            pair.server.send(ident, [encode(m.Block(info_hash=meta.info_hash, piece_index=piece, block_offset=0),
                                            rid)[0],
                                     file.read_later(piece, 0, BLOCK_BYTES)])
        got = [pair.read() for _ in range(MAX_REQUESTS)]
        assert all(isinstance(r, m.Block) for r in got), got
        wait_for(lambda: pair.turn() and not pair.server.sent, timeout_s=10, what="the trackers")
    assert len({id(b) for b in taken}) <= MAX_REQUESTS          # 12 reads, at most 4 buffers
    file.close()
