"""MongoDB store through pymongo; the same three collections as documents.

- ``peers``    {_id: peer_id, host, port, token, last_seen, kind, prev_token, bt_port, interval_s,
               expires}: ``expires`` is the deadline the interval it was handed gives (a
               tracker from before that, sharing the store, writes none: such a peer lives
               ``_legacy_span`` after ``last_seen``, as that tracker meant)
- ``torrents`` {_id: info_hash, name, length, piece_length, num_pieces, metainfo}
- ``files``    one document per file, and one per (file, peer):
  - {_id: info_hash, name, num_pieces, v: version, swept, downloaded}: the torrent's change
    counter (``changes``), and standard clients' completions (BEP 48);
  - {_id: "info_hash/peer_id", t: info_hash, p: peer_id, w: {word: int64}, v, n, r: [...]}: a
    zorrent peer's verified pieces as a sparse bitfield, 64 pieces a word (piece i is bit
    63 - i % 64 of word i // 64, so the words written big-endian are the BEP 3 bitfield),
    the version of its last change (``v``) and its last changes (``r``, at most
    CHANGE_LOG_ENTRIES; ``n`` counts them all); ``gone: true`` marks a tombstone;
  - {_id: "info_hash/bt:...", t, p, left}: a standard client in the swarm, bytes left.

An announce is ``$bit`` ``or`` on the words its pieces fall in, with the version and a
``$push``/``$slice`` of the change: its cost follows the pieces announced, not the
torrent's size or the swarm's, and a document never outgrows num_pieces / 8 bytes plus
its bounded change list (16 MB is 130 million pieces). Indexes: ``files`` on (t, v) for
a torrent's holders and their changes, on p for one peer's holdings.

Every write is acknowledged by the server before the tracker replies. Announced pieces
are group-committed: ``add_pieces`` queues its update, and ``commit()`` (once per batch
of requests, before any reply) takes one version per torrent and sends the batch's
updates as one ordered bulk write. Any other call sends the queue first, so reads see
every earlier write. Add ``journal=true`` to the URI for on-disk durability on a real mongod.

Nothing here is trusted between batches except the piece-count cache of the base class,
so any number of trackers can share one database. With several, two may take versions
for one torrent at once and write them in the other order. So the update that takes a
version (``$inc`` on the torrent's counter) also marks the tracker's write pending, with a
floor no higher than that version, in the torrent's ``pending`` map (one atomic update of
one document); the mark goes once the write is done (with the tracker's next take, or its
next sweep). A reader's cursor stays below the lowest pending floor: a change being written
when a job reads is sent again with its next delta, never missed (a mark older than
MONGO_PENDING_S, from a tracker that died mid-write, is ignored, and removed by its reader).
"""
from __future__ import annotations

import secrets
import struct
import time

import pymongo
from bson.binary import Binary
from bson.int64 import Int64
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError, PyMongoError

from node import config
from node.tracker.store.base import (
    BITTORRENT,
    ZORRENT,
    Change,
    ClientEntry,
    PeerRecord,
    StoreError,
    TorrentRecord,
    TrackerStore,
)
from protocol.pieces import Bitfield

SERVER_TIMEOUT_MS = 3000
WORD_BITS = 64
_TOP = 1 << 63
NOT_GONE = {"$ne": True}


def _change_log(change: dict) -> dict:
    """``$push`` of one change into a (torrent, peer) document's recent list, kept in version
    order (two trackers may write one peer's changes out of order) and bounded."""
    return {"$each": [change], "$sort": {"v": 1}, "$slice": -config.CHANGE_LOG_ENTRIES}


def _peer_doc(peer: PeerRecord) -> dict:
    return {"host": peer.host, "port": peer.port, "token": peer.token, "last_seen": peer.last_seen,
            "kind": peer.kind, "prev_token": peer.prev_token, "bt_port": peer.bt_port,
            "interval_s": peer.interval_s, "expires": peer.expires}


