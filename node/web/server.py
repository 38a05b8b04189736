"""The web view's HTTP server (aiohttp): read-only, loopback by default.

Routes: ``/`` the page, ``/static/*`` its script and style, ``/events`` server-sent
events (one full snapshot per poll, pushed as soon as it is made), ``/api/swarm`` the
same snapshot as JSON, ``/metrics`` Prometheus text.

Every response passes the security middleware:
- a ``Host`` header that is not this server's own address (or an allowed name) is
  refused with 421, so a page on another site cannot reach it by DNS rebinding;
- a Content-Security-Policy with no inline script or style, and no framing.
The page renders strangers' strings with ``textContent`` only (see static/app.js).
"""
from __future__ import annotations

import asyncio
import json
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

from aiohttp import web

from node import config
from node.process import setup_logging, write_ready_file
from node.web.metrics import exposition, registry_for
from node.web.poller import Poller
from node.web.swarm import SwarmView
from protocol.errors import ErrorCode, ZorrentError

log = logging.getLogger("zorrent.web")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
SSE_KEEPALIVE_S = 15.0



def allowed_hosts(host: str, port: int, names: list[str]) -> set[str]:
    """Host header values this server answers: its own address and the configured names,
    with its port (and without, on port 80)."""
    hosts = {host, *names}
    if host in config.WEB_LOOPBACK_NAMES:
        hosts |= set(config.WEB_LOOPBACK_NAMES)
    out = set()
    for h in hosts:
        h = h.lower()
        h = f"[{h}]" if ":" in h and not h.startswith("[") else h
        out.add(f"{h}:{port}")
        if port == 80:
            out.add(h)
    return out


class Hub:
    """The latest snapshot, and a queue per connected page (only the newest one matters).

    It also knows whether anyone is looking: a connected page, or a request for the page,
    /api/swarm or /metrics within WEB_WATCHED_S. Unwatched, the view looks every
    WEB_IDLE_POLL_S only, so an idle swarm's peers are not woken twice a second for nobody;
    the first request after a quiet spell waits for a fresh look instead of a stale one."""

    def __init__(self) -> None:
        self.latest = ""
        self.seq = 0
        self.pages: set[asyncio.Queue] = set()
        self.published_at = float("-inf")     # loop time of the latest snapshot
        self.wanted_at = float("-inf")        # loop time someone last asked
        self.wake = asyncio.Event()           # someone asked: look now if the last look is old
        self._next: asyncio.Future | None = None   # the next look, one for every waiter (any number of asks)

    def publish(self, seq: int, data: str) -> None:
        self.latest, self.seq = data, seq
        self.published_at = asyncio.get_running_loop().time()
        for queue in self.pages:
            if queue.full():
                queue.get_nowait()    # a slow page skips to the newest snapshot
            queue.put_nowait((seq, data))
        if self._next is not None and not self._next.done():
            self._next.set_result(None)
        self._next = None

    def watched(self) -> bool:
        return bool(self.pages) or asyncio.get_running_loop().time() - self.wanted_at < config.WEB_WATCHED_S

    async def wanted(self) -> None:
        """Someone asks: the view goes on looking every WEB_POLL_S; if the latest look is
        older than that (the view was idle), wait for the next one (at most WEB_FRESH_WAIT_S)."""
        loop = asyncio.get_running_loop()
        self.wanted_at = loop.time()
        self.wake.set()               # the poll loop re-reckons its next look
        if loop.time() - self.published_at <= 2 * config.WEB_POLL_S:
            return
        if self._next is None:
            self._next = loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._next), config.WEB_FRESH_WAIT_S)
        except asyncio.TimeoutError:
            pass                      # answer with what there is


VIEW = web.AppKey("view", SwarmView)
HUB = web.AppKey("hub", Hub)
ALLOWED = web.AppKey("allowed", set)
REGISTRY = web.AppKey("registry", object)


@web.middleware
async def guard(request: web.Request, handler):
    if request.headers.get("Host", "").lower() not in request.app[ALLOWED]:
        response = web.Response(status=421, text="421: this server does not answer to that Host name\n")
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:        # 404 and friends get the same headers
            response = web.Response(status=exc.status, text=exc.text)
    response.headers.update(SECURITY_HEADERS)
    return response


