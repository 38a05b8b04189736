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
    for i in range(20):                  # a slow taker with 20 first copies is still served
        assert s.admit(i, "slow", 0.01 * i, "slow") is None
    assert not s.over_stock("slow", 0.5)


def test_a_slow_relay_is_offered_stranded_pieces_and_second_copies_not_first_copies():
    s = SendOnce(64, random.Random(2))
    a = _first_copies(s, "a", range(0, 10), 0.0)
    b = _first_copies(s, "b", range(10, 20), 0.0)
    _first_copies(s, "c", range(20, 30), 0.0)
    s.observe("b", a[:8], 0.5)           # a's and b's first copies reach the other; c's reach nobody
    s.observe("a", b[:8], 0.5)
    s.observe("c", range(20, 30), 0.5)   # c verified its own: that is no relay
    assert s.over_stock("c", 0.6) and not s.over_stock("a", 0.6)
    instead = s.admit(40, "c", 0.6, "c")          # a fresh piece: kept for faster relays
    assert instead and set(instead) <= set(a[8:] + b[8:])
    assert 40 in s.fresh
    assert s.admit(instead[0], "c", 0.7, "c") is None   # the second copy is served
    assert s.admit(41, "a", 0.7, "a") is None           # a relays: a first copy


def test_a_slow_relay_is_served_a_first_copy_when_nothing_else_is_stranded():
    s = SendOnce(64, random.Random(3))
    a = _first_copies(s, "a", range(0, 10), 0.0)
    _first_copies(s, "c", range(10, 20), 0.0)
    s.observe("c", a, 0.5)               # c holds all of a's: nothing to offer it instead
    assert s.over_stock("c", 0.6)
    assert s.admit(30, "c", 0.6, "c") is None          # the seed is not left idle


def test_a_taker_that_ran_dry_is_served_whatever_its_rate():
    s = SendOnce(64, random.Random(4))
    a = _first_copies(s, "a", range(0, 4), 0.0)
    s.observe("b", a, 0.2)
    assert s.relay_rate("a", 0.3) > 0
    assert not s.over_stock("b", 0.3)    # no stock at all: never held back
    assert s.admit(9, "b", 0.3, "b") is None


def _simulate(sender: SendOnce, rates: dict[str, float], seed_rate: float, seconds: float,
              lag_s: float = 0.2) -> dict[str, int]:
    """The seed sends one piece per 1/seed_rate s, to the takers in turn; a taker told "not
    now" rests for SEND_ONCE_VIEW_S and the slot goes to the next. Each taker relays its
    sole-held first copies at its own rate (pieces/s), seen in the view lag_s later.
    Returns the first copies each taker got."""
    n = sender.num_pieces
    rng = random.Random(5)
    takers = list(rates)
    firsts = {t: 0 for t in takers}
    mine = {t: [] for t in takers}                    # first copies it alone holds
    credit = {t: 0.0 for t in takers}
    rest = {t: 0.0 for t in takers}
    has = {t: set() for t in takers}
    offered = {t: [] for t in takers}
    wants = {t: rng.sample(range(n), n) for t in takers}
    seen_later: list[tuple[float, str, int]] = []
    dt, now, turn = 1.0 / seed_rate, 0.0, 0
    while now < seconds and sender.fresh:
        for k in range(len(takers)):                  # the slot goes to the first taker served
            t = takers[(turn + k) % len(takers)]
            if rest[t] > now:
                continue
            while offered[t] and offered[t][0] in has[t]:
                offered[t].pop(0)
            piece = offered[t].pop(0) if offered[t] else next(p for p in wants[t] if p not in has[t])
            reply = sender.admit(piece, t, now, t)
            if reply:                                 # offered others: it asks them first
                offered[t].extend(reply)
                piece = offered[t].pop(0)
                reply = sender.admit(piece, t, now, t)
            if reply == []:
                rest[t] = now + config.SEND_ONCE_VIEW_S
                continue
            if reply is None:
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
    return firsts


def test_first_copies_follow_relay_rates_not_turns():
    rates = {"fast": 80.0, "mid": 40.0, "slow": 10.0}
    firsts = _simulate(SendOnce(2048, random.Random(6)), rates, seed_rate=130.0, seconds=6.0)
    total = sum(firsts.values())
    # by turns (the old seed) each would get a third; relay rates say 0.62 / 0.31 / 0.08
    assert firsts["slow"] / total < 0.15, firsts
    assert firsts["fast"] / total > 0.5, firsts
    assert total > 0.9 * 6.0 * 130.0, firsts          # the seed's uplink stayed busy


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
    assert s.relay_rate("conn-a", 1.0) == 0      # a's own copy is no relay
    delta = m.PeerList(info_hash="ih", name="x", num_pieces=16, length=16, version=6, delta=True, peers=[
        m.PeerInfo(peer_id="b", host="h", port=4, bitfield=b"", have=2, pieces=[3, 7])])
    view.take(delta, 1.2)
    assert s.relay_rate("conn-a", 1.2) > 0 and view.cursor == 6
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
