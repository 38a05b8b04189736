"""Requests from the CLI to the tracker and the peers, with timeout and retry.

Every call ends: a reply, a RemoteError (exit 3) or a TransportError (exit 1) that
says what did not answer and what to check.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import zmq

from node import config
from node.channel import call
from node.failover import call_any
from protocol import messages as m
from protocol.errors import ErrorCode, RemoteError, TransportError, ZorrentError

_zctx: zmq.Context | None = None
T = TypeVar("T")


def _check() -> str:
    """What to check when nothing answered (in a private swarm, a refused key looks the same)."""
    from node import curve

    keys = curve.active()
    if keys is None:
        return "is it running?"
    return f"is it running, and does it admit the key in {keys.folder}/client.key?"


def zctx() -> zmq.Context:
    global _zctx
    if _zctx is None:
        _zctx = zmq.Context()
    return _zctx


def in_background(fn: Callable[..., T], *args: Any) -> Callable[[], T]:
    """Start ``fn(*args)`` (a read-only request) on a thread now; the function returned waits for
    it and returns what it returned or raises what it raised. Two requests in flight at once,
    or one while this process reads a file, instead of one round trip after another.

    The caller must call the result, also on its own error path, unless it is about to exit: the
    thread (a daemon, with its own socket) is joined only there (the download command exits)."""
    import threading

    zctx()                   # the one context, made before two threads could each make one
    box: list = []

    def run() -> None:
        try:
            box.append((fn(*args), None))
        except BaseException as exc:       # handed to the caller, raised there
            box.append((None, exc))

    worker = threading.Thread(target=run, name=f"request {getattr(fn, '__name__', '')}", daemon=True)
    worker.start()

    def result() -> T:
        worker.join()
        value, exc = box[0]
        if exc is not None:
            raise exc
        return value

    return result


def request(endpoint: str, msg: m.Message, what: str, timeout_s: float = config.REQUEST_TIMEOUT_S,
            tries: int = config.REQUEST_RETRIES) -> m.Message:
    try:
        return call(zctx(), endpoint, msg, timeout_s=timeout_s, tries=tries).msg
    except TransportError:
        raise TransportError(f"no answer from {what} at {endpoint} after {tries} tries "
                             f"of {timeout_s:g}s ({_check()})") from None


def seed(peer_id: str, path: str, meta, timeout_s: float) -> m.JobStatus:
    """Have a running peer seed ``path`` (Upload), and wait until its hash has ended (the peer
    hashes off its event loop and answers Upload at once): its status then, seeding; raise
    RemoteError if the file does not match the torrent, TransportError after ``timeout_s``."""
    peer_control(peer_id, m.Upload(path=path, metainfo=meta.raw))
    return wait_hashed(peer_id, [meta.info_hash], timeout_s)[meta.info_hash]


def wait_hashed(peer_id: str, info_hashes: list[str], timeout_s: float | None = None,
                on_status: Callable[[m.StatusReply], None] | None = None) -> dict[str, m.JobStatus]:
    """Poll the peer until none of ``info_hashes`` is hashing any more (``on_status(reply)``
    sees each reply first: a progress bar, a check); their statuses then, each seeding.
    RemoteError if one does not match its torrent or is gone; TransportError after ``timeout_s``."""
    left, done = list(info_hashes), {}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        reply = peer_control(peer_id, m.Status(info_hash=""))
        if on_status is not None:
            on_status(reply)
        jobs = {j.info_hash: j for j in reply.jobs}
        for info_hash in list(left):
            job = jobs.get(info_hash)
            if job is None:
                raise RemoteError(ErrorCode.UNKNOWN_TORRENT, f"{peer_id} no longer holds {info_hash}")
            if job.state == m.JobState.HASHING.value:
                continue
            left.remove(info_hash)
            done[info_hash] = job
            if job.state != m.JobState.SEEDING.value:
                raise RemoteError(ErrorCode.BAD_INPUT, job.error or f"{job.name}: {job.state}")
        if not left:
            return done
        if deadline is not None and time.monotonic() > deadline:
            raise TransportError(f"peer {peer_id} was still hashing after {timeout_s:g}s")
        time.sleep(config.STATUS_POLL_S)


def tracker_endpoints_for(meta=None) -> list[str]:
    """A zorrent torrent names its trackers (announce-list, then announce); anything else
    falls back to ``$ZORRENT_TRACKER`` or the default."""
    from protocol import metainfo

    named = [url for url in (metainfo.tracker_urls(meta) if meta is not None else [])
             if url.startswith("tcp://")]
    return config.tracker_endpoints(named or None)


def tracker(endpoints: str | list[str], msg: m.Message, timeout_s: float = config.REQUEST_TIMEOUT_S,
            tries: int = config.REQUEST_RETRIES) -> m.Message:
    """A request to the first tracker that answers; on a timeout the next one is tried."""
    endpoints = config.tracker_endpoints(endpoints)
    tries = max(tries, len(endpoints))
    try:
        return call_any(zctx(), endpoints, msg, timeout_s=timeout_s, tries=tries).msg
    except TransportError:
        where = "at " + ", ".join(endpoints)
        raise TransportError(f"no answer from the tracker {where} after {tries} tries "
                             f"of {timeout_s:g}s ({_check()})") from None


def check_peer(peer_id: str, host: str, port: int, timeout_s: float = 1.0) -> None:
    """The peer answers on its data port and is the peer it is said to be."""
    config.check_peer_id(peer_id)
    config.check_port(port, "--peer-port")
    endpoint = config.endpoint(host, port)
    pong = request(endpoint, m.Ping(), f"peer {peer_id}", timeout_s=timeout_s, tries=2)
    if not isinstance(pong, m.Pong) or pong.peer_id != peer_id:
        other = getattr(pong, "peer_id", "?")
        raise ZorrentError(f"the peer at {host}:{port} is {other!r}, not {peer_id!r}", ErrorCode.UNKNOWN_PEER)


def peer_control(peer_id: str, msg: m.Message, timeout_s: float = config.REQUEST_TIMEOUT_S,
                 tries: int = config.REQUEST_RETRIES) -> m.Message:
    endpoint = config.control_endpoint(peer_id)
    if not Path(endpoint[len("ipc://"):]).exists():
        raise TransportError(f"peer {peer_id} is not running here (no control socket in "
                             f"{config.run_dir()}; start it with: start-peer --config peers.json)")
    return request(endpoint, msg, f"peer {peer_id}", timeout_s=timeout_s, tries=tries)
