"""One torrent's data on disk (a file, or a folder of files). Pieces are read and written
at their offsets; the peer never caches whole files in memory."""
from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

from node.peer.direct import DIRECT_ALIGN, pwritev_all, write_direct
from node.peer.layout import FileChanged, Layout, Stamp, StorageError, file_change, moved
from node.peer.layout import why as _why
from protocol.errors import ErrorCode
from protocol.metainfo import Metainfo
from protocol.pieces import Bitfield, iter_piece_hashes, iter_stream_hashes

if TYPE_CHECKING:
    from node.peer.blockpool import BlockPool

Buffer = Union[bytes, bytearray]   # a block read: bytes, or a PoolBuffer (node/peer/blockpool.py)

__all__ = ["FileChanged", "PieceFile", "PendingRead", "StorageError", "sha1_of"]


class PieceFile:
    """A torrent's data on disk: one file, or a folder of files (see ``layout``). Pieces are
    read and written as spans of the files they cover; pad files read as zeros."""

    def __init__(self, meta: Metainfo, path: Path, fds: list[int], writable: bool) -> None:
        self.meta, self.path, self.fds, self.writable = meta, path, fds, writable
        self.layout = Layout(meta, path)
        self.fresh = False   # created empty just now: nothing on disk to recheck
        self.direct_fds = [-1] * len(fds)  # the same files opened O_DIRECT: verified pieces bypass the page cache
        self.refused_fds: list[int] = []       # O_DIRECT descriptors the filesystem refused
        self.io_lock = threading.Lock()
        self.holds = 0                         # pieces with the disk threads (reads, hashes, writes); close() waits
        self.closing = False
        self.stamps = [Stamp.of(os.fstat(fd)) if fd >= 0 else None for fd in fds]  # as opened, then
        self.sealed = False                    # as our last write left them; sealed: complete, no longer written
        self.follow = not writable             # a seed may be reached through a symlink; a download never
        self.sweep_at = 0                      # the next file a sweep checks (a big folder, a batch at a time)

    @property
    def fd(self) -> int:
        """The first file's descriptor (-1 once closed)."""
        return self.fds[0] if self.fds else -1

    def next_sweep(self, count: int) -> list[int]:
        """The next ``count`` files (indexes) a sweep checks, round the folder; the cursor moves on."""
        if not self.fds:
            return []
        count = min(count, len(self.fds))
        files = [(self.sweep_at + k) % len(self.fds) for k in range(count)]
        self.sweep_at = (self.sweep_at + count) % len(self.fds)
        return files

    def use_direct_io(self) -> bool:
        """Write pieces with O_DIRECT where the filesystem allows it; buffered otherwise.

        Reopening through /proc/self/fd reaches the inode already opened (no path lookup,
        so no symlink race).
        """
        if not hasattr(os, "O_DIRECT"):
            return False
        for i, fd in enumerate(self.fds):
            if fd < 0 or self.direct_fds[i] >= 0 or self.layout.entries[i].length == 0:
                continue
            try:
                self.direct_fds[i] = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
            except OSError:
                break
        return self.cache_bypassed

    @classmethod
    def open_seed(cls, meta: Metainfo, path: Path) -> "PieceFile":
        piece_file = cls(meta, path, Layout(meta, path).open_seed(), writable=False)
        piece_file.sealed = True
        return piece_file

    @classmethod
    def reopen(cls, meta: Metainfo, path: Path, follow: bool) -> "PieceFile":
        """Whatever is at ``path`` now, read-only and sealed, to re-hash it after a change."""
        piece_file = cls(meta, path, Layout(meta, path).reopen(follow), writable=False)
        piece_file.sealed, piece_file.follow = True, follow
        return piece_file

    def seal(self) -> None:
        """Complete, and nothing writes any more: from now on each file's size and times must
        stay as our last write left them (so a change made since then is noticed)."""
        self.sealed = True

    def change(self, files: Sequence[int] | None = None, need: Callable[[int], int] | None = None) -> str:
        """Why the data on disk is no longer what was verified ("" if it still is), checking
        ``files`` (default: all). An unsealed file (being downloaded) must still hold
        ``need(i)`` bytes (the end of its last verified piece, or of the block being read)."""
        for i in range(len(self.fds)) if files is None else files:
            fd = self.fds[i]
            if fd >= 0:
                at_least = need(i) if need and not self.sealed else 0
                why = file_change(fd, self.layout.path_of(i), self.stamps[i], self.sealed, self.follow, at_least)
                if why:
                    return why
        return ""

    def needed(self, i: int, have: Bitfield) -> int:
        """Bytes file ``i`` must hold for the verified pieces ``have``: up to the end of the
        last of them that covers it (pieces land in any order)."""
        entry, piece_length = self.layout.entries[i], self.meta.piece_length
        if entry.length == 0:
            return 0
        first, last = entry.offset // piece_length, (entry.offset + entry.length - 1) // piece_length
        for piece in range(last, first - 1, -1):
            if piece in have:
                return min(entry.length, (piece + 1) * piece_length - entry.offset)
        return 0

    @classmethod
    def open_download(cls, meta: Metainfo, path: Path, resuming: bool = False) -> "PieceFile":
        """Create (or reopen) the output file(s), never following a symlink planted in their place.

        Files grow as verified pieces land, so a full disk shows up as a failed write
        mid-download. An existing file is taken only if it is our own partial download
        (``resuming``) or already has its length (it is rechecked, not trusted).
        """
        fds, fresh = Layout(meta, path).open_download(resuming)
        piece_file = cls(meta, path, fds, writable=True)
        piece_file.fresh = fresh
        return piece_file

    def recheck(self, trusted: Bitfield | None = None, progress: Callable[[int], None] | None = None,
                stop: Callable[[], bool] | None = None) -> Bitfield:
        """Hash the pieces on disk that ``trusted`` does not vouch for; keep those that match.

        Runs on a worker thread (never the event loop: a large file takes minutes), the
        pieces of a complete file hashed on several threads at once (iter_piece_hashes).
        ``progress(n)`` is told of every n bytes hashed; once ``stop()`` is true, it raises
        StorageError at the next piece."""
        meta = self.meta
        have = Bitfield(meta.num_pieces, trusted.to_bytes() if trusted else None)

        def step(i: int) -> None:
            if stop is not None and stop():
                raise StorageError("the peer is stopping")
            if progress is not None:
                progress(meta.piece_size(i))

        try:
            if trusted is None and self.layout.sizes_complete(self.fds):
                if meta.multi_file:
                    hashes = iter_stream_hashes(
                        [(fd, e.length) for fd, e in zip(self.fds, self.layout.entries)], meta.piece_length)
                else:
                    hashes = iter_piece_hashes(self.fd, meta.length, meta.piece_length)
                for i, digest in enumerate(hashes):
                    step(i)
                    if digest == meta.piece_hash(i):
                        have.add(i)
            else:
                for i in range(meta.num_pieces):
                    if i not in have:
                        step(i)
                        if self.verify(i):
                            have.add(i)
        except OSError as exc:
            raise StorageError(f"cannot read {self.path}: {_why(exc)}") from None
        return have

    def bytes_to_hash(self, trusted: Bitfield | None) -> int:
        """What ``recheck(trusted)`` reads: every byte of the pieces ``trusted`` does not vouch for."""
        meta = self.meta
        if not trusted:
            return meta.length
        last = meta.num_pieces - 1
        vouched = len(trusted) * meta.piece_length - (
            meta.piece_length - meta.piece_size(last) if last in trusted else 0)
        return meta.length - vouched

    def verify(self, piece_index: int) -> bool:
        size = self.meta.piece_size(piece_index)
        data = self._read_range(piece_index * self.meta.piece_length, size)
        return data is not None and hashlib.sha1(data).digest() == self.meta.piece_hash(piece_index)

    def read(self, piece_index: int, block_offset: int, length: int, pool: BlockPool | None = None) -> Buffer:
        """A block of a verified piece (read into a buffer of ``pool`` if given). Its files are
        checked (``change``) before the read and, once sealed, their own stamps after it too: a
        write updates mtime before it changes any byte, so data read from a file that changed
        meanwhile is never returned."""
        offset = piece_index * self.meta.piece_length + block_offset
        spans = self.layout.spans(offset, length)
        files = [i for i, _, _ in spans]
        if why := self.change(files, {i: at + n for i, at, n in spans}.get):
            raise FileChanged(why)
        try:
            data = self._read_range(offset, length, pool)
        except OSError as exc:
            raise FileChanged(self.change(files=files) or f"cannot read {self.path}: {_why(exc)}") from None
        if data is None:
            raise FileChanged(self.change(files=files) or f"{self.path} is shorter than the torrent says")
        if self.sealed:                  # what was read is what was verified only if nothing wrote since
            for i in files:
                if self.fds[i] >= 0:
                    try:
                        why = moved(self.layout.path_of(i), os.fstat(self.fds[i]), self.stamps[i], True, 0)
                    except OSError as exc:
                        why = f"cannot stat {self.path}: {_why(exc)}"
                    if why:
                        raise FileChanged(why)
        return data

    def _read_range(self, offset: int, length: int, pool: BlockPool | None = None) -> Buffer | None:
        """The bytes at ``offset`` of the torrent's stream (None if a file is short), read
        into a buffer of ``pool`` if given."""
        spans = self.layout.spans(offset, length)
        if pool is None and len(spans) == 1:
            i, at, n = spans[0]
            if self.fds[i] >= 0:
                data = os.pread(self.fds[i], n, at)
                return data if len(data) == n else None
        out = bytearray(length) if pool is None else pool.take(length)
        view, done = memoryview(out), 0
        for i, at, n in spans:
            if self.fds[i] >= 0:
                got = os.preadv(self.fds[i], [view[done:done + n]], at)
                if got != n:
                    return None
            else:                          # a pad file reads as zeros (a pooled buffer holds stale bytes)
                view[done:done + n] = bytes(n)
            done += n
        return out if pool is not None else bytes(out)

    def write_piece(self, piece_index: int, buffers: Sequence[Any]) -> None:
        """Write a verified piece at its offset: O_DIRECT through an aligned bounce buffer,
        or buffered (pwritev) straight from the received buffers. A piece that spans
        files is written file by file; pad files are never written."""
        offset = piece_index * self.meta.piece_length
        spans = self.layout.spans(offset, self.meta.piece_size(piece_index))
        parts = [buffers] if len(spans) == 1 else _cut(buffers, [n for _, _, n in spans])
        for (i, at, _), part in zip(spans, parts):
            if self.fds[i] >= 0:
                self._write_span(i, at, part)
                with self.io_lock:         # the file as our write left it; the last fstat taken is the newest
                    self.stamps[i] = Stamp.of(os.fstat(self.fds[i]))

    def _write_span(self, i: int, offset: int, buffers: Sequence[Any]) -> None:
        direct_fd = self.direct_fds[i]
        if direct_fd >= 0 and offset % DIRECT_ALIGN == 0:
            try:
                write_direct(direct_fd, self.fds[i], offset, buffers)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                with self.io_lock:
                    if self.direct_fds[i] == direct_fd:   # the filesystem refuses O_DIRECT: buffered from now on
                        self.direct_fds[i] = -1
                        self.refused_fds.append(direct_fd)  # closed with the file (another thread may be using it)
        pwritev_all(self.fds[i], offset, list(buffers))

    def hold(self) -> None:
        """A piece goes to a disk thread: the descriptors stay open until ``release``."""
        with self.io_lock:
            self.holds += 1

    def release(self) -> None:
        with self.io_lock:
            self.holds -= 1
            last = self.closing and self.holds == 0
        if last:
            self._close_fds()

    @property
    def cache_bypassed(self) -> bool:
        """Pieces were written O_DIRECT, so reading one back waits for the device."""
        return any(fd >= 0 for fd in self.direct_fds)

    def dup_fds(self) -> list[int]:
        """Duplicates of the open descriptors, for an fdatasync on another thread."""
        with self.io_lock:
            return [os.dup(fd) for fd in self.fds if fd >= 0]

    def stamp(self) -> tuple[int, int, int]:
        """(size, mtime, inode) of the data on disk, as the resume state records it."""
        return self.layout.stamp()

    def delete(self) -> None:
        """Delete the downloaded file, or the folder's files and the folders they leave empty."""
        self.layout.delete()

    def read_later(self, piece_index: int, block_offset: int, length: int) -> "PendingRead":
        """A block to read on a read thread; the descriptors stay open until it is read."""
        self.hold()
        return PendingRead(self, piece_index, block_offset, length)

    def close(self) -> None:
        """Close now, or when the last held piece is done (a descriptor number must not
        be reused by another file while a disk thread still reads or writes through it)."""
        with self.io_lock:
            self.closing = True
            if self.holds:
                return
        self._close_fds()

    def _close_fds(self) -> None:
        with self.io_lock:
            fds = [fd for fd in (*self.direct_fds, *self.refused_fds, *self.fds) if fd >= 0]
            self.direct_fds = [-1] * len(self.direct_fds)
            self.fds = [-1] * len(self.fds)
            self.refused_fds.clear()   # bounce buffers unmap with this object (thread-local, one per write thread)
        for fd in fds:
            os.close(fd)


