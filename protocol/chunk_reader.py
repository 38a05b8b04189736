"""A whole file, or a folder's files as one stream, read in order by reader threads ahead of its
hashing, into a bounded ring of buffers.

Why a thread of its own, and why O_DIRECT (measured on this project's 2-core VM, virtio
disk, 4 GiB from a cold cache, see bench/RESULTS.md "hashrate"):
- A buffered read of a cold file cost the kernel 1.3-1.9 s of CPU per GiB (page-cache
  insertion, then the copy), so a buffered reader alone ran at 500-650 MiB/s with a core
  busy in the kernel, and the hash threads got what was left of two cores.
- The same file read O_DIRECT (the device writes straight into our buffer) took 0.05 s of
  CPU per GiB and ran at the device's rate, 750-1100 MiB/s.
- A thread that reads and then hashes leaves the device idle while it hashes; reader
  threads keep reads in flight all the time, and the hash threads take the chunks they filled.

A chunk already in the page cache (a file just written or just read) is copied from it
(faster than the device, and no device time spent); any other is read O_DIRECT. Where
O_DIRECT is refused (tmpfs, some network file systems), every chunk is read buffered, with
POSIX_FADV_SEQUENTIAL so the kernel reads ahead.

Several files (a folder torrent) are read as one stream, in chunks aligned to the stream,
not to each file: a chunk may hold the end of one file and the start of the next, so every
piece is whole in one chunk whatever the files' sizes, and the hash threads never wait for
two. A file's bytes rarely land at a 4 KiB-aligned place of a chunk, as O_DIRECT needs; each
span is read O_DIRECT at the aligned place nearest its own and moved into place (memmove,
about 1 ms per 8 MiB, against 1.3-1.9 s of kernel CPU per GiB for a buffered read), and the
chunk's view starts where its largest span needs no move at all. A span of several files in
one chunk is read in stream order, so what a rounded-up read spills past a span's end is
overwritten by the next span, or falls in the buffer's spare pages.

Memory: ``buffers`` chunks (each ``chunk`` + 3 pages), allocated once per hash; a reader
waits for a free one. Files: an opener's file is opened when a chunk first needs it and
closed once every chunk that covers it has been read, so a folder of 100,000 files holds
only the few that the reads in flight cover.
"""
from __future__ import annotations

import bisect
import ctypes
import errno
import mmap
import os
import queue
import threading
from typing import Callable, Iterator, Sequence, Union

PAGE = mmap.PAGESIZE
DIRECT_ALIGN = 4096          # O_DIRECT offsets, lengths and buffer addresses are multiples of this
_END = object()


class Chunk:
    """``view`` holds the stream's bytes at ``offset``; ``release()`` hands the buffer back."""

    __slots__ = ("offset", "view", "_buf", "_ring")

    def __init__(self, offset: int, view: memoryview, buf: mmap.mmap, ring: queue.SimpleQueue) -> None:
        self.offset, self.view, self._buf, self._ring = offset, view, buf, ring

    def release(self) -> None:
        self.view.release()
        self._ring.put(self._buf)


class _Slot:
    """One chunk's read, in file order: ``ready`` once it is read (or failed)."""

    __slots__ = ("ready", "chunk", "error")

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.chunk: Chunk | None = None
        self.error: BaseException | None = None


Source = Union[int, Callable[[], int]]
"""Where a part's bytes come from: an open descriptor (the caller's, never closed here), -1
(that many zero bytes: a BEP 47 pad file), or a callable that opens the file and returns a
descriptor this reader closes when it is done with it."""


class _Open:
    """A part's descriptors while chunks that cover it are being read."""

    __slots__ = ("fd", "direct_fd", "owned", "users", "advised")

    def __init__(self, fd: int, owned: bool, users: int) -> None:
        self.fd, self.owned, self.users = fd, owned, users
        self.direct_fd, self.advised = -1, False


