"""The swarm as the web view sees it: built from successive observations of the tracker
(GET_SWARM, GET_PEERS) and each peer's STATUS, never from anything else.

It holds no sockets. ``SwarmView.apply`` takes one ``Observation`` and updates:
- peers (live, expired, not answering), their rates from the change since the last one;
- torrents, with seeders, leechers and the bucketed piece-availability map;
- running totals for Prometheus, kept monotonic here (a peer's own counters restart
  with the peer; a total here only ever grows);
- events: peer joined or expired, hash failure, ban, download finished or failed,
  and events written by others (a soak's kills and restarts).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from node import config
from node.web import availability
from protocol import messages as m

RATE_SMOOTHING = 0.5        # weight of the newest sample in a peer's rate
RATE_FLOOR_BPS = 1024       # a smoothed rate this low with nothing moving shows as 0
TRACKER_DOWN_AFTER = 2      # missed polls in a row before the tracker shows as down (a busy one is late)

# the Prometheus counters this model keeps: name -> help
COUNTERS = {
    "downloaded_bytes": "Piece bytes a peer received, by receiving peer and torrent.",
    "uploaded_bytes": "Piece bytes a peer sent that a receiver counted, by sending peer and torrent.",
    "pieces_verified": "Pieces a peer received and verified, by receiving peer and torrent.",
    "hash_failures": "Pieces that failed their SHA-1, by the peer that sent them and torrent.",
    "bans": "Times a downloader banned a peer, by banned peer and torrent.",
}


@dataclass
class Observation:
    at: float                                   # time.time() of the poll
    tracker: m.Swarm | None                     # None: the tracker did not answer
    tracker_error: str = ""
    holders: dict[str, m.PeerList] = field(default_factory=dict)           # info_hash -> GET_PEERS
    statuses: dict[str, m.StatusReply | None] = field(default_factory=dict)  # peer_id -> STATUS (None: no answer)
    external: list[dict] = field(default_factory=list)                      # {"kind", "node", "text"}


@dataclass
class PeerRow:
    peer_id: str
    address: str = "-"
    live: bool = False          # the tracker lists it
    expired: bool = False       # it was live and the tracker dropped it
    answered: bool = False      # its control socket answered the last poll
    pieces: int = 0
    down_bps: float = 0.0
    up_bps: float = 0.0
    score: float | None = None
    banned: bool = False
    rested: bool = False
    jobs: list[dict] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.expired:
            return "expired"
        if not self.answered:
            return "no answer" if self.live else "unknown"
        return "live" if self.live else "unregistered"


class SwarmView:
    def __init__(self, tracker_endpoint: str) -> None:
        self.tracker_endpoint = tracker_endpoint
        self.seq = 0
        self.at = 0.0
        self.tracker_up = False
        self.tracker_error = ""
        self.tracker_stats: m.TrackerStats | None = None
        self.peers: dict[str, PeerRow] = {}
        self.torrents: dict[str, dict] = {}
        self.history: deque = deque(maxlen=config.WEB_HISTORY_POINTS)
        self.events: deque = deque(maxlen=config.WEB_EVENTS_KEPT)
        self.totals: dict[tuple[str, str, str], float] = {}   # (counter, peer_id, info_hash) -> total
        self._event_id = 0
        self._tracker_misses = 0
        self._last: dict[tuple, object] = {}                  # previous raw values, for deltas

    # ------------------------------------------------------------------ helpers
    def event(self, at: float, kind: str, text: str, peer_id: str = "") -> None:
        self._event_id += 1
        self.events.append({"id": self._event_id, "t": at, "kind": kind, "peer_id": peer_id, "text": text})

    def _add(self, counter: str, peer_id: str, info_hash: str, amount: float) -> None:
        if amount > 0:
            key = (counter, peer_id, info_hash)
            self.totals[key] = self.totals.get(key, 0) + amount

    def _delta(self, key: tuple, value: int) -> int:
        """Growth since the last sighting; a value that went down restarted from 0."""
        before = self._last.get(key)
        self._last[key] = value
        if before is None:
            return 0
        return value - before if value >= before else value

    # ------------------------------------------------------------------ one poll
    def apply(self, obs: Observation) -> None:
        dt = obs.at - self.at if self.at else 0.0
        self.seq += 1
        self.at = obs.at
        self._tracker(obs)
        down, up = self._statuses(obs)
        for row in self.peers.values():
            if dt > 0:
                row.down_bps = _smooth(row.down_bps, down.get(row.peer_id, 0) / dt)
                row.up_bps = _smooth(row.up_bps, up.get(row.peer_id, 0) / dt)
            if not row.answered and not row.live:
                row.down_bps = row.up_bps = 0.0
        self._torrents(obs)
        if dt > 0:
            self.history.append([round(obs.at, 3), round(sum(down.values()) / dt), round(sum(up.values()) / dt)])
        for ext in obs.external:
            self.event(float(ext.get("t", obs.at)), str(ext.get("kind", "event")), str(ext.get("text", "")),
                       str(ext.get("node", "")))

    def _tracker(self, obs: Observation) -> None:
        was_up = self.tracker_up
        self._tracker_misses = 0 if obs.tracker is not None else self._tracker_misses + 1
        if obs.tracker is not None or self._tracker_misses >= TRACKER_DOWN_AFTER or self.seq == 1:
            self.tracker_up, self.tracker_error = obs.tracker is not None, obs.tracker_error
        if was_up != self.tracker_up and self.seq > 1:
            self.event(obs.at, "tracker", "tracker answers again" if self.tracker_up
                       else f"tracker does not answer: {obs.tracker_error}")
        if obs.tracker is None:
            return                     # keep the last known peers and torrents
        self.tracker_stats = obs.tracker.stats
        listed = {p.peer_id: p for p in obs.tracker.peers}
        for peer_id, p in listed.items():
            row = self.peers.setdefault(peer_id, PeerRow(peer_id))
            row.address = f"{p.host}:{p.port}"
            if not row.live:
                self.event(obs.at, "joined", f"{peer_id} joined from {row.address}", peer_id)
            row.live, row.expired = True, False
        for row in self.peers.values():
            if row.live and row.peer_id not in listed:
                row.live, row.expired = False, True
                self.event(obs.at, "expired", f"{row.peer_id} expired at the tracker", row.peer_id)
        for t in obs.tracker.torrents:
            self.torrents.setdefault(t.info_hash, {}).update(
                info_hash=t.info_hash, name=t.name, num_pieces=t.num_pieces, length=t.length)

    def _statuses(self, obs: Observation) -> tuple[dict[str, int], dict[str, int]]:
        """Rows from each peer's STATUS; returns bytes (down, up) per peer since the last poll."""
        down: dict[str, int] = {}
        up: dict[str, int] = {}
        given: dict[str, list[m.PeerStat]] = {}       # remote peer -> what downloaders say of it
        for row in self.peers.values():
            if row.peer_id not in obs.statuses:
                row.answered = False                  # not asked (not local, or gone)
        for peer_id, reply in obs.statuses.items():
            row = self.peers.setdefault(peer_id, PeerRow(peer_id))
            row.answered = reply is not None
            if reply is None:
                continue
            row.pieces = sum(j.have for j in reply.jobs)
            row.jobs = [{"info_hash": j.info_hash, "name": j.name, "state": j.state, "have": j.have,
                         "num_pieces": j.num_pieces, "error": j.error} for j in reply.jobs]
            for job in reply.jobs:
                self.torrents.setdefault(job.info_hash, {}).setdefault("name", job.name)
                self.torrents[job.info_hash].setdefault("num_pieces", job.num_pieces)
                self.torrents[job.info_hash].setdefault("length", job.length)
                self._job(obs.at, peer_id, job, down, up, given)
        for row in self.peers.values():
            stats = given.get(row.peer_id, [])
            row.score = max((s.score for s in stats), default=None)
            row.banned = any(s.banned for s in stats)
            row.rested = any(s.rested for s in stats)
        return down, up

    def _job(self, at: float, peer_id: str, job: m.JobStatus, down: dict, up: dict, given: dict) -> None:
        ih = job.info_hash
        before = self._last.get(("state", peer_id, ih))
        self._last[("state", peer_id, ih)] = job.state
        if job.state == m.JobState.SEEDING.value and (
                before == m.JobState.DOWNLOADING.value
                or (before is None and self.seq > 1 and job.fetched > 0 and job.resumed < job.num_pieces)):
            # ^ a download that began and ended between two looks (10 s apart while nobody looks),
            #   not one a restarted peer resumed already complete
            self.event(at, "finished", f"{peer_id} finished {job.name}", peer_id)
        elif before != job.state and job.state == m.JobState.FAILED.value:
            self.event(at, "failed", f"{peer_id} stopped {job.name}: {job.error}", peer_id)
        self._add("pieces_verified", peer_id, ih, self._delta(("fetched", peer_id, ih), job.fetched))
        for s in job.peers:
            given.setdefault(s.peer_id, []).append(s)
            got = self._delta(("bytes", peer_id, ih, s.peer_id), s.bytes)
            down[peer_id] = down.get(peer_id, 0) + got
            up[s.peer_id] = up.get(s.peer_id, 0) + got
            self._add("downloaded_bytes", peer_id, ih, got)
            self._add("uploaded_bytes", s.peer_id, ih, got)
            bad = self._delta(("hash", peer_id, ih, s.peer_id), s.hash_failures)
            if bad:
                self._add("hash_failures", s.peer_id, ih, bad)
                self.event(at, "hash failure", f"{bad} piece(s) of {job.name} from {s.peer_id} "
                                                f"failed their hash at {peer_id}", s.peer_id)
            was_banned = self._last.get(("banned", peer_id, ih, s.peer_id), False)
            self._last[("banned", peer_id, ih, s.peer_id)] = s.banned
            if s.banned and not was_banned:
                self._add("bans", s.peer_id, ih, 1)
                self.event(at, "ban", f"{peer_id} banned {s.peer_id} for {job.name}", s.peer_id)

    def _torrents(self, obs: Observation) -> None:
        jobs = [(pid, j) for pid, row in self.peers.items() if row.answered for j in row.jobs]
        for ih, t in self.torrents.items():
            seeders, leechers = set(), set()
            reply = obs.holders.get(ih)
            num = t.get("num_pieces", 0)
            if reply is not None:
                for p in reply.peers:
                    (seeders if p.have >= num else leechers).add(p.peer_id)
                per_piece = availability.counts([p.bitfield for p in reply.peers], num)
                size, cols = availability.buckets(per_piece, config.WEB_PIECE_BUCKETS)
                t.update(pieces_per_bucket=size, buckets=cols, max_holders=max(per_piece, default=0))
            for pid, j in jobs:
                if j["info_hash"] == ih:
                    if j["state"] == m.JobState.SEEDING.value:
                        seeders.add(pid)
                        leechers.discard(pid)
                    elif j["state"] == m.JobState.DOWNLOADING.value and pid not in seeders:
                        leechers.add(pid)
            t.update(seeders=len(seeders), leechers=len(leechers))
            t.setdefault("buckets", [])
            t.setdefault("pieces_per_bucket", 1)
            t.setdefault("max_holders", 0)

    # ------------------------------------------------------------------ output
    def snapshot(self) -> dict:
        """What /api/swarm returns and every page receives: plain JSON, strings as data."""
        stats = self.tracker_stats
        return {
            "seq": self.seq,
            "ts_ms": round(time.time() * 1000, 1),
            "at": self.at,
            "tracker": {"endpoint": self.tracker_endpoint, "up": self.tracker_up, "error": self.tracker_error,
                        "requests": stats.requests if stats else 0, "announces": stats.announces if stats else 0},
            "summary": {
                "peers_live": sum(r.live for r in self.peers.values()),
                "peers_expired": sum(r.expired for r in self.peers.values()),
                "torrents": len(self.torrents),
                "down_bps": round(sum(r.down_bps for r in self.peers.values())),
                "up_bps": round(sum(r.up_bps for r in self.peers.values())),
            },
            "history": list(self.history),
            "torrents": [{"info_hash": ih, **{k: t.get(k) for k in (
                "name", "num_pieces", "length", "seeders", "leechers", "pieces_per_bucket", "max_holders",
                "buckets")}} for ih, t in sorted(self.torrents.items(), key=lambda kv: str(kv[1].get("name")))],
            "peers": [{"peer_id": r.peer_id, "address": r.address, "state": r.state, "pieces": r.pieces,
                       "down_bps": round(r.down_bps), "up_bps": round(r.up_bps), "score": r.score,
                       "banned": r.banned, "rested": r.rested, "jobs": r.jobs}
                      for r in sorted(self.peers.values(), key=lambda r: r.peer_id)],
            "events": list(self.events)[-50:],
        }


def _smooth(old: float, new: float) -> float:
    """Smoothed rate; an idle peer settles at 0 instead of halving forever."""
    value = old + RATE_SMOOTHING * (new - old)
    return 0.0 if new == 0 and value < RATE_FLOOR_BPS else value
