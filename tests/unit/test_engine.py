"""DownloadJob against a fake host and clock (the seam is node/peer/remote.py's Host): which
piece it asks of whom (rarest first), how much it keeps in flight (credit), what it does
when only late pieces are left (endgame), and whom it stops trusting (bans).

No sockets, threads or disk: remote peers are scripted channels whose replies the test
delivers, the disk stage runs when the test says, and time moves only when it is moved."""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

import fastbencode
import pytest

from node import config
from node.peer.disk import DiskStats
from node.peer.engine import DownloadJob
from node.peer.holdings import Holdings
from node.peer.remote import RemotePeer
from protocol import messages as m
from protocol.codec import Envelope
from protocol.errors import TransportError
from protocol.metainfo import parse
from protocol.pieces import Bitfield

PIECE = 64 * 1024     # a piece is four blocks (m.MAX_BLOCK_BYTES)


# ---------------------------------------------------------------- the fakes
@dataclass
class Sent:
    msg: m.Message
    callback: object
    msg_id: int
    cancelled: bool = False


class FakeChannel:
    """A remote peer's data port (or the tracker): requests are recorded, never sent."""

    ids = iter(range(1, 10 ** 9))

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.sent: list[Sent] = []
        self.dropped = 0
        self.closed = False

    def request(self, msg, callback, *, payload=None, timeout_s, tries=1) -> int:
        self.sent.append(Sent(msg, callback, next(self.ids)))
        return self.sent[-1].msg_id

    def cancel(self, msg_id: int) -> None:
        for s in self.sent:
            if s.msg_id == msg_id:
                s.cancelled = True

    def expire(self, now=None) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def open_blocks(self) -> list[Sent]:
        return [s for s in self.sent if isinstance(s.msg, m.GetBlock) and not s.cancelled]

    def pieces_asked(self) -> list[int]:
        """Pieces with a block request outstanding, in the order first asked."""
        seen: list[int] = []
        for s in self.open_blocks():
            if s.msg.piece_index not in seen:
                seen.append(s.msg.piece_index)
        return seen


class FakeDisk:
    """The hash and write stages, run when the test calls ``run``."""

    def __init__(self) -> None:
        self.queued: list = []

    def submit(self, verify, write, done) -> None:
        self.queued.append((verify, write, done))

    def snapshot(self) -> DiskStats:
        return DiskStats()

    def run(self) -> None:
        while self.queued:
            verify, write, done = self.queued.pop(0)
            ok = verify()
            if ok:
                write()
            done(ok, None)


class FakeFile:
    def __init__(self, size: int) -> None:
        self.path = "/fake/out.bin"
        self.data = bytearray(size)
        self.closing = False
        self.holds = 0

    def hold(self) -> None:
        self.holds += 1

    def release(self) -> None:
        self.holds -= 1

    def write_piece(self, piece: int, buffers) -> None:
        blob = b"".join(bytes(b) for b in buffers)
        self.data[piece * PIECE:piece * PIECE + len(blob)] = blob

    def close(self) -> None:
        pass


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeHost:
    """What remote.Host asks of the node."""

    peer_id: str = "me"
    clock: Clock = field(default_factory=Clock)
    disk: FakeDisk = field(default_factory=FakeDisk)
    holdings: Holdings = field(default_factory=Holdings)
    tracker: FakeChannel = field(default_factory=lambda: FakeChannel("tracker"))
    channels: dict = field(default_factory=dict)

    def connect(self, endpoint: str) -> FakeChannel:
        self.channels[endpoint] = FakeChannel(endpoint)
        return self.channels[endpoint]

    def disconnect(self, endpoint: str) -> None:
        self.channels[endpoint].close()


