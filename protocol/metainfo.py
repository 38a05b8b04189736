"""BEP-3 metainfo (.torrent), single-file and multi-file (``files``, BEP 47 pad files):
read, validate, write, info-hash. Making one (hashing files) is protocol/making.py's.

A BEP 52 hybrid torrent is read through its v1 part (its info-hash is the v1, SHA-1 one);
a v2-only torrent is refused with one line that says so.

Bencode is fastbencode's, which already rejects truncated input, trailing bytes,
unsorted dict keys and leading zeros, so the info dict re-encodes to exactly the
bytes that were read and the info-hash matches libtorrent's and transmission's.
This module holds no session state.
"""
from __future__ import annotations

import hashlib
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import fastbencode

from protocol.errors import MetainfoError
from protocol.pieces import HASH_BYTES, MAX_PIECE_BYTES, MIN_PIECE_BYTES, piece_count, piece_size

MAX_TORRENT_BYTES = 64 * 1024 * 1024
MAX_FILES = 100_000


@dataclass(frozen=True)
class FileEntry:
    """One file of the torrent's byte stream. ``path`` is relative to the torrent's folder;
    it is empty for a single-file torrent (the file is the output path itself)."""

    path: tuple[str, ...]
    length: int
    offset: int            # where the file starts in the torrent's byte stream
    pad: bool = False      # BEP 47 pad file: zeros, never written

    @property
    def shown(self) -> str:
        return "/".join(self.path)


@dataclass(frozen=True)
class Metainfo:
    name: str
    length: int            # total bytes, pad files included
    piece_length: int
    pieces: bytes          # concatenated 20-byte SHA-1s
    announce: str
    info_hash: str         # hex SHA-1 of the bencoded info dict
    raw: bytes             # the bencoded .torrent
    files: tuple[FileEntry, ...] = ()
    multi_file: bool = False
    announce_list: tuple[tuple[str, ...], ...] = ()   # BEP 12 tiers, as read
    private: bool = False  # BEP 27 ``private=1``: peers only from its trackers, never a public door

    @property
    def num_pieces(self) -> int:
        return len(self.pieces) // HASH_BYTES

    def piece_hash(self, index: int) -> bytes:
        return self.pieces[index * HASH_BYTES:(index + 1) * HASH_BYTES]

    def piece_size(self, index: int) -> int:
        return piece_size(index, self.length, self.piece_length)


def _name_problem(name: str) -> str | None:
    if not name:
        return "is empty"
    if name in (".", ".."):
        return "is a directory reference"
    for ch in name:
        if ch in "/\\":
            return "contains a path separator"
        if ch == "\x00" or unicodedata.category(ch) == "Cc":
            return "contains a control character"
    return None


def check_name(name: str) -> None:
    """Reject names that could escape the output directory; allow merely unusual ones."""
    problem = _name_problem(name)
    if problem == "is empty":
        raise MetainfoError("['info']['name'] is empty")
    if problem:
        raise MetainfoError(f"['info']['name'] {name!r} {problem}")


def check_piece_length(plen: int, what: str = "piece size") -> None:
    if plen < MIN_PIECE_BYTES or plen > MAX_PIECE_BYTES or plen & (plen - 1):
        raise MetainfoError(f"{what} must be a power of two from 16 KiB to 16 MiB, not {plen}")


def _check_path(raw: list, where: str) -> tuple[str, ...]:
    """A file's path list: every component is checked as the name is; the message names the path."""
    if not raw:
        raise MetainfoError(f"{where} is empty")
    parts = []
    for j, part in enumerate(raw):
        _typed(part, bytes, f"{where}[{j}]")
        try:
            parts.append(part.decode("utf-8"))
        except UnicodeDecodeError:
            raise MetainfoError(f"{where}[{j}] is not UTF-8") from None
    shown = "/".join(parts)
    if parts[0] == "" or parts[0][:1] in ("/", "\\"):
        raise MetainfoError(f"{where} {shown!r} is an absolute path")
    for part in parts:
        problem = _name_problem(part)
        if problem:
            raise MetainfoError(f"{where} {shown!r}: the component {part!r} {problem}")
    return tuple(parts)


def _parse_files(info: dict) -> tuple[FileEntry, ...]:
    """BEP 3 ``files``: lengths, safe paths, no duplicates or case-fold collisions, BEP 47 pads."""
    files = _need(info, b"files", list, "['info']")
    if not files:
        raise MetainfoError("['info']['files'] is empty")
    if len(files) > MAX_FILES:
        raise MetainfoError(f"['info']['files'] has {len(files)} files, limit {MAX_FILES}")
    entries: list[FileEntry] = []
    seen: dict[tuple[str, ...], str] = {}     # case-folded path -> the path as given
    folders: dict[tuple[str, ...], str] = {}  # case-folded folder -> a file under it
    offset = 0
    for i, f in enumerate(files):
        where = f"['info']['files'][{i}]"
        _typed(f, dict, where)
        length = _need(f, b"length", int, where)
        if length < 0:
            raise MetainfoError(f"{where}['length'] must not be negative, not {length}")
        path = _check_path(_need(f, b"path", list, where), f"{where}['path']")
        attr = f.get(b"attr", b"")
        pad = isinstance(attr, bytes) and b"p" in attr
        entry = FileEntry(path, length, offset, pad)
        offset += length
        entries.append(entry)
        if pad:
            continue
        key = tuple(p.casefold() for p in path)
        if key in seen:
            other = seen[key]
            if other == entry.shown:
                raise MetainfoError(f"{where}['path'] {entry.shown!r} is listed twice")
            raise MetainfoError(f"{where}['path'] {entry.shown!r} collides with {other!r} "
                                f"when case is ignored")
        if key in folders:
            raise MetainfoError(f"{where}['path'] {entry.shown!r} is also a folder of {folders[key]!r}")
        for n in range(1, len(key)):
            if key[:n] in seen:
                raise MetainfoError(f"{where}['path'] {entry.shown!r} is under {seen[key[:n]]!r}, "
                                    f"which is a file")
            folders.setdefault(key[:n], entry.shown)
        seen[key] = entry.shown
    return tuple(entries)