def _legacy_span(kind: str) -> float:
    """How long after ``last_seen`` a peer document without ``expires`` lives: what a tracker
    from before per-peer deadlines gave (it may still share the store and write such documents)."""
    return config.HTTP_PEER_EXPIRY_S if kind == BITTORRENT else config.PEER_EXPIRY_S


def _due(now: float, kind: str) -> dict:
    """The filter for a peer of ``kind`` whose deadline has passed, with or without ``expires``."""
    return {"$or": [{"expires": {"$lt": now}},
                    {"expires": {"$exists": False}, "last_seen": {"$lt": now - _legacy_span(kind)}}]}


def _key(info_hash: str, peer_id: str) -> str:
    return f"{info_hash}/{peer_id}"


def word_masks(pieces) -> dict[str, Int64]:
    """{word index: mask} for ``$bit``: piece i is bit 63 - i % 64 of word i // 64."""
    words: dict[int, int] = {}
    for i in pieces:
        words[i // WORD_BITS] = words.get(i // WORD_BITS, 0) | (_TOP >> (i % WORD_BITS))
    return {str(k): Int64(v - (1 << 64) if v >= _TOP else v) for k, v in words.items()}


def bitfield_from_words(num_pieces: int, words: dict) -> Bitfield:
    nbytes = (num_pieces + 7) // 8
    buf = bytearray(-(-nbytes // 8) * 8)
    for k, v in words.items():
        struct.pack_into(">q", buf, 8 * int(k), v)
    return Bitfield(num_pieces, bytes(buf[:nbytes]))


def count_words(words: dict) -> int:
    return sum((v & 0xFFFF_FFFF_FFFF_FFFF).bit_count() for v in words.values())


class MongoStore(TrackerStore):
    def __init__(self, uri: str) -> None:
        self.uri = uri
        try:
            self.client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=SERVER_TIMEOUT_MS)
            self.db = self.client.get_default_database(default="bittorrent")
            self.db.command("ping")
            self.peers = self.db["peers"]
            self.torrents = self.db["torrents"]
            self.files = self.db["files"]
            self.files.create_index([("t", 1), ("v", 1)])
            self.files.create_index("p")
            self.files.create_index("at", sparse=True)     # tombstones, for sweep()
            self.peers.create_index("expires")
            self._migrate()
        except PyMongoError as exc:
            raise StoreError(f"cannot reach MongoDB at {uri}: {type(exc).__name__}") from None
        self._queued: dict[tuple[str, str], set[int]] = {}   # this batch's announces, sent at commit()
        self._versions: dict[str, int] = {}   # each torrent's counter as this tracker last saw it: the floor
                                              # of its next pending mark, never trusted for reads
        self._writer = secrets.token_hex(6)   # this tracker's key in a torrent's ``pending`` marks
        self._marked: set[str] = set()        # torrents where that mark is set

    def _migrate(self) -> None:
        """A database from before one document per (torrent, peer): each torrent's ``peers``
        arrays and ``clients`` map become their own documents, once."""
        for d in self.peers.find({"expires": {"$exists": False}}, {"last_seen": 1, "kind": 1}):
            self.peers.update_one({"_id": d["_id"], "expires": {"$exists": False}},   # before per-peer deadlines
                                  {"$set": {"expires": d["last_seen"] + _legacy_span(d.get("kind", ZORRENT)),
                                            "interval_s": 0.0}})
        for d in self.files.find({"$or": [{"peers": {"$exists": True}}, {"clients": {"$exists": True}}]}):
            ih, ops = d["_id"], []
            for pid, pieces in d.get("peers", {}).items():
                ops.append(UpdateOne({"_id": _key(ih, pid)}, {"$setOnInsert": {
                    "t": ih, "p": pid, "v": 0, "n": 0, "r": [], "w": word_masks(pieces)}}, upsert=True))
            for pid, left in d.get("clients", {}).items():
                ops.append(UpdateOne({"_id": _key(ih, pid)}, {"$setOnInsert": {"t": ih, "p": pid, "left": left}},
                                     upsert=True))
            if ops:
                self.files.bulk_write(ops, ordered=True)
            self.files.update_one({"_id": ih}, {"$unset": {"peers": "", "clients": ""}})

    def _do(self, fn, *args, **kwargs):
        if self._queued:
            self._send_queued()
        try:
            return fn(*args, **kwargs)
        except PyMongoError as exc:
            raise StoreError(f"MongoDB: {exc}") from None

    def _take_version(self, info_hash: str) -> int:
        """The torrent's next version. The same atomic update (``$inc`` on the torrent's counter)
        marks this tracker's write pending with a floor no higher than the version it gets (one
        more than the counter as this tracker last saw it), so readers hold their cursor below
        it (``changes``). A tracker writes one batch at a time, so it has one mark per torrent:
        the next take replaces it, and ``sweep`` clears it once the tracker is idle."""
        floor = self._versions.get(info_hash, 0) + 1
        d = self.files.find_one_and_update(
            {"_id": info_hash}, {"$inc": {"v": 1}, "$set": {f"pending.{self._writer}": {"f": floor, "at": time.time()}}},
            projection={"v": 1}, upsert=True, return_document=ReturnDocument.AFTER)
        self._versions[info_hash] = d["v"]
        self._marked.add(info_hash)
        return d["v"]

    def _settle(self) -> None:
        """Every change this tracker took a version for is written: clear its pending marks."""
        if self._marked:
            marked, self._marked = sorted(self._marked), set()
            self.files.update_many({"_id": {"$in": marked}}, {"$unset": {f"pending.{self._writer}": ""}})

    def _send_queued(self) -> None:
        queued, self._queued = self._queued, {}
        try:
            versions = {ih: self._take_version(ih) for ih in sorted({ih for ih, _ in queued})}
            ops = []
            for (ih, pid), pieces in queued.items():
                v = versions[ih]
                change = {"v": v, "i": sorted(pieces)} if len(pieces) <= config.CHANGE_LOG_PIECES else {"v": v, "f": 1}
                update = {"$setOnInsert": {"t": ih, "p": pid}, "$set": {"gone": False}, "$max": {"v": v},
                          "$unset": {"at": ""}, "$inc": {"n": 1}, "$push": {"r": _change_log(change)}}
                if pieces:
                    update["$bit"] = {f"w.{k}": {"or": mask} for k, mask in word_masks(pieces).items()}
                ops.append(UpdateOne({"_id": _key(ih, pid)}, update, upsert=True))
            self._write_changes(ops)
        except PyMongoError as exc:
            raise StoreError(f"MongoDB: {exc}") from None

    def _write_changes(self, ops: list) -> None:
        self.files.bulk_write(ops, ordered=True)

    def commit(self) -> None:
        if self._queued:
            self._send_queued()

    def close(self) -> None:
        self._queued.clear()
        try:
            self._settle()
        except PyMongoError:
            pass                              # our marks are ignored after MONGO_PENDING_S
        self.client.close()

    # peers
    def put_peer(self, peer: PeerRecord) -> None:
        self._do(self.peers.replace_one, {"_id": peer.peer_id}, _peer_doc(peer), upsert=True)

    @staticmethod
    def _peer(d: dict) -> PeerRecord:
        return PeerRecord(d["_id"], d["host"], d["port"], d["token"], d["last_seen"], d.get("kind", ZORRENT),
                          d.get("prev_token", ""), d.get("bt_port", 0), d.get("interval_s", 0.0),
                          d["expires"] if "expires" in d else d["last_seen"] + _legacy_span(d.get("kind", ZORRENT)))

    def get_peer(self, peer_id: str) -> PeerRecord | None:
        d = self._do(self.peers.find_one, {"_id": peer_id})
        return self._peer(d) if d else None

    def peer_records(self, peer_ids: list[str]) -> dict[str, PeerRecord]:
        return {d["_id"]: self._peer(d) for d in self._do(self.peers.find, {"_id": {"$in": list(peer_ids)}})}

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

    def _bury(self, info_hash: str, peer_id: str) -> None:
        """A zorrent peer left the torrent: a tombstone, so that jobs learn it (``changes``)."""
        v = self._do(self._take_version, info_hash)
        self._do(self.files.update_one, {"_id": _key(info_hash, peer_id), "left": {"$exists": False}, "gone": NOT_GONE},
                 {"$set": {"gone": True, "at": time.time()}, "$max": {"v": v}, "$unset": {"w": ""}, "$inc": {"n": 1},
                  "$push": {"r": _change_log({"v": v, "g": 1})}})

    def drop_pieces(self, peer_id: str) -> None:
        held = list(self._do(self.files.find, {"p": peer_id, "gone": NOT_GONE}, {"t": 1, "left": 1}))
        self._do(self.files.delete_many, {"p": peer_id, "left": {"$exists": True}})
        for d in held:
            if "left" not in d:
                self._bury(d["t"], peer_id)

    def touch_peer(self, peer_id: str, now: float, interval_s: float, expires: float) -> None:
        self._do(self.peers.update_one, {"_id": peer_id},
                 {"$max": {"last_seen": now, "expires": expires}, "$set": {"interval_s": interval_s}})

    def delete_peer(self, peer_id: str) -> None:
        self.drop_pieces(peer_id)
        self._do(self.peers.delete_one, {"_id": peer_id})

    @staticmethod
    def _of_kind(kind: str) -> dict:
        return {"kind": BITTORRENT} if kind == BITTORRENT else {"kind": {"$ne": BITTORRENT}}

    def peers_due(self, now: float, kind: str = ZORRENT) -> list[PeerRecord]:
        return [self._peer(d) for d in self._do(self.peers.find, {**_due(now, kind), **self._of_kind(kind)},
                                                sort=[("_id", 1)])]

    def count_live(self, now: float, kind: str = ZORRENT) -> int:
        live = {"$or": [{"expires": {"$gte": now}},
                        {"expires": {"$exists": False}, "last_seen": {"$gte": now - _legacy_span(kind)}}]}
        return self._do(self.peers.count_documents, {**live, **self._of_kind(kind)})

    def list_peers(self) -> list[PeerRecord]:
        return [self._peer(d) for d in self._do(self.peers.find, {}, sort=[("_id", 1)])]

    def expire_peer(self, peer_id: str, now: float) -> bool:
        # The peer document goes first, atomically on its stored deadline; its pieces
        # after. Between the two, get_peers already skips it (no peer record).
        gone = self._do(self.peers.delete_one, {"_id": peer_id, "$or": [
            {**_due(now, ZORRENT), **self._of_kind(ZORRENT)}, {**_due(now, BITTORRENT), **self._of_kind(BITTORRENT)}]})
        if not gone.deleted_count:
            return False
        self.drop_pieces(peer_id)
        return True

    def sweep(self, now: float) -> None:
        """Tombstones older than TOMBSTONE_S go; a cursor from before them gets a full list.
        This tracker's pending marks go too: it is between batches, so its writes are done."""
        self._do(self._settle)
        old = list(self._do(self.files.find, {"at": {"$lt": now - config.TOMBSTONE_S}}, {"t": 1, "v": 1}))
        for d in old:
            self._do(self.files.update_one, {"_id": d["t"]}, {"$max": {"swept": d["v"]}})
            self._do(self.files.delete_one, {"_id": d["_id"], "gone": True, "v": d["v"]})

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
        # an empty announce still makes the document: a member with no pieces yet is listed too
        self._queued.setdefault((info_hash, peer_id), set()).update(pieces)

    def remove_pieces(self, info_hash: str, peer_id: str) -> None:
        d = self._do(self.files.find_one_and_delete, {"_id": _key(info_hash, peer_id), "left": {"$exists": True}})
        if d is None:
            self._bury(info_hash, peer_id)

    def _size(self, info_hash: str) -> int | None:
        return self.num_pieces(info_hash)

    def holders(self, info_hash: str) -> dict[str, Bitfield]:
        size = self._do(self._size, info_hash)
        if size is None:
            return {}
        found = self._do(self.files.find, {"t": info_hash, "left": {"$exists": False}, "gone": NOT_GONE},
                         {"p": 1, "w": 1})
        return {d["p"]: bitfield_from_words(size, d.get("w", {})) for d in sorted(found, key=lambda d: d["p"])}

    def bitfield_of(self, info_hash: str, peer_id: str) -> Bitfield | None:
        size = self._do(self._size, info_hash)
        d = self._do(self.files.find_one, {"_id": _key(info_hash, peer_id), "left": {"$exists": False},
                                           "gone": NOT_GONE}, {"w": 1})
        return bitfield_from_words(size, d.get("w", {})) if d and size is not None else None

    def changes(self, info_hash: str, since: int) -> tuple[int, list[Change] | None]:
        t = self._do(self.files.find_one, {"_id": info_hash}, {"v": 1, "swept": 1, "pending": 1}) or {}
        version = t.get("v", 0)
        # the cursor handed out stays below every version still being written (another tracker's,
        # or this one's): those changes are read again next time, never missed
        recent = time.time() - config.MONGO_PENDING_S
        marks = {w: mark for w, mark in t.get("pending", {}).items() if w != self._writer}   # ours are done
        waiting = [mark["f"] for mark in marks.values() if mark.get("at", 0) >= recent]
        for w, mark in marks.items():
            if mark.get("at", 0) < recent:       # a tracker died mid-write: its mark goes (unless renewed)
                self._do(self.files.update_one, {"_id": info_hash, f"pending.{w}.at": mark.get("at")},
                         {"$unset": {f"pending.{w}": ""}})
        horizon = min(version, min(waiting) - 1) if waiting else version
        if since < 0 or since > version or since < t.get("swept", 0):
            return horizon, None
        out = []
        for d in self._do(self.files.find, {"t": info_hash, "v": {"$gt": since}}, {"p": 1, "n": 1, "r": 1, "gone": 1}):
            recent = d.get("r", [])
            news = [c for c in recent if c["v"] > since]
            covered = d.get("n", 0) <= len(recent) or (recent and recent[0]["v"] <= since)
            if d.get("gone"):
                out.append(Change(d["p"], gone=True))
            elif not covered or any("f" in c or "g" in c for c in news):
                out.append(Change(d["p"], None, reset=any("g" in c for c in news)))
            else:
                out.append(Change(d["p"], sorted({i for c in news for i in c["i"]})))
        return horizon, sorted(out, key=lambda c: c.peer_id)

    def held_by(self, peer_id: str) -> dict[str, int]:
        return {d["t"]: 0 if "left" in d else count_words(d.get("w", {}))
                for d in self._do(self.files.find, {"p": peer_id, "gone": NOT_GONE}, {"t": 1, "w": 1, "left": 1})}

    # files: standard clients
    def put_client(self, info_hash: str, peer_id: str, left: int) -> None:
        self._do(self.files.update_one, {"_id": _key(info_hash, peer_id)},
                 {"$set": {"left": left}, "$setOnInsert": {"t": info_hash, "p": peer_id}}, upsert=True)

    def clients(self, info_hash: str) -> list[ClientEntry]:
        left = {d["p"]: d["left"] for d in self._do(self.files.find, {"t": info_hash, "left": {"$exists": True}},
                                                     {"p": 1, "left": 1})}
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