class PendingRead:
    """A block the data port serves, read off the event loop. A piece this peer downloaded
    was written O_DIRECT, so serving it can mean a device read of a few milliseconds."""

    __slots__ = ("file", "piece_index", "block_offset", "length")

    def __init__(self, file: PieceFile, piece_index: int, block_offset: int, length: int) -> None:
        self.file, self.piece_index, self.block_offset, self.length = file, piece_index, block_offset, length

    def cancel(self) -> None:
        """Not to be read after all (refused, or its asker gave up)."""
        self.file.release()

    def __call__(self, pool: BlockPool | None = None) -> Buffer:
        try:
            if self.file.closing:
                raise StorageError(f"{self.file.path} is no longer served", ErrorCode.UNKNOWN_TORRENT)
            return self.file.read(self.piece_index, self.block_offset, self.length, pool)
        finally:
            self.file.release()


def _cut(buffers: Sequence[Any], sizes: list[int]) -> list[list[memoryview]]:
    """The received buffers split into consecutive runs of ``sizes`` bytes, without copying."""
    views = [memoryview(b).cast("B") for b in buffers]
    out: list[list[memoryview]] = []
    k = 0
    for size in sizes:
        part: list[memoryview] = []
        while size:
            v = views[k]
            n = min(size, len(v))
            part.append(v[:n])
            size -= n
            if n == len(v):
                k += 1
            else:
                views[k] = v[n:]
        out.append(part)
    return out


def sha1_of(buffers: Sequence[Any]) -> bytes:
    h = hashlib.sha1()
    for b in buffers:
        h.update(b)
    return h.digest()
