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
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

from node import config
from node.peer import state
from node.peer.holdings import Holding

log = logging.getLogger("zorrent.peer")


class ResumeStore:
    def __init__(self, peer_id: str, records: Callable[[], Iterable[Holding]], token: Callable[[], str]) -> None:
        self.peer_id = peer_id
        self.records, self.token = records, token     # what to save: the holdings, the session token
        self.dirty = False
        self.dirty_since = 0.0         # changes within STATE_SAVE_S of the first are saved together
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
        if not self.dirty:
            self.dirty, self.dirty_since = True, time.monotonic()

    def next_deadline(self) -> float | None:
        """When the periodic save is due (for the reactor): None while nothing changed."""
        self._reap()
        return self.dirty_since + config.STATE_SAVE_S if self.dirty and not self.restoring else None

    def _reap(self) -> None:
        """On the event loop: take in a background save's outcome. One that failed leaves
        the state to save again in STATE_SAVE_S; the saver thread itself sets no flag."""
        if self.saving is not None and self.saving.done():
            done, self.saving = self.saving, None
            if done.exception() is not None:
                log.error("cannot save resume state: %r", done.exception())
            if done.exception() is not None or not done.result():
                self._failed()

    def _failed(self) -> None:
        self.dirty_since, self.dirty = time.monotonic(), True     # tried again in STATE_SAVE_S

    def save(self, wait: bool = False) -> None:
        """Snapshot the state, fdatasync the files it covers, then write it.

        The periodic save runs the fsyncs in a background thread (fdatasync releases the
        GIL), so a long flush never stalls serving or downloading. ``wait=True`` saves
        before returning: a request is acknowledged only once its job is durable.
        """
        self._reap()
        if not self.dirty or self.restoring:
            return
        if self.saving is not None and not self.saving.done():
            if not wait:
                self.dirty_since = time.monotonic()
                return                     # still flushing the last one; try again in STATE_SAVE_S
            self.saving.result()           # the last one done, then its outcome taken in
            self._reap()
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
            if not self._write(snapshot, fds, self.token()):
                self._failed()
        else:
            self.saving = self.saver.submit(self._write, snapshot, fds, self.token())

    def _write(self, snapshot: list, fds: list[int], token: str) -> bool:
        """On the saver thread (or the loop's, waited for): True once saved. Touches no flag."""
        try:
            for fd in fds:
                os.fdatasync(fd)           # pieces first: the state never claims unsynced data
            state.save(self.peer_id, token, snapshot)
            log.debug("state saved: %s", ", ".join(f"{Path(t.path).name}:{t.role}" for t in snapshot))
            return True
        except OSError as exc:
            log.error("cannot save resume state: %s", exc.strerror or exc)
            return False
        finally:
            for fd in fds:
                os.close(fd)

    def close(self) -> None:
        """At shutdown: save now, whatever changed, and stop the saver thread."""
        self.dirty = True
        self.save(wait=True)
        self.saver.shutdown()
