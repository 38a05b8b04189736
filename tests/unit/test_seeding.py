"""Send-once seeding: a second asker is sent elsewhere while unsent pieces remain."""
import random

from node import config
from node.peer.seeding import SendOnce


def test_first_taker_is_served_a_second_asker_gets_unsent_pieces():
    s = SendOnce(8, random.Random(1))
    assert s.admit(3, "a", 0.0) is None
    assert s.admit(3, "a", 0.1) is None                  # the same taker (a retry) is served
    offered = s.admit(3, "b", 0.2)
    assert offered and 3 not in offered and len(offered) == config.SEND_ONCE_SUGGEST
    assert all(s.admit(q, "b", 0.3) is None for q in offered)   # reserved for b: served
    assert s.admit(offered[0], "c", 0.4) is not None            # and not for c


def test_once_every_piece_is_out_anything_is_served():
    s = SendOnce(4, random.Random(2))
    for piece in range(4):
        assert s.admit(piece, "a", 0.0) is None
    assert s.admit(0, "b", 0.1) is None


def test_a_lost_first_copy_is_sent_again_after_the_resend_time():
    s = SendOnce(8, random.Random(3))
    assert s.admit(5, "a", 0.0) is None
    assert s.admit(5, "b", 1.0) is not None
    assert s.admit(5, "b", config.SEND_ONCE_RESEND_S + 0.1) is None


def test_an_empty_identity_is_one_more_taker_not_a_pass():
    s = SendOnce(8)
    assert s.admit(1, b"a", 0.0) is None
    assert s.admit(1, b"", 0.1) is not None


def test_an_offer_not_taken_up_lapses_and_the_piece_is_fresh_again():
    """A client that ignores what it was offered (a BEP 6 suggest) does not keep those pieces
    from the others: after SEND_ONCE_OFFER_S they are offered again, and a second copy is not
    served while they wait."""
    s = SendOnce(12, random.Random(4))
    assert s.admit(0, "a", 0.0) is None
    ignored = s.admit(0, "b", 0.1)                       # b never asks for these
    later = config.SEND_ONCE_OFFER_S + 0.2
    assert s.admit(ignored[0], "c", 0.2) is not None     # still b's within the offer time
    again = s.admit(0, "c", later)
    assert again and set(ignored) <= set(s.unsent) | set(again)
    assert all(s.admit(q, "c", later) is None for q in again)


def test_an_offer_taken_up_stays_sent():
    s = SendOnce(12, random.Random(5))
    assert s.admit(0, "a", 0.0) is None
    offered = s.admit(0, "b", 0.1)
    assert s.admit(offered[0], "b", 0.2) is None         # b takes one of them up
    later = config.SEND_ONCE_OFFER_S + 0.3
    assert s.admit(0, "c", later) is not None            # still refusing: unsent pieces remain
    assert s.admit(offered[0], "c", later) is not None   # and the one b took is b's
    assert offered[0] not in s.fresh