# ---------------------------------------------------------------- a job and its swarm
def torrent(num_pieces: int, seed: int = 1):
    data = random.Random(seed).randbytes(num_pieces * PIECE)
    hashes = b"".join(hashlib.sha1(data[i:i + PIECE]).digest() for i in range(0, len(data), PIECE))
    info = {b"length": len(data), b"name": b"f.bin", b"piece length": PIECE, b"pieces": hashes}
    return parse(fastbencode.bencode({b"announce": b"tcp://127.0.0.1:1", b"info": info})), data


class Swarm:
    def __init__(self, num_pieces: int, holders: dict[str, list[int]]) -> None:
        self.meta, self.data = torrent(num_pieces)
        self.host = FakeHost()
        self.file = FakeFile(len(self.data))
        self.holding = self.host.holdings.hold(self.meta, self.file, Bitfield(num_pieces),
                                               m.JobState.DOWNLOADING, "download")
        self.job = DownloadJob(self.host, self.holding)
        self.host.holdings.attach(self.holding, self.job)
        self.job.refresh()
        peers = []
        for n, (peer_id, pieces) in enumerate(holders.items()):
            bits = Bitfield(num_pieces)
            for i in pieces:
                bits.add(i)
            peers.append(m.PeerInfo(peer_id=peer_id, host="127.0.0.1", port=7000 + n,
                                    bitfield=bits.to_bytes(), have=len(bits)))
        reply = m.PeerList(info_hash=self.meta.info_hash, name="f.bin", num_pieces=num_pieces,
                           length=len(self.data), peers=peers)
        self.host.tracker.sent[-1].callback(Envelope(1, reply), None)
        self.ports = {p.peer_id: p.port for p in peers}

    def chan(self, peer_id: str) -> FakeChannel:
        return self.host.channels[f"tcp://127.0.0.1:{self.ports[peer_id]}"]

    def deliver(self, peer_id: str, piece: int, corrupt: bool = False) -> None:
        """Answer every block of ``piece`` that ``peer_id`` was asked for, then run the disk stage."""
        for s in [s for s in self.chan(peer_id).open_blocks() if s.msg.piece_index == piece]:
            start = piece * PIECE + s.msg.block_offset
            payload = bytearray(self.data[start:start + s.msg.length])
            if corrupt:
                payload[0] ^= 0xFF
            s.cancelled = True          # answered
            s.callback(Envelope(s.msg_id, m.Block(info_hash=self.meta.info_hash, piece_index=piece,
                                                  block_offset=s.msg.block_offset), bytes(payload)), None)
        self.host.disk.run()

    def fail(self, peer_id: str, piece: int) -> None:
        for s in [s for s in self.chan(peer_id).open_blocks() if s.msg.piece_index == piece]:
            s.cancelled = True
            s.callback(None, TransportError("no reply"))

    def remote(self, peer_id: str):
        return self.job.remotes[peer_id]


# ---------------------------------------------------------------- tests
def test_rarest_pieces_are_asked_for_first():
    # availability: pieces 0-3 three holders, 4-5 two, 6-7 one (only A)
    s = Swarm(8, {"A": list(range(8)), "B": list(range(6)), "C": list(range(4))})
    floor = config.MIN_PIPELINE_REQUESTS                # a new remote's credit: two pieces
    assert set(s.chan("A").pieces_asked()) == {6, 7} and floor == 2
    assert set(s.chan("B").pieces_asked()) == {4, 5}
    assert set(s.chan("C").pieces_asked()) <= {0, 1, 2, 3} and len(s.chan("C").pieces_asked()) == floor
    asked = [p for peer in "ABC" for p in s.chan(peer).pieces_asked()]
    assert len(asked) == len(set(asked))                 # no piece asked twice before endgame


def test_a_piece_only_one_remote_has_is_asked_of_it_before_common_ones():
    s = Swarm(6, {"A": list(range(6)), "B": [0, 1, 2, 3, 4]})
    assert 5 in s.chan("A").pieces_asked()


