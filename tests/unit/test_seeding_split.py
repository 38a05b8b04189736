"""The seed's split of first copies by relay speed (node/peer/seeding.py), on a fake clock:
a taker whose first copies are not seen at other leechers gets no more of them while
pieces stranded elsewhere or second copies can be had instead; one that relays is
always served."""
import random

from node import config
from node.peer.seeding import SendOnce
from node.peer.seedview import SwarmView
from protocol import messages as m
from protocol.pieces import Bitfield


def _first_copies(s: SendOnce, taker, pieces, now: float) -> list[int]:
    out = []
    for piece in pieces:
        assert s.admit(piece, taker, now, taker) is None
        out.append(piece)
    return out


def test_no_split_before_the_view_has_seen_any_relay():
    s = SendOnce(64, random.Random(1))
    _first_copies(s, "fast", range(0, 4), 0.0)
    for i in range(4, 24):               # a slow taker with 20 first copies is still served
        assert s.admit(i, "slow", 0.1 * i, "slow") is None
    assert not s.over_stock("slow", 3.0)


def _slow_and_fast() -> SendOnce:
    """c got 10 first copies at 0 s and relayed none; a and b relay each other's within 0.5 s."""
    s = SendOnce(64, random.Random(2))
    _first_copies(s, "c", range(20, 30), 0.0)
    a = _first_copies(s, "a", range(0, 10), 0.0)
    b = _first_copies(s, "b", range(10, 20), 0.0)
    s.observe("c", range(20, 30), 0.4)   # c verified its own: that is no relay
    s.observe("b", a, 0.5)
    s.observe("a", b, 0.5)
    _first_copies(s, "a", range(30, 36), 0.9)
    _first_copies(s, "b", range(36, 42), 0.9)
    return s


def test_a_slow_relay_gets_stranded_pieces_and_second_copies_not_first_copies():
    s = _slow_and_fast()
    assert s.over_stock("c", 1.0) and not s.over_stock("a", 1.0) and not s.over_stock("b", 1.0)
    instead = s.admit(50, "c", 1.0, "c")             # a fresh piece: kept for faster relays
    assert instead and set(instead) <= set(range(30, 42)) and 50 in s.fresh
    assert s.admit(instead[0], "c", 1.0, "c") is None     # the second copy is served
    assert s.admit(50, "a", 1.0, "a") is None        # a relays quickly: a first copy
    assert 50 in s.stock["a"]


def test_a_quick_relay_asking_for_a_taken_piece_is_still_offered_first_copies():
    s = _slow_and_fast()
    offered = s.admit(25, "a", 1.0, "a")             # c's: the send-once redirect, as before
    assert offered and all(p in s.stock["a"] for p in offered)


def test_nobody_is_held_back_when_no_other_relay_holds_a_stock():
    s = _slow_and_fast()
    s.observe("c", range(30, 42), 1.0)   # c got all of a's and b's stock: they hold nothing alone
    assert not s.over_stock("c", 1.0)     # nothing to compare with: c relays as fast as anyone seen
    assert s.admit(50, "c", 1.0, "c") is None


def test_a_taker_that_ran_dry_is_served_whatever_it_relayed():
    s = _slow_and_fast()
    s.observe("c", range(30, 36), 1.0)   # a's whole stock relayed: a holds nothing alone
    assert not s.over_stock("a", 1.0)
    assert s.admit(51, "a", 1.0, "a") is None


