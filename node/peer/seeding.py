"""Send-once seeding: the origin seed is the swarm's only source of pieces nobody else
has, so while such pieces remain it sends each piece to one peer only (BEP 16's aim,
without its one-piece-at-a-time trickle).

A seed that serves 6 leechers in turn sends a piece to whoever asks; each leecher
picks the rarest pieces from a view up to a second old, so several ask for the same
one, and a normal seed uploads 1.5-2x the torrent before a full copy exists (BEP 16;
1.57x measured here, bench/RESULTS.md). With send-once a second asker gets an
``Elsewhere`` reply: the piece is out there (its first taker will relay it), and here
are pieces nobody has been sent, reserved for you. Once every piece has been sent at
least once, the seed serves anything: every leecher still needs every piece, and
the seed's upload is then as good as anyone's.

A piece's first taker may die or drop it: after SEND_ONCE_RESEND_S anyone may have it
again.

The taker is the connection a request came on (its ROUTER routing id), never what the
request claims: a stranger who names another peer, or nobody, is one more taker.

First copies follow relay speed. A first copy is worth what its taker relays of it: a
leecher with a slow uplink that is handed a quarter of the pieces holds them alone for
seconds while fast uplinks run dry, and the seed sends them again at the end (1.5-1.8x the
torrent in a 10-100 Mbit/s swarm, where about 1.25x would do). So the seed keeps, per taker,
its **stock**: the first copies it was given that no other leecher is known to hold yet
(the tracker's view of who holds what, node/peer/seedview.py, fed to ``observe``). A first
copy leaves the stock when a second leecher is seen with it, so the stock's mean age is how
long that taker takes to relay (Little's law: stock over relay rate), whatever its size.
A taker whose first copies wait over SEND_ONCE_AGE_RATIO times as long as the other
takers' do on the whole (and over SEND_ONCE_AGE_MIN_S, with at least SEND_ONCE_STOCK_MIN of
them) gets no more first copies: asked for one, the seed offers pieces stranded in other
takers' stocks instead, and asked for a piece another took, it serves it (a second copy the
taker needs, which spares the relays). The seed's uplink stays busy, and the slow relay's
share of it goes to pieces that would otherwise wait on someone's uplink. So first copies
go out in proportion to relay speed (Kumar and Ross's split), measured, not configured; a
taker that ran dry has no stock and is always served. Before the view has seen any relay,
or without one (no tracker, a standard client), the rule is off.

With two seeds, each learns from the same view which pieces a leecher already got from the
other: those are no longer fresh here, without a round trip between the seeds.
"""
from __future__ import annotations

import random

from node import config

SWARM = object()   # the taker of a piece a leecher got from another seed (seen in the view)


class Stock:
    """One taker's first copies that no other leecher is known to hold, with when each was
    sent: their mean age is how long its relay takes (Little's law: stock / relay rate)."""

    def __init__(self) -> None:
        self.since: dict[int, float] = {}
        self.total = 0.0

    def add(self, piece: int, now: float) -> None:
        if piece not in self.since:
            self.since[piece] = now
            self.total += now

    def discard(self, piece: int) -> bool:
        when = self.since.pop(piece, None)
        if when is None:
            return False
        self.total = self.total - when if self.since else 0.0
        return True

    def __len__(self) -> int:
        return len(self.since)

    def __iter__(self):
        return iter(self.since)

    def __contains__(self, piece: int) -> bool:
        return piece in self.since

    def age(self, now: float) -> float:
        return now - self.total / len(self.since) if self.since else 0.0


