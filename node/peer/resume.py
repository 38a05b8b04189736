"""The peer's resume store: output/state/PEER.json (format and atomic write in state.py).

It owns the "something to save" flag and the thread that saves: a snapshot of every
holding, then fdatasync of the files it covers, then the state file. The holdings (and
the tracker session, for its token) call ``changed()``; a timer calls ``save()``.
Records of the last run that could not be restored are kept verbatim: a job record is
never dropped because its file was unreadable once.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

from node.peer import state
from node.peer.holdings import Holding

log = logging.getLogger("zorrent.peer")


class ResumeStore:
    def __init__(self, peer_id: str, records: Callable[[], Iterable[Holding]], token: Callable[[], str]) -> None:
        self.peer_id = peer_id
        self.records, self.token = records, token     # what to save: the holdings, the session token
        self.dirty = False
        self.restoring = False
        self.unrestored: list[state.TorrentState] = []
        self.saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state")
        self.saving: Future | None = None

    def load(self) -> state.PeerState:
        """What the last run held; until ``restored()``, nothing is saved (a half-restored
        state must not overwrite the full one)."""
        self.restoring = True
        return state.load(self.peer_id)

    def keep_unrestored(self, saved: state.TorrentState) -> None:
        self.unrestored.append(saved)

    def restored(self) -> None:
        self.restoring = False
        self.dirty = True
        self.save(wait=True)

    def changed(self) -> None:
        self.dirty = True

    def save(self, wait: bool = False) -> None:
        """Snapshot the state, fdatasync the files it covers, then write it.

        The periodic save runs the fsyncs in a background thread (fdatasync releases the
        GIL), so a long flush never stalls serving or downloading. ``wait=True`` saves
        before returning: a request is acknowledged only once its job is durable.
        """
        if not self.dirty or self.restoring:
            return
        if self.saving is not None and not self.saving.done():
            if not wait:
                return                     # still flushing the last one; try again next tick
            self.saving.result()
        self.dirty = False
        snapshot = list(self.unrestored)
        fds = []
        for h in self.records():
            try:
                snapshot.append(h.saved())
                if h.file.writable:
                    fds.extend(h.file.dup_fds())
            except OSError as exc:
                log.error("%s: cannot stat %s: %s", h.meta.name, h.file.path, exc.strerror or exc)
        if wait:
            self._write(snapshot, fds, self.token())
        else:
            self.saving = self.saver.submit(self._write, snapshot, fds, self.token())

    def _write(self, snapshot: list, fds: list[int], token: str) -> None:
        try:
            for fd in fds:
                os.fdatasync(fd)           # pieces first: the state never claims unsynced data
            state.save(self.peer_id, token, snapshot)
            log.debug("state saved: %s", ", ".join(f"{Path(t.path).name}:{t.role}" for t in snapshot))
        except OSError as exc:
            self.dirty = True
            log.error("cannot save resume state: %s", exc.strerror or exc)
        finally:
            for fd in fds:
                os.close(fd)

    def close(self) -> None:
        """At shutdown: save now, whatever changed, and stop the saver thread."""
        self.dirty = True
        self.save(wait=True)
        self.saver.shutdown()
