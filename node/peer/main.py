"""Peer process: one data ROUTER (tcp, pieces only), one control ROUTER (ipc, local only),
one channel to the tracker, and the download jobs, all on one reactor."""
from __future__ import annotations

import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node import config
from node.channel import call
from node.dispatch import Context, bind_router, serve
from node.failover import FailoverChannel
from node.peer import state
from node.peer.disk import DiskWorker
from node.peer.engine import DownloadJob
from node.peer.integrity import RESTARTABLE, SUSPENDED, IntegrityWatch, unchanged
from node.peer.links import Links, sized_context
from node.peer.pacer import Pacer
from node.peer.seeding import SendOnce
from node.peer.storage import PendingRead, PieceFile
from node.peer.watch import Park, Watchers
from node.process import setup_logging, write_ready_file
from node.reactor import Reactor
from protocol import messages as m
from protocol.codec import decode_id, error_frames
from protocol.errors import ErrorCode, RemoteError, ZorrentError
from protocol.metainfo import Metainfo, parse
from protocol.pieces import Bitfield

log = logging.getLogger("zorrent.peer")
TICK_S = 0.05


@dataclass
class Holding:
    """A torrent this peer holds: its file, verified pieces and what the tracker knows."""

    meta: Metainfo
    file: PieceFile
    bitfield: Bitfield
    state: m.JobState
    role: str                          # "seed" (uploaded here) or "download"
    resumed: int = 0                   # verified pieces found on disk when this process took it
    fetched: int = 0                   # pieces received from the network, over every run
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    error: str = ""
    job: DownloadJob | None = None
    tracker_known: bool = False        # REGISTER_TORRENT acknowledged
    announced: int = 0
    unannounced: set = field(default_factory=set)
    announcing: bool = False
    joined: bool = False               # an announce (even of no pieces) acknowledged: the tracker lists us
    send_once: SendOnce | None = None  # an origin seed's record of who was sent which piece
    have_log: list = field(default_factory=list)   # pieces verified in this run, in order (node/peer/watch.py)

    def finish(self, error: str = "") -> None:
        self.finished = time.monotonic()
        self.error = error
        self.state = m.JobState.FAILED if error else m.JobState.SEEDING
        if error:
            log.error("%s: %s", self.meta.name, error)
        else:
            log.info("%s: complete", self.meta.name)

    def saved(self) -> state.TorrentState:
        size, mtime_ns, ino = self.file.stamp()
        return state.TorrentState(
            info_hash=self.meta.info_hash, metainfo=state.b64(self.meta.raw), path=str(self.file.path),
            role=self.role, verified=state.b64(self.bitfield.to_bytes()), size=size, mtime_ns=mtime_ns,
            fetched=self.fetched, ino=ino)

    def status(self) -> m.JobStatus:
        job = self.job
        have = len(self.bitfield)
        return m.JobStatus(
            info_hash=self.meta.info_hash, name=self.meta.name, path=str(self.file.path),
            state=self.state.value, num_pieces=self.meta.num_pieces, have=have,
            announced=self.announced, resumed=self.resumed, fetched=self.fetched,
            length=self.meta.length,
            bytes_done=min(self.meta.length, have * self.meta.piece_length),
            failed_attempts=job.failed_attempts if job else 0, ignored=job.ignored if job else 0,
            elapsed_s=round((self.finished or time.monotonic()) - self.started, 3),
            error=self.error, peers=job.peer_stats() if job else [],
            warning=job.warning if job else "")