def test_credit_bounds_what_is_in_flight_and_grows_with_the_rate():
    s = Swarm(64, {"A": list(range(64))})
    a = s.remote("A")
    floor = config.MIN_PIPELINE_REQUESTS * PIECE
    assert a.inflight_bytes == floor and len(s.chan("A").pieces_asked()) == config.MIN_PIPELINE_REQUESTS
    most = 0
    for _ in range(20):                                  # a fast link: a piece every 10 ms
        s.host.clock.now += 0.01
        s.deliver("A", s.chan("A").pieces_asked()[0])
        credit = s.job._credit(a, s.host.clock.now)
        assert a.inflight_bytes < max(credit, floor) + PIECE   # filled up to its credit, one piece over at most
        most = max(most, len(s.chan("A").pieces_asked()))
    assert most > config.MIN_PIPELINE_REQUESTS           # the measured rate earned it a deeper pipeline
    assert a.inflight_bytes <= config.PIPELINE_BYTES
    assert len(s.holding.bitfield) == 20 and s.holding.fetched == 20


def test_a_slow_peer_keeps_only_its_floor_credit():
    s = Swarm(64, {"A": list(range(64))})
    a = s.remote("A")
    for _ in range(5):                                   # a slow link: a piece every 10 s
        s.host.clock.now += 10
        s.deliver("A", s.chan("A").pieces_asked()[0])
    assert len(s.chan("A").pieces_asked()) == config.MIN_PIPELINE_REQUESTS
    assert a.inflight_bytes == config.MIN_PIPELINE_REQUESTS * PIECE


def test_endgame_duplicates_a_late_piece_and_the_first_copy_wins():
    s = Swarm(4, {"A": [0, 1, 2, 3], "B": [0, 1, 2, 3]})
    on_a, on_b = s.chan("A").pieces_asked(), s.chan("B").pieces_asked()
    assert sorted(on_a + on_b) == [0, 1, 2, 3]
    for piece in on_b:
        s.deliver("B", piece)                            # B is done with its share; A stalls
    assert s.chan("B").pieces_asked() == []              # nothing pending: nothing to ask yet
    s.host.clock.now += config.ENDGAME_AFTER_S / 2
    s.job.tick(s.host.clock.now)
    assert s.chan("B").pieces_asked() == []              # not late yet
    s.host.clock.now += config.ENDGAME_AFTER_S
    s.job.tick(s.host.clock.now)
    dup = s.chan("B").pieces_asked()
    assert dup and set(dup) <= set(on_a)                 # B duplicates A's late pieces
    first = dup[0]
    s.deliver("B", first)
    assert first in s.holding.bitfield
    assert first not in s.chan("A").pieces_asked()       # A's copy was cancelled
    for piece in s.chan("B").pieces_asked():
        s.deliver("B", piece)
    for piece in s.chan("A").pieces_asked():
        s.deliver("A", piece)
    assert s.holding.bitfield.complete and s.holding.state == m.JobState.SEEDING
    assert bytes(s.file.data) == s.data


def test_no_duplicate_while_pieces_are_still_unassigned():
    s = Swarm(16, {"A": list(range(16)), "B": list(range(16))})
    s.host.clock.now += 10 * config.ENDGAME_AFTER_S
    s.job.tick(s.host.clock.now)
    asked = s.chan("A").pieces_asked() + s.chan("B").pieces_asked()
    assert len(asked) == len(set(asked))


def test_a_peer_that_sends_bad_pieces_is_banned_and_the_rest_comes_from_others():
    s = Swarm(12, {"bad": list(range(12)), "good": list(range(12))})
    bad = s.remote("bad")
    for n in range(config.MAX_HASH_FAILURES):
        assert not bad.banned
        s.deliver("bad", s.chan("bad").pieces_asked()[0], corrupt=True)
    assert bad.banned and bad.hash_failures == config.MAX_HASH_FAILURES
    assert s.chan("bad").pieces_asked() == [] and bad.inflight_bytes == 0
    assert bad.score(s.host.clock.now) == 0.0
    before = len(s.chan("bad").sent)
    while not s.holding.bitfield.complete:
        asked = s.chan("good").pieces_asked()
        assert asked, "the good peer was given nothing to do"
        s.deliver("good", asked[0])
    assert len(s.chan("bad").sent) == before             # nothing more asked of the banned peer
    assert bytes(s.file.data) == s.data                  # no bad byte was written
    assert s.job.failed_attempts == config.MAX_HASH_FAILURES
    stats = {p.peer_id: p for p in s.job.peer_stats()}
    assert stats["bad"].banned and stats["bad"].pieces == 0 and stats["good"].pieces == 12


