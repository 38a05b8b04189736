"""A small single-threaded event loop: zmq.Poller plus timers."""
from __future__ import annotations

import heapq
import itertools
import logging
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
    def __init__(self) -> None:
        self.poller = zmq.Poller()
        self._handlers: dict[zmq.Socket, Callable[[], None]] = {}
        self._fds: dict[int, Callable[[int], None]] = {}   # plain sockets (the BEP 3 wire): fd -> on_events(mask)
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self.running = False

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
        timer = Timer(time.monotonic() + delay_s, fn)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    def call_every(self, interval_s: float, fn: Callable[[], None]) -> None:
        def tick() -> None:
            self.call_later(interval_s, tick)
            fn()

        self.call_later(interval_s, tick)

    def run_once(self, max_wait_s: float = 1.0) -> None:
        now = time.monotonic()
        while self._timers and (self._timers[0][2].cancelled or self._timers[0][0] <= now):
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._call(timer.fn)
        wait = max_wait_s
        if self._timers:
            wait = min(wait, max(0.0, self._timers[0][0] - time.monotonic()))
        for sock, events in self.poller.poll(int(wait * 1000)):
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

    def run(self) -> None:
        self.running = True
        while self.running:
            self.run_once()

    def stop(self) -> None:
        self.running = False
