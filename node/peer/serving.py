"""The data port's replies, with a bounded cost per remote (node/budget.py).

A block request is admitted (or refused with a BUSY error at once), waits in its
remote's queue until the budget lets its bytes be held, is read (on the loop from the
page cache, or on a read thread), paced, and sent zero-copy with a tracker. The request
counts until it is handed to libzmq; its bytes count until libzmq lets go of the payload,
i.e. until it is in the kernel's socket buffer (learnt by polling the trackers while any
are out). A remote that never reads therefore holds at most ``REMOTE_MAX_BYTES`` here:
its further requests wait (at most ``REMOTE_MAX_REQUESTS``, each a few hundred bytes)
and beyond that are refused; a reader is never refused for blocks it already has. Remotes are served round-robin, so a reader keeps its pace next to
ten that do not read.

Every send is non-blocking: with ROUTER_MANDATORY a full pipe (a remote over
``DATA_SNDHWM_MSGS``) raises EAGAIN, and such a reply is dropped; a remote that has gone
raises EHOSTUNREACH, and what it had here is forgotten.
"""
from __future__ import annotations

import errno
import logging
import time
from collections import OrderedDict, deque
from typing import Any, Callable

import zmq

from node import config
from node.budget import Budget, Limits, Ticket
from node.peer.blockpool import BlockPool, PoolBuffer
from node.peer.pacer import Pacer
from node.peer.storage import PendingRead
from protocol.codec import decode_id, error_frames
from protocol.errors import ErrorCode, ZorrentError

log = logging.getLogger("zorrent.peer.serving")
REAP_S = 0.002              # while requests wait for bytes, check this often whether sent ones left
REAP_IDLE_MAX_S = 0.5       # with only sent blocks here, check ever less often, down to this (a remote
                            # that does not read keeps its blocks here: a wakeup each half second)
SMALL_REPLY_BYTES = 64 * 1024   # a reply this big or more (metainfo) is budgeted like a block

LIMITS = Limits(max_requests=config.REMOTE_MAX_REQUESTS, max_bytes=config.REMOTE_MAX_BYTES,
                total_bytes=config.REMOTES_TOTAL_BYTES, max_remotes=config.REMOTES_MAX,
                max_refusals=config.REMOTE_MAX_REFUSALS)


class _Waiting:
    __slots__ = ("ticket", "header", "body", "since")

    def __init__(self, ticket: Ticket, header: Any, body: Any, since: float) -> None:
        self.ticket, self.header, self.body, self.since = ticket, header, body, since

    @property
    def nbytes(self) -> int:
        return self.body.length if isinstance(self.body, PendingRead) else len(self.body) + len(self.header)


