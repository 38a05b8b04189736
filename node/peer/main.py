"""Peer process: one data ROUTER (tcp, pieces only), one control ROUTER (ipc, local only),
one session with the trackers, and the download jobs, all on one reactor.

PeerNode is the lifecycle and the wiring; each role has its own module:
holdings.py (the records and their one transition function), session.py (the trackers),
resume.py (output/state/PEER.json), jobs.py (upload, download, remove, restore),
integrity.py (files that change on disk), handlers.py (requests, through api.PeerApi).
"""
from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from node import config, curve
from node.channel import Channel, call
from node.dispatch import Context, bind_router, serve
from node.peer.disk import DiskWorker
from node.peer.holdings import Holding, Holdings
from node.peer.integrity import IntegrityWatch
from node.peer.jobs import Jobs
from node.peer.links import Links, sized_context
from node.peer.resume import ResumeStore
from node.peer.session import TrackerSession
from node.peer.serving import BlockServer
from node.peer.storage import PieceFile
from node.peer.watch import Park, Watchers
from node.process import hold_lock, setup_logging, write_ready_file
from node.reactor import Reactor
from protocol import messages as m
from protocol.errors import ErrorCode, ZorrentError
from protocol.metainfo import Metainfo

log = logging.getLogger("zorrent.peer")
TICK_S = 0.05            # download jobs' timer while any runs (an idle peer has none: node/reactor.py)