def test_a_bad_copy_is_fetched_again_from_another_peer():
    s = Swarm(4, {"A": [0, 1, 2, 3], "B": [0, 1, 2, 3]})
    piece = s.chan("A").pieces_asked()[0]
    s.deliver("A", piece, corrupt=True)
    assert piece not in s.holding.bitfield
    asked_of_a = len(s.chan("A").sent)
    while not s.holding.bitfield.complete:
        peer, p = next((peer, p) for peer in "AB" for p in s.chan(peer).pieces_asked())
        s.deliver(peer, p)
    later = [x.msg.piece_index for x in s.chan("A").sent[asked_of_a:] if isinstance(x.msg, m.GetBlock)]
    assert piece not in later                            # not again from the peer whose copy failed
    assert piece in [x.msg.piece_index for x in s.chan("B").sent if isinstance(x.msg, m.GetBlock)]
    assert bytes(s.file.data) == s.data


def test_timeouts_rest_a_peer():
    s = Swarm(8, {"A": list(range(8)), "B": list(range(8))})
    for _ in range(config.SNUB_AFTER_TIMEOUTS):
        s.fail("A", s.chan("A").pieces_asked()[0])
    a = s.remote("A")
    assert a.rested_until > s.host.clock.now
    assert s.chan("A").pieces_asked() == [] or len(a.fetches) < config.MIN_PIPELINE_REQUESTS
    s.job.schedule()
    assert a.failures == config.SNUB_AFTER_TIMEOUTS and s.job.failed_attempts == config.SNUB_AFTER_TIMEOUTS


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_piece_arrives_once_in_any_delivery_order(seed):
    rnd = random.Random(seed)
    s = Swarm(20, {"A": list(range(20)), "B": list(range(0, 20, 2)), "C": list(range(1, 20, 2))})
    while not s.holding.bitfield.complete:
        open_ = [(peer, p) for peer in "ABC" for p in s.chan(peer).pieces_asked()]
        assert open_
        s.host.clock.now += rnd.random() * 0.05
        s.deliver(*rnd.choice(open_))
    assert s.holding.fetched == 20 and bytes(s.file.data) == s.data
    assert all(c.closed for c in s.host.channels.values())   # a finished job lets its remotes go


# ---------------------------------------------------------------- from main (c87af2d), on the same fakes
def bare_job(num_pieces: int) -> tuple[DownloadJob, FakeHost]:
    """A job with no tracker reply: the test adds its remotes by hand."""
    meta, data = torrent(num_pieces)
    host = FakeHost()
    holding = host.holdings.hold(meta, FakeFile(len(data)), Bitfield(num_pieces), m.JobState.DOWNLOADING, "download")
    return DownloadJob(host, holding), host


def full_remote(job: DownloadJob, peer_id: str) -> RemotePeer:
    full = Bitfield(job.meta.num_pieces)
    for i in range(job.meta.num_pieces):
        full.add(i)
    job.remotes[peer_id] = r = RemotePeer(peer_id, f"tcp://127.0.0.1:{len(job.remotes) + 1}",
                                          FakeChannel(peer_id), full)
    job._rebuild_order()
    return r


