"""Embedded default store: SQLite in WAL mode, synchronous=FULL, one commit per batch.

One tracker per SQLite file: the store caches bitfields it wrote (``_bits``), which
only the one writer may do, so opening takes an exclusive lock on ``DB.lock`` and a
second tracker on the same file is refused. SQLite's locks do not hold on network
filesystems, so a database there is refused too. Several trackers share MongoDB.
"""
from __future__ import annotations

import fcntl
import os
from array import array
import sqlite3
from contextlib import contextmanager
from pathlib import Path

from node import config
from node.tracker.store.base import (
    ZORRENT,
    Change,
    ClientEntry,
    PeerRecord,
    StoreError,
    TorrentRecord,
    TrackerStore,
)
from protocol.pieces import Bitfield

SCHEMA = """
CREATE TABLE IF NOT EXISTS peers (
    peer_id   TEXT PRIMARY KEY,
    host      TEXT NOT NULL,
    port      INTEGER NOT NULL,
    token     TEXT NOT NULL,
    last_seen REAL NOT NULL,
    kind      TEXT NOT NULL DEFAULT 'zorrent',
    prev_token TEXT NOT NULL DEFAULT '',
    bt_port   INTEGER NOT NULL DEFAULT 0,
    interval_s REAL NOT NULL DEFAULT 0,      -- the heartbeat interval it was last handed
    expires   REAL NOT NULL DEFAULT 0        -- its expiry deadline (that interval's, after its last beat)
);
CREATE TABLE IF NOT EXISTS torrents (
    info_hash    TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    length       INTEGER NOT NULL,
    piece_length INTEGER NOT NULL,
    num_pieces   INTEGER NOT NULL,
    metainfo     BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS files (          -- one row per (file, peer): that peer's bitfield
    info_hash  TEXT NOT NULL,                -- a standard client's torrent need not be registered
    peer_id    TEXT NOT NULL REFERENCES peers(peer_id),
    bitfield   BLOB NOT NULL,
    have       INTEGER NOT NULL,
    bytes_left INTEGER,                      -- standard clients only (no bitfield); NULL for zorrent peers
    PRIMARY KEY (info_hash, peer_id)
);
CREATE INDEX IF NOT EXISTS files_by_peer ON files(peer_id);
CREATE TABLE IF NOT EXISTS changes (        -- per file: the last CHANGE_LOG_ROWS changes of its zorrent holders
    info_hash  TEXT NOT NULL,
    version    INTEGER NOT NULL,             -- torrents.version when it happened
    peer_id    TEXT NOT NULL,
    pieces     BLOB,                         -- uint32 piece indexes added; NULL: re-read its bitfield
    gone       INTEGER NOT NULL,             -- 1: it holds nothing now
    PRIMARY KEY (info_hash, version)
);
CREATE TABLE IF NOT EXISTS completions (    -- per file: standard clients' event=completed (BEP 48)
    info_hash  TEXT PRIMARY KEY,
    downloaded INTEGER NOT NULL
);
"""

# columns added since the first schema: (table, column, definition) for stores made before them
MIGRATIONS = [
    ("peers", "kind", "TEXT NOT NULL DEFAULT 'zorrent'"),
    ("peers", "prev_token", "TEXT NOT NULL DEFAULT ''"),
    ("files", "bytes_left", "INTEGER"),
    ("peers", "bt_port", "INTEGER NOT NULL DEFAULT 0"),
    ("torrents", "version", "INTEGER NOT NULL DEFAULT 0"),
    ("peers", "interval_s", "REAL NOT NULL DEFAULT 0"),
    ("peers", "expires", "REAL NOT NULL DEFAULT 0"),
]
PEER_COLUMNS = "peer_id, host, port, token, last_seen, kind, prev_token, bt_port, interval_s, expires"


