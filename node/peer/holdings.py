"""The torrents this peer holds: one ``Holding`` record each, and the only code that changes one.

A record's job state moves through ``Holdings.transition`` alone; a downloaded piece lands
through ``Holdings.piece_verified``; records come and go through ``hold``, ``release`` and
``drop``. Each of them tells the two parts that follow the holdings:

- the resume store (``Persist``): something to save, durably before returning for ``hold`` and ``drop``;
- the tracker session (``Listener``): pieces to announce, a torrent to forget or to announce again.

Everyone else reads records and never writes their fields.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

from node import config
from node.peer import state
from node.peer.seeding import SendOnce
from node.peer.storage import PieceFile
from node.process import trim_heap
from protocol import messages as m
from protocol.metainfo import Metainfo
from protocol.pieces import Bitfield

log = logging.getLogger("zorrent.peer")


class HashProgress:
    """How far a hash on a worker thread has got (that thread's ``add`` is its only writer)."""

    def __init__(self, total_bytes: int) -> None:
        self.total_bytes, self.done_bytes = total_bytes, 0

    def add(self, n: int) -> None:
        self.done_bytes += n

    def restart(self) -> None:
        self.done_bytes = 0


@dataclass(eq=False)
class Holding:
    """A torrent this peer holds: its file, its verified pieces and its job (read-only outside this module)."""

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
    job: Any = None                    # its DownloadJob (node/peer/engine.py) while downloading
    outcome: "Outcome | None" = None   # a finished job's figures, kept when the job is let go
    send_once: SendOnce | None = None  # an origin seed's record of who was sent which piece
    have_log: list = field(default_factory=list)   # pieces verified in this run, in order (node/peer/watch.py)
    hashing: HashProgress | None = None  # while HASHING or CHECKING: the hash under way
    trusted: Bitfield | None = None    # while HASHING: what the resume state vouched for (saved as is)

    @property
    def info_hash(self) -> str:
        return self.meta.info_hash

    def sender(self) -> SendOnce:
        """An origin seed's send-once record (made on first use)."""
        if self.send_once is None:
            self.send_once = SendOnce(self.meta.num_pieces)
        return self.send_once

    def saved(self) -> state.TorrentState:
        size, mtime_ns, ino = self.file.stamp()
        if self.state == m.JobState.HASHING:
            if self.role == "seed":
                size = -1              # not vouched for yet: a restart hashes it again, whole
            bits = self.trusted or Bitfield(self.meta.num_pieces)
            return state.TorrentState(
                info_hash=self.meta.info_hash, metainfo=state.b64(self.meta.raw), path=str(self.file.path),
                role=self.role, verified=state.b64(bits.to_bytes()), size=size, mtime_ns=mtime_ns,
                fetched=self.fetched, ino=ino)
        return state.TorrentState(
            info_hash=self.meta.info_hash, metainfo=state.b64(self.meta.raw), path=str(self.file.path),
            role=self.role, verified=state.b64(self.bitfield.to_bytes()), size=size, mtime_ns=mtime_ns,
            fetched=self.fetched, ino=ino)

    def status(self, announced: int, alone: bool = False) -> m.JobStatus:
        """Its status now. A finished download's per-peer figures (Download Statistics) are
        in it for FINISHED_PEERS_SHOWN_S after the end; after that its totals only, so what a
        status costs does not grow with the downloads a peer has done. A status of this
        torrent ``alone`` (the download command re-attached later) always carries them."""
        job, done = self.job, self.outcome
        if job is not None:
            done = Outcome.of(job)
        elif done is not None and not alone and time.monotonic() - (self.finished or 0.0) > config.FINISHED_PEERS_SHOWN_S:
            done = dataclasses.replace(done, peers=[])
        done = done or Outcome()
        have = len(self.bitfield)
        return m.JobStatus(
            info_hash=self.meta.info_hash, name=self.meta.name, path=str(self.file.path),
            state=self.state.value, num_pieces=self.meta.num_pieces, have=have,
            announced=announced, resumed=self.resumed, fetched=self.fetched,
            length=self.meta.length,
            bytes_done=min(self.meta.length, have * self.meta.piece_length),
            failed_attempts=done.failed_attempts, ignored=done.ignored,
            elapsed_s=round((self.finished or time.monotonic()) - self.started, 3),
            error=self.error, peers=done.peers, warning=done.warning,
            **self._hash_status())

    def _hash_status(self) -> dict:
        if self.hashing is None or self.state not in (m.JobState.HASHING, m.JobState.CHECKING):
            return {}
        return {"hashed_bytes": self.hashing.done_bytes, "hash_bytes": self.hashing.total_bytes}


@dataclass(frozen=True)
class Outcome:
    """What status shows of a download job once it has ended: its figures as they were then
    (the job itself, its remotes, their bitfields and channels, is let go)."""

    failed_attempts: int = 0
    ignored: int = 0
    warning: str = ""
    peers: list = field(default_factory=list)     # [m.PeerStat], final

    @classmethod
    def of(cls, job) -> "Outcome":
        """A job's figures as they are now."""
        return cls(job.failed_attempts, job.ignored, job.warning, job.peer_stats())


class Persist(Protocol):
    """The resume store, as the holdings see it (node/peer/resume.py)."""

    def changed(self) -> None: ...

    def save(self, wait: bool = False) -> None: ...


class Listener(Protocol):
    """The tracker session, as the holdings see it (node/peer/session.py)."""

    def held(self, h: Holding) -> None: ...               # a new record: announce its verified pieces
    def verified(self, info_hash: str, piece: int) -> None: ...   # one more piece (next batch)
    def withdrawn(self, info_hash: str) -> None: ...      # suspended: the tracker forgets its pieces
    def reverified(self, h: Holding) -> None: ...         # re-hashed: announce what verifies again
    def dropped(self, info_hash: str) -> None: ...        # removed


class _Nobody:
    def changed(self) -> None: ...
    def save(self, wait: bool = False) -> None: ...
    def held(self, h: Holding) -> None: ...
    def verified(self, info_hash: str, piece: int) -> None: ...
    def withdrawn(self, info_hash: str) -> None: ...
    def reverified(self, h: Holding) -> None: ...
    def dropped(self, info_hash: str) -> None: ...


class Holdings:
    def __init__(self) -> None:
        self._held: dict[str, Holding] = {}
        self.persist: Persist = _Nobody()
        self.listener: Listener = _Nobody()

    def connect(self, persist: Persist, listener: Listener) -> None:
        self.persist, self.listener = persist, listener

    # ------------------------------------------------------------------ reading
    def get(self, info_hash: str) -> Holding | None:
        return self._held.get(info_hash)

    def __contains__(self, info_hash: object) -> bool:
        return info_hash in self._held

    def __iter__(self) -> Iterator[Holding]:
        return iter(list(self._held.values()))

    def values(self) -> list[Holding]:
        return list(self._held.values())

    def __len__(self) -> int:
        return len(self._held)

    def downloading(self) -> bool:
        """Is any job running (they need the node's tick)?"""
        return any(h.job is not None and h.finished is None for h in self._held.values())

    def current(self, h: Holding) -> bool:
        return self._held.get(h.meta.info_hash) is h

    # ------------------------------------------------------------------ records
    def hold(self, meta: Metainfo, piece_file: PieceFile, have: Bitfield, job_state: m.JobState,
             role: str, fetched: int = 0, hashing: HashProgress | None = None) -> Holding:
        """A new record (replacing none: ``release`` the old one first); durable before returning,
        so the request that made it is acknowledged only once it would survive a crash. A
        HASHING record (``hashing`` given) holds what the resume state vouched for, if anything,
        as ``have``, until its hash ends (``transition``)."""
        h = Holding(meta=meta, file=piece_file, bitfield=have, state=job_state, role=role,
                    resumed=len(have), fetched=fetched, hashing=hashing,
                    trusted=have if job_state == m.JobState.HASHING else None)
        self._held[meta.info_hash] = h
        self.persist.changed()
        self.persist.save(wait=True)
        self.listener.held(h)
        return h

    def attach(self, h: Holding, job: Any) -> None:
        """The download job that fills ``h`` in."""
        h.job = job

    def release(self, info_hash: str) -> Holding | None:
        """Take a record out to be replaced at once by ``hold`` (its file is closed)."""
        h = self._held.pop(info_hash, None)
        if h is not None:
            h.file.close()
        return h

    def drop(self, info_hash: str, delete_data: bool = False) -> Holding | None:
        """Removed: its job stopped, its file closed (a download's deleted if asked), the
        resume state saved without it, and the tracker told to forget it."""
        h = self._held.pop(info_hash, None)
        if h is None:
            return None
        if h.job is not None and h.finished is None:
            h.job.close()
        h.file.close()
        if delete_data and h.role == "download":
            h.file.delete()
        self.persist.changed()
        self.persist.save(wait=True)
        self.listener.dropped(info_hash)
        return h

    # ------------------------------------------------------------------ changes
    def transition(self, info_hash: str, new_state: m.JobState, *, error: str = "",
                   file: PieceFile | None = None, bitfield: Bitfield | None = None,
                   expect: Holding | None = None) -> Holding | None:
        """Move a holding's job to ``new_state``; the record as it is then, or None if there is
        none, or ``expect`` is given and is no longer the current record (nothing changes then).

        - to CHECKING (a change was noticed on disk): a new record replaces the old one, with no
          verified pieces and a fresh have_log (a piece the stopped job's disk threads still
          finish lands in the old record); the tracker is told to forget its pieces.
        - from CHECKING (re-hashed): ``file`` and ``bitfield`` are what is on disk now and
          which of its pieces verify; those are announced again.
        - from HASHING (an upload or a resumed file hashed): to SEEDING or DOWNLOADING with the
          ``bitfield`` that verified, whose pieces are then announced; or to FAILED, which
          serves and announces nothing (the tracker is told to forget its pieces).
        - otherwise (a job completed, failed or stopped; a resumed seed that changed): it is
          finished, with ``error`` if any.
        """
        h = self._held.get(info_hash)
        if h is None or (expect is not None and h is not expect):
            return None
        if new_state == m.JobState.CHECKING:
            h = self._held[info_hash] = dataclasses.replace(
                h, job=None, outcome=None, state=m.JobState.CHECKING, error=error, finished=None,
                bitfield=Bitfield(h.meta.num_pieces), have_log=[], hashing=HashProgress(h.meta.length))
            self.persist.changed()
            self.listener.withdrawn(info_hash)
            return h
        was = h.state
        if was == m.JobState.HASHING:
            h.state, h.error, h.trusted = new_state, error, None
            h.resumed = len(bitfield) if bitfield is not None else len(h.bitfield)
            if bitfield is not None:
                h.bitfield = bitfield
            self.persist.changed()
            if new_state == m.JobState.FAILED:
                # The one rule for a hash that failed (an upload that does not match, a resumed
                # seed that changed, a read error): the file is not what the torrent says, so
                # nothing of it is served or announced, and the tracker forgets what it listed.
                # Re-adding it hashes it whole again.
                h.bitfield = Bitfield(h.meta.num_pieces)
                h.finished = time.monotonic()
                log.error("%s: %s", h.meta.name, error)
                self.listener.withdrawn(info_hash)
                return h
            self.listener.reverified(h)
            return h
        h.finished = time.monotonic()
        h.state, h.error = new_state, error
        if h.job is not None:          # its job has ended: keep its figures, let it go
            job, h.job = h.job, None
            h.outcome = Outcome.of(job)
            trim_heap()
        if file is not None:
            h.file = file
        if bitfield is not None:
            h.bitfield = bitfield
        if was == m.JobState.CHECKING:
            h.have_log.extend(sorted(h.bitfield.indexes()))   # watchers learn what verifies again
            self.persist.changed()
            self.listener.reverified(h)
            return h
        if error:
            log.error("%s: %s", h.meta.name, error)
        else:
            log.info("%s: complete", h.meta.name)
        self.persist.changed()
        return h

    def piece_verified(self, h: Holding, piece: int) -> bool:
        """A downloaded piece was verified and written into ``h``: it counts, watchers learn
        of it, it is announced in the next batch. False (nothing changes) if ``h`` is no
        longer the current record or already had the piece."""
        if not self.current(h) or not h.bitfield.add(piece):
            return False
        h.fetched += 1
        h.have_log.append(piece)
        self.listener.verified(h.meta.info_hash, piece)
        self.persist.changed()
        return True
