"""The tracker's HTTP door for standard BitTorrent clients: GET /announce and GET /scrape.

aiohttp serves on a thread of its own, with its own asyncio loop. Each request is parsed
(``protocol.announce``) into a message and sent over an inproc DEALER to the tracker's
reactor, which handles it with the same dispatcher loop, store and group commit as the
ZeroMQ door (``node.dispatch.serve`` on an inproc ROUTER). So the store is only ever
touched by the reactor thread, and a reply is sent only once its batch is durable.

Every answer is bencoded: a reply, or a ``failure reason`` for bad input, an unknown
path, a store failure or a reactor that does not answer in time. Each connection is
closed HTTP_CONNECTION_S after it opened, so a slow client cannot hold one; the HTTP
parser caps the request line and headers; more than HTTP_MAX_CONNECTIONS at once are
closed on arrival.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading

import zmq
import zmq.asyncio
from aiohttp import web

from node import config
from protocol import announce
from protocol import messages as m
from protocol.codec import decode, encode
from protocol.errors import ErrorCode, ZorrentError

log = logging.getLogger("zorrent.tracker.http")

INPROC_ENDPOINT = "inproc://tracker-http-door"
STOP_TIMEOUT_S = 10.0


class _OneLine(logging.Filter):
    """aiohttp logs a client's malformed request with a traceback; here it is one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg, record.args = f"{record.getMessage()}: {type(exc).__name__}: {exc}"[:300], ()
            record.exc_info = record.exc_text = None
        return True


parser_log = log.getChild("parser")
parser_log.addFilter(_OneLine())


class _Bridge:
    """Requests to the reactor over one DEALER; replies matched to requests by envelope id."""

    def __init__(self, actx: zmq.asyncio.Context, endpoint: str) -> None:
        self.sock = actx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, m.MAX_FRAME_BYTES)
        self.sock.connect(endpoint)
        self.pending: dict[int, asyncio.Future] = {}
        self.ids = itertools.count(1)
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def request(self, msg: m.Message, timeout_s: float) -> m.Message:
        msg_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = future
        try:
            await self.sock.send_multipart(encode(msg, msg_id))
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self.pending.pop(msg_id, None)

    async def _read(self) -> None:
        while True:
            frames = await self.sock.recv_multipart()
            try:
                env = decode(frames)
            except ZorrentError:
                continue
            future = self.pending.get(env.id)
            if future is not None and not future.done():
                future.set_result(env.msg)

    async def aclose(self) -> None:
        self.reader.cancel()
        try:
            await self.reader
        except asyncio.CancelledError:
            pass
        self.sock.close(linger=0)


class _Server(web.Server):
    """aiohttp's low-level server, with a lifetime for each connection and a cap on their number."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.deadlines: dict[object, asyncio.TimerHandle] = {}

    def connection_made(self, handler, transport) -> None:
        super().connection_made(handler, transport)
        if len(self.deadlines) >= config.HTTP_MAX_CONNECTIONS:
            transport.close()
            return
        self.deadlines[handler] = asyncio.get_running_loop().call_later(config.HTTP_CONNECTION_S, transport.close)

    def connection_lost(self, handler, exc=None) -> None:
        timer = self.deadlines.pop(handler, None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(handler, exc)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class HttpDoor:
    """Start with ``start()`` (returns the announce URL, or raises), end with ``stop()``."""

    def __init__(self, zctx: zmq.Context, host: str, port: int, endpoint: str = INPROC_ENDPOINT) -> None:
        self.zctx, self.host, self.port, self.endpoint = zctx, host, port, endpoint
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._main, name="http-door", daemon=True)
        self.started = threading.Event()
        self.error: ZorrentError | None = None
        self.url = ""

    def start(self) -> str:
        self.thread.start()
        self.started.wait()      # always set: binding either works or fails, it does not hang
        if self.error is not None:
            raise self.error
        return self.url

    def stop(self) -> None:
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(STOP_TIMEOUT_S)

    # ------------------------------------------------------------ the door's own thread
    def _main(self) -> None:
        loop = self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.bridge: _Bridge | None = None
        try:
            runner = loop.run_until_complete(self._open())
        except ZorrentError as exc:
            self.error = exc
        except BaseException as exc:
            self.error = ZorrentError(f"the HTTP tracker did not start: {exc}")
        finally:
            if self.error is not None and self.bridge is not None:
                loop.run_until_complete(self.bridge.aclose())   # before the tracker terms the ZeroMQ context
            self.started.set()
        if self.error is None:
            loop.run_forever()
            loop.run_until_complete(self._close(runner))
        loop.close()

    async def _open(self) -> web.ServerRunner:
        self.bridge = _Bridge(zmq.asyncio.Context.shadow(self.zctx.underlying), self.endpoint)
        server = _Server(self._handle, max_line_size=config.HTTP_MAX_LINE_BYTES,
                         max_field_size=config.HTTP_MAX_LINE_BYTES, max_headers=32, access_log=None,
                         logger=parser_log)
        runner = web.ServerRunner(server, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port, shutdown_timeout=0.1).start()
        except OSError as exc:
            await runner.cleanup()
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ZorrentError(f"cannot listen on {_url(self.host, self.port)}: {reason}",
                               ErrorCode.BAD_INPUT) from None
        self.url = _url(self.host, runner.addresses[0][1]) + "/announce"
        return runner

    async def _close(self, runner: web.ServerRunner) -> None:
        await runner.cleanup()
        await self.bridge.aclose()

    async def _handle(self, request: web.BaseRequest) -> web.Response:
        try:
            body = await self._answer(request)
            status = 200
        except announce.QueryError as exc:
            body, status = announce.failure(exc.message), 200
        except _Refused as exc:
            body, status = announce.failure(exc.reason), exc.status
        except asyncio.TimeoutError:
            body, status = announce.failure("the tracker is busy; try again later"), 200
        except Exception as exc:   # a bug here must not become aiohttp's 500 page with a traceback
            log.error("HTTP request %s failed: %s: %s", request.path[:64], type(exc).__name__, exc)
            body, status = announce.failure(f"internal error: {type(exc).__name__}"), 500
        return web.Response(body=body, status=status, content_type="text/plain")

    async def _answer(self, request: web.BaseRequest) -> bytes:
        if request.method != "GET":
            raise _Refused(405, f"{request.method[:16]} is not offered; use GET /announce or GET /scrape")
        raw = request.rel_url.raw_query_string
        if request.path == "/announce":
            query = announce.parse_announce(raw, announce.normal_host(request.remote or ""),
                                            config.HTTP_MAX_QUERY_BYTES, config.HTTP_DEFAULT_NUMWANT)
            reply = await self._ask(query.msg)
            return announce.swarm_reply(reply, query.compact, query.no_peer_id)
        if request.path == "/scrape":
            msg = announce.parse_scrape(raw, config.HTTP_MAX_QUERY_BYTES, config.HTTP_MAX_SCRAPE)
            return announce.scrape_reply(await self._ask(msg))
        raise _Refused(404, f"no such path {request.path[:64]!r}; use /announce or /scrape")

    async def _ask(self, msg: m.Message) -> m.Message:
        reply = await self.bridge.request(msg, config.HTTP_REPLY_TIMEOUT_S)
        if isinstance(reply, m.Error):
            raise announce.QueryError(reply.message)
        return reply


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason
