"""A peer's upload limit (``--upload-rate``, "upload_rate" in peers.json)."""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

from node import config
from node.reactor import Reactor

Send = Callable[[bytes, list[Any], Any], None]


class Pacer:
    """Upload rate limit: blocks leave in order, no faster than ``rate_bps`` payload bytes/s.

    Every queued block holds a budget ticket (node/peer/serving.py), so the byte budget
    bounds the queue; ``PACER_MAX_QUEUED`` is the backstop on its length.
    """

    def __init__(self, reactor: Reactor, rate_bps: int, send: Send) -> None:
        self.reactor, self.rate_bps, self.send = reactor, rate_bps, send
        self.queue: deque = deque()
        self.next_free = 0.0
        self.timer = None

    def __call__(self, ident: bytes, frames: list[Any], ticket: Any) -> bool:
        """Send (now or at its time); False: the queue is full and nothing was sent."""
        if not self.rate_bps:
            self.send(ident, frames, ticket)
            return True
        if len(self.queue) >= config.PACER_MAX_QUEUED:
            return False
        now = time.monotonic()
        release = max(now, self.next_free)
        self.next_free = release + len(frames[-1]) / self.rate_bps
        self.queue.append((release, ident, frames, ticket))
        self._drain()
        return True

    def close(self) -> list[Any]:
        """Stop: nothing more is sent; the tickets of the blocks still held back, for their
        owner to release (they count in the budget the BEP 3 wire shares)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        tickets = [ticket for _, _, _, ticket in self.queue]
        self.queue.clear()
        return tickets

    def _on_timer(self) -> None:
        self.timer = None
        self._drain()

    def _drain(self) -> None:
        now = time.monotonic()
        while self.queue and self.queue[0][0] <= now:
            _, ident, frames, ticket = self.queue.popleft()
            self.send(ident, frames, ticket)
        if self.queue and self.timer is None:
            self.timer = self.reactor.call_later(self.queue[0][0] - now, self._on_timer)
