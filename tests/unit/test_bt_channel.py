"""A download's channel to a standard peer (node/peer/bt/remote.py) when its connection closes,
on plain objects and a fake clock: what was asked goes on over the remote's own connection."""
import heapq
from types import SimpleNamespace

from node import config
from node.peer.bt import framing as f
from node.peer.bt.remote import BtRemoteChannel
from protocol import messages as m
from protocol.pieces import Bitfield

INFO_HASH = bytes(range(20))
PIECE = 64 * 1024


class FakeReactor:
    def __init__(self) -> None:
        self.now, self.timers, self.seq = 0.0, [], 0

    def call_later(self, delay_s, fn):
        timer = SimpleNamespace(when=self.now + delay_s, fn=fn, cancelled=False)
        timer.cancel = lambda: setattr(timer, "cancelled", True)
        self.seq += 1
        heapq.heappush(self.timers, (timer.when, self.seq, timer))
        return timer

    def run_until(self, t: float) -> None:
        while self.timers and self.timers[0][0] <= t:
            when, _, timer = heapq.heappop(self.timers)
            self.now = when
            if not timer.cancelled:
                timer.fn()
        self.now = t


class FakeConn:
    def __init__(self, outgoing: bool) -> None:
        self.outgoing, self.state, self.downloader = outgoing, "open", None
        self.remote_choked, self.remote_reqq, self.interested = False, 250, False
        self.remote_bitfield = Bitfield.full(4)
        self.remote_peer_id = b"-LT2110-000000000000"
        self.requests = []

    def send(self, data: bytes) -> None:
        if data[4] == f.REQUEST:
            self.requests.append(f.unpack_triple(memoryview(data)[5:], 0))

    def set_interested(self, yes: bool) -> None:
        self.interested = yes

    def close(self, why: str = "") -> None:
        self.state = "closed"
        if self.downloader is not None:
            self.downloader.on_closed(why)


class FakeService:
    def __init__(self) -> None:
        self.reactor = FakeReactor()
        self.dialled, self.waiting = [], None
        self.answering = True                 # a dial opens at once; else it stays connecting

    def register(self, channel) -> None:
        pass

    unregister = register

    def holding(self, info_hash):
        return SimpleNamespace(bitfield=Bitfield(4))

    def incoming(self, channel):
        return self.waiting

    def connect(self, host, port, info_hash, downloader):
        conn = FakeConn(outgoing=True)
        conn.downloader = downloader
        self.dialled.append(conn)
        if self.answering:
            downloader.on_open(conn)
        else:
            conn.state = "handshake"
        return conn


def channel_with_two_pieces_asked():
    service = FakeService()
    ch = BtRemoteChannel(service, "198.18.0.7", 6881, INFO_HASH.hex(), 4)
    replies = []
    for piece in (0, 1):
        ch.request(m.GetBlock(info_hash=INFO_HASH.hex(), piece_index=piece, block_offset=0, length=PIECE,
                              requester="z"), lambda env, err: replies.append((env, err)), timeout_s=30)
    ours = service.dialled[0]
    assert len(ours.requests) == 2 * PIECE // f.BLOCK_BYTES
    return service, ch, ours, replies


def test_a_closed_connection_hands_its_requests_to_the_remotes_own_connection_to_us():
    service, ch, ours, replies = channel_with_two_pieces_asked()
    theirs = FakeConn(outgoing=False)
    service.waiting = theirs                  # it dialled us too; it hung up on our dial (duplicate)
    ours.close("closed by remote")
    assert ch.conn is theirs and theirs.downloader is ch
    assert sorted(theirs.requests) == sorted(ours.requests)   # asked again, nothing failed
    service.reactor.run_until(config.BT_CLOSE_GRACE_S + 0.1)
    assert replies == []


def test_requests_wait_for_a_connection_adopted_within_the_grace_and_fail_after_it():
    service, ch, ours, replies = channel_with_two_pieces_asked()
    ours.close("closed by remote")
    theirs = FakeConn(outgoing=False)
    service.reactor.run_until(config.BT_CLOSE_GRACE_S / 2)
    assert ch.adopt(theirs)                   # its ext handshake came: the service matched it
    assert len(theirs.requests) == len(ours.requests)
    service.reactor.run_until(config.BT_CLOSE_GRACE_S + 0.1)
    assert replies == []

    service.answering = False
    theirs.close("closed by remote")          # and now nothing else comes (a redial never answers)
    service.reactor.run_until(service.reactor.now + config.BT_CLOSE_GRACE_S + 0.01)
    assert len(replies) == 2 and all(env is None and err is not None for env, err in replies)
