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
again. An offered piece its taker has not asked for within SEND_ONCE_OFFER_S is fresh
again: a standard client may ignore a BEP 6 suggest (libtorrent asked for part of what it
was offered), and pieces held for it would make the seed run out of unsent ones early
and serve second copies while first copies still wait.

The taker is the connection a request came on (its ROUTER routing id), never what the
request claims: a stranger who names another peer, or nobody, is one more taker.

With two seeds, each reads the tracker's view of who holds what (node/peer/seedview.py,
fed to ``observe``): a piece a leecher already holds that this seed never sent came from
the other seed, so it is no longer fresh here, and the seeds split the first copies
without a round trip between them (each hands out its own random order; what the other
sent first drops out within a view read).
"""
from __future__ import annotations

import random
from collections import deque

from node import config

SWARM = object()   # the taker of a piece a leecher got from another seed (seen in the view)


class SendOnce:
    def __init__(self, num_pieces: int, rng: random.Random | None = None) -> None:
        order = list(range(num_pieces))
        (rng or random).shuffle(order)
        self.unsent = order                           # never sent nor offered, in random order
        self.fresh = set(order)
        self.taken: dict[int, tuple[object, float]] = {}  # piece -> (first taker, when)
        self.offered: dict[int, float] = {}           # piece -> when offered, its taker not asked yet
        self.offers: deque[tuple[float, int]] = deque()   # (when, piece) in offer order, to lapse
        self.view = None                              # node/peer/seedview.py, made by block_rules

    def admit(self, piece: int, requester: bytes, now: float, offer: int = config.SEND_ONCE_SUGGEST) -> list[int] | None:
        """None: serve ``piece`` to ``requester`` (a connection's identity). A list: don't;
        offer these instead (at most ``offer``: fewer, or none, to a taker that leaves offers
        unasked, node/peer/bt/upload.py)."""
        if self.offers:
            self._lapse(now)
        taken = self.taken.get(piece)
        if taken is None or now - taken[1] > config.SEND_ONCE_RESEND_S:
            self._take(piece, requester, now)
            self.offered.pop(piece, None)
            return None
        if taken[0] == requester:
            self.offered.pop(piece, None)             # an offer taken up: sent for good
            return None
        if not self.fresh:
            return None
        out = [self._take(q, requester, now) for q in self._next_fresh(offer)]
        for q in out:
            self.offered[q] = now
            self.offers.append((now, q))
        return out

    def _lapse(self, now: float) -> None:
        """Offers not taken up within SEND_ONCE_OFFER_S: the pieces are fresh (and unsent) again."""
        while self.offers and now - self.offers[0][0] > config.SEND_ONCE_OFFER_S:
            when, piece = self.offers.popleft()
            if self.offered.get(piece) == when:
                del self.offered[piece]
                del self.taken[piece]
                self.fresh.add(piece)
                self.unsent.append(piece)             # offered again next

    def observe(self, peer_id: str, pieces, now: float) -> None:
        """The view says leecher ``peer_id`` holds ``pieces``: any still fresh here came from
        another seed (or the leecher had them), so they are out there already."""
        for piece in pieces:
            if piece in self.fresh:
                self.taken[piece] = (SWARM, now)
                self.fresh.discard(piece)

    def _take(self, piece: int, requester: bytes, now: float) -> int:
        self.taken[piece] = (requester, now)
        self.fresh.discard(piece)
        return piece

    def _next_fresh(self, n: int) -> list[int]:
        out = []
        while self.unsent and len(out) < n:
            piece = self.unsent.pop()
            if piece in self.fresh:
                out.append(piece)
        return out