def test_endgame_duplicates_a_stalled_peers_pieces_once_they_are_late():
    job, host = bare_job(config.MIN_PIPELINE_REQUESTS)         # the staller's first credit takes every piece
    staller = full_remote(job, "staller")
    job.schedule()
    assert set(staller.channel.pieces_asked()) == set(range(job.meta.num_pieces)) and not job.pending
    seeder, third = full_remote(job, "seeder"), full_remote(job, "third")
    host.clock.now += config.ENDGAME_AFTER_S / 2
    job.schedule()
    assert seeder.channel.sent == [] and third.channel.sent == []    # not late yet: no duplicate
    host.clock.now += config.ENDGAME_AFTER_S
    job.schedule()                                                   # late: long before BLOCK_TIMEOUT_S
    assert config.ENDGAME_AFTER_S * 1.5 < config.BLOCK_TIMEOUT_S
    assert set(seeder.channel.pieces_asked()) | set(third.channel.pieces_asked()) == set(range(job.meta.num_pieces))
    assert all(len(attempts) == 2 for attempts in job.fetches.values())   # one duplicate each, never more
    assert not any(s.cancelled for s in staller.channel.sent) and staller.failures == 0   # no timeout waited for


def test_credit_follows_the_measured_rate():
    """A trickling peer gets the floor of two pieces in flight; a fast one up to PIPELINE_BYTES."""
    job, host = bare_job(64)
    slow, fast = full_remote(job, "slow"), full_remote(job, "fast")
    now = host.clock.now
    slow.first_request = fast.first_request = slow.first_reply = fast.first_reply = now - 10.0
    slow.bytes, fast.bytes = PIECE, 400 * 1024 * 1024              # 6.4 KiB/s against 40 MiB/s
    assert job._credit(slow, now) == config.MIN_PIPELINE_REQUESTS * PIECE
    assert job._credit(fast, now) == config.PIPELINE_BYTES
    job.schedule()
    assert len(slow.channel.pieces_asked()) == config.MIN_PIPELINE_REQUESTS
    assert len(fast.channel.pieces_asked()) == min(config.MAX_PIPELINE_REQUESTS, config.PIPELINE_BYTES // PIECE,
                                                   64 - config.MIN_PIPELINE_REQUESTS)


# ---------------------------------------------------------------- the start under latency (issue 19)
def _start_under_latency(rounds: int) -> tuple[list[int], "Swarm"]:
    """A link that took 0.6 s to its first block (handshakes, a round trip, slow start at
    100 ms RTT), then delivers all that was asked every 0.1 s: pieces in flight after each round."""
    s = Swarm(256, {"A": list(range(256))})
    s.host.clock.now += 0.6
    in_flight = []
    for _ in range(rounds):
        for piece in s.chan("A").pieces_asked():
            s.deliver("A", piece)
        in_flight.append(len(s.chan("A").pieces_asked()))
        s.host.clock.now += 0.1
    return in_flight, s


def test_credit_grows_from_the_first_reply_not_the_first_request(monkeypatch):
    """The credit doubles each round trip (it is what the link delivered) until
    CREDIT_WINDOW_S after the first reply; counting from the first request (the old rule)
    kept it near its floor."""
    in_flight, s = _start_under_latency(4)
    assert in_flight == [2, 4, 8, 16]
    a = s.remote("A")
    s.host.clock.now += 1.0                              # later: CREDIT_WINDOW_S of its rate since the first reply
    rate = a.bytes / (s.host.clock.now - a.first_reply)
    assert s.job._credit(a, s.host.clock.now) == int(rate * config.CREDIT_WINDOW_S) > 2 * PIECE
    monkeypatch.setattr(RemotePeer, "rate", RemotePeer.score)      # the old rule
    old, _ = _start_under_latency(4)
    assert old[-1] < in_flight[-1] / 2, old             # [2, 3, 5, 7]