class PeerNode(Context):
    def __init__(self, peer_id: str, host: str, port: int, tracker_endpoint: str | list[str],
                 upload_rate_bps: int = 0, disk_io: str = config.DISK_IO, advertise: str | None = None,
                 bt_port: int | None = None) -> None:
        self.peer_id = config.check_peer_id(peer_id)
        self.host, self.port = host, port
        self.bt_port = config.default_bt_port(port) if bt_port is None else bt_port   # BT_PORT_OFF: none
        self.bt_port_given = bt_port is not None       # a default port that is taken only costs a warning
        self.bt = None
        self.advertise = config.advertised_host(host, advertise)   # what the tracker tells other peers
        self.tracker_endpoints = config.tracker_endpoints(tracker_endpoint)   # preferred first
        self.upload_rate_bps = upload_rate_bps
        self.direct_io = disk_io == "direct"
        self.zctx = sized_context()
        self.reactor = Reactor()
        self.links = Links(self.zctx, self.reactor)   # one DEALER per remote peer, shared by the jobs
        self.holdings = Holdings()
        self.session: TrackerSession | None = None
        self.resume = ResumeStore(self.peer_id, self.holdings.values,
                                  lambda: self.session.last_token if self.session else "")
        self.fatal: str | None = None
        self.last_tick = 0.0
        self.clock = time.monotonic              # remote.Host: the engine's clock

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        from node.peer.handlers import control, data

        run = config.ensure_dir(config.run_dir(), 0o700)
        os.chmod(run, 0o700)
        ctl_endpoint = config.control_endpoint(self.peer_id)
        if len(ctl_endpoint[len("ipc://"):].encode()) > config.IPC_PATH_MAX_BYTES:
            raise ZorrentError(f"control socket path is too long (over {config.IPC_PATH_MAX_BYTES} bytes): "
                               f"{ctl_endpoint}", ErrorCode.BAD_INPUT)
        # one process per peer id: the lock is taken before the socket is looked at, so a twin
        # can never bind over (and take) a live peer's control socket between check and bind
        self.lock_fd = hold_lock(run / f"{self.peer_id}.lock")
        if self.lock_fd is None:
            self._refuse_if_running(ctl_endpoint)
            raise ZorrentError(f"peer {self.peer_id} is already running (it holds {run / self.peer_id}.lock)",
                               ErrorCode.PEER_ID_TAKEN)
        self.data_sock, self.data_endpoint = bind_router(
            self.zctx, config.endpoint(self.host, self.port), sndhwm=config.DATA_SNDHWM_MSGS,
            rcvhwm=config.DATA_RCVHWM_MSGS, max_msg_bytes=config.DATA_MAX_REQUEST_BYTES)
        self.port = int(self.data_endpoint.rsplit(":", 1)[1])
        self.ctl_sock, _ = bind_router(self.zctx, ctl_endpoint)
        loaded = self.resume.load()
        self.session = TrackerSession(self.zctx, self.tracker_endpoints, self.reactor, self.holdings,
                                      peer_id=self.peer_id, host=self.advertise, port=self.port,
                                      last_token=loaded.token, on_token=self.resume.changed,
                                      on_fatal=self._fatal)
        self.tracker = self.session.channel          # the engine asks it for peer lists (remote.Host)
        self.holdings.connect(self.resume, self.session)
        self.disk = DiskWorker(self.reactor, config.HASH_THREADS, config.WRITE_THREADS, config.READ_THREADS,
                               config.CHECK_THREADS)
        self.integrity = IntegrityWatch(self.reactor, self.disk, self.holdings,
                                        lambda: config.file_check_s(self.session.heartbeat_s))
        self.jobs = Jobs(self, self.holdings, self.integrity, self.direct_io)
        self.server = BlockServer(self.data_sock, self.reactor, self.disk, self.upload_rate_bps,
                                  self.integrity.read_failed)
        self.budget = self.server.budget             # ONE budget for both wires (BtHost.budget)
        self.reap_sent = self.server.reap
        self.watchers = Watchers(self.server.send_small,
                                 lambda ih: h.have_log if (h := self.holdings.get(ih)) else None)
        if self.bt_port != config.BT_PORT_OFF:     # the BEP 3 wire for standard clients (node/peer/bt/)
            from node.peer.bt.service import BtService
            try:
                self.bt = BtService(self, self.host, self.bt_port)
            except ZorrentError as exc:
                if self.bt_port_given:
                    raise
                log.warning("%s; running without a BEP 3 port (give --bt-port)", exc.message)
        self.bt_port = self.session.bt_port = self.bt.port if self.bt else 0
        self.reactor.add_deadline(self.watchers.next_deadline, self.watchers.flush)
        self.reactor.add(self.data_sock, serve(self.data_sock, data, self, send=self._send_data,
                                               accepts=self.server.accepts))
        self.reactor.add(self.ctl_sock, serve(self.ctl_sock, control, self))
        self.reactor.add_deadline(lambda: self.last_tick + TICK_S if self.holdings.downloading() else None,
                                  self._tick)
        self.reactor.add_deadline(self.resume.next_deadline, lambda now: self.resume.save())
        self.jobs.restore(loaded.torrents, self.resume.keep_unrestored)
        self.resume.restored()
        self.session.start()
        log.info("peer %s serving %s, control %s, tracker %s, BEP 3 port %s", self.peer_id, self.data_endpoint,
                 ctl_endpoint, ", ".join(self.tracker_endpoints), self.bt_port if self.bt else "off")
        return self.data_endpoint

    def _send_data(self, ident: bytes, frames: list[Any]) -> None:
        """A data-port reply: a parked WATCH waits for news, the rest go through the budget."""
        if len(frames) == 2 and isinstance(frames[1], Park):
            self.watchers.park(ident, frames[:1], frames[1], time.monotonic())
        else:
            self.server.send(ident, frames)

    def _refuse_if_running(self, ctl_endpoint: str) -> None:
        """The twin holding the lock: name its pid if it answers."""
        if not Path(ctl_endpoint[len("ipc://"):]).exists():
            return
        try:
            env = call(self.zctx, ctl_endpoint, m.Ping(), timeout_s=config.TWIN_PING_TIMEOUT_S, tries=1)
        except ZorrentError:
            return  # starting, or too busy to answer: the lock is what counts
        raise ZorrentError(f"peer {self.peer_id} is already running (pid {env.msg.pid})",
                           ErrorCode.PEER_ID_TAKEN)

    def run(self) -> None:
        try:
            self.reactor.wake_on_signals()
            max_wait_s = config.IDLE_WAIT_MAX_S
        except ValueError:                   # not the main thread: no signal wakes the loop, so poll
            max_wait_s = 1.0
        self.reactor.run(max_wait_s)

    def stop(self) -> None:
        self.reactor.stop()

    def close(self) -> None:
        """SIGTERM: stop the jobs, make pieces and resume state durable, deregister."""
        for h in self.holdings.values():
            if h.job is not None and h.finished is None:
                h.job.close()
        if self.bt is not None:
            self.bt.close()
        if hasattr(self, "server"):
            self.server.close()
        if hasattr(self, "disk"):
            self.jobs.close()          # hashes under way stop at their next piece
            self.integrity.close()
            self.disk.close()          # pieces already with the disk threads are written first
        self.resume.close()
        for h in self.holdings.values():
            h.file.close()
        if self.session is not None:
            self.session.deregister(self.zctx)
        self.reactor.close()
        curve.stop(self.zctx)
        self.zctx.destroy(linger=0)
        if getattr(self, "lock_fd", None) is not None:
            os.close(self.lock_fd)     # last: the socket is closed before a twin may bind it
            self.lock_fd = None

    def _fatal(self, why: str) -> None:
        self.fatal = why
        self.stop()

    def _tick(self, now: float) -> None:
        self.last_tick = now
        for h in self.holdings.values():
            if h.job is not None and h.finished is None:
                h.job.tick(now)

    def connect(self, endpoint: str) -> Channel:
        """remote.Host: a request channel to another peer's data port, on this reactor: one
        per remote peer, shared by the jobs (node/peer/links.py)."""
        return self.links.acquire(endpoint)

    def disconnect(self, endpoint: str) -> None:
        """remote.Host: a job is done with its channel to ``endpoint``."""
        self.links.release(endpoint)

    # ------------------------------------------------------------------ api.PeerApi (for handlers)
    @property
    def registered(self) -> bool:
        return self.session is not None and self.session.token is not None

    def read_failed(self, piece_file: PieceFile, err: BaseException) -> None:
        self.integrity.read_failed(piece_file, err)

    def add_seed(self, meta: Metainfo, path: Path) -> Holding:
        return self.jobs.add_seed(meta, path)

    def add_download(self, meta: Metainfo, path: Path) -> Holding:
        return self.jobs.add_download(meta, path)

    def remove(self, info_hash: str, delete_data: bool) -> None:
        self.jobs.remove(info_hash, delete_data)

    def job_status(self, h: Holding, alone: bool = False) -> m.JobStatus:
        return h.status(self.session.announced(h.meta.info_hash), alone)

    def stop_soon(self) -> None:
        self.reactor.call_later(0, self.stop)


def run(peer_id: str, host: str, port: int, tracker_endpoint: str | list[str], upload_rate_bps: int = 0,
        ready_file: str | None = None, disk_io: str = config.DISK_IO, advertise: str | None = None,
        bt_port: int | None = None) -> int:
    setup_logging(f"peer {peer_id}")
    node = PeerNode(peer_id, host, port, tracker_endpoint, upload_rate_bps, disk_io, advertise, bt_port)
    try:
        endpoint = node.start()
    except Exception:
        curve.stop(node.zctx)
        node.zctx.destroy(linger=0)
        raise
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: node.stop())
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a file-size limit is a write error, not a kill
    if ready_file and node.bt is not None:
        write_ready_file(f"{ready_file}.bt", str(node.bt_port))   # before the ready file: tests read both
    write_ready_file(ready_file, endpoint)
    try:
        node.run()
    finally:
        node.close()
    if node.fatal:
        raise ZorrentError(node.fatal, ErrorCode.PEER_ID_TAKEN)
    log.info("peer %s stopped", peer_id)
    return 0
