"""Handler registry and the one loop that turns requests (and failures) into replies.

A handler is ``(ctx, msg) -> reply`` or ``(ctx, msg) -> (reply, payload)``; it never
touches a socket. ``Dispatcher.dispatch`` is the only place that decodes, looks up,
runs and encodes, and every request gets a reply: unknown types, malformed frames
and handler crashes become ERROR replies, never a dead loop.
"""
from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable

import zmq

from node import curve
from protocol.codec import decode, decode_id, encode, error_frames
from protocol.errors import ErrorCode, ZorrentError
from protocol.messages import MAX_FRAME_BYTES, Message, MsgType

log = logging.getLogger(__name__)

Handler = Callable[[Any, Message], Any]


@dataclass(frozen=True)
class Source:
    """The connection a request came in on: what a handler may trust about its sender.

    ``identity`` is the ROUTER routing id (libzmq refuses a second connection that
    claims one in use), ``address`` the IP the TCP connection comes from (the frame's
    ``Peer-Address``; "" on ipc/inproc). Claims inside a message are only claims.
    """

    identity: bytes = b""
    address: str = ""


def source_of(ident: bytes, frame: Any, tcp: bool) -> Source:
    address = ""
    if tcp:
        try:
            address = frame.get("Peer-Address")
        except (zmq.ZMQError, AttributeError):
            pass
    return Source(ident, address)


class Context:
    """What handlers get. Subclasses add the store, the config, the node state.

    ``source`` is the connection of the request being handled (set by ``serve``).
    """

    source: Source = Source()

    def scope(self):
        """Wraps one handler call (the tracker makes it a savepoint)."""
        return nullcontext()

    def commit(self) -> None:
        """Makes a batch of handled requests durable before any reply is sent."""

    def observe(self, requests: int, elapsed_s: float) -> None:
        """A batch of ``requests`` was answered ``elapsed_s`` after it was drained."""


class Dispatcher:
    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: dict[MsgType, Handler] = {}

    def handles(self, *msg_types: MsgType) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            for t in msg_types:
                if t in self.handlers:
                    raise RuntimeError(f"{self.name}: {t} has two handlers")
                self.handlers[t] = fn
            return fn

        return register

    def dispatch(self, ctx: Context, frames: list[Any]) -> list[Any]:
        msg_id = 0
        try:
            env = decode(frames)
            msg_id = env.id
            handler = self.handlers.get(env.msg.TYPE)
            if handler is None:
                raise ZorrentError(f"{self.name} does not handle {env.msg.TYPE.value!r}",
                                   ErrorCode.UNKNOWN_TYPE)
            if env.payload is not None:
                raise ZorrentError("requests carry no payload frame", ErrorCode.BAD_FRAME)
            with ctx.scope():
                result = handler(ctx, env.msg)
        except ZorrentError as exc:
            return error_frames(msg_id or decode_id(frames), exc.code, exc.message, exc.retry_after_s)
        except Exception as exc:
            log.exception("%s handler failed", self.name)
            return error_frames(msg_id, ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}")
        if isinstance(result, tuple):
            reply, payload = result
            return encode(reply, msg_id, payload)
        return encode(result, msg_id)


def bind_router(zctx: zmq.Context, endpoint: str, sndhwm: int = 0, rcvhwm: int = 1000,
                max_msg_bytes: int = MAX_FRAME_BYTES) -> tuple[zmq.Socket, str]:
    """A ROUTER bound to ``endpoint`` (port 0 or * picks a free one); returns its endpoint.
    A tcp one is a CURVE server when the swarm has keys (node/curve.py).

    ``sndhwm``/``rcvhwm`` are messages per connection (0: none, for local-only sockets).
    With ROUTER_MANDATORY a send to a full pipe raises EAGAIN (every send here is
    DONTWAIT), one to a gone identity EHOSTUNREACH: never a silent drop, never a block.
    """
    sock = zctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, max_msg_bytes)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
        endpoint = endpoint[:-2] + ":*"
    try:
        curve.secure_server(zctx, sock, endpoint)
        sock.bind(endpoint)
    except ZorrentError:
        sock.close(linger=0)
        raise
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise ZorrentError(f"cannot listen on {endpoint}: {exc.strerror}", ErrorCode.BAD_INPUT) from None
    return sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)


def serve(sock: zmq.Socket, dispatcher: Dispatcher, ctx: Context, batch_max: int = 64,
          send: Callable[[bytes, list[Any]], None] | None = None,
          accepts: Callable[[bytes], bool] | None = None) -> Callable[[], None]:
    """The readable-callback for a ROUTER: drain a batch, handle it, commit, then reply.

    ``send(identity, frames)`` replaces the plain send (the peer budgets uploads with it).
    ``accepts(identity)`` False: the request is dropped unread (a remote that was cut off).
    """

    def send_now(ident: bytes, frames: list[Any]) -> None:
        try:
            sock.send_multipart([ident, *frames], flags=zmq.DONTWAIT, copy=False)
        except zmq.ZMQError:
            pass  # gone (EHOSTUNREACH) or not reading (EAGAIN, its pipe is full): the reply is dropped

    send = send or send_now
    tcp = sock.getsockopt_string(zmq.LAST_ENDPOINT).startswith("tcp://")

    def on_readable() -> None:
        started = time.perf_counter()
        batch = []
        while len(batch) < batch_max:
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            if len(parts) < 2:
                continue  # no identity + header: nothing to reply to
            ident = parts[0].bytes
            if accepts is not None and not accepts(ident):
                continue
            batch.append((ident, parts[1:]))
        if not batch:
            return
        replies = []
        for ident, frames in batch:
            ctx.source = source_of(ident, frames[0], tcp)
            replies.append((ident, dispatcher.dispatch(ctx, frames)))
        ctx.source = Source()
        try:
            ctx.commit()
        except ZorrentError as exc:
            replies = [(ident, error_frames(decode_id(frames), exc.code, exc.message, exc.retry_after_s))
                       for ident, frames in batch]
        for ident, frames in replies:
            send(ident, frames)
        ctx.observe(len(batch), time.perf_counter() - started)

    return on_readable
