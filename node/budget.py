"""Bounded cost per stranger: requests and bytes in flight, per remote identity.

Every wire that serves pieces to remotes (the ZeroMQ data port, the BEP 3 listener)
asks one ``Budget`` before it does work for a remote, as libtorrent caps each peer's
request queue (``max_allowed_in_request_queue``) and send buffer
(``send_buffer_watermark``):

- ``admit(remote)`` when a request arrives. ``None``: the remote already has
  ``max_requests`` requests here (or ``max_remotes`` others are being served); refuse
  it at once with a small error reply (BEP 6 ``reject_request``). Otherwise a ``Ticket``.
- ``claim(ticket, nbytes)`` before reading a block for it. False: the remote (or every
  remote together) already holds its byte cap in this process; keep the ticket waiting
  and try again after ``on_free`` fires. The bytes count until they leave the process.
- ``handed_off(ticket)`` (optional) once the reply is queued in a transport that holds it
  (libzmq's pipe): the request stops counting against ``max_requests``, its bytes count
  until ``release``. Whether a queued block has left is learnt late (a ZeroMQ tracker is
  set by pyzmq's gc thread, which a loaded machine may not run for tens of milliseconds),
  and a reader that keeps half the cap asked for must never be refused for blocks it has
  already received; the byte cap still bounds what a remote that does not read holds.
- ``release(ticket)`` once the reply has left the process (written to the kernel, or
  dropped because the remote is gone). Idempotent.
- ``forget(remote)`` when the connection closes: its tickets stop counting.

A remote that never reads its replies holds at most ``max_bytes`` here and gets refusals
beyond ``max_requests``; it costs the others nothing but its share of ``total_bytes``.
``abusive(remote)`` says it has been refused ``max_refusals`` times in a row, so a wire
that can cut a connection (BEP 3) may do so.

The budget only counts; it never touches a socket, so both wires and the tests use it
as it is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable


@dataclass(frozen=True)
class Limits:
    max_requests: int        # requests one remote may have here (waiting or being served, not handed off)
    max_bytes: int           # payload bytes one remote may hold in this process
    total_bytes: int         # payload bytes every remote together may hold
    max_remotes: int         # remotes with requests here at once
    max_refusals: int = 1024  # refusals in a row before ``abusive`` says so


class _Usage:
    __slots__ = ("requests", "nbytes", "refused")

    def __init__(self) -> None:
        self.requests = self.nbytes = self.refused = 0


class Ticket:
    """One admitted request; ``nbytes`` is what it holds once claimed."""

    __slots__ = ("remote", "usage", "nbytes", "done", "queued")

    def __init__(self, remote: Hashable, usage: _Usage) -> None:
        self.remote, self.usage, self.nbytes, self.done = remote, usage, 0, False
        self.queued = True                      # counts against max_requests (until handed off or released)


class Budget:
    def __init__(self, limits: Limits, on_free: Callable[[], None] | None = None) -> None:
        self.limits = limits
        self.on_free = on_free                 # called after bytes were released
        self.remotes: dict[Hashable, _Usage] = {}
        self.total_bytes = 0
        self.peak_bytes = 0                    # the most total_bytes has been, for status and tests
        self.refusals = 0                      # over the budget's life, for metrics and logs

    def admit(self, remote: Hashable) -> Ticket | None:
        usage = self.remotes.get(remote)
        if usage is None:
            if len(self.remotes) >= self.limits.max_remotes:
                self.refusals += 1
                return None
            usage = self.remotes[remote] = _Usage()
        if usage.requests >= self.limits.max_requests:
            usage.refused += 1
            self.refusals += 1
            return None
        usage.requests += 1
        usage.refused = 0
        return Ticket(remote, usage)

    def claim(self, ticket: Ticket, nbytes: int) -> bool:
        """May ``ticket`` hold ``nbytes`` more now?

        Within its own cap, a remote may go over the total only up to its fair share
        (``total_bytes`` / remotes here), and one holding nothing may always take one
        block while the total is under twice the cap: remotes that hold their cap and
        never read cannot starve a newcomer, and all of them together hold at most
        ``2 * total_bytes``.
        """
        usage, limits = ticket.usage, self.limits
        if ticket.done or self.remotes.get(ticket.remote) is not usage:
            return False
        total = self.total_bytes + nbytes
        if usage.nbytes == 0:
            if total > 2 * limits.total_bytes:
                return False
        elif usage.nbytes + nbytes > limits.max_bytes:
            return False
        elif total > limits.total_bytes and usage.nbytes + nbytes > limits.total_bytes // len(self.remotes):
            return False
        ticket.nbytes += nbytes
        usage.nbytes += nbytes
        self.total_bytes += nbytes
        if self.total_bytes > self.peak_bytes:
            self.peak_bytes = self.total_bytes
        return True

    def handed_off(self, ticket: Ticket) -> None:
        """The reply sits in a transport's queue: the request no longer counts, its bytes do."""
        if ticket.done or not ticket.queued:
            return
        ticket.queued = False
        usage = ticket.usage
        if self.remotes.get(ticket.remote) is not usage:   # forgotten meanwhile
            return
        usage.requests -= 1
        if usage.requests <= 0 and usage.nbytes <= 0:
            del self.remotes[ticket.remote]

    def release(self, ticket: Ticket) -> None:
        if ticket.done:
            return
        ticket.done = True
        usage = ticket.usage
        if self.remotes.get(ticket.remote) is not usage:   # forgotten meanwhile
            return
        if ticket.queued:
            usage.requests -= 1
        usage.nbytes -= ticket.nbytes
        self.total_bytes -= ticket.nbytes
        if usage.requests <= 0 and usage.nbytes <= 0:
            del self.remotes[ticket.remote]
        if ticket.nbytes and self.on_free is not None:
            self.on_free()

    def forget(self, remote: Hashable) -> None:
        """The connection is gone: what it held no longer counts (its tickets become no-ops)."""
        usage = self.remotes.pop(remote, None)
        if usage is not None:
            self.total_bytes -= usage.nbytes
            if usage.nbytes and self.on_free is not None:
                self.on_free()

    def abusive(self, remote: Hashable) -> bool:
        usage = self.remotes.get(remote)
        return usage is not None and usage.refused >= self.limits.max_refusals

    def usage(self, remote: Hashable) -> tuple[int, int]:
        """(requests, bytes) ``remote`` has here."""
        usage = self.remotes.get(remote)
        return (usage.requests, usage.nbytes) if usage else (0, 0)
