"""MongoDB store through pymongo; the same three collections as documents.

- ``peers``    {_id: peer_id, host, port, token, last_seen, kind}
- ``torrents`` {_id: info_hash, name, length, piece_length, num_pieces, metainfo}
- ``files``    {_id: info_hash, name, num_pieces, peers: {peer_id: [piece indexes]},
                clients: {peer_id: bytes left}, downloaded: completions}  (standard clients)

Every write is acknowledged by the server before the tracker replies. Announced pieces
are group-committed: ``add_pieces`` queues its update, and ``commit()`` (once per batch
of requests, before any reply) sends the batch's updates as one ordered bulk write.
Any other call sends the queue first, so reads see every earlier write. Add
``journal=true`` to the URI for on-disk durability on a real mongod.

Nothing here is kept between batches except the piece-count cache of the base class,
so any number of trackers can share one database.
"""
from __future__ import annotations

import pymongo
from pymongo import UpdateOne
from bson.binary import Binary
from pymongo.errors import DuplicateKeyError, PyMongoError

from node.tracker.store.base import (
    BITTORRENT,
    ZORRENT,
    ClientEntry,
    PeerRecord,
    StoreError,
    TorrentRecord,
    TrackerStore,
)
from protocol.pieces import Bitfield

SERVER_TIMEOUT_MS = 3000


def _peer_doc(peer: PeerRecord) -> dict:
    return {"host": peer.host, "port": peer.port, "token": peer.token, "last_seen": peer.last_seen,
            "kind": peer.kind, "prev_token": peer.prev_token, "bt_port": peer.bt_port}


