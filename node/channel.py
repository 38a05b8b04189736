"""Request/reply over a DEALER socket, without blocking the reactor.

Lazy Pirate (zguide ``lpclient``): each request has a deadline; when one passes and
tries remain, the socket is closed with LINGER=0, reopened and every outstanding
request is sent again; after the last try the callback gets a TransportError.
Replies are matched to requests by envelope id, so stale or unasked-for replies are
counted and dropped, never delivered.
"""
from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import zmq

from protocol.codec import Envelope, decode, encode
from protocol.errors import ProtocolError, RemoteError, TransportError, ZorrentError
from protocol.messages import MAX_FRAME_BYTES, Error, Message

log = logging.getLogger(__name__)

Callback = Callable[[Envelope | None, ZorrentError | None], None]


@dataclass
class _Pending:
    msg: Message
    payload: Any
    timeout_s: float
    tries_left: int
    deadline: float
    callback: Callback


class Channel:
    """One DEALER connected to one endpoint; owned by a reactor (or polled by hand)."""

    _ids = itertools.count(1)

    def __init__(self, zctx: zmq.Context, endpoint: str, reactor=None) -> None:
        self.zctx = zctx
        self.endpoint = endpoint
        self.reactor = reactor
        self.pending: dict[int, _Pending] = {}
        self.dropped = 0            # replies nobody was waiting for, or undecodable
        self.socket: zmq.Socket | None = None
        self._open()

    def _open(self) -> None:
        sock = self.zctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        sock.setsockopt(zmq.RCVHWM, 0)   # credit, not the HWM, bounds what is in flight
        try:
            if self.endpoint.startswith("tcp://"):    # CURVE applies to tcp only: ipc (the CLI's
                from node import curve                  # control requests) never loads it
                curve.secure_client(sock, self.endpoint)   # a CURVE client in a private swarm
            sock.connect(self.endpoint)
        except BaseException:
            sock.close(linger=0)
            raise
        self.socket = sock
        if self.reactor is not None:
            self.reactor.add(sock, self.on_readable)

    def _close_socket(self) -> None:
        if self.socket is not None:
            if self.reactor is not None:
                self.reactor.remove(self.socket)
            self.socket.close(linger=0)
            self.socket = None

    def _reconnect(self) -> None:
        """A deadline passed: a fresh socket (a FailoverChannel also moves to the next endpoint)."""
        self._close_socket()
        self._open()

    def close(self) -> None:
        self._close_socket()
        self.pending.clear()

    def request(self, msg: Message, callback: Callback, *, payload: Any = None,
                timeout_s: float, tries: int = 1) -> int:
        msg_id = next(self._ids)
        self.pending[msg_id] = _Pending(msg, payload, timeout_s, tries - 1,
                                        time.monotonic() + timeout_s, callback)
        self._send(msg_id, self.pending[msg_id])
        return msg_id

    def cancel(self, msg_id: int) -> None:
        self.pending.pop(msg_id, None)

    def _send(self, msg_id: int, p: _Pending) -> None:
        try:
            self.socket.send_multipart(encode(p.msg, msg_id, p.payload), copy=False,
                                       flags=zmq.NOBLOCK)
        except zmq.Again:
            pass  # nothing connected yet and HWM reached: the deadline will retry it

    def on_readable(self) -> None:
        sock = self.socket
        while sock is not None and sock is self.socket:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                env = decode(frames)
            except ProtocolError as exc:
                self.dropped += 1
                log.warning("dropped bad reply from %s: %s", self.endpoint, exc)
                continue
            p = self.pending.pop(env.id, None)
            if p is None:
                self.dropped += 1
                continue
            if isinstance(env.msg, Error):
                p.callback(None, RemoteError(env.msg.code, env.msg.message, env.msg.retry_after_s))
            else:
                p.callback(env, None)

    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self.pending.values()), default=None)

    def expire(self, now: float | None = None) -> None:
        """Retry or fail every request whose deadline has passed."""
        now = time.monotonic() if now is None else now
        late = [msg_id for msg_id, p in self.pending.items() if p.deadline <= now]
        failed = [self.pending.pop(i) for i in late if self.pending[i].tries_left <= 0]
        if any(i in self.pending for i in late):
            self._reconnect()      # a lost or stuck connection: start clean
            for msg_id, p in self.pending.items():
                if p.deadline <= now:
                    p.tries_left -= 1
                    p.deadline = now + p.timeout_s
                self._send(msg_id, p)
        for p in failed:
            p.callback(None, TransportError(f"no reply from {self.endpoint}"))


def call(zctx: zmq.Context, endpoint: str, msg: Message, *, payload: Any = None,
         timeout_s: float, tries: int) -> Envelope:
    """Blocking request: the reply envelope, or raise RemoteError / TransportError."""
    return wait_reply(Channel(zctx, endpoint), msg, payload=payload, timeout_s=timeout_s, tries=tries)


def wait_reply(chan: Channel, msg: Message, *, payload: Any = None, timeout_s: float,
               tries: int) -> Envelope:
    """Send one request on a reactor-less channel, poll it to the end, then close it."""
    box: list = []
    try:
        chan.request(msg, lambda env, err: box.append((env, err)), payload=payload,
                     timeout_s=timeout_s, tries=tries)
        while not box:
            deadline = chan.next_deadline()
            wait_ms = max(0, int(((deadline or time.monotonic()) - time.monotonic()) * 1000))
            if chan.socket.poll(wait_ms, zmq.POLLIN):
                chan.on_readable()
            else:
                chan.expire()
    finally:
        chan.close()
    env, err = box[0]
    if err is not None:
        raise err
    return env