def test_the_first_peer_list_is_asked_before_the_job_exists_and_taken_when_it_does():
    """jobs.py sends the job's first GET_PEERS before the holding is registered with the
    tracker (whose request carries the whole metainfo): the job asks no second time and
    takes the reply, whether it came before the job or after."""
    from node.peer.peerlist import FirstPeers
    for reply_first in (True, False):
        meta, data = torrent(8)
        host = FakeHost()
        first = FirstPeers(host, meta)
        assert [type(s.msg) for s in host.tracker.sent] == [m.GetPeers]
        bits = Bitfield(8)
        for i in range(8):
            bits.add(i)
        reply = m.PeerList(info_hash=meta.info_hash, name="f.bin", num_pieces=8, length=len(data),
                           peers=[m.PeerInfo(peer_id="A", host="127.0.0.1", port=7000, bitfield=bits.to_bytes(),
                                             have=8)])
        if reply_first:
            host.tracker.sent[0].callback(Envelope(1, reply), None)
        holding = host.holdings.hold(meta, FakeFile(len(data)), Bitfield(8), m.JobState.DOWNLOADING, "download")
        job = DownloadJob(host, holding, first)
        job.tick(host.clock.now)                         # one is under way (or answered): no second ask yet
        if not reply_first:
            assert job.remotes == {}
            host.tracker.sent[0].callback(Envelope(1, reply), None)
        assert len(host.tracker.sent) == 1
        chan = host.channels["tcp://127.0.0.1:7000"]
        assert len(chan.pieces_asked()) == config.MIN_PIPELINE_REQUESTS


def test_a_new_remote_is_watched_in_its_first_flight():
    s = Swarm(8, {"A": [0, 1], "B": list(range(8))})
    watches = [x for x in s.chan("A").sent if isinstance(x.msg, m.Watch)]
    assert len(watches) == 1 and s.remote("A").watching     # at once, not at the next tick
    assert not any(isinstance(x.msg, m.Watch) for x in s.chan("B").sent)   # a seed has no news


def test_the_first_watch_asks_for_every_piece_the_remote_verified_in_this_run():
    """A leecher the tracker listed with no pieces, that verified one before our first
    WATCH reached it: the first WATCH asks since 0 (not -1, "just tell me seq"), so that
    piece is known at once, not at the next tracker list."""
    s = Swarm(8, {"A": [], "seed": list(range(8))})
    watch = [x for x in s.chan("A").sent if isinstance(x.msg, m.Watch)][0]
    assert watch.msg.since == 0
    held = set(s.chan("seed").pieces_asked())
    piece = next(i for i in range(8) if i not in held)   # one we have not asked of the seed
    watch.callback(Envelope(watch.msg_id, m.Haves(info_hash=s.meta.info_hash, seq=1, pieces=[piece])), None)
    assert piece in s.remote("A").bitfield


def test_a_peer_list_that_comes_after_the_job_ended_opens_no_link():
    """A refresh still in flight when the download ends: its reply names a new peer, and the
    ended job takes no link to it (it would never let it go)."""
    s = Swarm(8, {"seed": list(range(8))})
    s.host.clock.now += config.PEER_REFRESH_S + 1
    s.job.tick(s.host.clock.now)
    ask = s.host.tracker.sent[-1]
    assert isinstance(ask.msg, m.GetPeers)
    s.job.close()
    late = m.PeerInfo(peer_id="late", host="127.0.0.1", port=7100, bitfield=b"", have=0, pieces=[0])
    ask.callback(Envelope(2, m.PeerList(info_hash=s.meta.info_hash, name="f.bin", num_pieces=8,
                                        length=len(s.data), peers=[late], version=2, delta=True)), None)
    assert "tcp://127.0.0.1:7100" not in s.host.channels


def _answer_elsewhere(s: "Swarm", peer_id: str, piece: int, suggest: list[int]) -> None:
    for sent in [x for x in s.chan(peer_id).open_blocks() if x.msg.piece_index == piece]:
        sent.cancelled = True
        sent.callback(Envelope(sent.msg_id, m.Elsewhere(info_hash=s.meta.info_hash, piece_index=piece,
                                                        suggest=suggest)), None)


