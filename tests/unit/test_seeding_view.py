"""A seed's view of who holds what (node/peer/seedview.py, node/peer/seeding.py
``observe``): with two seeds, a piece a leecher got from the other is no longer fresh
here, so the seeds split the first copies without a round trip between them."""
import random

from node import config
from node.peer.seeding import SendOnce
from node.peer.seedview import SwarmView
from protocol import messages as m
from protocol.pieces import Bitfield

FULL = Bitfield.full(16).to_bytes()


def _bits(*pieces) -> bytes:
    b = Bitfield(16)
    for i in pieces:
        b.add(i)
    return b.to_bytes()


def _list(version, peers, delta=False, gone=()):
    return m.PeerList(info_hash="ih", name="x", num_pieces=16, length=16, version=version,
                      peers=peers, delta=delta, gone=list(gone))


def test_a_piece_the_other_seed_sent_is_not_fresh_here():
    s = SendOnce(16, random.Random(1))
    view = SwarmView(s, "ih", 16, "me")
    view.take(_list(5, [m.PeerInfo(peer_id="me", host="h", port=1, bitfield=FULL, have=16),
                        m.PeerInfo(peer_id="seed2", host="h", port=2, bitfield=FULL, have=16),
                        m.PeerInfo(peer_id="a", host="h", port=3, bitfield=_bits(3), have=1)]), 1.0)
    assert view.cursor == 5 and view.seeds == {"seed2"}
    assert 3 not in s.fresh and len(s.fresh) == 15         # neither seed's own bitfield counts
    assert s.admit(3, b"b", 1.1) is not None                # asked of us: it is out there, take fresh ones
    view.take(_list(6, [m.PeerInfo(peer_id="b", host="h", port=4, bitfield=b"", have=2, pieces=[7, 8])],
                    delta=True), 1.2)
    assert view.cursor == 6 and not {7, 8} & s.fresh
    offered = s.admit(7, b"c", 1.3)
    assert offered and not {3, 7, 8} & set(offered)         # only pieces nobody holds are offered


def test_a_leecher_that_finishes_in_a_delta_is_not_taken_for_a_seed():
    s = SendOnce(16, random.Random(2))
    view = SwarmView(s, "ih", 16, "me")
    view.take(_list(1, [m.PeerInfo(peer_id="a", host="h", port=3, bitfield=_bits(), have=0)]), 1.0)
    view.take(_list(2, [m.PeerInfo(peer_id="a", host="h", port=3, bitfield=b"", have=16, pieces=list(range(16)))],
                    delta=True), 2.0)
    assert view.seeds == set() and not s.fresh


def test_the_view_is_read_often_only_while_another_seed_is_listed_and_first_copies_remain():
    asked = []

    class Tracker:
        def request(self, msg, callback, timeout_s, tries):
            asked.append(msg.since)

    s = SendOnce(2, random.Random(3))
    view = SwarmView(s, "ih", 2, "me")
    view.maybe_ask(Tracker(), 0.0)
    view.maybe_ask(Tracker(), 0.01)                         # one in flight
    view.asking = False
    view.maybe_ask(Tracker(), config.SEND_ONCE_VIEW_S + 0.01)   # alone: every PEER_REFRESH_S
    assert asked == [-1]
    view.seeds.add("seed2")
    view.maybe_ask(Tracker(), config.SEND_ONCE_VIEW_S + 0.02)   # with another seed: every SEND_ONCE_VIEW_S
    assert len(asked) == 2
    view.asking = False
    s.admit(0, b"a", 1.0)
    s.admit(1, b"a", 1.0)
    view.maybe_ask(Tracker(), 5.0)                          # nothing fresh: no more reads
    assert len(asked) == 2


def test_a_failed_read_asks_for_the_whole_list_next():
    s = SendOnce(4, random.Random(4))
    view = SwarmView(s, "ih", 4, "me")
    view.cursor, view.asking = 9, True
    view._on_reply(None, RuntimeError("no reply"))
    assert view.cursor == -1 and not view.asking
