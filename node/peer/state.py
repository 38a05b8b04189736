"""A peer's resume state on disk: what it seeds or downloads, and which pieces of each
are verified. Written atomically (write, fsync, rename, fsync the directory), so a
crash at any moment leaves either the old state or the new one.

Piece data is fsynced before a state that claims it is written, so a piece listed
here is on disk. Pieces not listed are re-hashed on restart, never trusted.
"""
from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import asdict, dataclass

from node import config

log = logging.getLogger("zorrent.state")
STATE_VERSION = 1


@dataclass
class TorrentState:
    info_hash: str
    metainfo: str          # base64 of the .torrent
    path: str
    role: str              # "seed" (uploaded) or "download"
    verified: str          # base64 of the bitfield
    size: int              # file size, mtime and inode when saved: a mismatch means full recheck
    mtime_ns: int          # (size -1: the file was missing)
    fetched: int = 0       # pieces received from the network, over every run
    ino: int = 0           # 0 in a state written before inodes were recorded: rechecked once

    @property
    def metainfo_raw(self) -> bytes:
        return base64.b64decode(self.metainfo)

    @property
    def verified_bits(self) -> bytes:
        return base64.b64decode(self.verified)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class PeerState:
    token: str = ""        # the tracker session, so a restart can take its own live record back
    torrents: list = None

    def __post_init__(self):
        self.torrents = self.torrents or []


def load(peer_id: str) -> PeerState:
    path = config.peer_state_path(peer_id)
    try:
        raw = json.loads(path.read_text())
        if raw.get("version") != STATE_VERSION:
            raise ValueError(f"version {raw.get('version')}")
        return PeerState(raw.get("token", ""), [TorrentState(**t) for t in raw["torrents"]])
    except FileNotFoundError:
        return PeerState()
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        log.error("ignoring unreadable state %s: %s (its files will be rechecked on upload/download)",
                  path, exc)
        return PeerState()


def save(peer_id: str, token: str, torrents: list[TorrentState]) -> None:
    path = config.peer_state_path(peer_id)
    config.ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    data = json.dumps({"version": STATE_VERSION, "peer_id": peer_id, "token": token,
                       "torrents": [asdict(t) for t in torrents]}).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