class PeerNode(Context):
    def __init__(self, peer_id: str, host: str, port: int, tracker_endpoint: str | list[str],
                 upload_rate_bps: int = 0, disk_io: str = config.DISK_IO, advertise: str | None = None) -> None:
        self.peer_id = config.check_peer_id(peer_id)
        self.host, self.port = host, port
        self.advertise = config.advertised_host(host, advertise)   # what the tracker tells other peers
        self.tracker_endpoints = config.tracker_endpoints(tracker_endpoint)   # preferred first
        self.upload_rate_bps = upload_rate_bps
        self.direct_io = disk_io == "direct"
        self.zctx = sized_context()
        self.reactor = Reactor()
        self.links = Links(self.zctx, self.reactor)
        self.holdings: dict[str, Holding] = {}
        self.token: str | None = None
        self.last_token = ""           # the previous session's, to take back our own live record
        self.refused_since: float | None = None
        self.forgotten: set[str] = set()      # torrents whose pieces the tracker must drop (FORGET to send)
        self.forgetting: set[str] = set()     # FORGET sent, not yet acknowledged: announce none of them
        self.registering = False
        self.fatal: str | None = None
        self.state_dirty = False
        self.saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state")
        self.saving = None
        self.restoring = False
        self.unrestored: list[state.TorrentState] = []   # kept verbatim: never drop a job record

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        from node.peer.handlers import control, data

        run = config.ensure_dir(config.run_dir(), 0o700)
        os.chmod(run, 0o700)
        ctl_endpoint = config.control_endpoint(self.peer_id)
        if len(ctl_endpoint) > 100:
            raise ZorrentError(f"control socket path is too long: {ctl_endpoint}", ErrorCode.BAD_INPUT)
        self._refuse_if_running(ctl_endpoint)
        self.data_sock, self.data_endpoint = bind_router(self.zctx, config.endpoint(self.host, self.port))
        self.port = int(self.data_endpoint.rsplit(":", 1)[1])
        self.ctl_sock, _ = bind_router(self.zctx, ctl_endpoint)
        self.tracker = FailoverChannel(self.zctx, self.tracker_endpoints, self.reactor)
        self.disk = DiskWorker(self.reactor, config.HASH_THREADS, config.WRITE_THREADS, config.READ_THREADS,
                               config.CHECK_THREADS)
        self.integrity = IntegrityWatch(self)
        self.pacer = Pacer(self.data_sock, self.reactor, self.upload_rate_bps)
        self.watchers = Watchers(self.pacer, lambda ih: h.have_log if (h := self.holdings.get(ih)) else None)
        self.reactor.call_every(config.ANNOUNCE_BATCH_S, lambda: self.watchers.flush(time.monotonic()))
        self.reactor.add(self.data_sock, serve(self.data_sock, data, self, send=self._send_block))
        self.reactor.add(self.ctl_sock, serve(self.ctl_sock, control, self))
        self.reactor.call_every(TICK_S, self._tick)
        self.reactor.call_every(config.HEARTBEAT_INTERVAL_S, self._heartbeat)
        self.reactor.call_every(config.ANNOUNCE_BATCH_S, self._flush_announces)
        self.reactor.call_every(config.STATE_SAVE_S, self._save_state)
        self._restore()
        self._register()
        log.info("peer %s serving %s, control %s, tracker %s", self.peer_id, self.data_endpoint,
                 ctl_endpoint, ", ".join(self.tracker_endpoints))
        return self.data_endpoint

    def _send_block(self, ident: bytes, frames: list[Any]) -> None:
        """A data-port reply; a block is read on a read thread first."""
        if len(frames) == 2 and isinstance(frames[1], PendingRead):
            header, pending = frames
            self.disk.read(pending, lambda data, err: self._send_read(ident, header, pending, data, err))
        elif len(frames) == 2 and isinstance(frames[1], Park):
            self.watchers.park(ident, frames[:1], frames[1], time.monotonic())
        else:
            self.pacer(ident, frames)

    def _send_read(self, ident: bytes, header: bytes, pending: PendingRead, data: bytes | None,
                   err: BaseException | None) -> None:
        if err is None:
            self.pacer(ident, [header, data])
            return
        self.integrity.read_failed(pending.file, err)
        if isinstance(err, ZorrentError):
            code, text = err.code, err.message
        else:
            code, text = ErrorCode.INTERNAL, f"cannot read: {getattr(err, 'strerror', None) or err}"
        self.pacer(ident, error_frames(decode_id([header]), code, text))

    def _refuse_if_running(self, ctl_endpoint: str) -> None:
        if not Path(ctl_endpoint[len("ipc://"):]).exists():
            return
        try:
            env = call(self.zctx, ctl_endpoint, m.Ping(), timeout_s=0.5, tries=1)
        except ZorrentError:
            return  # a stale socket file from a dead process
        raise ZorrentError(f"peer {self.peer_id} is already running (pid {env.msg.pid})",
                           ErrorCode.PEER_ID_TAKEN)

    def run(self) -> None:
        self.reactor.run()

    def stop(self) -> None:
        self.reactor.stop()

    def close(self) -> None:
        """SIGTERM: stop the jobs, make pieces and resume state durable, deregister."""
        for h in self.holdings.values():
            if h.job is not None and h.finished is None:
                h.job.close()
        if hasattr(self, "disk"):
            self.integrity.close()
            self.disk.close()          # pieces already with the disk threads are written first
        self.state_dirty = True
        self._save_state(wait=True)
        self.saver.shutdown()
        for h in self.holdings.values():
            h.file.close()
        if self.token:
            try:
                call(self.zctx, self.tracker.endpoint, m.Deregister(peer_id=self.peer_id, token=self.token),
                     timeout_s=0.5, tries=1)
            except ZorrentError:
                pass
        self.zctx.destroy(linger=0)

    # ------------------------------------------------------------------ tracker link
    def _register(self) -> None:
        if self.registering:
            return
        self.registering = True
        self.token = None
        self.tracker.request(m.RegisterPeer(peer_id=self.peer_id, host=self.advertise, port=self.port,
                                            token=self.last_token),
                             self._on_registered, timeout_s=config.REQUEST_TIMEOUT_S, tries=1)

    def _on_registered(self, env, err) -> None:
        self.registering = False
        if err is not None:
            if isinstance(err, RemoteError) and err.code == ErrorCode.PEER_ID_TAKEN:
                # our own record from a run that lost its state expires; a live twin does not
                now = time.monotonic()
                self.refused_since = self.refused_since or now
                if now - self.refused_since > config.PEER_EXPIRY_S + config.HEARTBEAT_INTERVAL_S:
                    self.fatal = err.message
                    self.stop()
                    return
                log.warning("%s; retrying until the old record expires", err.message)
                self.reactor.call_later(1.0, self._register)
                return
            log.warning("tracker %s: %s; retrying", self.tracker.endpoint, err.message)
            self.reactor.call_later(1.0, self._register)
            return
        self.token = self.last_token = env.msg.token
        self.refused_since = None
        self.state_dirty = True
        log.info("registered with tracker %s", self.tracker.endpoint)
        for h in self.holdings.values():   # the tracker forgot us (or never knew): tell it all
            h.tracker_known = h.joined = False
            h.announced = 0
            h.unannounced = set(h.bitfield.indexes())
        self._flush_announces()

    def _heartbeat(self) -> None:
        if self.token is None:
            return

        def on_reply(env, err):
            if isinstance(err, RemoteError) and err.code in (ErrorCode.UNKNOWN_PEER, ErrorCode.NOT_AUTHORISED):
                self._register()

        self.tracker.request(m.Heartbeat(peer_id=self.peer_id, token=self.token), on_reply,
                             timeout_s=config.REQUEST_TIMEOUT_S, tries=1)

    def queue_announce(self, info_hash: str, piece: int) -> None:
        self.holdings[info_hash].unannounced.add(piece)
        self.holdings[info_hash].have_log.append(piece)
        self.state_dirty = True

    # ------------------------------------------------------------------ resume state
    def _save_state(self, wait: bool = False) -> None:
        """Snapshot the state, fdatasync the files it covers, then write it.

        The periodic save runs the fsyncs in a background thread (fdatasync releases the
        GIL), so a long flush never stalls serving or downloading. ``wait=True`` saves
        before returning: a request is acknowledged only once its job is durable.
        """
        if not self.state_dirty or self.restoring:
            return
        if self.saving is not None and not self.saving.done():
            if not wait:
                return                     # still flushing the last one; try again next tick
            self.saving.result()
        self.state_dirty = False
        snapshot = list(self.unrestored)
        fds = []
        for h in self.holdings.values():
            try:
                snapshot.append(h.saved())
                if h.file.writable:
                    fds.extend(h.file.dup_fds())
            except OSError as exc:
                log.error("%s: cannot stat %s: %s", h.meta.name, h.file.path, exc.strerror or exc)
        if wait:
            self._write_state(snapshot, fds)
        else:
            self.saving = self.saver.submit(self._write_state, snapshot, fds)

    def _write_state(self, snapshot: list, fds: list[int]) -> None:
        try:
            for fd in fds:
                os.fdatasync(fd)           # pieces first: the state never claims unsynced data
            state.save(self.peer_id, self.last_token, snapshot)
            log.debug("state saved: %s", ", ".join(f"{Path(t.path).name}:{t.role}" for t in snapshot))
        except OSError as exc:
            self.state_dirty = True
            log.error("cannot save resume state: %s", exc.strerror or exc)
        finally:
            for fd in fds:
                os.close(fd)

    def _restore(self) -> None:
        """Take back what the last run held: seeds keep seeding, downloads resume."""
        self.restoring = True
        loaded = state.load(self.peer_id)
        self.last_token = loaded.token
        for saved in loaded.torrents:
            try:
                meta = parse(saved.metainfo_raw)
                path = Path(saved.path)
                same = unchanged(saved, meta)
                trusted = Bitfield(meta.num_pieces, saved.verified_bits if same else None)
                if saved.role == "seed":
                    piece_file = PieceFile.open_seed(meta, path)
                    have = trusted if same else piece_file.recheck()
                    holding = self._hold(meta, piece_file, have, m.JobState.SEEDING, "seed")
                    if not have.complete:
                        holding.finish(f"{path} changed: {meta.num_pieces - len(have)} pieces no longer match")
                else:
                    holding = self._start_download(meta, path, trusted)
                holding.fetched = saved.fetched
                log.info("%s: resumed %s with %d/%d verified pieces", meta.name, saved.role,
                         len(holding.bitfield), meta.num_pieces)
            except (ZorrentError, OSError, ValueError) as exc:
                self.unrestored.append(saved)
                log.error("cannot resume %s: %s", saved.path, getattr(exc, "message", exc))
        self.restoring = False
        self.state_dirty = True
        self._save_state(wait=True)

    def _flush_announces(self) -> None:
        if self.token is None:
            return
        for info_hash in list(self.forgotten):
            self.forgotten.discard(info_hash)
            self.forgetting.add(info_hash)
            self.tracker.request(m.Forget(peer_id=self.peer_id, token=self.token, info_hash=info_hash),
                                 lambda env, err, ih=info_hash: self._on_forgot(ih, err),
                                 timeout_s=config.REQUEST_TIMEOUT_S, tries=1)
        for h in self.holdings.values():
            if h.announcing or h.state in SUSPENDED or h.meta.info_hash in self.forgetting:
                continue
            if not h.tracker_known:
                h.announcing = True
                self.tracker.request(m.RegisterTorrent(metainfo=h.meta.raw),
                                     lambda env, err, h=h: self._on_torrent_registered(h, err),
                                     timeout_s=config.REQUEST_TIMEOUT_S, tries=1)
            elif h.unannounced or not h.joined:
                batch, h.unannounced = sorted(h.unannounced), set()
                h.announcing = True
                self.tracker.request(
                    m.Announce(peer_id=self.peer_id, token=self.token, info_hash=h.meta.info_hash,
                               pieces=batch),
                    lambda env, err, h=h, b=batch: self._on_announced(h, b, err),
                    timeout_s=config.REQUEST_TIMEOUT_S, tries=1)

    def _on_forgot(self, info_hash: str, err) -> None:
        self.forgetting.discard(info_hash)
        if err is not None and not isinstance(err, RemoteError):
            self.forgotten.add(info_hash)     # no answer: say it again (announces wait for it)
        else:
            self._flush_announces()

    def _on_torrent_registered(self, h: Holding, err) -> None:
        h.announcing = False
        if err is None:
            h.tracker_known = True
            self._flush_announces()
        else:
            log.warning("%s: tracker did not take the torrent: %s", h.meta.name, err.message)

    def _on_announced(self, h: Holding, batch: list[int], err) -> None:
        h.announcing = False
        if err is None:
            h.announced += len(batch)
            h.joined = True
            return
        h.unannounced.update(batch)
        if isinstance(err, RemoteError):
            if err.code in (ErrorCode.UNKNOWN_PEER, ErrorCode.NOT_AUTHORISED):
                self._register()
            elif err.code == ErrorCode.UNKNOWN_TORRENT:
                h.tracker_known = False

    def _tick(self) -> None:
        now = time.monotonic()
        self.tracker.expire(now)
        for h in self.holdings.values():
            if h.job is not None and h.finished is None:
                h.job.tick(now)

    # ------------------------------------------------------------------ holdings
    def add_seed(self, meta: Metainfo, path: Path) -> Holding:
        held = self.holdings.get(meta.info_hash)
        if held is not None:
            if held.state == m.JobState.DOWNLOADING:
                raise ZorrentError(f"{meta.name} is being downloaded here already", ErrorCode.BAD_INPUT)
            held = self.integrity.check(held)
            if held.state not in RESTARTABLE:
                return held             # seeding it already; else its file is checked whole again
        piece_file = PieceFile.open_seed(meta, path)
        have = piece_file.recheck()
        if not have.complete:
            piece_file.close()
            raise ZorrentError(f"{meta.num_pieces - len(have)} of {meta.num_pieces} pieces of {path} "
                               f"do not match the torrent", ErrorCode.BAD_INPUT)
        if held is not None:
            self.holdings.pop(meta.info_hash)
            held.file.close()
        return self._hold(meta, piece_file, have, m.JobState.SEEDING, "seed")

    def add_download(self, meta: Metainfo, path: Path) -> Holding:
        held = self.holdings.get(meta.info_hash)
        if held is not None:
            if held.file.path != path:
                raise ZorrentError(f"{self.peer_id} already holds {meta.name} at {held.file.path}",
                                   ErrorCode.BAD_INPUT)
            held = self.integrity.check(held)   # a file gone or changed is noticed now, not at the next sweep
            if not (held.state in RESTARTABLE and held.role == "download"):
                return held   # re-attach to the running (or finished) job
            del self.holdings[meta.info_hash]   # retry: the verified pieces of a failed job carry over;
            held.file.close()                   # a changed file's are all re-hashed
            trusted = held.bitfield if held.state == m.JobState.FAILED else Bitfield(meta.num_pieces)
            holding = self._start_download(meta, path, trusted)
            holding.fetched = held.fetched
            return holding
        return self._start_download(meta, path, None)

    def _start_download(self, meta: Metainfo, path: Path, trusted: Bitfield | None) -> Holding:
        """Open (or reopen) the output; only pieces whose hash matches on disk, or that the
        resume state vouches for, count as verified."""
        piece_file = PieceFile.open_download(meta, path, resuming=trusted is not None)
        if self.direct_io:
            piece_file.use_direct_io()
        if piece_file.fresh:
            have = Bitfield(meta.num_pieces)
        else:
            have = piece_file.recheck(trusted)
        holding = self._hold(meta, piece_file, have, m.JobState.DOWNLOADING, "download")
        if have.complete:
            holding.finish()
        else:
            holding.job = DownloadJob(self, holding)
            holding.job.refresh()
        return holding

    def remove(self, info_hash: str, delete_data: bool) -> None:
        """Stop seeding or downloading; the tracker is told this peer holds none of it."""
        holding = self.holdings.pop(info_hash, None)
        if holding is None:
            raise ZorrentError(f"torrent {info_hash[:40]} is not held by {self.peer_id}", ErrorCode.UNKNOWN_TORRENT)
        if holding.job is not None and holding.finished is None:
            holding.job.close()
        holding.file.close()
        if delete_data and holding.role == "download":
            holding.file.delete()
        self.state_dirty = True
        self._save_state(wait=True)
        self.forgotten.add(info_hash)
        self._flush_announces()

    def _hold(self, meta: Metainfo, piece_file: PieceFile, have: Bitfield, job_state: m.JobState,
              role: str) -> Holding:
        holding = Holding(meta=meta, file=piece_file, bitfield=have, state=job_state, role=role,
                          resumed=len(have), unannounced=set(have.indexes()))
        self.holdings[meta.info_hash] = holding
        self.state_dirty = True
        self._save_state(wait=True)   # durable before the request that made it is acknowledged
        self._flush_announces()
        return holding


def run(peer_id: str, host: str, port: int, tracker_endpoint: str | list[str], upload_rate_bps: int = 0,
        ready_file: str | None = None, disk_io: str = config.DISK_IO, advertise: str | None = None) -> int:
    setup_logging(f"peer {peer_id}")
    node = PeerNode(peer_id, host, port, tracker_endpoint, upload_rate_bps, disk_io, advertise)
    try:
        endpoint = node.start()
    except Exception:
        node.zctx.destroy(linger=0)
        raise
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: node.stop())
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a file-size limit is a write error, not a kill
    write_ready_file(ready_file, endpoint)
    try:
        node.run()
    finally:
        node.close()
    if node.fatal:
        raise ZorrentError(node.fatal, ErrorCode.PEER_ID_TAKEN)
    log.info("peer %s stopped", peer_id)
    return 0
