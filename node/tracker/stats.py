"""The tracker's own running totals: requests, announces and request latency.

Handlers and the request loop count into it; GET_SWARM hands a copy out, and the web
view exports it to Prometheus. Totals start at 0 with each tracker process.
"""
from __future__ import annotations

import bisect
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from node import config
from node.dispatch import Dispatcher
from protocol import messages as m

log = logging.getLogger("zorrent.tracker")

@dataclass
class TrackerCounters:
    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    announces: int = 0
    pieces_announced: int = 0
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(config.TRACKER_LATENCY_BUCKETS_S) + 1))
    latency_sum_s: float = 0.0
    by_type: Counter = field(default_factory=Counter)   # message type -> requests since the last log line
    by_type_since: float = field(default_factory=time.monotonic)

    def observe(self, requests: int, elapsed_s: float) -> None:
        """Each request of a batch waited for the whole batch (group commit included)."""
        self.requests += requests
        self.latency_counts[bisect.bisect_left(config.TRACKER_LATENCY_BUCKETS_S, elapsed_s)] += requests
        self.latency_sum_s += requests * elapsed_s

    def announced(self, pieces: int) -> None:
        self.announces += 1
        self.pieces_announced += pieces

    def snapshot(self) -> m.TrackerStats:
        return m.TrackerStats(
            started_s_ago=round(time.monotonic() - self.started, 3), requests=self.requests,
            announces=self.announces, pieces_announced=self.pieces_announced,
            latency_buckets_s=list(config.TRACKER_LATENCY_BUCKETS_S), latency_counts=list(self.latency_counts),
            latency_sum_s=self.latency_sum_s)

    def log_types(self, now: float | None = None) -> None:
        """One log line of the requests by type since the last one (at most every TRACKER_TYPE_LOG_S;
        nothing when there were none): what a swarm asks of its tracker, per second."""
        now = time.monotonic() if now is None else now
        span = now - self.by_type_since
        if span < config.TRACKER_TYPE_LOG_S:
            return
        if self.by_type:
            log.info("requests/s over %.0f s: %s", span,
                     ", ".join(f"{t} {n / span:.1f}" for t, n in self.by_type.most_common()))
        self.by_type.clear()
        self.by_type_since = now


def counting(dispatcher: Dispatcher, counters: TrackerCounters) -> Dispatcher:
    """The same handlers, each counting its requests by type into ``counters``."""
    out = Dispatcher(dispatcher.name)

    def wrap(kind: str, fn):
        def counted(ctx, msg):
            counters.by_type[kind] += 1
            return fn(ctx, msg)
        return counted

    out.handlers = {t: wrap(t.value, fn) for t, fn in dispatcher.handlers.items()}
    return out
