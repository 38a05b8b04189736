"""The tracker's own running totals: requests, announces and request latency.

Handlers and the request loop count into it; GET_SWARM hands a copy out, and the web
view exports it to Prometheus. Totals start at 0 with each tracker process.
"""
from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

from node import config
from protocol import messages as m


@dataclass
class TrackerCounters:
    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    announces: int = 0
    pieces_announced: int = 0
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(config.TRACKER_LATENCY_BUCKETS_S) + 1))
    latency_sum_s: float = 0.0

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
