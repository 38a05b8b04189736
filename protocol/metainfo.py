"""BEP-3 single-file metainfo (.torrent): create, read, validate, info-hash.

Bencode is fastbencode's, which already rejects truncated input, trailing bytes,
unsorted dict keys and leading zeros, so the info dict re-encodes to exactly the
bytes that were read and the info-hash matches libtorrent's and transmission's.
This module holds no session state.
"""
from __future__ import annotations

import hashlib
import os
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import fastbencode

from protocol.errors import MetainfoError
from protocol.pieces import (
    HASH_BYTES,
    MAX_PIECE_BYTES,
    MIN_PIECE_BYTES,
    auto_piece_length,
    iter_piece_hashes,
    piece_count,
    piece_size,
)

CREATED_BY = "zorrent"
MAX_TORRENT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Metainfo:
    name: str
    length: int
    piece_length: int
    pieces: bytes          # concatenated 20-byte SHA-1s
    announce: str
    info_hash: str         # hex SHA-1 of the bencoded info dict
    raw: bytes             # the bencoded .torrent
    announce_list: tuple[tuple[str, ...], ...] = ()   # BEP 12 tiers, as read

    @property
    def num_pieces(self) -> int:
        return len(self.pieces) // HASH_BYTES

    def piece_hash(self, index: int) -> bytes:
        return self.pieces[index * HASH_BYTES:(index + 1) * HASH_BYTES]

    def piece_size(self, index: int) -> int:
        return piece_size(index, self.length, self.piece_length)


def check_name(name: str) -> None:
    """Reject names that could escape the output directory; allow merely unusual ones."""
    if not name:
        raise MetainfoError("['info']['name'] is empty")
    if name in (".", ".."):
        raise MetainfoError(f"['info']['name'] {name!r} is a directory reference")
    for ch in name:
        if ch in "/\\":
            raise MetainfoError(f"['info']['name'] {name!r} contains a path separator")
        if ch == "\x00" or unicodedata.category(ch) == "Cc":
            raise MetainfoError(f"['info']['name'] {name!r} contains a control character")


def _need(d: dict, key: bytes, tp: type, where: str):
    if key not in d:
        raise MetainfoError(f"{where}[{key.decode()!r}] is missing")
    value = d[key]
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise MetainfoError(f"{where}[{key.decode()!r}] must be {tp.__name__}, not {type(value).__name__}")
    return value


def parse(raw: bytes) -> Metainfo:
    """Validate bencoded metainfo and return it; raise MetainfoError naming the problem."""
    if len(raw) > MAX_TORRENT_BYTES:
        raise MetainfoError(f"torrent is {len(raw)} bytes, limit {MAX_TORRENT_BYTES}")
    try:
        top = fastbencode.bdecode(raw)
    except Exception as exc:
        raise MetainfoError(f"not valid bencode: {exc}") from None
    if not isinstance(top, dict):
        raise MetainfoError(f"top level must be dict, not {type(top).__name__}")
    info = _need(top, b"info", dict, "")
    if b"files" in info:
        raise MetainfoError("multi-file torrents are not supported (make one torrent per file)")
    try:
        name = _need(info, b"name", bytes, "['info']").decode("utf-8")
    except UnicodeDecodeError:
        raise MetainfoError("['info']['name'] is not UTF-8") from None
    check_name(name)
    length = _need(info, b"length", int, "['info']")
    if length <= 0:
        raise MetainfoError(f"['info']['length'] must be positive, not {length}")
    plen = _need(info, b"piece length", int, "['info']")
    if plen < MIN_PIECE_BYTES or plen > MAX_PIECE_BYTES or plen & (plen - 1):
        raise MetainfoError(
            f"['info']['piece length'] must be a power of two from 16 KiB to 16 MiB, not {plen}")
    pieces = _need(info, b"pieces", bytes, "['info']")
    expected = piece_count(length, plen) * HASH_BYTES
    if len(pieces) != expected:
        raise MetainfoError(
            f"['info']['pieces'] is {len(pieces)} bytes, expected {expected} for {length} bytes "
            f"in {plen}-byte pieces")
    announce = top.get(b"announce", b"")
    if not isinstance(announce, bytes):
        raise MetainfoError(f"['announce'] must be str, not {type(announce).__name__}")
    tiers = _announce_tiers(top.get(b"announce-list", []))
    encoded_info = fastbencode.bencode(info)
    if encoded_info not in raw:  # cannot happen with canonical input; guards the info-hash
        raise MetainfoError("info dict is not canonically encoded")
    return Metainfo(
        name=name, length=length, piece_length=plen, pieces=pieces,
        announce=announce.decode("utf-8", "replace"),
        info_hash=hashlib.sha1(encoded_info).hexdigest(), raw=raw, announce_list=tiers,
    )