class SqliteStore(TrackerStore):
    def __init__(self, uri: str) -> None:
        self.uri = uri
        path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else uri[len("sqlite://"):]
        if not path:
            raise StoreError(f"store URI {uri!r} names no file")
        self._lock_fd = -1
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            refuse_network_fs(path)
            self._lock_fd = lock_exclusively(path)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA busy_timeout=5000")
            self.db.executescript(SCHEMA)
            for table, column, definition in MIGRATIONS:
                if column not in {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                    if column == "expires":      # records from before per-peer deadlines: the old rule
                        self.db.execute("UPDATE peers SET expires = last_seen + ? WHERE kind = ?",
                                        (config.PEER_EXPIRY_S, ZORRENT))
                        self.db.execute("UPDATE peers SET expires = last_seen + ? WHERE kind != ?",
                                        (config.HTTP_PEER_EXPIRY_S, ZORRENT))
            self.db.execute("CREATE INDEX IF NOT EXISTS peers_by_expiry ON peers(expires)")
        except sqlite3.Error as exc:
            self._unlock()
            raise StoreError(f"cannot open store {uri}: {exc}") from None
        self._bits: dict[tuple[str, str], Bitfield] = {}   # write-through cache of `files`

    def _write(self, sql: str, args: tuple) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(sql, args)

    @contextmanager
    def savepoint(self):
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("SAVEPOINT handler")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK TO handler")
            self.db.execute("RELEASE handler")
            self._bits.clear()
            raise
        self.db.execute("RELEASE handler")

    def commit(self) -> None:
        if self.db.in_transaction:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                self.db.execute("ROLLBACK")
                self._bits.clear()
                raise StoreError(f"store commit failed: {exc}") from None

    def close(self) -> None:
        try:
            self.commit()
            self.db.close()
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)     # closing the descriptor drops the flock
            self._lock_fd = -1

    # peers
    def put_peer(self, peer: PeerRecord) -> None:
        self._write(f"INSERT INTO peers ({PEER_COLUMNS}) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(peer_id) DO UPDATE SET host=excluded.host, "
                    "port=excluded.port, token=excluded.token, last_seen=excluded.last_seen, kind=excluded.kind, "
                    "prev_token=excluded.prev_token, bt_port=excluded.bt_port, interval_s=excluded.interval_s, "
                    "expires=excluded.expires",
                    (peer.peer_id, peer.host, peer.port, peer.token, peer.last_seen, peer.kind, peer.prev_token,
                     peer.bt_port, peer.interval_s, peer.expires))

    def get_peer(self, peer_id: str) -> PeerRecord | None:
        row = self.db.execute(f"SELECT {PEER_COLUMNS} FROM peers WHERE peer_id=?", (peer_id,)).fetchone()
        return PeerRecord(*row) if row else None

    def swap_peer(self, new: PeerRecord, expected: PeerRecord | None) -> bool:
        current = self.get_peer(new.peer_id)   # one writer: nothing changes it between here and the write
        if (current is None) != (expected is None) or (current is not None and current.token != expected.token):
            return False
        self.put_peer(new)
        return True

    def _log(self, info_hash: str, peer_id: str, pieces: list[int] | None, gone: bool = False) -> None:
        """One change of a zorrent holder: the torrent's version moves on (``changes``)."""
        row = self.db.execute("SELECT version FROM torrents WHERE info_hash=?", (info_hash,)).fetchone()
        if row is None:
            return
        version = row[0] + 1
        if pieces is not None and len(pieces) > config.CHANGE_LOG_PIECES:
            pieces = None
        blob = None if pieces is None else array("I", pieces).tobytes()
        self._write("UPDATE torrents SET version=? WHERE info_hash=?", (version, info_hash))
        self._write("INSERT INTO changes VALUES (?,?,?,?,?)", (info_hash, version, peer_id, blob, int(gone)))
        self._write("DELETE FROM changes WHERE info_hash=? AND version<=?",
                    (info_hash, version - config.CHANGE_LOG_ROWS))

    def drop_pieces(self, peer_id: str) -> None:
        for (info_hash,) in self.db.execute("SELECT info_hash FROM files WHERE peer_id=? AND bytes_left IS NULL",
                                            (peer_id,)).fetchall():
            self._log(info_hash, peer_id, [], gone=True)
        self._write("DELETE FROM files WHERE peer_id=?", (peer_id,))
        for key in [k for k in self._bits if k[1] == peer_id]:
            del self._bits[key]

    def touch_peer(self, peer_id: str, now: float, interval_s: float, expires: float) -> None:
        self._write("UPDATE peers SET last_seen=MAX(last_seen, ?), interval_s=?, expires=MAX(expires, ?) "
                    "WHERE peer_id=?", (now, interval_s, expires, peer_id))

    def delete_peer(self, peer_id: str) -> None:
        self.drop_pieces(peer_id)
        self._write("DELETE FROM peers WHERE peer_id=?", (peer_id,))

    def peers_due(self, now: float, kind: str = ZORRENT) -> list[PeerRecord]:
        return [PeerRecord(*row) for row in self.db.execute(
            f"SELECT {PEER_COLUMNS} FROM peers WHERE expires < ? AND kind = ? ORDER BY peer_id", (now, kind))]

    def count_live(self, now: float, kind: str = ZORRENT) -> int:
        return self.db.execute("SELECT COUNT(*) FROM peers WHERE expires >= ? AND kind = ?", (now, kind)).fetchone()[0]

    def list_peers(self) -> list[PeerRecord]:
        return [PeerRecord(*row) for row in self.db.execute(f"SELECT {PEER_COLUMNS} FROM peers ORDER BY peer_id")]

    def expire_peer(self, peer_id: str, now: float) -> bool:
        peer = self.get_peer(peer_id)
        if peer is None or peer.expires >= now:
            return False
        self.delete_peer(peer_id)   # one writer (the lock file), inside this batch's transaction
        return True

    # torrents
    def put_torrent(self, torrent: TorrentRecord) -> None:
        self._write("INSERT OR IGNORE INTO torrents (info_hash, name, length, piece_length, num_pieces, metainfo) "
                    "VALUES (?,?,?,?,?,?)",
                    (torrent.info_hash, torrent.name, torrent.length, torrent.piece_length,
                     torrent.num_pieces, torrent.metainfo))

    def get_torrent(self, info_hash: str) -> TorrentRecord | None:
        row = self.db.execute("SELECT info_hash, name, length, piece_length, num_pieces, metainfo "
                              "FROM torrents WHERE info_hash=?", (info_hash,)).fetchone()
        return TorrentRecord(*row) if row else None

    def list_torrents(self) -> list[TorrentRecord]:
        return [TorrentRecord(*row) for row in self.db.execute(
            "SELECT info_hash, name, length, piece_length, num_pieces, metainfo FROM torrents ORDER BY info_hash")]

    # files
    def _num_pieces(self, info_hash: str) -> int:
        size = self.num_pieces(info_hash)
        if size is None:
            raise StoreError(f"unknown torrent {info_hash}")
        return size

    def add_pieces(self, info_hash: str, peer_id: str, pieces: list[int]) -> None:
        key = (info_hash, peer_id)
        bits = self._bits.get(key)
        changed = False
        if bits is None:
            row = self.db.execute("SELECT bitfield FROM files WHERE info_hash=? AND peer_id=?",
                                  key).fetchone()
            bits = Bitfield(self._num_pieces(info_hash), row[0] if row else None)
            changed = row is None          # a member with no pieces yet is listed too
        new = [i for i in pieces if bits.add(i)]
        changed |= bool(new)
        self._bits[key] = bits
        if changed:
            self._log(info_hash, peer_id, new)
            self._write("INSERT INTO files (info_hash, peer_id, bitfield, have) VALUES (?,?,?,?) "
                        "ON CONFLICT(info_hash, peer_id) "
                        "DO UPDATE SET bitfield=excluded.bitfield, have=excluded.have",
                        (info_hash, peer_id, bits.to_bytes(), len(bits)))

    def remove_pieces(self, info_hash: str, peer_id: str) -> None:
        if self.db.execute("SELECT 1 FROM files WHERE info_hash=? AND peer_id=? AND bytes_left IS NULL",
                           (info_hash, peer_id)).fetchone():
            self._log(info_hash, peer_id, [], gone=True)
        self._write("DELETE FROM files WHERE info_hash=? AND peer_id=?", (info_hash, peer_id))
        self._bits.pop((info_hash, peer_id), None)

    def holders(self, info_hash: str) -> dict[str, Bitfield]:
        size = self._num_pieces(info_hash)
        return {pid: Bitfield(size, blob) for pid, blob in self.db.execute(
            "SELECT peer_id, bitfield FROM files WHERE info_hash=? AND bytes_left IS NULL ORDER BY peer_id",
            (info_hash,))}

    def bitfield_of(self, info_hash: str, peer_id: str) -> Bitfield | None:
        row = self.db.execute("SELECT bitfield FROM files WHERE info_hash=? AND peer_id=? AND bytes_left IS NULL",
                              (info_hash, peer_id)).fetchone()
        return Bitfield(self._num_pieces(info_hash), row[0]) if row else None

    def changes(self, info_hash: str, since: int) -> tuple[int, list[Change] | None]:
        row = self.db.execute("SELECT version FROM torrents WHERE info_hash=?", (info_hash,)).fetchone()
        version = row[0] if row else 0
        if since < 0 or since > version or since < version - config.CHANGE_LOG_ROWS:
            return version, None
        seen: dict[str, list] = {}      # peer -> [pieces added, re-read whole, gone now, reset]
        for peer_id, blob, gone in self.db.execute(
                "SELECT peer_id, pieces, gone FROM changes WHERE info_hash=? AND version>? ORDER BY version",
                (info_hash, since)):
            s = seen.setdefault(peer_id, [set(), False, False, False])
            if gone:
                seen[peer_id] = [set(), False, True, True]
            else:
                s[2] = False
                if blob is None:
                    s[1] = True
                else:
                    s[0].update(array("I", blob))
        return version, [Change(pid, gone=True) if gone else Change(pid, None if whole else sorted(added), reset=reset)
                         for pid, (added, whole, gone, reset) in sorted(seen.items())]

    def held_by(self, peer_id: str) -> dict[str, int]:
        return dict(self.db.execute("SELECT info_hash, have FROM files WHERE peer_id=?", (peer_id,)))

    # files: standard clients
    def put_client(self, info_hash: str, peer_id: str, left: int) -> None:
        self._write("INSERT INTO files (info_hash, peer_id, bitfield, have, bytes_left) VALUES (?,?,?,0,?) "
                    "ON CONFLICT(info_hash, peer_id) DO UPDATE SET bytes_left=excluded.bytes_left",
                    (info_hash, peer_id, b"", left))

    def clients(self, info_hash: str) -> list[ClientEntry]:
        return [ClientEntry(PeerRecord(*row[:-1]), row[-1]) for row in self.db.execute(
            f"SELECT {', '.join('p.' + c.strip() for c in PEER_COLUMNS.split(','))}, f.bytes_left "
            "FROM files f JOIN peers p ON p.peer_id = f.peer_id "
            "WHERE f.info_hash=? AND f.bytes_left IS NOT NULL ORDER BY p.peer_id", (info_hash,))]

    def add_completed(self, info_hash: str) -> None:
        self._write("INSERT INTO completions VALUES (?, 1) ON CONFLICT(info_hash) "
                    "DO UPDATE SET downloaded = downloaded + 1", (info_hash,))

    def completed(self, info_hash: str) -> int:
        row = self.db.execute("SELECT downloaded FROM completions WHERE info_hash=?", (info_hash,)).fetchone()
        return row[0] if row else 0