class MongoStore(TrackerStore):
    def __init__(self, uri: str) -> None:
        self.uri = uri
        try:
            self.client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=SERVER_TIMEOUT_MS)
            self.db = self.client.get_default_database(default="bittorrent")
            self.db.command("ping")
        except PyMongoError as exc:
            raise StoreError(f"cannot reach MongoDB at {uri}: {type(exc).__name__}") from None
        self.peers = self.db["peers"]
        self.torrents = self.db["torrents"]
        self.files = self.db["files"]
        self._queued: list[UpdateOne] = []       # this batch's piece updates, sent at commit()

    def _do(self, fn, *args, **kwargs):
        if self._queued:
            self._send_queued()
        try:
            return fn(*args, **kwargs)
        except PyMongoError as exc:
            raise StoreError(f"MongoDB: {exc}") from None

    def _send_queued(self) -> None:
        ops, self._queued = self._queued, []
        try:
            self.files.bulk_write(ops, ordered=True)
        except PyMongoError as exc:
            raise StoreError(f"MongoDB: {exc}") from None

    def commit(self) -> None:
        if self._queued:
            self._send_queued()

    def close(self) -> None:
        self._queued.clear()
        self.client.close()

    # peers
    def put_peer(self, peer: PeerRecord) -> None:
        self._do(self.peers.replace_one, {"_id": peer.peer_id}, _peer_doc(peer), upsert=True)

    @staticmethod
    def _peer(d: dict) -> PeerRecord:
        return PeerRecord(d["_id"], d["host"], d["port"], d["token"], d["last_seen"], d.get("kind", ZORRENT),
                          d.get("prev_token", ""), d.get("bt_port", 0))

    def get_peer(self, peer_id: str) -> PeerRecord | None:
        d = self._do(self.peers.find_one, {"_id": peer_id})
        return self._peer(d) if d else None

    def swap_peer(self, new: PeerRecord, expected: PeerRecord | None) -> bool:
        if expected is None:
            if self._queued:
                self._send_queued()
            try:
                self.peers.insert_one({"_id": new.peer_id, **_peer_doc(new)})
            except DuplicateKeyError:
                return False            # another tracker inserted it since we read "absent"
            except PyMongoError as exc:
                raise StoreError(f"MongoDB: {exc}") from None
            return True
        done = self._do(self.peers.replace_one, {"_id": new.peer_id, "token": expected.token}, _peer_doc(new))
        return done.matched_count == 1

    def drop_pieces(self, peer_id: str) -> None:
        for field in ("peers", "clients"):
            self._do(self.files.update_many, {f"{field}.{peer_id}": {"$exists": True}},
                     {"$unset": {f"{field}.{peer_id}": ""}})

    def touch_peer(self, peer_id: str, now: float) -> None:
        self._do(self.peers.update_one, {"_id": peer_id}, {"$max": {"last_seen": now}})

    def delete_peer(self, peer_id: str) -> None:
        self.drop_pieces(peer_id)
        self._do(self.peers.delete_one, {"_id": peer_id})

    def peers_seen_before(self, when: float, kind: str = ZORRENT) -> list[str]:
        of_kind = {"kind": BITTORRENT} if kind == BITTORRENT else {"kind": {"$ne": BITTORRENT}}
        return [d["_id"] for d in self._do(self.peers.find, {"last_seen": {"$lt": when}, **of_kind}, {"_id": 1})]

    def list_peers(self) -> list[PeerRecord]:
        return [self._peer(d) for d in self._do(self.peers.find, {}, sort=[("_id", 1)])]

    def expire_peer(self, peer_id: str, before: float) -> bool:
        # The peer document goes first, atomically on its stored last_seen; its pieces
        # after. Between the two, get_peers already skips it (no peer record).
        gone = self._do(self.peers.delete_one, {"_id": peer_id, "last_seen": {"$lt": before}})
        if not gone.deleted_count:
            return False
        self.drop_pieces(peer_id)
        return True

    # torrents
    def put_torrent(self, torrent: TorrentRecord) -> None:
        if self.get_torrent(torrent.info_hash) is not None:
            return
        self._do(self.torrents.replace_one, {"_id": torrent.info_hash}, {
            "name": torrent.name, "length": torrent.length, "piece_length": torrent.piece_length,
            "num_pieces": torrent.num_pieces, "metainfo": Binary(torrent.metainfo)}, upsert=True)
        self._do(self.files.update_one, {"_id": torrent.info_hash},   # standard clients may be there first
                 {"$set": {"name": torrent.name, "num_pieces": torrent.num_pieces}}, upsert=True)

    def get_torrent(self, info_hash: str) -> TorrentRecord | None:
        d = self._do(self.torrents.find_one, {"_id": info_hash})
        return _torrent(d) if d else None

    def list_torrents(self) -> list[TorrentRecord]:
        return [_torrent(d) for d in self._do(self.torrents.find, {}, sort=[("_id", 1)])]

    # files
    def add_pieces(self, info_hash: str, peer_id: str, pieces: list[int]) -> None:
        if not pieces:      # a member with no pieces yet is listed too
            self._queued.append(UpdateOne({"_id": info_hash, f"peers.{peer_id}": {"$exists": False}},
                                          {"$set": {f"peers.{peer_id}": []}}))
            return
        self._queued.append(UpdateOne({"_id": info_hash},
                                      {"$addToSet": {f"peers.{peer_id}": {"$each": list(pieces)}}}))

    def remove_pieces(self, info_hash: str, peer_id: str) -> None:
        self._do(self.files.update_one, {"_id": info_hash},
                 {"$unset": {f"peers.{peer_id}": "", f"clients.{peer_id}": ""}})

    def holders(self, info_hash: str) -> dict[str, Bitfield]:
        d = self._do(self.files.find_one, {"_id": info_hash})
        if not d or "num_pieces" not in d:
            return {}
        out = {}
        for pid in sorted(d.get("peers", {})):
            bits = Bitfield(d["num_pieces"])
            for i in d["peers"][pid]:
                bits.add(i)
            out[pid] = bits
        return out

    def held_by(self, peer_id: str) -> dict[str, int]:
        held = {d["_id"]: 0 for d in self._do(
            self.files.find, {f"clients.{peer_id}": {"$exists": True}}, {"_id": 1})}
        held.update({d["_id"]: len(d["peers"][peer_id]) for d in self._do(
            self.files.find, {f"peers.{peer_id}": {"$exists": True}}, {f"peers.{peer_id}": 1})})
        return held

    # files: standard clients
    def put_client(self, info_hash: str, peer_id: str, left: int) -> None:
        self._do(self.files.update_one, {"_id": info_hash}, {"$set": {f"clients.{peer_id}": left}}, upsert=True)

    def clients(self, info_hash: str) -> list[ClientEntry]:
        d = self._do(self.files.find_one, {"_id": info_hash}, {"clients": 1})
        left = (d or {}).get("clients", {})
        if not left:
            return []
        found = self._do(self.peers.find, {"_id": {"$in": sorted(left)}})
        return sorted((ClientEntry(self._peer(p), left[p["_id"]]) for p in found), key=lambda c: c.peer.peer_id)

    def add_completed(self, info_hash: str) -> None:
        self._do(self.files.update_one, {"_id": info_hash}, {"$inc": {"downloaded": 1}}, upsert=True)

    def completed(self, info_hash: str) -> int:
        d = self._do(self.files.find_one, {"_id": info_hash}, {"downloaded": 1})
        return (d or {}).get("downloaded", 0)


def _torrent(d: dict) -> TorrentRecord:
    return TorrentRecord(d["_id"], d["name"], d["length"], d["piece_length"], d["num_pieces"], bytes(d["metainfo"]))