class ChunkReader:
    """Chunks of ``chunk`` bytes of the stream ``parts`` ((source, length) per file, see
    ``Source``), in order, read by ``depth`` threads (so that many reads are in flight: this
    virtio disk read 950-1130 MiB/s with one 8 MiB read in flight, 1130-1210 with eight) into
    at most ``buffers`` buffers. ``chunk`` is a multiple of DIRECT_ALIGN (piece-aligned).
    Iterate, ``release()`` each chunk when done with it (in any order, from any thread),
    ``close()`` at the end (or early)."""

    def __init__(self, parts: Sequence[tuple[Source, int]], chunk: int, buffers: int, depth: int = 1,
                 direct: bool = True) -> None:
        self.parts = [(src, n) for src, n in parts]
        self.starts, at = [], 0
        for _, n in self.parts:
            self.starts.append(at)
            at += n
        self.length, self.chunk = at, chunk
        self.direct = direct and hasattr(os, "O_DIRECT") and _libc is not None
        self.direct_ok = self.direct                    # until a file system refuses O_DIRECT
        self.open: dict[int, _Open] = {}                # part index -> its descriptors, while chunks need it
        self.open_lock = threading.Lock()
        self.free: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(max(1, buffers)):
            self.free.put(mmap.mmap(-1, chunk + 3 * DIRECT_ALIGN))   # page-aligned, as O_DIRECT needs
        self.slots: queue.SimpleQueue = queue.SimpleQueue()   # _Slot per chunk in stream order, then _END
        self.lock = threading.Lock()                   # orders the claim of an offset with its slot
        self.next_offset = 0
        self.closed = False
        self.direct_bytes = 0                          # read O_DIRECT (the rest came from the page cache)
        self.moved_bytes = 0                           # of those, moved into place after the read
        self.threads = [threading.Thread(target=self._read_all, name=f"hash-read-{i}", daemon=True)
                        for i in range(max(1, depth))]
        for t in self.threads:
            t.start()

    def __iter__(self) -> Iterator[Chunk]:
        while (slot := self.slots.get()) is not _END:
            slot.ready.wait()
            if slot.error is not None:
                raise slot.error
            yield slot.chunk

    def close(self) -> None:
        """Stop reading (reads in flight end first) and let go of every descriptor opened here."""
        self.closed = True
        for _ in self.threads:
            self.free.put(None)                        # wakes a reader waiting for a buffer
        for t in self.threads:
            t.join()
        with self.open_lock:
            for f in self.open.values():
                self._shut(f)
            self.open.clear()

    def _read_all(self) -> None:
        while (buf := self.free.get()) is not None and not self.closed:
            with self.lock:
                offset = self.next_offset
                if offset >= self.length:              # the first reader past the end says so
                    if offset == self.length:
                        self.slots.put(_END)
                        self.next_offset += 1
                    return
                self.next_offset = min(self.length, offset + self.chunk)
                slot = _Slot()
                self.slots.put(slot)
            size = min(self.chunk, self.length - offset)
            try:
                shift = self._read_chunk(buf, offset, size)
                slot.chunk = Chunk(offset, memoryview(buf)[shift:shift + size], buf, self.free)
            except BaseException as exc:               # handed to the consumer, which raises it
                slot.error = exc
                with self.lock:
                    self.closed = True                 # nothing after a failed chunk is wanted
                    if self.next_offset <= self.length:
                        self.slots.put(_END)
                        self.next_offset = self.length + 1
            finally:
                slot.ready.set()

    def _spans(self, offset: int, size: int) -> list[tuple[int, int, int, int]]:
        """(part, offset in the part, bytes, offset in the chunk) of each part in the chunk, in order."""
        spans, end = [], offset + size
        i = bisect.bisect_right(self.starts, offset) - 1
        while i < len(self.parts) and self.starts[i] < end:
            start, n = self.starts[i], self.parts[i][1]
            lo, hi = max(offset, start), min(end, start + n)
            if hi > lo:
                spans.append((i, lo - start, hi - lo, lo - offset))
            i += 1
        return spans

    def _read_chunk(self, buf: mmap.mmap, offset: int, size: int) -> int:
        """Fill ``buf`` with the stream's ``size`` bytes at ``offset``; where they start in it
        (in the first page, so that the largest span's O_DIRECT read needs no move)."""
        spans = self._spans(offset, size)
        real = [s for s in spans if not _is_pad(self.parts[s[0]][0])]
        shift = 0
        if real:
            _, at, _, x = max(real, key=lambda s: s[2])
            shift = (at % DIRECT_ALIGN - x) % DIRECT_ALIGN
        for i, at, n, x in spans:                      # in stream order: a spill is overwritten by the next
            if _is_pad(self.parts[i][0]):
                buf[shift + x:shift + x + n] = bytes(n)
                continue
            f = self._acquire(i)
            try:
                self._read_span(f, buf, shift + x, at, n)
            finally:
                self._release(i, f)
        return shift

    def _read_span(self, f: _Open, buf: mmap.mmap, dest: int, at: int, n: int) -> None:
        """The part's ``n`` bytes at ``at`` into ``buf[dest:dest + n]``: O_DIRECT where they are
        not all in the page cache (at the aligned place nearest ``dest``, then moved), the
        rest (or all, where O_DIRECT is refused) from the page cache."""
        got = 0
        direct = f.direct_fd >= 0 and self.direct_ok  # another thread may have found O_DIRECT refused
        if direct and not resident(f.fd, at, n):
            head = at % DIRECT_ALIGN                   # the read starts at the page before ``at``
            place = -(-(dest - head) // DIRECT_ALIGN) * DIRECT_ALIGN   # aligned, at or after dest - head
            want = -(-(head + n) // DIRECT_ALIGN) * DIRECT_ALIGN       # the tail past the end reads short
            view = memoryview(buf)[place:place + want]
            try:
                read = os.preadv(f.direct_fd, [view], at - head)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self.direct_ok = False                 # the file system takes no O_DIRECT after all; the
                direct = False                         # fd is closed with the others (_shut), as another
                read = 0                               # reader thread may be reading from it now
            finally:
                view.release()
            got = max(0, min(n, read - head))
            moved = got and place + head != dest
            if moved:
                move(buf, dest, place + head, got)
            with self.open_lock:                       # reader threads count together (a += is not atomic)
                self.direct_bytes += got
                self.moved_bytes += got if moved else 0
        if got < n:
            if not direct and not f.advised:
                _advise(f.fd, os.POSIX_FADV_SEQUENTIAL)    # the kernel reads ahead twice as far
                f.advised = True
            view = memoryview(buf)
            try:
                while got < n:                         # from the page cache, or the rest of a short read
                    read = os.preadv(f.fd, [view[dest + got:dest + n]], at + got)
                    if read == 0:
                        raise OSError(f"file ended at byte {at + got}, expected {at + n}")
                    got += read
            finally:
                view.release()

    def _acquire(self, i: int) -> _Open:
        """Part ``i``'s descriptors, opened by the first chunk that needs them."""
        with self.open_lock:
            f = self.open.get(i)
            if f is None:
                src = self.parts[i][0]
                owned = callable(src)
                fd = src() if owned else src
                first, last = self.starts[i] // self.chunk, (self.starts[i] + self.parts[i][1] - 1) // self.chunk
                f = self.open[i] = _Open(fd, owned, last - first + 1)
                if self.direct and self.direct_ok:
                    f.direct_fd = _open_direct(fd)
                    if f.direct_fd < 0:
                        self.direct_ok = False
            return f

    def _release(self, i: int, f: _Open) -> None:
        """One chunk that covers part ``i`` is read; the last one lets go of its descriptors."""
        with self.open_lock:
            f.users -= 1
            if f.users <= 0 and self.open.get(i) is f:
                del self.open[i]
                self._shut(f)

    @staticmethod
    def _shut(f: _Open) -> None:
        if f.direct_fd >= 0:
            os.close(f.direct_fd)
            f.direct_fd = -1
        if f.owned:
            os.close(f.fd)
        elif f.advised:
            _advise(f.fd, os.POSIX_FADV_NORMAL)        # the same fd then serves blocks in any order


def _is_pad(src: Source) -> bool:
    return not callable(src) and src < 0


def _open_direct(fd: int) -> int:
    """The same file opened O_DIRECT (-1 where that is refused). /proc/self/fd reaches the
    inode already open, with no path lookup (so no symlink race)."""
    if not hasattr(os, "O_DIRECT") or _libc is None:
        return -1
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
    except OSError:
        return -1


def _advise(fd: int, advice: int, offset: int = 0, length: int = 0) -> None:
    try:
        os.posix_fadvise(fd, offset, length, advice)
    except OSError:                                    # a pipe, or a file system that takes no advice
        pass


def _load_libc():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


_libc = _load_libc()
_MAP_FAILED = ctypes.c_void_p(-1).value
def move(buf: mmap.mmap, dest: int, src: int, n: int) -> None:
    """``buf.move(dest, src, n)`` with the GIL released (ctypes.memmove): mmap.move holds it
    for the whole copy, up to a chunk's worth for a folder's unaligned file, and the peer's
    event loop (pings, status) waited behind it while an upload hashed."""
    if min(dest, src, n) < 0 or max(dest, src) + n > len(buf):
        raise ValueError(f"a move of {n} bytes from {src} to {dest} does not fit in {len(buf)}")
    if n:
        anchor = ctypes.c_char.from_buffer(buf)
        base = ctypes.addressof(anchor)
        try:
            ctypes.memmove(base + dest, base + src, n)
        finally:
            del anchor                           # the mmap may be closed once nothing exports it


_LOW_BIT = bytes(b & 1 for b in range(256))


def resident(fd: int, offset: int, size: int) -> bool:
    """Whether every page of the range is in the page cache (mincore(2) on a mapping that
    is never touched); False if that cannot be told."""
    if _libc is None or size <= 0:
        return False
    lead = offset % PAGE                  # mmap takes a page-aligned offset (a folder's spans rarely are)
    offset, size = offset - lead, size + lead
    addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, offset)
    if addr is None or addr == _MAP_FAILED:
        return False
    try:
        vec = ctypes.create_string_buffer(-(-size // PAGE))
        if _libc.mincore(addr, size, vec) != 0:
            return False
        return b"\0" not in vec.raw.translate(_LOW_BIT)
    finally:
        _libc.munmap(addr, size)
