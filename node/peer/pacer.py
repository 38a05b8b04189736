"""A peer's upload limit (``--upload-rate``, "upload_rate" in peers.json)."""
from __future__ import annotations

import time
from collections import deque
from typing import Any

import zmq

from node.reactor import Reactor


class Pacer:
    """Upload rate limit: replies leave in order, no faster than ``rate_bps`` payload bytes/s."""

    def __init__(self, sock: zmq.Socket, reactor: Reactor, rate_bps: int) -> None:
        self.sock, self.reactor, self.rate_bps = sock, reactor, rate_bps
        self.queue: deque = deque()
        self.next_free = 0.0
        self.timer = None

    def _send(self, ident: bytes, frames: list[Any]) -> None:
        try:
            self.sock.send_multipart([ident, *frames], copy=False)
        except zmq.ZMQError:
            pass

    def __call__(self, ident: bytes, frames: list[Any]) -> None:
        if not self.rate_bps or len(frames) < 2:   # only piece payloads are paced
            self._send(ident, frames)
            return
        now = time.monotonic()
        release = max(now, self.next_free)
        self.next_free = release + len(frames[1]) / self.rate_bps
        self.queue.append((release, ident, frames))
        self._drain()

    def _drain(self) -> None:
        self.timer = None
        now = time.monotonic()
        while self.queue and self.queue[0][0] <= now:
            _, ident, frames = self.queue.popleft()
            self._send(ident, frames)
        if self.queue and self.timer is None:
            self.timer = self.reactor.call_later(self.queue[0][0] - now, self._drain)