class SendOnce:
    def __init__(self, num_pieces: int, rng: random.Random | None = None) -> None:
        self.num_pieces = num_pieces
        order = list(range(num_pieces))
        (rng or random).shuffle(order)
        self.unsent = order                           # never sent nor offered, in random order
        self.fresh = set(order)
        self.taken: dict[int, tuple[object, float]] = {}  # piece -> (first taker, when)
        self.peer_of: dict[object, str] = {}          # taker -> the peer id its requests claim
        self.stock: dict[object, Stock] = {}          # taker -> its first copies nobody else holds
        self.held: dict[str, set[int]] = {}           # peer id -> pieces the view says it holds
        self.informed_at: float | None = None         # the first relay the view saw
        self.view = None                              # node/peer/seedview.py, made by block_rules

    # ------------------------------------------------------------------ requests
    def admit(self, piece: int, requester, now: float, peer_id: str = "") -> list[int] | None:
        """None: serve ``piece`` to ``requester`` (a connection's identity; ``peer_id`` is what
        its request claims, used only to read the view). A list: don't; ask for these instead."""
        if peer_id and requester not in self.peer_of:
            self.peer_of[requester] = peer_id
        taken = self.taken.get(piece)
        if taken is None or now - taken[1] > config.SEND_ONCE_RESEND_S:
            if self.fresh and self.over_stock(requester, now):
                instead = self.stranded_for(requester, config.SEND_ONCE_SUGGEST, now)
                if instead:             # a second copy it needs, not a first copy it would strand
                    return instead
            self._take(piece, requester, now)
            return None
        if taken[0] == requester or not self.fresh:
            return None
        if self.over_stock(requester, now):
            return None                 # a second copy for a slow relay: the fresh pieces wait for fast ones
        return [self._take(q, requester, now) for q in self._next_fresh(config.SEND_ONCE_SUGGEST)]

    def over_stock(self, taker, now: float) -> bool:
        """Its first copies wait over SEND_ONCE_AGE_RATIO times as long for a second holder as
        the other takers' do on the whole (and over SEND_ONCE_AGE_MIN_S), with at least
        SEND_ONCE_STOCK_MIN of them: it relays too slowly for its share."""
        stock = self.stock.get(taker)
        if self.informed_at is None or stock is None or len(stock) < config.SEND_ONCE_STOCK_MIN:
            return False                # no relay seen yet (nothing to split by), or little held back
        age = stock.age(now)
        if age <= config.SEND_ONCE_AGE_MIN_S:
            return False
        count = total = 0.0             # the others' first copies, pooled: their mean age
        for other, st in self.stock.items():
            if other is not taker and len(st):
                count += len(st)
                total += st.total
        return count > 0 and age > config.SEND_ONCE_AGE_RATIO * (now - total / count)

    def stranded_for(self, requester, n: int, now: float) -> list[int]:
        """Up to ``n`` pieces in other takers' stocks that ``requester`` is not known to hold,
        oldest stock first (the slowest relay's)."""
        held = self.held.get(self.peer_of.get(requester, ""), set())
        out: list[int] = []
        for taker in sorted(self.stock, key=lambda t: self.stock[t].age(now), reverse=True):
            if taker == requester:
                continue
            for piece in self.stock[taker]:
                if piece not in held:
                    out.append(piece)
                    if len(out) == n:
                        return out
        return out

    # ------------------------------------------------------------------ the view
    def observe(self, peer_id: str, pieces, now: float) -> None:
        """The view (the tracker's) says leecher ``peer_id`` holds ``pieces``."""
        held = self.held.setdefault(peer_id, set())
        for piece in pieces:
            if piece in held:
                continue
            held.add(piece)
            taken = self.taken.get(piece)
            if taken is None:
                if piece in self.fresh:     # it came from another seed: out there already
                    self.taken[piece] = (SWARM, now)
                    self.fresh.discard(piece)
                continue
            taker = taken[0]
            stock = self.stock.get(taker)
            if stock is not None and self.peer_of.get(taker) != peer_id and stock.discard(piece):
                if self.informed_at is None:
                    self.informed_at = now      # a first relay: the split has something to go by

    def gone(self, peer_id: str) -> None:
        """The peer left the view (or came back): what it held is void."""
        self.held.pop(peer_id, None)

    # ------------------------------------------------------------------ bookkeeping
    def _take(self, piece: int, requester, now: float) -> int:
        before = self.taken.get(piece)
        if before is not None and before[0] in self.stock:
            self.stock[before[0]].discard(piece)
        self.taken[piece] = (requester, now)
        if piece in self.fresh:         # a first copy (a piece the view saw anywhere is not fresh)
            self.fresh.discard(piece)
            self.stock.setdefault(requester, Stock()).add(piece, now)
        return piece

    def _next_fresh(self, n: int) -> list[int]:
        out = []
        while self.unsent and len(out) < n:
            piece = self.unsent.pop()
            if piece in self.fresh:
                out.append(piece)
        return out
