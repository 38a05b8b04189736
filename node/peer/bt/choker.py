"""Who gets an upload slot on the BEP 3 port: tit-for-tat plus one optimistic unchoke.

Every BT_RECHOKE_S the interested remotes are ranked, and the best BT_UPLOAD_SLOTS are
unchoked (BEP 3's choking algorithm):
- for a torrent we are still downloading, by the bytes they sent us in the last round
  (reciprocation: those who give get);
- for a torrent we seed, by the bytes we sent them in the last round (libtorrent's
  ``fastest_upload`` seeding choker: the slots go where the uplink is used best, and a
  remote that stops reading loses its slot).

One more, the optimistic slot, rotates every BT_OPTIMISTIC_S to a random choked
interested remote, so a newcomer with nothing to give can get its first pieces and be
measured. A remote that becomes interested while slots are free is unchoked at once,
not at the next round (so the first remote of an idle seed waits for nothing).
"""
from __future__ import annotations

import random

from node import config


class Choker:
    def __init__(self, slots: int = config.BT_UPLOAD_SLOTS, rng: random.Random | None = None) -> None:
        self.slots = slots
        self.rng = rng or random.Random()
        self.optimistic = None
        self.optimistic_at = float("-inf")

    @staticmethod
    def _rate(conn) -> int:
        downloading = conn.holding is not None and not conn.holding.bitfield.complete
        return conn.round_down if downloading else conn.round_up

    def _unchoked(self, conns) -> list:
        return [c for c in conns if not c.choked]

    def interested(self, conn) -> None:
        if conn.choked and len(self._unchoked(conn.service.open_connections())) < self.slots + 1:
            conn.set_choked(False)

    def uninterested(self, conn) -> None:
        if not conn.choked:
            conn.set_choked(True)
            self.refill(conn.service.open_connections())

    def refill(self, conns) -> None:
        """A slot came free: give it to an interested remote now."""
        free = self.slots + 1 - len(self._unchoked(conns))
        waiting = [c for c in conns if c.choked and c.remote_interested]
        self.rng.shuffle(waiting)
        for c in waiting[:max(0, free)]:
            c.set_choked(False)

    def rechoke(self, conns, now: float) -> None:
        interested = [c for c in conns if c.remote_interested]
        ranked = sorted(interested, key=self._rate, reverse=True)
        regular = ranked[:self.slots]
        keep = set(map(id, regular))
        if (self.optimistic is None or self.optimistic not in interested or id(self.optimistic) in keep
                or now - self.optimistic_at >= config.BT_OPTIMISTIC_S):
            others = [c for c in interested if id(c) not in keep]
            self.optimistic = self.rng.choice(others) if others else None
            self.optimistic_at = now
        if self.optimistic is not None:
            keep.add(id(self.optimistic))
        for c in conns:
            c.optimistic = c is self.optimistic
            c.set_choked(id(c) not in keep)
            c.round_up = c.round_down = 0
