"""Hash-and-write off the event loop.

Verifying (SHA-1) and writing a piece are the two biggest costs of a download, and a
write can block for seconds while the kernel throttles writeback. Both release the GIL,
so they run on disk threads (config.DISK_THREADS: one hashes while another waits on
its write). Results come back to the reactor through a pipe it polls, and the engine
finishes the piece there. A piece keeps its credit until it is written, so memory stays
bounded by the credit window.

Per piece this costs one queue hand-off each way; the pipe is written only when the
result queue was empty, so a burst of finished pieces wakes the event loop once.
"""
from __future__ import annotations

import os
import queue
import threading
from collections import deque
from typing import Any, Callable

Done = Callable[[Any, BaseException | None], None]
_STOP = None


class DiskWorker:
    def __init__(self, reactor, threads: int = 1) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.results: deque = deque()
        self.lock = threading.Lock()        # orders "queue was empty" against the drain
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.reactor = reactor
        reactor.add(self.wake_r, self.drain)
        self.threads = [threading.Thread(target=self._run, name=f"disk-{i}", daemon=True) for i in range(threads)]
        for t in self.threads:
            t.start()

    def submit(self, work: Callable[[], Any], done: Done) -> None:
        self.jobs.put((work, done))

    def _run(self) -> None:
        while (job := self.jobs.get()) is not _STOP:
            work, done = job
            try:
                result = (work(), None)
            except Exception as exc:       # handed to the event loop, which decides
                result = (None, exc)
            with self.lock:
                wake = not self.results
                self.results.append((done, result))
            if wake:
                os.write(self.wake_w, b"x")

    def drain(self) -> None:
        with self.lock:
            try:
                os.read(self.wake_r, 65536)
            except BlockingIOError:
                pass
            ready, self.results = self.results, deque()
        for done, (value, error) in ready:
            done(value, error)

    def close(self) -> None:
        for _ in self.threads:
            self.jobs.put(_STOP)
        for t in self.threads:
            t.join()                        # every queued piece is written before files close
        self.drain()
        self.reactor.remove(self.wake_r)
        os.close(self.wake_r)
        os.close(self.wake_w)
