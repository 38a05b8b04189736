"""Pushing new pieces to the peers that download from us: leechers learn what a peer
has verified within one batch (WATCH_BATCH_MIN_S with a few watchers, up to
ANNOUNCE_BATCH_S with many), not at their next tracker refresh (PEER_REFRESH_S), so a
piece one leecher got from the seed is relayed at once.

It is a long poll over the data port's request/reply (a WATCH is parked until there is
news), so the asker connects to the address the tracker gave it, as for GET_BLOCK, and
nothing is pushed to an address nobody asked from. Each holding keeps the pieces it
verified in this run, in order (``Holding.have_log``, at most one int per piece); a
WATCH names how many of them the asker has seen.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable

from node import config
from protocol import messages as m
from protocol.codec import decode_id, encode


@dataclass(frozen=True)
class Park:
    """Stands in a data-port reply's payload slot: hold the reply until there is news."""

    info_hash: str
    since: int


def answer(info_hash: str, log: list[int], since: int) -> m.Haves | None:
    """The reply to WATCH(since) now, or None to park it."""
    if since < 0 or since > len(log):      # a first watch, or one from before our restart
        return m.Haves(info_hash=info_hash, seq=len(log), pieces=[])
    if since < len(log):
        return m.Haves(info_hash=info_hash, seq=len(log), pieces=log[since:])
    return None


class Watchers:
    def __init__(self, send: Callable[[bytes, list[Any]], None], logs: Callable[[str], list[int] | None]) -> None:
        self.send, self.logs = send, logs                 # logs(info_hash): that holding's have_log
        self.parked: dict[str, list[tuple[bytes, int, int, float]]] = defaultdict(list)
        self.span: dict[str, tuple[int, int]] = {}        # per torrent: the lowest and highest ``since`` parked
        self.last_flush = 0.0

    def next_deadline(self) -> float | None:
        """When ``flush`` must run: the next announce batch if a parked WATCH has news (or its
        torrent is gone), else the first parked WATCH's timeout; None with nothing parked."""
        due = None
        for info_hash, waiting in self.parked.items():
            log = self.logs(info_hash)
            low, high = self.span[info_hash]
            if log is None or not low == high == len(log):    # answer() has a reply for one of them
                return self.last_flush + self.batch_s()
            first = waiting[0][3]                          # parked in order: the first times out first
            due = first if due is None else min(due, first)
        return due

    def batch_s(self) -> float:
        """How long news waits for the next flush: longer with more watchers to answer."""
        parked = sum(len(waiting) for waiting in self.parked.values())
        return min(config.ANNOUNCE_BATCH_S, max(config.WATCH_BATCH_MIN_S, parked * config.WATCH_BATCH_PER_WATCHER_S))

    def park(self, ident: bytes, frames: list[Any], park: Park, now: float) -> None:
        waiting = self.parked[park.info_hash]
        msg_id = decode_id(frames)
        if len(waiting) >= config.WATCH_PARKED_MAX:      # no unbounded state for strangers
            self.send(ident, encode(m.Haves(info_hash=park.info_hash, seq=park.since, pieces=[]), msg_id))
            return
        waiting.append((ident, msg_id, park.since, now + config.WATCH_S))
        low, high = self.span.get(park.info_hash, (park.since, park.since))
        self.span[park.info_hash] = (min(low, park.since), max(high, park.since))

    def flush(self, now: float) -> None:
        """Answer every parked WATCH that has news, has timed out, or whose torrent is gone."""
        self.last_flush = now
        for info_hash in list(self.parked):
            log = self.logs(info_hash)
            keep = []
            for ident, msg_id, since, deadline in self.parked[info_hash]:
                reply = m.Haves(info_hash=info_hash, seq=since, pieces=[]) if log is None else answer(info_hash, log, since)
                if reply is None and now >= deadline:
                    reply = m.Haves(info_hash=info_hash, seq=since, pieces=[])
                if reply is None:
                    keep.append((ident, msg_id, since, deadline))
                else:
                    self.send(ident, encode(reply, msg_id))
            if keep:
                self.parked[info_hash] = keep
                sinces = [since for _, _, since, _ in keep]
                self.span[info_hash] = (min(sinces), max(sinces))
            else:
                del self.parked[info_hash]
                self.span.pop(info_hash, None)
