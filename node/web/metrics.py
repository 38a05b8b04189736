"""Prometheus exposition of the swarm view, with prometheus-client.

A custom collector reads the ``SwarmView`` at scrape time, so the page, /api/swarm and
/metrics all show one model. Running totals are counters (``_total``); current values
are gauges. Labels are ``peer_id`` and ``info_hash`` only, never a free-text name.
The tracker's own totals come from its GET_SWARM reply: they restart at 0 with the
tracker process, which Prometheus' rate() reads as a counter reset.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from node.web.swarm import COUNTERS, SwarmView

PREFIX = "zorrent"


class SwarmCollector:
    def __init__(self, view: SwarmView) -> None:
        self.view = view

    def collect(self):
        v = self.view
        for name, help_text in COUNTERS.items():
            family = CounterMetricFamily(f"{PREFIX}_{name}", help_text, labels=["peer_id", "info_hash"])
            for (counter, peer_id, info_hash), total in sorted(v.totals.items()):
                if counter == name:
                    family.add_metric([peer_id, info_hash], total)
            yield family
        rows = sorted(v.peers.values(), key=lambda r: r.peer_id)
        yield _gauge("peers_live", "Peers the tracker lists as live.", sum(r.live for r in rows))
        yield _gauge("peers_expired", "Peers that were live and expired at the tracker.", sum(r.expired for r in rows))
        yield _gauge("torrents", "Torrents known to the tracker or held by a peer.", len(v.torrents))
        yield _gauge("tracker_up", "1 if the tracker answered the last poll.", int(v.tracker_up))
        for key, help_text in (("down_bps", "Download rate of a peer, bytes/s."),
                               ("up_bps", "Upload rate of a peer, bytes/s."),
                               ("pieces", "Verified pieces a peer holds, all torrents.")):
            family = GaugeMetricFamily(f"{PREFIX}_peer_{key.replace('_bps', '_rate_bytes')}", help_text,
                                       labels=["peer_id"])
            for r in rows:
                family.add_metric([r.peer_id], getattr(r, key))
            yield family
        for key in ("seeders", "leechers"):
            family = GaugeMetricFamily(f"{PREFIX}_torrent_{key}", f"Peers {key} the torrent.", labels=["info_hash"])
            for ih, t in sorted(v.torrents.items()):
                family.add_metric([ih], t.get(key) or 0)
            yield family
        yield from self._tracker()

    def _tracker(self):
        stats = self.view.tracker_stats
        if stats is None:
            return
        yield CounterMetricFamily(f"{PREFIX}_tracker_requests", "Requests the tracker answered.",
                                  value=stats.requests)
        yield CounterMetricFamily(f"{PREFIX}_tracker_announces", "Announces the tracker handled.",
                                  value=stats.announces)
        yield CounterMetricFamily(f"{PREFIX}_tracker_pieces_announced", "Pieces announced to the tracker.",
                                  value=stats.pieces_announced)
        cumulative, buckets = 0, []
        for bound, count in zip([*map(str, stats.latency_buckets_s), "+Inf"], stats.latency_counts):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(f"{PREFIX}_tracker_request_latency_seconds",
                                    "Time from draining a request to sending its reply (group commit included).",
                                    buckets=buckets, sum_value=stats.latency_sum_s)


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", help_text, value=value)


def registry_for(view: SwarmView) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SwarmCollector(view))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
