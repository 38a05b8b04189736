"""What every tracker handler gets: the store, the clock, the counters, the trusted networks,
and the swarm-wide state derived from the store (the live count behind the heartbeat
interval); and the expiry that runs on the tracker's timer. Nothing here outlives what the
store says: several trackers on one store keep no state the others need."""
from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Callable

from node import config
from node.dispatch import Context
from node.tracker.stats import TrackerCounters
from node.tracker.store import BITTORRENT, ZORRENT, PeerRecord, TrackerStore
from protocol.errors import ErrorCode, ZorrentError


def expiry_span_s(peer: PeerRecord) -> float:
    """How long after its last heartbeat (announce) a record lives: its interval's expiry."""
    return config.peer_expiry_s(peer.interval_s) if peer.kind == ZORRENT else config.HTTP_PEER_EXPIRY_S


@dataclass
class TrackerContext(Context):
    store: TrackerStore
    clock: Callable[[], float] = time.time
    started: float = field(default_factory=time.time)
    counters: TrackerCounters = field(default_factory=TrackerCounters)
    # sources whose RegisterPeer may advertise another address than they connect from
    trusted: tuple = field(default_factory=lambda: parse_networks(config.TRUST_ADVERTISE_DEFAULT))
    registered: dict = field(default_factory=dict)     # peer id -> info-hashes it registered (capped); an id
                                                       # whose record is gone leaves at the next expiry pass
    live_peers: int | None = None      # live zorrent peers in the store, as the last expiry counted them

    def heartbeat_s(self) -> float:
        """The interval to hand out now: it grows with the swarm (config.heartbeat_for_swarm).
        Counted from the store at each expiry, so every tracker on a shared store hands
        out the same."""
        if self.live_peers is None:
            self.live_peers = self.store.count_live(self.clock())
        return config.heartbeat_for_swarm(self.live_peers)

    def scope(self):
        return self.store.savepoint()

    def commit(self) -> None:
        self.store.commit()

    def observe(self, requests: int, elapsed_s: float) -> None:
        self.counters.observe(requests, elapsed_s)

    def expire_peers(self) -> list[str]:
        """Forget peers past their own deadline (``expires``: the expiry of the interval each
        was handed, after its last heartbeat), none sooner than that span after start.

        Expiry reads only the store: a peer's deadline is the stored one, whichever tracker
        took its heartbeat, and each delete re-checks it atomically, so every tracker on a
        shared store may run this. ``started`` (process memory) only holds expiry back after
        a start, which can keep a peer a little longer, never shorter. The live count the
        next intervals follow is taken here too.
        """
        now = self.clock()
        gone = []
        for kind in (ZORRENT, BITTORRENT):
            gone += [p.peer_id for p in self.store.peers_due(now, kind)
                     if now - self.started >= expiry_span_s(p) and self.store.expire_peer(p.peer_id, now)]
        self.store.sweep(now)
        self.store.commit()
        self.live_peers = self.store.count_live(now)
        for pid in gone:
            self.registered.pop(pid, None)
        if len(self.registered) > self.live_peers:     # ids another tracker on the store expired
            held = self.store.peer_records(list(self.registered))
            for pid in [p for p in self.registered if p not in held]:
                del self.registered[pid]
        return gone


def parse_networks(text: str) -> tuple:
    """``127.0.0.0/8,::1`` -> networks; "" or "none": none."""
    nets = []
    for part in text.split(","):
        part = part.strip()
        if part and part != "none":
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ZorrentError(f"--trust-advertise: {part[:80]!r} is not an address or network",
                                   ErrorCode.BAD_INPUT) from None
    return tuple(nets)
