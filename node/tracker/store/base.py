"""The narrow store interface, with the README's three collections:

- ``peers``    each peer: address, session token, last heartbeat, and its kind: a zorrent
               peer (ZeroMQ) or a standard BitTorrent client (HTTP announces)
- ``torrents`` each torrent's metainfo
- ``files``    each file and how its verified pieces are spread across zorrent peers, which
               standard clients are in its swarm (bytes left), and their completions

Piece bytes never enter the store. Writes become durable at ``commit()``, which the
tracker calls once per batch of requests before it sends any reply (group commit).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass

from protocol.errors import ErrorCode, ZorrentError
from protocol.pieces import Bitfield


class StoreError(ZorrentError):
    code = ErrorCode.STORE


ZORRENT = "zorrent"        # a zorrent peer: registered over ZeroMQ, holds a session token
BITTORRENT = "bittorrent"  # a standard client seen through the HTTP tracker: no token, no bitfield
PEER_KINDS = (ZORRENT, BITTORRENT)


@dataclass(frozen=True)
class PeerRecord:
    peer_id: str
    host: str
    port: int
    token: str
    last_seen: float
    kind: str = ZORRENT
    prev_token: str = ""    # the token the peer proved it held when it got this one
    bt_port: int = 0        # a zorrent peer's BEP 3 port for standard clients (0: none)
    interval_s: float = 0.0  # the heartbeat (or announce) interval it was last handed
    expires: float = 0.0    # the tracker may forget it after this (its interval's expiry past its last beat)


@dataclass(frozen=True)
class ClientEntry:
    """A standard client in one torrent's swarm: what BEP 3 announces tell."""

    peer: PeerRecord
    left: int              # bytes it still needs; 0 is a seeder


@dataclass(frozen=True)
class Change:
    """What one peer's holding of a torrent did after a cursor (``TrackerStore.changes``)."""

    peer_id: str
    pieces: list[int] | None = None   # pieces it added; None: read its whole bitfield (``bitfield_of``)
    gone: bool = False                # it holds nothing now (it left, or expired)
    reset: bool = False               # it left and came back: what it held before is void


@dataclass(frozen=True)
class TorrentRecord:
    info_hash: str
    name: str
    length: int
    piece_length: int
    num_pieces: int
    metainfo: bytes


