"""Taking torrents on and off: what ``upload``, ``download`` and ``remove`` do to the
holdings, and re-taking at start what the last run held (seeds keep seeding, downloads
resume). Records change only through node/peer/holdings.py.

Every hash of a whole file (an upload, a download or seed resumed from a file the state
does not vouch for) runs on a check thread (node/peer/disk.py), never the event loop: the
request is answered at once, the holding shows ``hashing`` with its progress in ``status``,
and the peer keeps serving, heartbeating and answering meanwhile. A torrent is announced
only once its hash has ended.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from node.peer import state
from node.peer.engine import DownloadJob
from node.peer.peerlist import FirstPeers
from node.peer.holdings import HashProgress, Holding, Holdings
from node.peer.integrity import RESTARTABLE, IntegrityWatch, unchanged
from node.peer.remote import Host
from node.peer.storage import PieceFile
from protocol import messages as m
from protocol.errors import ErrorCode, ZorrentError
from protocol.metainfo import Metainfo, parse
from protocol.pieces import Bitfield

log = logging.getLogger("zorrent.peer")


class Jobs:
    def __init__(self, host: Host, holdings: Holdings, integrity: IntegrityWatch, direct_io: bool) -> None:
        self.host, self.holdings, self.integrity, self.direct_io = host, holdings, integrity, direct_io
        self.closing = False

    def close(self) -> None:
        self.closing = True            # a hash under way stops at its next piece

    def _hash(self, h: Holding, trusted: Bitfield | None, then: Callable[[Holding, Bitfield], None]) -> None:
        """Hash ``h``'s file on a check thread; back on the event loop, ``then(h, verified)``
        (or FAILED if it could not be read)."""
        piece_file, progress = h.file, h.hashing

        def work() -> Bitfield:
            try:
                return piece_file.recheck(trusted, progress.add, lambda: self.closing)
            finally:
                piece_file.release()   # a remove meanwhile closes its fds only now

        def done(have: Bitfield | None, err: BaseException | None) -> None:
            if not self.holdings.current(h) or h.state != m.JobState.HASHING:
                return                 # removed meanwhile (its file is closed)
            if err is not None:
                why = err.message if isinstance(err, ZorrentError) else f"cannot hash {h.file.path}: {err}"
                self.holdings.transition(h.meta.info_hash, m.JobState.FAILED, error=why, expect=h)
                return
            then(h, have)

        piece_file.hold()              # its fds stay open while the check thread reads them
        self.host.disk.check(work, done)

    def _hashing(self, meta: Metainfo, piece_file: PieceFile, trusted: Bitfield | None, role: str,
                 fetched: int, then: Callable[[Holding, Bitfield], None]) -> Holding:
        have = trusted if trusted is not None else Bitfield(meta.num_pieces)
        h = self.holdings.hold(meta, piece_file, have, m.JobState.HASHING, role, fetched,
                               hashing=HashProgress(piece_file.bytes_to_hash(trusted)))
        self._hash(h, trusted, then)
        return h

    def add_seed(self, meta: Metainfo, path: Path) -> Holding:
        """Hash the file (all of it, on a check thread); it seeds once every piece verifies."""
        held = self.holdings.get(meta.info_hash)
        if held is not None:
            if held.role == "download" and held.state in (m.JobState.DOWNLOADING, m.JobState.HASHING):
                raise ZorrentError(f"{meta.name} is being downloaded here already", ErrorCode.BAD_INPUT)
            held = self.integrity.check(held)
            if held.state not in RESTARTABLE:
                return held             # seeding or hashing it already; else its file is checked whole again
        piece_file = PieceFile.open_seed(meta, path)
        if held is not None:
            self.holdings.release(meta.info_hash)
        return self._hashing(meta, piece_file, None, "seed", 0, self._uploaded)

    def _uploaded(self, h: Holding, have: Bitfield) -> None:
        meta = h.meta
        if have.complete:
            self.holdings.transition(meta.info_hash, m.JobState.SEEDING, bitfield=have, expect=h)
        else:                          # nothing of it is served or announced (transition)
            self.holdings.transition(
                meta.info_hash, m.JobState.FAILED, expect=h,
                error=f"{meta.num_pieces - len(have)} of {meta.num_pieces} pieces of {h.file.path} "
                      f"do not match the torrent")

    def add_download(self, meta: Metainfo, path: Path) -> Holding:
        held = self.holdings.get(meta.info_hash)
        if held is not None:
            if held.file.path != path:
                raise ZorrentError(f"{self.host.peer_id} already holds {meta.name} at {held.file.path}",
                                   ErrorCode.BAD_INPUT)
            held = self.integrity.check(held)   # a file gone or changed is noticed now, not at the next sweep
            if not (held.state in RESTARTABLE and held.role == "download"):
                return held   # re-attach to the running (or finished) job
            self.holdings.release(meta.info_hash)   # retry: the verified pieces of a failed job carry over;
            # a changed file's are all re-hashed
            trusted = held.bitfield if held.state == m.JobState.FAILED else Bitfield(meta.num_pieces)
            return self._start_download(meta, path, trusted, held.fetched)
        return self._start_download(meta, path, None)

    def _start_download(self, meta: Metainfo, path: Path, trusted: Bitfield | None, fetched: int = 0) -> Holding:
        """Open (or reopen) the output; only pieces whose hash matches on disk (hashed on a
        check thread first), or that the resume state vouches for, count as verified."""
        piece_file = PieceFile.open_download(meta, path, resuming=trusted is not None)
        if self.direct_io:
            piece_file.use_direct_io()
        if not piece_file.fresh and piece_file.bytes_to_hash(trusted):
            return self._hashing(meta, piece_file, trusted, "download", fetched, self._downloading)
        have = trusted if trusted is not None and not piece_file.fresh else Bitfield(meta.num_pieces)
        first = None if have.complete else FirstPeers(self.host, meta)   # ahead of the torrent's registration
        holding = self.holdings.hold(meta, piece_file, have, m.JobState.DOWNLOADING, "download", fetched)
        self._run(holding, first)
        return holding

    def _downloading(self, h: Holding, have: Bitfield) -> None:
        if self.holdings.transition(h.meta.info_hash, m.JobState.DOWNLOADING, bitfield=have, expect=h):
            self._run(h)

    def _run(self, holding: Holding, first: FirstPeers | None = None) -> None:
        if holding.bitfield.complete:
            self.holdings.transition(holding.meta.info_hash, m.JobState.SEEDING, expect=holding)
        else:
            job = DownloadJob(self.host, holding, first)
            self.holdings.attach(holding, job)
            if first is None:
                job.refresh()

    def remove(self, info_hash: str, delete_data: bool) -> None:
        """Stop seeding or downloading; the tracker is told this peer holds none of it."""
        if self.holdings.drop(info_hash, delete_data) is None:
            raise ZorrentError(f"torrent {info_hash[:40]} is not held by {self.host.peer_id}",
                               ErrorCode.UNKNOWN_TORRENT)

    def restore(self, torrents: list[state.TorrentState], unrestored: Callable[[state.TorrentState], None]) -> None:
        """Take back what the last run held; a record that cannot be taken back goes to ``unrestored``."""
        for saved in torrents:
            try:
                meta = parse(saved.metainfo_raw)
                path = Path(saved.path)
                same = unchanged(saved, meta)
                trusted = Bitfield(meta.num_pieces, saved.verified_bits if same else None)
                if saved.role == "seed":
                    piece_file = PieceFile.open_seed(meta, path)
                    if same:
                        holding = self.holdings.hold(meta, piece_file, trusted, m.JobState.SEEDING, "seed",
                                                     saved.fetched)
                        self._resumed_seed(holding, trusted)
                    else:
                        holding = self._hashing(meta, piece_file, None, "seed", saved.fetched, self._resumed_seed)
                else:
                    holding = self._start_download(meta, path, trusted, saved.fetched)
                log.info("%s: resumed %s with %d/%d verified pieces", meta.name, saved.role,
                         len(holding.bitfield), meta.num_pieces)
            except (ZorrentError, OSError, ValueError) as exc:
                unrestored(saved)
                log.error("cannot resume %s: %s", saved.path, getattr(exc, "message", exc))

    def _resumed_seed(self, h: Holding, have: Bitfield) -> None:
        """A seed of the last run, its file hashed again if it changed since: it keeps seeding
        what verifies (all of it, or it failed)."""
        meta = h.meta
        if h.state == m.JobState.HASHING and have.complete:
            self.holdings.transition(meta.info_hash, m.JobState.SEEDING, bitfield=have, expect=h)
        elif not have.complete:        # from HASHING: it serves and announces nothing (transition)
            self.holdings.transition(
                meta.info_hash, m.JobState.FAILED, expect=h,
                error=f"{h.file.path} changed: {meta.num_pieces - len(have)} pieces no longer match")
