"""Making BEP-3 metainfo: hash a file, or every file of a folder, into a .torrent (torf's
split: reading and validating stay in protocol/metainfo.py, which this builds on).

What is made is read back through ``metainfo.parse``, so a torrent made here passes the
same checks as one from anywhere else, and its info-hash is computed in one place."""
from __future__ import annotations

import os
import time
from pathlib import Path

import fastbencode

from protocol.errors import MetainfoError
from protocol.metainfo import Metainfo, check_name, check_piece_length, parse
from protocol.pieces import auto_piece_length, iter_piece_hashes, iter_stream_hashes

CREATED_BY = "zorrent"


def announce_list(*urls: str) -> list[list[str]]:
    """BEP 12 ``announce-list``: one tier per URL, in order of preference; empty and repeated
    URLs are dropped. The first is the torrent's ``announce``, so clients without BEP 12 agree.
    A single URL needs no list: then it is empty."""
    tiers = [[url] for url in dict.fromkeys(u for u in urls if u)]
    return tiers if len(tiers) > 1 else []


def _top(info: dict, announce: str, tiers: list[list[str]] | None = None) -> bytes:
    """The whole .torrent around ``info``; ``tiers``, if any, becomes the BEP 12
    ``announce-list`` (see ``announce_list``)."""
    top = {
        b"announce": announce.encode(),
        b"created by": CREATED_BY.encode(),
        b"creation date": int(time.time()),
        b"info": info,
    }
    if tiers:
        top[b"announce-list"] = [[url.encode() for url in tier] for tier in tiers if tier]
    return fastbencode.bencode(top)


def folder_files(folder: Path) -> list[tuple[tuple[str, ...], Path]]:
    """Every regular file under ``folder`` (symlinked folders are not followed), sorted by path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel = Path(dirpath).relative_to(folder).parts
        for fname in filenames:
            p = Path(dirpath) / fname
            if p.is_file():
                found.append(((*rel, fname), p))
    return sorted(found)


def _hashed(hashes, plen: int, length: int, progress) -> bytes:
    """Join piece digests, telling ``progress(n)`` (if given) of every n bytes hashed."""
    if progress is None:
        return b"".join(hashes)
    out = []
    for i, digest in enumerate(hashes):
        out.append(digest)
        progress(min(plen, length - i * plen))
    return b"".join(out)


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise MetainfoError(f"cannot read {path}: {exc.strerror}") from None


def _piece_length(asked: int | None, length: int) -> int:
    plen = asked or auto_piece_length(length)
    check_piece_length(plen)
    return plen


def _made(name: str, layout: dict, plen: int, pieces: bytes, announce: str, tiers: list[list[str]] | None,
          private: bool) -> Metainfo:
    """The metainfo around ``layout`` (``length``, or ``files``), read back through ``parse``."""
    check_name(name)
    info = {**layout, b"name": name.encode(), b"piece length": plen, b"pieces": pieces}
    if private:
        info[b"private"] = 1     # BEP 27; inside info, so the info-hash (and a magnet) says so too
    return parse(_top(info, announce, tiers))


def create_folder(folder: str | os.PathLike, announce: str, piece_length: int | None = None,
                  tiers: list[list[str]] | None = None, private: bool = False, progress=None) -> Metainfo:
    """Hash every file under ``folder`` as one multi-file torrent (BEP 3 ``files``), on the
    whole-file reader (pieces.iter_stream_hashes: read-ahead threads, O_DIRECT, several hash
    threads). A file is open only while the reads in flight cover it, however many the
    folder holds. ``progress(n)``, if given, is told of every n bytes hashed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MetainfoError(f"{folder} is not a folder")
    found = folder_files(folder)
    try:
        lengths = [p.stat().st_size for _, p in found]
    except OSError as exc:
        raise MetainfoError(f"cannot read {exc.filename}: {exc.strerror}") from None
    length = sum(lengths)
    if length <= 0:
        raise MetainfoError(f"{folder} has no data to share")
    plen = _piece_length(piece_length, length)

    def opener(p: Path, n: int):
        def open_checked() -> int:
            fd = _open(p)
            if os.fstat(fd).st_size != n:
                os.close(fd)
                raise MetainfoError(f"{p} changed size while it was hashed")
            return fd
        return open_checked

    try:
        pieces = _hashed(iter_stream_hashes([(opener(p, n), n) for (_, p), n in zip(found, lengths)], plen),
                         plen, length, progress)
    except OSError as exc:
        raise MetainfoError(f"cannot read {folder}: {exc.strerror or exc}") from None
    files = [{b"length": n, b"path": [c.encode() for c in rel]} for (rel, _), n in zip(found, lengths)]
    return _made(folder.resolve().name, {b"files": files}, plen, pieces, announce, tiers, private)


def create(path: str | os.PathLike, announce: str, piece_length: int | None = None,
           tiers: list[list[str]] | None = None, private: bool = False, progress=None) -> Metainfo:
    """Hash ``path`` and build its metainfo (not yet written anywhere); ``progress(n)``, if
    given, is told of every n bytes hashed."""
    path = Path(path)
    fd = _open(path)
    try:
        length = os.fstat(fd).st_size
        if length <= 0:
            raise MetainfoError(f"{path} is empty; nothing to share")
        plen = _piece_length(piece_length, length)
        pieces = _hashed(iter_piece_hashes(fd, length, plen), plen, length, progress)
    finally:
        os.close(fd)
    return _made(path.name, {b"length": length}, plen, pieces, announce, tiers, private)
