"""node/peer/watch.py: how long news waits for the parked WATCHes."""
from node import config
from node.peer.watch import Park, Watchers
from protocol import messages as m
from protocol.codec import encode


def parked(n: int) -> tuple[Watchers, list[int], list]:
    log, sent = [], []
    w = Watchers(lambda ident, frames: sent.append(ident), lambda info_hash: log)
    for i in range(n):
        w.park(b"peer%d" % i, encode(m.Watch(info_hash="ab" * 20, since=0), i + 1), Park("ab" * 20, 0), now=0.0)
    return w, log, sent


def test_a_few_watchers_hear_of_a_piece_within_the_short_batch():
    w, log, sent = parked(3)
    w.last_flush = 100.0
    assert w.next_deadline() == config.WATCH_S        # nothing new: the first timeout
    log.append(7)                                      # a piece verified
    assert w.next_deadline() == 100.0 + config.WATCH_BATCH_MIN_S < 100.0 + config.ANNOUNCE_BATCH_S
    w.flush(100.005)
    assert sorted(sent) == [b"peer0", b"peer1", b"peer2"]


def test_many_watchers_are_answered_at_most_every_announce_batch():
    w, log, _ = parked(config.WATCH_PARKED_MAX)
    w.last_flush = 100.0
    log.append(7)
    assert w.next_deadline() == 100.0 + config.ANNOUNCE_BATCH_S