async def page(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    hub.wanted_at = asyncio.get_running_loop().time()                # its /events follows
    hub.wake.set()
    return web.Response(body=_asset("index.html"), content_type="text/html", charset="utf-8")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    return web.Response(body=_asset(name), content_type=STATIC[name], charset="utf-8")


async def api_swarm(request: web.Request) -> web.Response:
    if config.WEB_PROBE_QUERY not in request.query:            # a readiness probe (swarm up's) is not someone looking
        await request.app[HUB].wanted()
    return web.Response(text=request.app[HUB].latest or "{}", content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    await request.app[HUB].wanted()
    body = exposition(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: each message is a whole snapshot, so a page that reconnects
    (EventSource does, sending Last-Event-ID) simply gets the newest one."""
    hub: Hub = request.app[HUB]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    response.headers.update(SECURITY_HEADERS)
    await response.prepare(request)
    queue: asyncio.Queue = asyncio.Queue(maxsize=1)
    await hub.wanted()
    hub.pages.add(queue)
    try:
        if hub.latest:
            await response.write(_sse(hub.seq, hub.latest))
        while True:
            try:
                seq, data = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_S)
                await response.write(_sse(seq, data))
            except asyncio.TimeoutError:
                await response.write(b": keepalive\n\n")
    except ConnectionResetError:
        pass                      # the page went away
    finally:
        hub.pages.discard(queue)
    return response


def _sse(seq: int, data: str) -> bytes:
    return f"id: {seq}\nevent: swarm\ndata: {data}\n\n".encode()


def _asset(name: str) -> bytes:
    return resources.files("node.web").joinpath("static", name).read_bytes()


async def _poll_forever(app: web.Application, poller: Poller) -> None:
    view, hub = app[VIEW], app[HUB]
    loop = asyncio.get_running_loop()
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="poller")   # owns every zmq socket
    try:
        while True:
            started = loop.time()
            obs = await loop.run_in_executor(worker, poller.observe)
            view.apply(obs)
            hub.publish(view.seq, json.dumps(view.snapshot(), separators=(",", ":")))
            while True:               # until the next look is due: soon if watched, else later or when asked
                period = config.WEB_POLL_S if hub.watched() else config.WEB_IDLE_POLL_S
                left = period - (loop.time() - started)
                if left <= 0:
                    break
                hub.wake.clear()
                try:
                    await asyncio.wait_for(hub.wake.wait(), left)
                except asyncio.TimeoutError:
                    pass
    finally:
        await loop.run_in_executor(worker, poller.close)
        worker.shutdown(wait=True)


def make_app(tracker_endpoint: str, allowed: set[str], poller: Poller | None = None) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[VIEW] = SwarmView(tracker_endpoint)
    app[HUB] = Hub()
    app[ALLOWED] = allowed
    app[REGISTRY] = registry_for(app[VIEW])
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/swarm", api_swarm)
    app.router.add_get("/events", events)
    app.router.add_get("/metrics", metrics)
    poller = poller or Poller(tracker_endpoint, config.events_path())

    async def background(app: web.Application):
        task = asyncio.create_task(_poll_forever(app, poller))
        yield
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    app.cleanup_ctx.append(background)
    return app


def run(host: str, port: int, tracker_endpoint: str, names: list[str], ready_file: str | None = None) -> None:
    setup_logging("web")
    asyncio.run(_serve(host, port, tracker_endpoint, names, ready_file))


async def _serve(host: str, port: int, tracker_endpoint: str, names: list[str], ready_file: str | None) -> None:
    allowed: set[str] = set()
    app = make_app(tracker_endpoint, allowed)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ZorrentError(f"cannot listen on {host}:{port}: {exc.strerror}", ErrorCode.BAD_INPUT) from None
    bound = runner.addresses[0][1]
    allowed |= allowed_hosts(host, bound, names)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{bound}/"
    log.info("web view on %s (tracker %s)", url, tracker_endpoint)
    write_ready_file(ready_file, url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        log.info("web view stopped")