def test_elsewhere_with_offers_defers_the_piece_for_the_retry_time():
    s = Swarm(16, {"S": list(range(16))})
    seed = s.remote("S")
    piece = s.chan("S").pieces_asked()[0]
    offers = [i for i in range(16) if i not in s.chan("S").pieces_asked()][:2]
    _answer_elsewhere(s, "S", piece, offers)
    assert seed.rested_until <= s.host.clock.now
    assert seed.deferred[piece] == pytest.approx(s.host.clock.now + config.ELSEWHERE_RETRY_S)
    assert offers[0] in s.chan("S").pieces_asked()       # the offers come first


def test_a_standard_peers_channel_is_closed_when_the_job_lets_it_go():
    """A BEP 3 channel is the job's own (it is not in the shared links): the job closes it when
    it drops the remote and when it ends, or it would redial the client for good."""
    job, host = bare_job(4)
    peers = {}
    for name in ("lt1", "lt2"):
        full = full_remote(job, name)
        full.endpoint = f"{config.BT_SCHEME}198.18.0.{len(peers) + 5}:6881"
        peers[name] = full.channel
    job._drop_remote(job.remotes.pop("lt1"))
    assert peers["lt1"].closed and not peers["lt2"].closed
    job.close()
    assert peers["lt2"].closed
    assert not host.channels                       # no data-port link was asked for or let go


# ---------------------------------------------------------------- picking on masks (issue 19)
def _walk(job: DownloadJob, remote: RemotePeer, now: float):
    """What _pick chose before masks: the first of retry, then order, that may be asked of ``remote``."""
    for i in list(job.retry) + list(job.order):
        if (i in job.pending and i in remote.bitfield and i not in remote.refused
                and remote.deferred.get(i, 0.0) <= now and job._may_fetch(remote, i)):
            return i
    return None


def _remote(job: DownloadJob, peer_id: str, pieces) -> RemotePeer:
    bits = Bitfield(job.meta.num_pieces)
    for i in pieces:
        bits.add(i)
    job.remotes[peer_id] = r = RemotePeer(peer_id, f"tcp://127.0.0.1:{len(job.remotes) + 1}", FakeChannel(peer_id), bits)
    return r


@pytest.mark.parametrize("seed", range(4))
def test_a_pick_from_the_mask_is_the_piece_a_walk_of_the_order_finds(seed):
    rnd = random.Random(seed)
    job, host = bare_job(300)
    remotes = [_remote(job, f"r{k}", rnd.sample(range(300), rnd.choice([3, 20, 60, 200, 300]))) for k in range(8)]
    random.seed(seed)
    job._rebuild_order()
    now = host.clock.now
    for i in rnd.sample(range(300), 40):                 # some are fetched (or held) already
        job._take(i)
    for i in rnd.sample(sorted(job.pending), 5):         # some came back from a failed attempt
        job._take(i)
        job._put_back(i, retry=True)
    job._first(rnd.choice(sorted(job.pending)))          # one only a single remote has
    remotes[0].refused.add(rnd.choice(remotes[0].bitfield.indexes()))
    remotes[1].deferred[rnd.choice(remotes[1].bitfield.indexes())] = now + 5
    assert job.pending_mask == sum(1 << (303 - i) for i in job.pending)   # 300 pieces: 38 bytes, 304 bits
    for _ in range(120):
        remote = rnd.choice(remotes)
        expected = _walk(job, remote, now)
        assert job._pick(remote, now) == expected
        if expected is not None:
            assert expected not in job.pending and not job.pending_mask & (1 << (303 - expected))


def test_a_remote_with_nothing_wanted_walks_nothing():
    job, host = bare_job(64)
    full_remote(job, "seed")
    held = _remote(job, "held", range(8))
    for i in range(8):
        job._take(i)                                     # what it has, we have (or fetch) already

    class Untouchable:
        def __iter__(self):
            raise AssertionError("walked the order")

        __bool__ = __len__ = __getitem__ = __iter__

    job.order, job.retry = Untouchable(), Untouchable()
    assert job._pick(held, host.clock.now) is None

