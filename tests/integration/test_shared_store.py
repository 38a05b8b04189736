"""Several trackers on one MongoDB store (a real SecantusDB server): versions written out of
order never cost a job a change, and each peer expires on the interval it was handed,
whichever tracker handed it or took its heartbeats."""
import itertools
import time

import pytest

from node import config
from node.tracker.handlers import TrackerContext, tracker
from node.tracker.store import PeerRecord, TorrentRecord, open_store
from protocol import messages as m
from protocol.codec import decode, encode

pytestmark = pytest.mark.mongo
_dbs = itertools.count()
TORRENT = TorrentRecord("ab" * 20, "f.bin", 100_000, 16384, 7, b"d4:infode")


@pytest.fixture
def two_stores(mongo_uri):
    uri = f"{mongo_uri}/shared{next(_dbs)}?retryWrites=false"
    a, b = open_store(uri), open_store(uri)
    yield a, b
    a.close()
    b.close()


class HeldWrite:
    """The store's collection, except that its first ordered bulk write (a batch of announces)
    runs ``meanwhile`` first: what another tracker and a reader do while this write is in flight."""

    def __init__(self, files, meanwhile) -> None:
        self._files, self._meanwhile = files, meanwhile

    def __getattr__(self, name):
        return getattr(self._files, name)

    def bulk_write(self, ops, ordered=True):
        if ordered and self._meanwhile is not None:
            run, self._meanwhile = self._meanwhile, None
            run()
        return self._files.bulk_write(ops, ordered=ordered)


def known(view: dict, changes) -> None:
    for c in changes:
        if c.gone or c.reset:
            view.pop(c.peer_id, None)
        if not c.gone:
            view.setdefault(c.peer_id, set()).update(c.pieces or ())


def test_a_version_written_after_a_later_one_is_never_missed(two_stores):
    """Tracker A takes version v+1 for p1's piece, tracker B takes v+2 for p2's and writes it
    first, and a job reads in between: its next delta must still bring p1's piece."""
    a, b = two_stores
    a.put_torrent(TORRENT)
    for pid in ("p1", "p2"):
        a.put_peer(PeerRecord(pid, "127.0.0.1", 6881, "t", 1.0))
    a.commit()
    cursor, _ = b.changes(TORRENT.info_hash, -1)
    view: dict[str, set] = {}

    def meanwhile():
        nonlocal cursor
        b.add_pieces(TORRENT.info_hash, "p2", [5])
        b.commit()
        cursor, changes = b.changes(TORRENT.info_hash, cursor)
        known(view, changes)

    a.files = HeldWrite(a.files, meanwhile)
    a.add_pieces(TORRENT.info_hash, "p1", [3])
    a.commit()
    assert view == {"p2": {5}}                       # A's change was not written when the job read
    cursor, changes = b.changes(TORRENT.info_hash, cursor)
    known(view, changes)
    assert view == {"p1": {3}, "p2": {5}}
    a.sweep(time.time())                             # A is idle: its mark goes, and cursors reach the
    cursor, _ = b.changes(TORRENT.info_hash, cursor)  # last version (until then, changes came again)
    assert cursor == 2 and b.changes(TORRENT.info_hash, cursor) == (2, [])


def test_a_pending_version_of_a_dead_tracker_holds_cursors_back_only_for_a_while(two_stores, monkeypatch):
    a, b = two_stores
    a.put_torrent(TORRENT)
    a.put_peer(PeerRecord("p1", "127.0.0.1", 6881, "t", 1.0))
    a.commit()
    v = a._take_version(TORRENT.info_hash)           # taken, then the tracker dies before writing
    b.add_pieces(TORRENT.info_hash, "p1", [1])
    b.commit()
    assert b.changes(TORRENT.info_hash, -1)[0] == v - 1
    monkeypatch.setattr(config, "MONGO_PENDING_S", 0.0)
    assert b.changes(TORRENT.info_hash, -1)[0] == v + 1          # a's mark is too old: ignored, removed
    b.sweep(time.time())                                         # b's own goes once it is idle
    assert b.files.find_one({"_id": TORRENT.info_hash})["pending"] == {}


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


def ask(ctx, msg):
    reply = decode(tracker.dispatch(ctx, encode(msg, 1))).msg
    ctx.commit()
    return reply


def test_expiry_follows_each_peers_interval_across_trackers(two_stores, monkeypatch):
    """A hands p0 a long interval in a big swarm; the swarm shrinks; B, counting the same store,
    hands out the short one and expires a new silent peer in seconds, but not p0 early."""
    monkeypatch.setattr(config, "TRACKER_HEARTBEATS_PER_S", 1.0)
    clock = Clock()
    ta, tb = (TrackerContext(store=s, clock=clock, started=0.0) for s in two_stores)
    tokens = {f"p{i}": ask(ta, m.RegisterPeer(peer_id=f"p{i}", host="127.0.0.1", port=7000 + i, token="")).token
              for i in range(8)}
    tb.expire_peers()                                          # B counts 8 live peers in the shared store
    assert ask(tb, m.Heartbeat(peer_id="p0", token=tokens["p0"])).heartbeat_interval_s == 8.0
    for i in range(1, 8):
        ask(ta, m.Deregister(peer_id=f"p{i}", token=tokens[f"p{i}"]))
    ta.expire_peers()
    assert ask(ta, m.RegisterPeer(peer_id="new", host="127.0.0.1", port=7100, token="")).heartbeat_interval_s == 2.0
    clock.now += config.PEER_EXPIRY_S + 1
    assert tb.expire_peers() == ["new"]                        # a small swarm's silent peer: seconds
    assert ta.expire_peers() == [] and ta.store.get_peer("p0") is not None
    clock.now += 3 * 8.0
    assert ta.expire_peers() == ["p0"]