def _typed(value, tp: type, where: str, shown: str | None = None):
    """``value``, if it is a ``tp`` (a bool is no int); else ``WHERE must be TP, not T`` (torf's
    assert_type). ``shown``: the type's name in the message (bencode's byte strings are "str")."""
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise MetainfoError(f"{where} must be {shown or tp.__name__}, not {type(value).__name__}")
    return value


def _need(d: dict, key: bytes, tp: type, where: str):
    if key not in d:
        raise MetainfoError(f"{where}[{key.decode()!r}] is missing")
    return _typed(d[key], tp, f"{where}[{key.decode()!r}]")


def parse(raw: bytes) -> Metainfo:
    """Validate bencoded metainfo and return it; raise MetainfoError naming the problem."""
    if len(raw) > MAX_TORRENT_BYTES:
        raise MetainfoError(f"torrent is {len(raw)} bytes, limit {MAX_TORRENT_BYTES}")
    try:
        top = fastbencode.bdecode(raw)
    except Exception as exc:
        raise MetainfoError(f"not valid bencode: {exc}") from None
    _typed(top, dict, "top level")
    info = _need(top, b"info", dict, "")
    if info.get(b"meta version", 1) != 1 and b"pieces" not in info:   # hybrids keep a v1 part: read that
        raise MetainfoError("v2-only torrents (BEP 52) are not supported; zorrent reads v1 and hybrid "
                            "torrents (make one with v1 piece hashes)")
    try:
        name = _need(info, b"name", bytes, "['info']").decode("utf-8")
    except UnicodeDecodeError:
        raise MetainfoError("['info']['name'] is not UTF-8") from None
    check_name(name)
    multi_file = b"files" in info
    if multi_file:
        if b"length" in info:
            raise MetainfoError("['info'] has both 'length' and 'files'")
        files = _parse_files(info)
        length = sum(f.length for f in files)
        if length <= 0:
            raise MetainfoError("['info']['files'] are all empty; nothing to share")
    else:
        length = _need(info, b"length", int, "['info']")
        if length <= 0:
            raise MetainfoError(f"['info']['length'] must be positive, not {length}")
        files = (FileEntry((), length, 0),)
    plen = _need(info, b"piece length", int, "['info']")
    check_piece_length(plen, "['info']['piece length']")
    pieces = _need(info, b"pieces", bytes, "['info']")
    expected = piece_count(length, plen) * HASH_BYTES
    if len(pieces) != expected:
        raise MetainfoError(
            f"['info']['pieces'] is {len(pieces)} bytes, expected {expected} for {length} bytes "
            f"in {plen}-byte pieces")
    announce = _typed(top.get(b"announce", b""), bytes, "['announce']", "str")
    tiers = _announce_tiers(top.get(b"announce-list", []))
    encoded_info = fastbencode.bencode(info)
    if encoded_info not in raw:  # cannot happen with canonical input; guards the info-hash
        raise MetainfoError("info dict is not canonically encoded")
    return Metainfo(
        name=name, length=length, piece_length=plen, pieces=pieces,
        announce=announce.decode("utf-8", "replace"),
        info_hash=hashlib.sha1(encoded_info).hexdigest(), raw=raw, files=files, multi_file=multi_file,
        announce_list=tiers, private=info.get(b"private") == 1,
    )


def _announce_tiers(value) -> tuple[tuple[str, ...], ...]:
    tiers = []
    for i, tier in enumerate(_typed(value, list, "['announce-list']")):
        for j, url in enumerate(_typed(tier, list, f"['announce-list'][{i}]")):
            _typed(url, bytes, f"['announce-list'][{i}][{j}]", "str")
        tiers.append(tuple(url.decode("utf-8", "replace") for url in tier))
    return tuple(tiers)


def tracker_urls(meta: Metainfo) -> list[str]:
    """Every tracker the torrent names, announce-list tiers first (BEP 12), without repeats."""
    urls = [url for tier in meta.announce_list for url in tier]
    if meta.announce:
        urls.append(meta.announce)
    return list(dict.fromkeys(urls))


def is_private(raw: bytes) -> bool:
    """BEP 27: does this .torrent's info dict say ``private=1``? (False if it is not bencode.)"""
    try:
        info = fastbencode.bdecode(raw).get(b"info")
    except Exception:
        return False
    return isinstance(info, dict) and info.get(b"private") == 1


def info_hash_of(raw: bytes) -> str:
    """Hex SHA-1 of a torrent's info dict, computed before anything else about it is trusted."""
    try:
        top = fastbencode.bdecode(raw)
    except Exception:
        return ""
    if not isinstance(top, dict) or not isinstance(top.get(b"info"), dict):
        return ""
    return hashlib.sha1(fastbencode.bencode(top[b"info"])).hexdigest()


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


def write(meta: Metainfo, path: str | os.PathLike) -> None:
    """Write atomically: a reader never sees half a torrent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(meta.raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:            # a full disk names the file it could not write
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from None


_MADE_IN_MAKING = frozenset({"create", "create_folder", "announce_list", "folder_files", "CREATED_BY"})


def __getattr__(name: str):
    """``metainfo.create`` and the other makers, as before the split: they live in
    protocol/making.py (which imports this module, so it is looked up only when asked for)."""
    if name in _MADE_IN_MAKING:
        from protocol import making

        return getattr(making, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