NETWORK_FS = {"nfs", "nfs4", "cifs", "smb", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs",
              "lustre", "gpfs", "beegfs", "fuse.sshfs", "fuse.s3fs", "fuse.rclone", "fuse.glusterfs",
              "fuse.cephfs", "davfs", "fuse.davfs2"}


def _unescape_mount(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def filesystem_type(path: str, mounts: str = "/proc/mounts") -> str:
    """The type of the filesystem holding ``path``: the longest mount point above it."""
    real = os.path.realpath(os.path.dirname(os.path.abspath(path)) or ".")
    best, fstype = "", ""
    try:
        with open(mounts) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                point = _unescape_mount(parts[1])
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, fstype = point, parts[2]
    except OSError:
        return ""
    return fstype


def refuse_network_fs(path: str, mounts: str = "/proc/mounts") -> None:
    fstype = filesystem_type(path, mounts)
    if fstype in NETWORK_FS:
        raise StoreError(f"{path} is on a network filesystem ({fstype}), where SQLite's locking is "
                         f"unsafe; keep the tracker's SQLite file on a local disk, or use a mongodb:// store")


def lock_exclusively(path: str) -> int:
    """Hold ``PATH.lock`` for as long as the store is open: one tracker per SQLite file."""
    lock_path = f"{path}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"another tracker already uses {path} (it holds {lock_path}); one tracker per "
                         f"SQLite file: run several trackers on one mongodb:// store instead") from None
    return fd
