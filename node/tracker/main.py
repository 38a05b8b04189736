"""Tracker process entry: one ROUTER, one store, expiry on a timer, and the HTTP door.

The HTTP door (``node.tracker.http``) runs on its own thread and reaches the store only
through an inproc ROUTER served here, by the same loop as the ZeroMQ door.
"""
from __future__ import annotations

import logging
import signal

import zmq

from node import config, curve
from node.dispatch import bind_router, serve
from node.process import setup_logging, write_ready_file
from node.reactor import Reactor
from node.tracker.context import TrackerContext, parse_networks
from node.tracker.handlers import standard, tracker
from node.tracker.http import INPROC_ENDPOINT, HttpDoor
from node.tracker.stats import counting
from node.tracker.store import open_store
from protocol.errors import ZorrentError

log = logging.getLogger("zorrent.tracker")


def _open_http(zctx: zmq.Context, host: str, http_port: int | None, http_strict: bool) -> HttpDoor | None:
    """The HTTP door on ``http_port`` (0: any free port; None: off). A busy port is an error only
    if it was asked for (``http_strict``); the default one being busy is logged and skipped."""
    if http_port is None:
        return None
    if curve.active() is not None and not http_strict:
        log.info("a private swarm (CURVE keys): the HTTP door for standard clients is off unless --http-port is given")
        return None
    door = HttpDoor(zctx, host, http_port)
    try:
        door.start()
    except ZorrentError as exc:
        if http_strict:
            raise
        log.warning("%s; running without the HTTP tracker (choose one with --http-port)", exc)
        return None
    return door


def run(host: str, port: int, store_uri: str | None = None, ready_file: str | None = None,
        http_port: int | None = None, http_strict: bool = False, http_host: str | None = None,
        trust_advertise: str = config.TRUST_ADVERTISE_DEFAULT) -> None:
    setup_logging("tracker")
    trusted = parse_networks(trust_advertise)
    store = open_store(store_uri or config.default_store_uri())
    zctx = zmq.Context()
    socks, door = [], None
    try:
        sock, bound = bind_router(zctx, config.endpoint(host, port), sndhwm=config.TRACKER_SNDHWM_MSGS,
                                  rcvhwm=config.TRACKER_RCVHWM_MSGS)
        socks.append(sock)
        inproc, _ = bind_router(zctx, INPROC_ENDPOINT)
        socks.append(inproc)
        door = _open_http(zctx, http_host or host, http_port, http_strict)
    except Exception:
        for s in socks:
            s.close(linger=0)
        store.close()
        curve.stop(zctx)
        zctx.term()
        raise
    ctx = TrackerContext(store=store, trusted=trusted)
    reactor = Reactor()
    reactor.add(sock, serve(sock, counting(tracker, ctx.counters), ctx, batch_max=config.TRACKER_BATCH_MAX))
    reactor.add(inproc, serve(inproc, counting(standard, ctx.counters), ctx, batch_max=config.TRACKER_BATCH_MAX))

    def expire() -> None:
        for peer_id in ctx.expire_peers():
            log.info("expired silent peer %s", peer_id)
        ctx.counters.log_types()

    reactor.call_every(config.HEARTBEAT_INTERVAL_S, expire)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: reactor.stop())
    log.info("tracker listening on %s, store %s", bound, store.uri)
    if door is not None:
        log.info("HTTP tracker (BEP 3) at %s", door.url)
        write_ready_file(ready_file and f"{ready_file}.http", door.url)
    write_ready_file(ready_file, bound)
    try:
        reactor.run()
    finally:
        if door is not None:
            door.stop()
        for s in socks:
            s.close(linger=0)
        store.close()
        curve.stop(zctx)
        zctx.term()
        log.info("tracker stopped")
