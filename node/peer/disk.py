"""Hash-and-write off the event loop.

Verifying (SHA-1) and writing a piece are the two biggest costs of a download, and a
write can block for seconds while the kernel throttles writeback. Both release the GIL,
so they run on one disk thread; results come back to the reactor through a pipe it
polls, and the engine finishes the piece there. A piece keeps its credit until it is
written, so memory stays bounded by the credit window.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

Done = Callable[[Any, BaseException | None], None]


class DiskWorker:
    def __init__(self, reactor, threads: int = 1) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="disk")
        self.results: deque = deque()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.reactor = reactor
        reactor.add(self.wake_r, self.drain)

    def submit(self, work: Callable[[], Any], done: Done) -> None:
        def run() -> None:
            try:
                result = (work(), None)
            except Exception as exc:       # handed to the event loop, which decides
                result = (None, exc)
            self.results.append((done, result))
            os.write(self.wake_w, b"x")

        self.pool.submit(run)

    def drain(self) -> None:
        try:
            os.read(self.wake_r, 65536)
        except BlockingIOError:
            pass
        while self.results:
            done, (value, error) = self.results.popleft()
            done(value, error)

    def close(self) -> None:
        self.pool.shutdown(wait=True)      # every queued piece is written before files close
        self.drain()
        self.reactor.remove(self.wake_r)
        os.close(self.wake_r)
        os.close(self.wake_w)
