"""Buffers the data port reads blocks into and lends to libzmq, reused once it lets go.

A block read with ``os.pread`` is a fresh allocation per block. Above glibc's mmap
threshold (128 KiB, raised only as a side effect of freeing a larger mmapped chunk)
each one is a new mapping whose every page faults on first touch: 256 faults per 1 MiB
block, about 150,000 for a 1 GiB upload, 0.2-0.4 s of a seeder's kernel time on this VM
(bench/RESULTS.md). A block sent from a pooled buffer faults once, when the pool first
grows.

A buffer is lent from the read until the send's tracker says libzmq has let go of it
(node/peer/serving.py); only then is it given back. The buffers lent are bounded by the
data port's budget (REMOTES_TOTAL_BYTES); the idle ones by SERVE_POOL_IDLE_BYTES, and
all of them are dropped once the pool has not been used for SERVE_POOL_IDLE_S, so an
idle peer holds none.
"""
from __future__ import annotations

import threading
import time

from node import config


class PoolBuffer(bytearray):
    """A pooled block buffer: only these go back to a pool (a reply's own bytearray never does)."""

    __slots__ = ()


class BlockPool:
    def __init__(self, max_idle_bytes: int = config.SERVE_POOL_IDLE_BYTES) -> None:
        self.max_idle_bytes = max_idle_bytes
        self.free: dict[int, list[PoolBuffer]] = {}     # length -> idle buffers of exactly that length
        self.idle_bytes = 0
        self.used = 0.0                                # monotonic time of the last take
        self.lock = threading.Lock()                   # read threads take too

    def take(self, n: int) -> bytearray:
        """A buffer of exactly ``n`` bytes (a pooled one's contents are stale)."""
        if n < config.SERVE_POOL_MIN_BYTES:            # a small read costs no mapping: plain bytes
            return bytearray(n)
        with self.lock:
            self.used = time.monotonic()
            bufs = self.free.get(n)
            if bufs:
                self.idle_bytes -= n
                buf = bufs.pop()
                if not bufs:                           # lengths are the remote's choice: keep no empty lists
                    del self.free[n]
                return buf
        return PoolBuffer(n)

    def give(self, buf: PoolBuffer) -> None:
        """``buf`` is no longer read nor lent: keep it for the next block of its length."""
        n = len(buf)
        with self.lock:
            if self.idle_bytes + n <= self.max_idle_bytes:
                self.free.setdefault(n, []).append(buf)
                self.idle_bytes += n

    def trim(self, idle_s: float = config.SERVE_POOL_IDLE_S) -> bool:
        """Drop every idle buffer if none was taken for ``idle_s``; True if the pool is empty."""
        with self.lock:
            if self.free and time.monotonic() - self.used >= idle_s:
                self.free.clear()
                self.idle_bytes = 0
            return not self.free