def _simulate(sender: SendOnce, rates: dict[str, float], seed_rate: float, seconds: float,
              lag_s: float = 0.2) -> tuple[dict[str, int], int]:
    """The seed sends one piece per 1/seed_rate s, to the takers in turn (its uplink is shared
    evenly). Each taker relays its sole-held first copies at its own rate (pieces/s), seen in
    the view lag_s later. Returns the first copies each taker got, and the pieces the seed sent."""
    n = sender.num_pieces
    rng = random.Random(5)
    takers = list(rates)
    firsts = {t: 0 for t in takers}
    mine = {t: [] for t in takers}                    # first copies it alone holds
    credit = {t: 0.0 for t in takers}
    has = {t: set() for t in takers}
    offered = {t: [] for t in takers}
    wants = {t: rng.sample(range(n), n) for t in takers}
    seen_later: list[tuple[float, str, int]] = []
    dt, now, turn, served = 1.0 / seed_rate, 0.0, 0, 0
    while now < seconds and sender.fresh:
        for k in range(len(takers)):                  # the slot goes to the first taker served
            t = takers[(turn + k) % len(takers)]
            while offered[t] and offered[t][0] in has[t]:
                offered[t].pop(0)
            piece = offered[t].pop(0) if offered[t] else next(p for p in wants[t] if p not in has[t])
            reply = sender.admit(piece, t, now, t)
            if reply:                                 # offered others: it asks them first
                offered[t].extend(reply)
                piece = offered[t].pop(0)
                reply = sender.admit(piece, t, now, t)
            if reply is None:
                served += 1
                has[t].add(piece)
                if piece in sender.stock.get(t, ()):       # a first copy (served or reserved for it)
                    firsts[t] += 1
                    mine[t].append(piece)
                break
        turn += 1
        for r in takers:                              # relays: each first copy to one other leecher
            credit[r] += rates[r] * dt
            while credit[r] >= 1 and mine[r]:
                credit[r] -= 1
                p = mine[r].pop(0)
                other = takers[(takers.index(r) + 1) % len(takers)]
                has[other].add(p)
                seen_later.append((now + lag_s, other, p))
            if not mine[r]:
                credit[r] = min(credit[r], 1.0)
        while seen_later and seen_later[0][0] <= now:
            _, who, p = seen_later.pop(0)
            sender.observe(who, [p], now)
        now += dt
    return firsts, served


def test_first_copies_follow_relay_rates_not_turns():
    rates = {"fast": 80.0, "mid": 40.0, "slow": 10.0}
    firsts, served = _simulate(SendOnce(2048, random.Random(6)), rates, seed_rate=130.0, seconds=6.0)
    total = sum(firsts.values())
    # by turns (the old seed) each got a third of the first copies; the slow relay now gets
    # few, and its turns carry second copies instead
    assert firsts["slow"] / total < 0.15, firsts
    assert min(firsts["fast"], firsts["mid"]) / total > 0.4, firsts
    assert served > 0.95 * 6.0 * 130.0, served        # the seed's uplink stayed busy


def test_the_view_skips_seeds_and_itself_and_reads_deltas():
    s = SendOnce(16, random.Random(7))
    assert s.admit(3, "conn-a", 0.0, "a") is None
    view = SwarmView(s, "ih", 16, "me")
    full = Bitfield.full(16).to_bytes()
    some = Bitfield(16)
    some.add(3)
    whole = m.PeerList(info_hash="ih", name="x", num_pieces=16, length=16, version=5, peers=[
        m.PeerInfo(peer_id="me", host="h", port=1, bitfield=full, have=16),
        m.PeerInfo(peer_id="seed2", host="h", port=2, bitfield=full, have=16),
        m.PeerInfo(peer_id="a", host="h", port=3, bitfield=some.to_bytes(), have=1)])
    view.take(whole, 1.0)
    assert view.cursor == 5 and "seed2" in view.seeds and "me" not in s.held
    assert 3 in s.stock["conn-a"]                 # a's own copy is no relay
    delta = m.PeerList(info_hash="ih", name="x", num_pieces=16, length=16, version=6, delta=True, peers=[
        m.PeerInfo(peer_id="b", host="h", port=4, bitfield=b"", have=2, pieces=[3, 7])])
    view.take(delta, 1.2)
    assert 3 not in s.stock["conn-a"] and s.informed_at == 1.2 and view.cursor == 6
    assert 7 not in s.fresh                      # b got 7 from another seed: not fresh here
    assert s.admit(7, "conn-c", 1.3, "c") is not None


def test_the_view_is_read_at_most_every_view_interval_and_only_while_first_copies_remain():
    asked = []

    class Tracker:
        def request(self, msg, callback, timeout_s, tries):
            asked.append(msg.since)

    s = SendOnce(2, random.Random(8))
    view = SwarmView(s, "ih", 2, "me")
    view.maybe_ask(Tracker(), 0.0)
    view.maybe_ask(Tracker(), 0.01)              # one in flight
    view.asking = False
    view.maybe_ask(Tracker(), config.SEND_ONCE_VIEW_S / 2)
    view.maybe_ask(Tracker(), config.SEND_ONCE_VIEW_S + 0.01)
    assert asked == [-1, -1]
    view.asking = False
    s.admit(0, "a", 1.0)
    s.admit(1, "a", 1.0)
    view.maybe_ask(Tracker(), 2.0)               # nothing fresh: no more reads
    assert len(asked) == 2