class TrackerStore(ABC):
    uri: str

    # peers
    @abstractmethod
    def put_peer(self, peer: PeerRecord) -> None: ...

    @abstractmethod
    def get_peer(self, peer_id: str) -> PeerRecord | None: ...

    def peer_records(self, peer_ids: list[str]) -> dict[str, PeerRecord]:
        """The records of those of ``peer_ids`` that exist (a backend may read them at once)."""
        found = {pid: self.get_peer(pid) for pid in peer_ids}
        return {pid: p for pid, p in found.items() if p is not None}

    @abstractmethod
    def swap_peer(self, new: PeerRecord, expected: PeerRecord | None) -> bool:
        """Write ``new`` only if the stored record is still ``expected`` (same token, or
        still absent): a compare-and-swap, so two trackers registering one peer id at once
        cannot both win. False if the record changed since it was read."""

    @abstractmethod
    def drop_pieces(self, peer_id: str) -> None:
        """The peer holds nothing any more (it restarted and re-announces)."""

    @abstractmethod
    def touch_peer(self, peer_id: str, now: float, interval_s: float, expires: float) -> None:
        """Record a heartbeat, the interval handed back and the deadline it gives. Neither
        ``last_seen`` nor ``expires`` ever moves back, so heartbeats landing on trackers with
        slightly different clocks, or a shorter interval handed out as the swarm shrinks,
        cannot shorten a peer's life: it may not have heard the new interval yet."""

    @abstractmethod
    def delete_peer(self, peer_id: str) -> None:
        """Remove the peer and everything it held."""

    @abstractmethod
    def peers_due(self, now: float, kind: str = ZORRENT) -> list[PeerRecord]:
        """The records of ``kind`` whose ``expires`` is before ``now``."""

    @abstractmethod
    def count_live(self, now: float, kind: str = ZORRENT) -> int:
        """How many records of ``kind`` have not expired at ``now`` (the swarm's size)."""

    @abstractmethod
    def list_peers(self) -> list[PeerRecord]:
        """Every peer record, by peer id."""

    @abstractmethod
    def expire_peer(self, peer_id: str, now: float) -> bool:
        """Delete the peer and what it held only if its stored ``expires`` is still before
        ``now``: one atomic check against the store, so a heartbeat that reached another
        tracker since ``peers_due`` keeps the peer alive. True if deleted."""

    # torrents
    @abstractmethod
    def put_torrent(self, torrent: TorrentRecord) -> None: ...

    @abstractmethod
    def get_torrent(self, info_hash: str) -> TorrentRecord | None: ...

    @abstractmethod
    def list_torrents(self) -> list[TorrentRecord]:
        """Every torrent, by info-hash."""

    def num_pieces(self, info_hash: str) -> int | None:
        """Piece count of a known torrent, or None.

        The one cache a tracker keeps, and it stays right with any number of trackers on
        one store: the info-hash is the SHA-1 of the info dict, which fixes the piece
        count, so a cached count can never go stale. Only hits are cached: a torrent
        another tracker registers later is read from the store on its first use here.
        """
        cache = self.__dict__.setdefault("_num_pieces_cache", {})
        if info_hash not in cache:
            torrent = self.get_torrent(info_hash)
            if torrent is None:
                return None
            cache[info_hash] = torrent.num_pieces
        return cache[info_hash]

    # files: the spread of verified pieces
    @abstractmethod
    def add_pieces(self, info_hash: str, peer_id: str, pieces: list[int]) -> None: ...

    @abstractmethod
    def remove_pieces(self, info_hash: str, peer_id: str) -> None:
        """The peer holds nothing of this torrent any more."""

    @abstractmethod
    def holders(self, info_hash: str) -> dict[str, Bitfield]:
        """peer id -> verified pieces, for every peer holding any."""

    @abstractmethod
    def bitfield_of(self, info_hash: str, peer_id: str) -> Bitfield | None:
        """One zorrent peer's verified pieces of a torrent, or None if it holds none."""

    @abstractmethod
    def changes(self, info_hash: str, since: int) -> tuple[int, list[Change] | None]:
        """The torrent's version (a cursor), and what its zorrent holders changed after
        ``since``, one Change per peer; None when the store no longer reaches back that far
        (or ``since`` is -1, or from another store): then read ``holders()`` whole.

        Every add, removal or expiry of a zorrent peer's pieces moves the version on. A reply
        built from ``holders()`` after reading the version misses nothing before it."""

    @abstractmethod
    def held_by(self, peer_id: str) -> dict[str, int]:
        """info-hash -> number of pieces, for one peer (for a standard client: its torrents, 0)."""

    # files: standard clients (the torrent need not be registered)
    @abstractmethod
    def put_client(self, info_hash: str, peer_id: str, left: int) -> None:
        """The client is in this torrent's swarm with ``left`` bytes to go (remove_pieces ends it)."""

    @abstractmethod
    def clients(self, info_hash: str) -> list[ClientEntry]:
        """Every standard client in this torrent's swarm, with its peer record."""

    @abstractmethod
    def add_completed(self, info_hash: str) -> None:
        """A standard client reported event=completed (BEP 48 ``downloaded``)."""

    @abstractmethod
    def completed(self, info_hash: str) -> int: ...

    def sweep(self, now: float) -> None:
        """Housekeeping the tracker runs with its expiry (MongoDB: drop old tombstones)."""

    # batches
    @contextmanager
    def savepoint(self):
        yield

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass
