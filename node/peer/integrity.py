"""Held files that change on disk: noticed, never served, re-hashed, announced again.

A peer vouches for a piece only while the file it hashed is still there, unchanged. What
says so is cheap, per file of the torrent: the path still names the open inode, a regular
file, and (once complete, "sealed") its size, mtime and ctime are as our last write left
them; before that, it still holds its verified pieces (storage.PieceFile.change).

- Noticed: every sweep (FILE_CHECK_BATCH files of a torrent at a time; twice per heartbeat
  interval, at least every FILE_CHECK_S: config.file_check_s), before and after each block
  is read for the data port, and on any read error.
- Then at once: its download stops, nothing of it is served (get_block refuses a suspended
  holding), nothing announced, and the tracker is told to forget its pieces (FORGET).
- Re-hashed on a check thread (never the event loop): whatever is at the path now, if it is
  a regular file. Only the pieces that still verify are served and announced again.
- Shown in ``status``: ``checking`` during the re-hash, then ``seeding`` (the content was
  intact: a touch), ``changed`` (some pieces no longer verify) or ``missing`` (gone, or not a
  regular file; in a folder, any one file). ``download`` (or ``upload``) again on the same
  torrent fetches (or checks) it anew.

A file that keeps changing while it is re-hashed is given up on after RECHECK_TRIES (missing).
Out of reach: bytes changed in place without moving mtime or ctime (through mmap, by a
clock step, or within the same file-time tick as the peer's own last write).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from node import config
from node.peer import state
from node.peer.layout import Layout
from node.peer.storage import FileChanged, PieceFile, StorageError
from protocol import messages as m
from protocol.errors import ZorrentError
from protocol.metainfo import Metainfo
from protocol.pieces import Bitfield

if TYPE_CHECKING:
    from node.peer.disk import DiskWorker
    from node.peer.holdings import HashProgress, Holding, Holdings
    from node.reactor import Reactor

log = logging.getLogger("zorrent.integrity")

SUSPENDED = frozenset({m.JobState.CHECKING, m.JobState.MISSING, m.JobState.HASHING})   # serve and announce nothing
RESTARTABLE = frozenset({m.JobState.FAILED, m.JobState.CHECKING, m.JobState.MISSING, m.JobState.CHANGED})


def extent(meta: Metainfo, have: Bitfield) -> int:
    """Bytes the file must have for its verified pieces: the end of the last one."""
    bits = have.to_bytes().rstrip(b"\0")
    if not bits:
        return 0
    last = (len(bits) - 1) * 8 + 8 - (bits[-1] & -bits[-1]).bit_length()
    return min(meta.length, (last + 1) * meta.piece_length)


def unchanged(saved: state.TorrentState, meta: Metainfo) -> bool:
    """May the resume state's verified pieces be trusted? A complete file (or a seed) must
    have the size, mtime and inode saved; a download in progress (written after the last
    save) only the inode, and room for its verified pieces."""
    size, mtime_ns, ino = Layout(meta, Path(saved.path)).stamp()
    trusted = Bitfield(meta.num_pieces, saved.verified_bits)
    if saved.role == "seed" or trusted.complete:
        return (size, mtime_ns, ino) == (saved.size, saved.mtime_ns, saved.ino)
    return ino == saved.ino and (meta.multi_file or size >= extent(meta, trusted))  # a folder's: on the first sweep


class IntegrityWatch:
    """The peer's watch over the files it holds (one per peer); it changes a holding only
    through ``Holdings.transition``."""

    def __init__(self, reactor: "Reactor", disk: "DiskWorker", holdings: "Holdings",
                 period_s: Callable[[], float] = lambda: config.FILE_CHECK_S) -> None:
        self.disk, self.holdings = disk, holdings
        self.closing = False
        self.reactor, self.period_s = reactor, period_s    # the sweep's period, asked anew each time
        reactor.call_later(period_s(), self._tick)

    def _tick(self) -> None:
        self.reactor.call_later(self.period_s(), self._tick)
        self.sweep()

    def close(self) -> None:
        self.closing = True            # a re-hash under way stops at its next piece

    def sweep(self) -> None:
        """Each held torrent, FILE_CHECK_BATCH of its files at a time (a folder of thousands
        of files is covered over several sweeps, not in one long pause of the event loop)."""
        for holding in self.holdings.values():
            self.check(holding, holding.file.next_sweep(config.FILE_CHECK_BATCH))

    def check(self, h: "Holding", files: list[int] | None = None) -> "Holding":
        """Notice a change now (in ``files``, default all); the holding's record as it is
        then (``checking`` if it changed)."""
        if h.state in SUSPENDED:
            return h
        f = h.file
        if h.state == m.JobState.SEEDING and not f.sealed and f.holds == 0:
            f.seal()                   # a finished download: its last write has landed
        why = f.change(files, lambda i: f.needed(i, h.bitfield))
        return self.noticed(h, why) if why else h

    def read_failed(self, piece_file: PieceFile, err: BaseException) -> None:
        """A block could not be served from ``piece_file``: find out whether it changed."""
        h = self.holdings.get(piece_file.meta.info_hash)
        if h is None or h.file is not piece_file or h.state in SUSPENDED:
            return
        if isinstance(err, FileChanged):
            self.noticed(h, err.message)
        else:
            self.check(h)

    def noticed(self, old: "Holding", why: str) -> "Holding":
        log.warning("%s: %s; serving and announcing none of it until it is re-hashed", old.meta.name, why)
        if old.job is not None and old.finished is None:
            old.job.close()
        # a new record, no pieces verified; the tracker drops every piece it listed for us
        h = self.holdings.transition(old.meta.info_hash, m.JobState.CHECKING, error=why, expect=old)
        path, meta, follow, progress = h.file.path, h.meta, h.file.follow, h.hashing
        self.disk.check(lambda: self._rehash(meta, path, follow, progress),
                        lambda result, err: self._rehashed(h, why, result, err))
        return h

    def _rehash(self, meta: Metainfo, path, follow: bool, progress: "HashProgress") -> tuple[PieceFile, Bitfield]:
        """On a check thread: what is at ``path`` now, and which of its pieces verify (a
        complete file's on several threads, storage.PieceFile.recheck)."""
        for _ in range(config.RECHECK_TRIES):
            piece_file = PieceFile.reopen(meta, path, follow)
            try:
                progress.restart()
                have = piece_file.recheck(None, progress.add, lambda: self.closing)
                if not piece_file.change():
                    return piece_file, have
            except OSError as exc:
                piece_file.close()
                raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None
            except BaseException:
                piece_file.close()
                raise
            piece_file.close()
        raise StorageError(f"{path} kept changing while it was re-hashed")

    def _rehashed(self, h: "Holding", why: str, result, err: BaseException | None) -> None:
        """Back on the event loop: serve and announce only what verified."""
        if not self.holdings.current(h) or h.state != m.JobState.CHECKING:
            if result is not None:
                result[0].close()      # removed, or downloaded anew, meanwhile
            return
        if err is not None:
            error = err.message if isinstance(err, ZorrentError) else f"cannot re-hash {h.file.path}: {err}"
            self.holdings.transition(h.meta.info_hash, m.JobState.MISSING, error=error,
                                     bitfield=Bitfield(h.meta.num_pieces), expect=h)
            h.file.close()             # a deleted file's space is freed once nothing holds it open
            log.warning("%s: %s", h.meta.name, h.error)
        else:
            old_file, (piece_file, bitfield) = h.file, result
            n, have = h.meta.num_pieces, len(bitfield)
            if bitfield.complete:
                new_state, error = m.JobState.SEEDING, ""
            else:
                again = "download" if h.role == "download" else "upload the original file"
                new_state = m.JobState.CHANGED
                error = f"{why}: {n - have} of {n} pieces no longer verify ({again} again to restore it)"
            self.holdings.transition(h.meta.info_hash, new_state, error=error, file=piece_file,
                                     bitfield=bitfield, expect=h)   # announced again, watchers told
            old_file.close()
            log.warning("%s: re-hashed after a change: %d of %d pieces verify", h.meta.name, have, n)
