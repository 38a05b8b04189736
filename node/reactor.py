"""A small single-threaded event loop: zmq.Poller plus timers and deadlines.

It sleeps until the earliest thing due (libtorrent's session does the same): a timer, or a
deadline a part of the node reports (``add_deadline``: a request's timeout, a batch to
send), or a socket becoming readable. Nothing wakes it on a fixed short tick, so an idle
node costs next to nothing. A signal wakes it at once (``wake_on_signals``).
"""
from __future__ import annotations

import heapq
import itertools
import logging
import os
import signal
import time
from typing import Callable

import zmq

log = logging.getLogger("zorrent.reactor")


class Timer:
    __slots__ = ("when", "fn", "cancelled")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when, self.fn, self.cancelled = when, fn, False

    def cancel(self) -> None:
        self.cancelled = True


class Reactor:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.poller = zmq.Poller()
        self._handlers: dict[zmq.Socket, Callable[[], None]] = {}
        self._fds: dict[int, Callable[[int], None]] = {}   # plain sockets (the BEP 3 wire): fd -> on_events(mask)
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._deadlines: list[tuple[Callable[[], float | None], Callable[[float], None]]] = []
        self.running = False
        self.wakeups = 0                 # loop iterations, for tests and benchmarks
        self._wake: tuple[int, int] | None = None   # the signal wake-up pipe

    def add_deadline(self, next_deadline: Callable[[], float | None], on_due: Callable[[float], None]) -> None:
        """Call ``on_due(now)`` once ``next_deadline()`` (a monotonic time, or None: nothing
        due) has passed. It is asked again on every turn of the loop, so it must be cheap."""
        self._deadlines.append((next_deadline, on_due))

    def wake_on_signals(self) -> None:
        """Make a signal end the current wait at once (its handler runs, then the loop turns)."""
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        try:
            signal.set_wakeup_fd(w)
        except ValueError:               # not the main thread
            os.close(r)
            os.close(w)
            raise
        self._close_wake()               # called again: the old pipe goes
        self._wake = (r, w)

        def drain() -> None:
            try:
                while os.read(r, 512):
                    pass
            except BlockingIOError:
                pass

        self.add(r, drain)

    def close(self) -> None:
        """Give back the signal wake-up pipe (the sockets are their owners' to close)."""
        if self._wake is not None:
            signal.set_wakeup_fd(-1)
            self._close_wake()

    def _close_wake(self) -> None:
        if self._wake is not None:
            r, w = self._wake
            self._wake = None
            self.remove(r)
            os.close(r)
            os.close(w)

    def add(self, sock: zmq.Socket, on_readable: Callable[[], None]) -> None:
        self._handlers[sock] = on_readable
        self.poller.register(sock, zmq.POLLIN)

    def remove(self, sock: zmq.Socket) -> None:
        if self._handlers.pop(sock, None) is not None:
            self.poller.unregister(sock)

    def add_fd(self, fd: int, on_events: Callable[[int], None], events: int = zmq.POLLIN) -> None:
        """A plain socket: ``on_events(mask)`` with zmq.POLLIN / POLLOUT bits when it is ready."""
        self._fds[fd] = on_events
        self.poller.register(fd, events)

    def modify_fd(self, fd: int, events: int) -> None:
        if fd in self._fds:
            self.poller.modify(fd, events)

    def remove_fd(self, fd: int) -> None:
        if self._fds.pop(fd, None) is not None:
            self.poller.unregister(fd)

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> Timer:
        timer = Timer(self.clock() + delay_s, fn)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    def call_every(self, interval_s: float, fn: Callable[[], None]) -> None:
        def tick() -> None:
            self.call_later(interval_s, tick)
            fn()

        self.call_later(interval_s, tick)

    def run_once(self, max_wait_s: float = 1.0) -> None:
        self.wakeups += 1
        now = self.clock()
        while self._timers and (self._timers[0][2].cancelled or self._timers[0][0] <= now):
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._call(timer.fn)
        for next_deadline, on_due in self._deadlines:
            due = next_deadline()
            if due is not None and due <= now:
                self._call(lambda: on_due(now))
        wait = max_wait_s
        now = self.clock()
        if self._timers:
            wait = min(wait, max(0.0, self._timers[0][0] - now))
        for next_deadline, _ in self._deadlines:
            due = next_deadline()
            if due is not None:
                wait = min(wait, max(0.0, due - now))
        # round up: a wait that ends a hair early only turns the loop once more for nothing
        for sock, events in self.poller.poll(int(wait * 1000) + (1 if wait > 0 else 0)):
            on_events = self._fds.get(sock) if isinstance(sock, int) else None
            if on_events is not None:
                self._call(lambda: on_events(events))
                continue
            handler = self._handlers.get(sock)
            if handler is not None:
                self._call(handler)

    @staticmethod
    def _call(fn: Callable[[], None]) -> None:
        """A failing callback is logged; the node keeps serving everyone else."""
        try:
            fn()
        except Exception:
            log.exception("callback %s failed", getattr(fn, "__qualname__", fn))

    def run(self, max_wait_s: float = 1.0) -> None:
        self.running = True
        while self.running:
            self.run_once(max_wait_s)

    def stop(self) -> None:
        self.running = False
