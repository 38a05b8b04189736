"""Blocks a BEP 3 connection sends straight from the page cache, with ``os.sendfile``.

A block of a verified piece that lies in one file and is in the page cache is not read
into Python at all: the connection queues a ``Span`` (file, offset, length) after the
piece message's 13-byte header, and its flush hands the span to the kernel, which puts
the file's pages in the socket buffer (no pread, no copy into a bytes object, no copy
into the socket). Blocks of files written O_DIRECT (a download's, ``cache_bypassed``) and
blocks across two files are read as before (node/peer/block_rules.py: read_block).

The rule "a byte changed by a write is never served" (node/peer/integrity.py) holds for
spans the way it holds for reads, once per flush instead of once per block:

- ``before(span)``: before the first span of a file is sent in a flush, that file is
  checked as a read checks it (``PieceFile.change``: the path still names the open inode,
  a regular file, with the size and times our last write left; an unsealed file still
  holds the block). A file the peer has let go of (``closing``, after a re-hash) fails.
- ``after(files)``: once the flush has sent what it could, every sealed file it sent from
  is checked again (fstat: size, mtime, ctime). A write updates mtime before it changes a
  byte, so if both checks pass, the bytes the kernel took were the verified ones.
- If either check fails, the connection is reset (SO_LINGER 0: what is still in our send
  queue is discarded, not sent) and the integrity watch is told (``read_failed``), which
  suspends the torrent and re-hashes it.

What remains is a write that lands after ``after()`` while the pages it changes are still
queued in a socket (sendfile queues references to page-cache pages, not copies; on
loopback they stay referenced in the receiver's queue until it reads them). Such a write
is noticed by the next flush's ``before()`` (the connection is reset then) or by the
integrity sweep (every FILE_CHECK_S); and a block it changed cannot be accepted as good:
every BEP 3 client checks a piece's SHA-1 before it keeps it (BEP 3), so the remote
drops the piece and asks again. The ZeroMQ data port serves copies (pread), which no
later write reaches.

Each queued span holds its file open (``PieceFile.hold``), so its descriptor number is
never closed and reused by another file while the span waits; ``drop`` lets go.
"""
from __future__ import annotations

import os

from node.peer.layout import moved
from node.peer.storage import PieceFile


class Span:
    """``length`` bytes at ``offset`` of file ``index`` of ``file``, to go out by sendfile."""

    __slots__ = ("file", "index", "fd", "offset", "length")

    def __init__(self, file: PieceFile, index: int, offset: int, length: int) -> None:
        file.hold()
        self.file, self.index, self.fd, self.offset, self.length = file, index, file.fds[index], offset, length

    def __len__(self) -> int:
        return self.length

    def drop(self) -> None:
        """Sent, or never to be: the file may close."""
        if self.fd >= 0:
            self.fd = -1
            self.file.release()


def span_of(file: PieceFile, piece_index: int, block_offset: int, length: int) -> Span | None:
    """A span for the block, or None when it must be read instead (two files; a pad
    file; a file written O_DIRECT, whose blocks a read thread fetches from the device)."""
    if file.cache_bypassed or file.closing:
        return None
    spans = file.layout.spans(piece_index * file.meta.piece_length + block_offset, length)
    if len(spans) != 1:
        return None
    index, at, n = spans[0]
    if file.fds[index] < 0:
        return None
    return Span(file, index, at, n)


def before(span: Span) -> str:
    """Why the span's file may not be sent from ("" if it may), checked as a read is."""
    file = span.file
    if file.closing or file.fds[span.index] != span.fd:
        return f"{file.path} is no longer served"
    return file.change([span.index], lambda i: span.offset + span.length)


def after(files: dict) -> tuple[PieceFile | None, str]:
    """The first sealed file of ``files`` ({(file, index)}) that moved since it was
    checked, and why; (None, "") if none did."""
    for file, index in files:
        if not file.sealed or file.fds[index] < 0:
            continue
        try:
            why = moved(file.layout.path_of(index), os.fstat(file.fds[index]), file.stamps[index], True, 0)
        except OSError as exc:
            why = f"cannot stat {file.path}: {exc.strerror or exc}"
        if why:
            return file, why
    return None, ""