class BlockServer:
    def __init__(self, sock: zmq.Socket, reactor, disk, rate_bps: int,
                 read_failed: Callable[[Any, BaseException], None], limits: Limits = LIMITS) -> None:
        self.sock, self.reactor, self.disk, self.read_failed = sock, reactor, disk, read_failed
        self.budget = Budget(limits)    # the peer's one budget: the BEP 3 wire shares it (node/peer/bt/)
        self.pacer = Pacer(reactor, rate_bps, self._send_tracked)
        self.pool = BlockPool()         # blocks are read into these and lent to libzmq until it lets go
        self.waiting: OrderedDict[bytes, deque[_Waiting]] = OrderedDict()   # per remote, round-robin order
        self.sent: dict[bytes, deque[tuple[Any, Ticket, Any]]] = {}         # per remote, in send order:
                                                                             # (tracker, ticket, pooled buffer)
        self.reading = 0                                                     # reads queued on read threads
        self.timer = None
        self.trim_timer = None                                               # drops idle pooled buffers
        self.idle_reap_s = REAP_S                                            # the next poll with nothing waiting
        self.dropped = 0                                                     # replies a full pipe refused
        self.cut_off: dict[bytes, float] = {}                                # remote -> until (monotonic)

    def accepts(self, ident: bytes) -> bool:
        """False while ``ident`` is cut off: its requests are dropped before they are decoded."""
        until = self.cut_off.get(ident)
        if until is None:
            return True
        if time.monotonic() < until:
            return False
        del self.cut_off[ident]
        return True

    # ------------------------------------------------------------------ entry
    def send(self, ident: bytes, frames: list[Any]) -> None:
        """A data-port reply from the dispatcher."""
        if len(frames) == 2 and isinstance(frames[1], PendingRead):
            self._queue(ident, frames[0], frames[1])
        elif sum(len(f) for f in frames) >= SMALL_REPLY_BYTES:
            self._queue(ident, frames[0], frames[1] if len(frames) > 1 else b"")
        else:
            self.send_small(ident, frames)

    def send_small(self, ident: bytes, frames: list[Any]) -> None:
        try:
            self.sock.send_multipart([ident, *frames], flags=zmq.DONTWAIT, copy=False)
        except zmq.ZMQError as exc:
            self._unsent(ident, exc)

    def _queue(self, ident: bytes, header: Any, body: Any) -> None:
        # Blocks this remote was sent may have left since the last pump: with nothing waiting
        # no pump runs, and a reader that keeps 64 pieces asked for was refused as if it held
        # 128 (then cut off for 30 s, and its download stalled).
        self._reap_remote(ident)
        ticket = self.budget.admit(ident)
        if ticket is None:
            if isinstance(body, PendingRead):
                body.cancel()
            if self.budget.abusive(ident) and ident not in self.cut_off and self._room_to_cut_off():
                self.cut_off[ident] = time.monotonic() + config.REMOTE_CUT_OFF_S
                log.warning("a remote was refused %d times in a row: ignoring it for %.0f s",
                            config.REMOTE_MAX_REFUSALS, config.REMOTE_CUT_OFF_S)
            requests, held = self.budget.usage(ident)
            self.send_small(ident, error_frames(
                decode_id([header]), ErrorCode.BUSY,
                f"busy: {requests} requests and {held} bytes of yours are in flight here"))
            return
        self.waiting.setdefault(ident, deque()).append(_Waiting(ticket, header, body, time.monotonic()))
        self._pump()

    def _room_to_cut_off(self) -> bool:
        """Under REMOTES_MAX cut-off remotes, once the expired ones are gone: an entry leaves only
        when its remote comes back, and one that reconnects has a new identity each time."""
        if len(self.cut_off) < config.REMOTES_MAX:
            return True
        now = time.monotonic()
        for ident in [i for i, until in self.cut_off.items() if until <= now]:
            del self.cut_off[ident]
        return len(self.cut_off) < config.REMOTES_MAX

    # ------------------------------------------------------------------ the loop
    def _pump(self) -> None:
        """Start what the budget allows, one per remote in turn."""
        self._reap()
        now = time.monotonic()
        progress = True
        while progress and self.waiting:
            progress = False
            for ident in list(self.waiting):
                queue = self.waiting[ident]
                while queue and now - queue[0].since > config.BLOCK_TIMEOUT_S:   # its asker gave up
                    self._drop(queue.popleft())
                if not queue:
                    del self.waiting[ident]
                    continue
                item = queue[0]
                if isinstance(item.body, PendingRead) and self.reading >= config.READ_QUEUE_MAX:
                    continue
                if not self.budget.claim(item.ticket, item.nbytes):
                    continue
                queue.popleft()
                self.waiting.move_to_end(ident)
                self._start(ident, item)
                progress = True
        self._arm()

    def _arm(self) -> None:
        """Look again soon whether sent blocks left: every REAP_S while requests wait for their
        bytes; while only sent blocks are here, after REAP_S, then twice as long each time
        nothing left (at most REAP_IDLE_MAX_S); never once none are. Without this, a remote
        whose blocks left while nothing waited counted them until it asked again, and the
        shared budget's totals (what the BEP 3 wire may claim, what status reports) kept them."""
        if self.waiting:
            delay = REAP_S
        elif self.sent:
            delay = self.idle_reap_s
        else:
            if self.trim_timer is None and self.pool.free:
                self.trim_timer = self.reactor.call_later(config.SERVE_POOL_IDLE_S, self._trim)
            return
        if self.timer is not None:
            if self.timer.when <= self.reactor.clock() + delay:
                return
            self.timer.cancel()             # an idle poll far off, and now requests wait
        if not self.waiting:
            self.idle_reap_s = min(2 * self.idle_reap_s, REAP_IDLE_MAX_S)
        self.timer = self.reactor.call_later(delay, self._on_timer)

    def _trim(self) -> None:
        """Drop the idle block buffers once the port has been quiet for SERVE_POOL_IDLE_S."""
        self.trim_timer = None
        if not self.pool.trim():
            self.trim_timer = self.reactor.call_later(config.SERVE_POOL_IDLE_S, self._trim)

    def _on_timer(self) -> None:
        self.timer = None
        self._pump()

    def _start(self, ident: bytes, item: _Waiting) -> None:
        body = item.body
        if not isinstance(body, PendingRead):
            self._deliver(ident, item.ticket, [item.header, body])
        elif body.file.cache_bypassed:          # not in the page cache: a read thread waits for the device
            self.reading += 1
            self.disk.read(lambda: body(self.pool),
                           lambda data, err: self._read_done(ident, item, data, err, threaded=True))
        else:
            try:
                data = body(self.pool)
            except Exception as exc:            # noqa: BLE001 - turned into an error reply
                self._read_done(ident, item, None, exc)
            else:
                self._deliver(ident, item.ticket, [item.header, data])

    def _read_done(self, ident: bytes, item: _Waiting, data: bytes | None, err: BaseException | None,
                   threaded: bool = False) -> None:
        if threaded:
            self.reading -= 1
        if err is None:
            self._deliver(ident, item.ticket, [item.header, data])
            return
        self.budget.release(item.ticket)
        self.read_failed(item.body.file, err)
        if isinstance(err, ZorrentError):
            code, text = err.code, err.message
        else:
            code, text = ErrorCode.INTERNAL, f"cannot read: {getattr(err, 'strerror', None) or err}"
        self.send_small(ident, error_frames(decode_id([item.header]), code, text))
        self._pump()

    def _deliver(self, ident: bytes, ticket: Ticket, frames: list[Any]) -> None:
        if not self.pacer(ident, frames, ticket):
            self.budget.release(ticket)
            self.dropped += 1

    def _send_tracked(self, ident: bytes, frames: list[Any], ticket: Ticket) -> None:
        """Zero-copy with a tracker even for a small block, so its bytes count until sent."""
        header, body = frames
        try:
            self.sock.send(ident, zmq.SNDMORE | zmq.DONTWAIT)
            self.sock.send(header, zmq.SNDMORE, copy=False)
            tracker = self.sock.send(zmq.Frame(body, track=True, copy=False), copy=False, track=True)
        except zmq.ZMQError as exc:
            self.budget.release(ticket)
            self._unsent(ident, exc)
            return
        self.budget.handed_off(ticket)          # its bytes count until the tracker says libzmq let go
        self.sent.setdefault(ident, deque()).append((tracker, ticket, body))
        self._arm()                             # nothing may wait to pump again (a paced or threaded send)

    def reap(self) -> None:
        """Release the tickets of blocks libzmq has written (the BEP 3 wire asks, as it shares the budget)."""
        self._reap()

    def _reap(self) -> None:
        """Release the tickets of blocks libzmq has written (the head of each remote's queue)."""
        for ident in list(self.sent):
            self._reap_remote(ident)

    def _reap_remote(self, ident: bytes) -> None:
        queue = self.sent.get(ident)
        if queue is None:
            return
        while queue and queue[0][0].done:
            _, ticket, body = queue.popleft()
            self.budget.release(ticket)
            if type(body) is PoolBuffer:        # a pooled read, which libzmq no longer holds
                self.pool.give(body)
            self.idle_reap_s = REAP_S
        if not queue:
            del self.sent[ident]

    def _drop(self, item: _Waiting) -> None:
        self.budget.release(item.ticket)
        if isinstance(item.body, PendingRead):
            item.body.cancel()

    def _unsent(self, ident: bytes, exc: zmq.ZMQError) -> None:
        if exc.errno == errno.EHOSTUNREACH:     # gone: what it asked for is void
            for item in self.waiting.pop(ident, ()):
                self._drop(item)
            self.budget.forget(ident)
        else:                                   # EAGAIN: its pipe is full (it does not read)
            self.dropped += 1

    def close(self) -> None:
        for timer in (self.timer, self.trim_timer):
            if timer is not None:
                timer.cancel()
        self.timer = self.trim_timer = None
        for queue in self.waiting.values():
            for item in queue:
                self._drop(item)
        self.waiting.clear()
        for ticket in self.pacer.close():       # held back by --upload-rate: never sent now
            self.budget.release(ticket)
        for queue in self.sent.values():        # with libzmq, which the socket's close lets go of
            for _, ticket, _ in queue:          # (a pooled buffer it may still hold is not given back)
                self.budget.release(ticket)
        self.sent.clear()
