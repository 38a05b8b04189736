"""Tracker process entry: one ROUTER, one store, expiry on a timer."""
from __future__ import annotations

import logging
import signal

import zmq

from node import config
from node.dispatch import bind_router, serve
from node.process import setup_logging, write_ready_file
from node.reactor import Reactor
from node.tracker.handlers import TrackerContext, tracker
from node.tracker.store import open_store

log = logging.getLogger("zorrent.tracker")


def run(host: str, port: int, store_uri: str | None = None, ready_file: str | None = None) -> None:
    setup_logging("tracker")
    store = open_store(store_uri or config.default_store_uri())
    zctx = zmq.Context()
    try:
        sock, bound = bind_router(zctx, config.endpoint(host, port))
    except Exception:
        store.close()
        zctx.term()
        raise
    ctx = TrackerContext(store=store)
    reactor = Reactor()
    reactor.add(sock, serve(sock, tracker, ctx, batch_max=config.TRACKER_BATCH_MAX))

    def expire() -> None:
        for peer_id in ctx.expire_peers():
            log.info("expired silent peer %s", peer_id)

    reactor.call_every(config.HEARTBEAT_INTERVAL_S, expire)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: reactor.stop())
    log.info("tracker listening on %s, store %s", bound, store.uri)
    write_ready_file(ready_file, bound)
    try:
        reactor.run()
    finally:
        sock.close(linger=0)
        store.close()
        zctx.term()
        log.info("tracker stopped")
