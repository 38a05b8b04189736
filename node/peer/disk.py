"""Disk work off the event loop: hashing and writing downloaded pieces, reading served ones.

Verifying (SHA-1) and writing a piece are the two biggest costs of a download. Both
release the GIL, so they run on threads, in two stages with their own queues:

- hash threads (config.HASH_THREADS, one per core) check each piece's SHA-1;
- write threads (config.WRITE_THREADS) write the verified pieces.

Check threads (config.CHECK_THREADS) hash whole files: an upload, a resume, a file that changed on disk
(node/peer/integrity.py), so a long re-hash never holds up reads or the event loop.

Read threads (config.READ_THREADS) read the blocks the data port serves from files this
peer wrote O_DIRECT: those are not in the page cache, so each read waits for the device.
On the event loop, in 1 seeder -> 3 leechers, such reads took 1.5 s of a leecher's 2.35 s
of main-thread time (py-spy) and stalled its own download meanwhile.

A hash thread never waits for the disk, so hashing keeps both cores busy while the
device works through the writes queued behind it. Results come back to the reactor
through a pipe it polls, and the engine finishes the piece there. A piece keeps its
credit until it is written, so memory stays bounded by the credit window.

``DiskStats`` counts the time each stage takes and how long a write was in flight; a
finished download logs them, which says whether the disk was what limited it.

Per piece this costs one queue hand-off per stage; the pipe is written only when the
result queue was empty, so a burst of finished pieces wakes the event loop once.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

Done = Callable[[Any, BaseException | None], None]
_STOP = None


@dataclass
class DiskStats:
    """Cumulative since the worker started; subtract two snapshots for an interval."""

    hashed: int = 0
    hash_s: float = 0.0          # summed over the hash threads
    written: int = 0
    write_s: float = 0.0         # summed over the write threads
    busy_s: float = 0.0          # wall time with at least one write in flight: near the
                                 # interval's length, the disk is what limits the download

    def __sub__(self, other: "DiskStats") -> "DiskStats":
        return DiskStats(*(a - b for a, b in zip(vars(self).values(), vars(other).values())))


class DiskWorker:
    def __init__(self, reactor, hash_threads: int = 1, write_threads: int = 1, read_threads: int = 1,
                 check_threads: int = 1) -> None:
        self.hash_jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.write_jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.read_jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.check_jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.results: deque = deque()
        self.lock = threading.Lock()        # orders "queue was empty" against the drain
        self.stats = DiskStats()
        self.stats_lock = threading.Lock()
        self.writes_in_flight = 0
        self.busy_since = 0.0
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.reactor = reactor
        reactor.add(self.wake_r, self.drain)
        self.hashers = [threading.Thread(target=self._hash, name=f"hash-{i}", daemon=True)
                        for i in range(hash_threads)]
        self.writers = [threading.Thread(target=self._write, name=f"write-{i}", daemon=True)
                        for i in range(write_threads)]
        self.readers = [threading.Thread(target=self._run, args=(self.read_jobs,), name=f"read-{i}", daemon=True)
                        for i in range(read_threads)]
        self.checkers = [threading.Thread(target=self._run, args=(self.check_jobs,), name=f"check-{i}",
                                          daemon=True) for i in range(check_threads)]
        for t in self.hashers + self.writers + self.readers + self.checkers:
            t.start()

    def submit(self, verify: Callable[[], bool], write: Callable[[], None], done: Done) -> None:
        """``verify()`` on a hash thread; if it returns True, ``write()`` on a write thread;
        then ``done(ok, error)`` on the event loop: ok is False for a piece that failed
        ``verify``, and error is what either stage raised."""
        self.hash_jobs.put((verify, write, done))

    def read(self, work: Callable[[], Any], done: Done) -> None:
        """``work()`` (a block the data port serves) on a read thread, then
        ``done(value, error)`` on the event loop."""
        self.read_jobs.put((work, done))

    def check(self, work: Callable[[], Any], done: Done) -> None:
        """``work()`` (a re-hash) on a check thread, then ``done(value, error)`` on the event loop."""
        self.check_jobs.put((work, done))

    def _run(self, jobs: queue.SimpleQueue) -> None:
        while (job := jobs.get()) is not _STOP:
            work, done = job
            try:
                result = (work(), None)
            except Exception as exc:
                result = (None, exc)
            self._post(done, result)

    def _hash(self) -> None:
        while (job := self.hash_jobs.get()) is not _STOP:
            verify, write, done = job
            started = time.perf_counter()
            try:
                ok = verify()
            except Exception as exc:       # handed to the event loop, which decides
                ok, result = False, (None, exc)
            else:
                result = (False, None)
            with self.stats_lock:
                self.stats.hashed += 1
                self.stats.hash_s += time.perf_counter() - started
            if ok:
                self.write_jobs.put((write, done))
            else:
                self._post(done, result)

    def _write(self) -> None:
        while (job := self.write_jobs.get()) is not _STOP:
            write, done = job
            with self.stats_lock:
                started = time.perf_counter()
                self.writes_in_flight += 1
                if self.writes_in_flight == 1:
                    self.busy_since = started
            try:
                write()
                result = (True, None)
            except Exception as exc:
                result = (None, exc)
            with self.stats_lock:
                ended = time.perf_counter()
                self.writes_in_flight -= 1
                if not self.writes_in_flight:
                    self.stats.busy_s += ended - self.busy_since
                self.stats.written += 1
                self.stats.write_s += ended - started
            self._post(done, result)

    def snapshot(self) -> DiskStats:
        with self.stats_lock:
            stats = DiskStats(**vars(self.stats))
            if self.writes_in_flight:
                stats.busy_s += time.perf_counter() - self.busy_since
            return stats

    def _post(self, done: Done, result: tuple) -> None:
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
        """Every queued piece is verified, every verified piece written and every queued read
        done, before this returns."""
        for pool, jobs in ((self.hashers, self.hash_jobs), (self.writers, self.write_jobs),
                           (self.readers, self.read_jobs), (self.checkers, self.check_jobs)):
            for _ in pool:
                jobs.put(_STOP)
            for t in pool:
                t.join()
        self.drain()
        self.reactor.remove(self.wake_r)
        os.close(self.wake_r)
        os.close(self.wake_w)
