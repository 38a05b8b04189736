"""What a download job knows: the torrent it fills in and the node it runs in (narrow
interfaces, so the engine needs nothing of node/peer/main.py), each remote peer it
downloads from, and each attempt at a piece."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from node import config
from node.channel import Channel
from node.peer.disk import DiskWorker
from node.peer.storage import PieceFile
from protocol.metainfo import Metainfo
from protocol.pieces import Bitfield

MIB = 1024 * 1024


class Holding(Protocol):
    """The torrent a job fills in: what the engine reads of it (node/peer/holdings.py changes it)."""

    meta: Metainfo
    file: PieceFile
    bitfield: Bitfield


class Registry(Protocol):
    """The holdings, as a job changes them (node/peer/holdings.py)."""

    def get(self, info_hash: str) -> Any: ...

    def piece_verified(self, h: Any, piece: int) -> bool: ...

    def transition(self, info_hash: str, new_state: Any, *, error: str = "", expect: Any = None) -> Any: ...


class Host(Protocol):
    """The narrow part of the peer node a job uses (the node hands itself in; tests hand in a
    fake, tests/unit/test_engine.py)."""

    peer_id: str
    tracker: Channel               # for GET_PEERS
    disk: DiskWorker               # submit(verify, write, done), snapshot()
    holdings: Registry
    clock: Callable[[], float]     # monotonic seconds

    def connect(self, endpoint: str) -> Channel: ...   # a request channel to a remote peer's data port,
    #                 shared with the node's other jobs (node/peer/links.py); raises links.LinkRefused

    def disconnect(self, endpoint: str) -> None: ...   # this job is done with that channel


@dataclass(eq=False)
class RemotePeer:
    peer_id: str
    endpoint: str
    channel: Channel
    bitfield: Bitfield
    listed: bool = True
    inflight_bytes: int = 0
    fetches: set = field(default_factory=set)
    pieces: int = 0
    bytes: int = 0
    failures: int = 0
    hash_failures: int = 0
    timeouts_in_a_row: int = 0
    refused: set = field(default_factory=set)      # pieces it said it does not have: not asked again
    deferred: dict = field(default_factory=dict)   # piece -> until when: it sent us Elsewhere
    suggested: deque = field(default_factory=deque)  # pieces it offered (nobody else has them)
    seen: int = 0                   # the seq of its last HAVES (node/peer/watch.py); the first WATCH asks
    #   for all it verified in this run, so a piece it verified after the tracker's list was made
    #   (and before this WATCH) is not missed until the next list
    watching: bool = False          # a WATCH is outstanding
    watch_after: float = 0.0        # after a failed WATCH, not before this
    rested_until: float = 0.0       # no requests before this (it kept timing out)
    banned: bool = False
    first_request: float = 0.0
    first_reply: float = 0.0        # when its first block arrived: its link delivers from then on

    def rate(self, now: float) -> float:
        """MiB/s it delivered since its first block arrived, over at least CREDIT_WINDOW_S,
        less failures: what its credit follows. Counted from the first reply, not the first
        request, so the connection's set-up and first round trip (0.6 s at 100 ms RTT: TCP
        and ZMTP handshakes, the request, TCP slow start) do not hold the credit at its floor
        for seconds; within the first CREDIT_WINDOW_S the credit is what it has delivered,
        so it doubles each round trip, as TCP's window does in slow start."""
        if self.banned or not self.first_reply:
            return 0.0
        span = max(now - self.first_reply, config.CREDIT_WINDOW_S)
        return (self.bytes / MIB) / span * 0.5 ** self.failures

    def score(self, now: float) -> float:
        if self.banned:
            return 0.0
        elapsed = max(now - self.first_request, 1e-3) if self.first_request else 0.0
        rate = (self.bytes / MIB) / elapsed if elapsed else 0.0
        return rate * 0.5 ** self.failures


@dataclass(eq=False)
class Fetch:
    """One attempt at one piece from one remote peer."""

    piece_index: int
    remote: RemotePeer
    size: int
    started: float
    blocks: dict = field(default_factory=dict)     # block_offset -> buffer
    received: int = 0
    request_ids: list = field(default_factory=list)
    writing: bool = False                          # with the disk threads: hashing, then writing
    done: bool = False