def _announce_tiers(value) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, list):
        raise MetainfoError(f"['announce-list'] must be list, not {type(value).__name__}")
    tiers = []
    for i, tier in enumerate(value):
        if not isinstance(tier, list):
            raise MetainfoError(f"['announce-list'][{i}] must be list, not {type(tier).__name__}")
        for j, url in enumerate(tier):
            if not isinstance(url, bytes):
                raise MetainfoError(f"['announce-list'][{i}][{j}] must be str, not {type(url).__name__}")
        tiers.append(tuple(url.decode("utf-8", "replace") for url in tier))
    return tuple(tiers)


def announce_list(trackers: list[str]) -> list[list[str]]:
    """BEP 12 ``announce-list`` for the trackers a torrent is made with: the one place
    that builds it. Trackers on one store are interchangeable, so they share one tier
    (a client may try them in any order); ours prefer the listed order."""
    return [list(trackers)] if trackers else []


def tracker_urls(meta: Metainfo) -> list[str]:
    """Every tracker the torrent names, announce-list tiers first (BEP 12), without repeats."""
    urls = [url for tier in meta.announce_list for url in tier]
    if meta.announce:
        urls.append(meta.announce)
    return list(dict.fromkeys(urls))


def read(path: str | os.PathLike) -> Metainfo:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_TORRENT_BYTES + 1)
    except FileNotFoundError:
        raise MetainfoError(f"torrent file not found: {path}") from None
    except OSError as exc:
        raise MetainfoError(f"cannot read torrent {path}: {exc.strerror}") from None
    try:
        return parse(raw)
    except MetainfoError as exc:
        raise MetainfoError(f"{path}: {exc.message}") from None


def create(path: str | os.PathLike, announce: str | list[str], piece_length: int | None = None) -> Metainfo:
    """Hash ``path`` and build its metainfo (not yet written anywhere). ``announce`` is
    one tracker or several; with several, all go in ``announce-list`` (BEP 12)."""
    trackers = [announce] if isinstance(announce, str) else list(announce)
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise MetainfoError(f"cannot read {path}: {exc.strerror}") from None
    try:
        length = os.fstat(fd).st_size
        if length <= 0:
            raise MetainfoError(f"{path} is empty; nothing to share")
        plen = piece_length or auto_piece_length(length)
        if plen < MIN_PIECE_BYTES or plen > MAX_PIECE_BYTES or plen & (plen - 1):
            raise MetainfoError(f"piece size must be a power of two from 16 KiB to 16 MiB, not {plen}")
        pieces = b"".join(iter_piece_hashes(fd, length, plen))
    finally:
        os.close(fd)
    check_name(path.name)
    info = {b"length": length, b"name": path.name.encode(), b"piece length": plen, b"pieces": pieces}
    top = {
        b"announce": (trackers[0] if trackers else "").encode(),
        b"created by": CREATED_BY.encode(),
        b"creation date": int(time.time()),
        b"info": info,
    }
    if len(trackers) > 1:
        top[b"announce-list"] = [[url.encode() for url in tier] for tier in announce_list(trackers)]
    return parse(fastbencode.bencode(top))


def write(meta: Metainfo, path: str | os.PathLike) -> None:
    """Write atomically: a reader never sees half a torrent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(meta.raw)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
