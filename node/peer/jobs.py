"""Taking torrents on and off: what ``upload``, ``download`` and ``remove`` do to the
holdings, and re-taking at start what the last run held (seeds keep seeding, downloads
resume). Records change only through node/peer/holdings.py."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from node.peer import state
from node.peer.engine import DownloadJob
from node.peer.holdings import Holding, Holdings
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
            self.holdings.release(meta.info_hash)
        return self.holdings.hold(meta, piece_file, have, m.JobState.SEEDING, "seed")

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
        """Open (or reopen) the output; only pieces whose hash matches on disk, or that the
        resume state vouches for, count as verified."""
        piece_file = PieceFile.open_download(meta, path, resuming=trusted is not None)
        if self.direct_io:
            piece_file.use_direct_io()
        if piece_file.fresh:
            have = Bitfield(meta.num_pieces)
        else:
            have = piece_file.recheck(trusted)
        holding = self.holdings.hold(meta, piece_file, have, m.JobState.DOWNLOADING, "download", fetched)
        if have.complete:
            self.holdings.transition(meta.info_hash, m.JobState.SEEDING, expect=holding)
        else:
            job = DownloadJob(self.host, holding)
            self.holdings.attach(holding, job)
            job.refresh()
        return holding

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
                    have = trusted if same else piece_file.recheck()
                    holding = self.holdings.hold(meta, piece_file, have, m.JobState.SEEDING, "seed", saved.fetched)
                    if not have.complete:
                        self.holdings.transition(
                            meta.info_hash, m.JobState.FAILED, expect=holding,
                            error=f"{path} changed: {meta.num_pieces - len(have)} pieces no longer match")
                else:
                    holding = self._start_download(meta, path, trusted, saved.fetched)
                log.info("%s: resumed %s with %d/%d verified pieces", meta.name, saved.role,
                         len(holding.bitfield), meta.num_pieces)
            except (ZorrentError, OSError, ValueError) as exc:
                unrestored(saved)
                log.error("cannot resume %s: %s", saved.path, getattr(exc, "message", exc))
