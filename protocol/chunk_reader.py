"""A whole file read in order by one thread, ahead of its hashing, into a bounded ring of buffers.

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

Memory: ``buffers`` chunks, allocated once per file; a reader waits for a free one.
"""
from __future__ import annotations

import ctypes
import errno
import mmap
import os
import queue
import threading
from typing import Iterator

PAGE = mmap.PAGESIZE
DIRECT_ALIGN = 4096          # O_DIRECT lengths are rounded up to this (offsets are piece-aligned)
_END = object()


class Chunk:
    """``view`` holds the file's bytes at ``offset``; ``release()`` hands the buffer back."""

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


class ChunkReader:
    """Chunks of ``chunk`` bytes of ``length`` bytes of ``fd``, in order, read by ``depth``
    threads (so that many reads are in flight: this virtio disk read 950-1130 MiB/s with one
    8 MiB read in flight, 1130-1210 with eight) into at most ``buffers`` buffers. Iterate,
    ``release()`` each chunk when done with it (in any order, from any thread), ``close()``
    at the end (or early)."""

    def __init__(self, fd: int, length: int, chunk: int, buffers: int, depth: int = 1,
                 direct: bool = True) -> None:
        self.fd, self.length, self.chunk = fd, length, chunk
        self.direct_fd = _open_direct(fd) if direct else -1
        self.direct_ok = self.direct_fd >= 0
        if not self.direct_ok:
            _advise(fd, os.POSIX_FADV_SEQUENTIAL)     # the kernel reads ahead twice as far
        self.free: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(max(1, buffers)):
            self.free.put(mmap.mmap(-1, chunk))        # page-aligned, as O_DIRECT needs
        self.slots: queue.SimpleQueue = queue.SimpleQueue()   # _Slot per chunk in file order, then _END
        self.lock = threading.Lock()                   # orders the claim of an offset with its slot
        self.next_offset = 0
        self.closed = False
        self.direct_bytes = 0                          # read O_DIRECT (the rest came from the page cache)
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
        """Stop reading (reads in flight end first) and let go of the direct descriptor."""
        self.closed = True
        for _ in self.threads:
            self.free.put(None)                        # wakes a reader waiting for a buffer
        for t in self.threads:
            t.join()
        if self.direct_fd >= 0:
            os.close(self.direct_fd)
            self.direct_fd = -1
        else:
            _advise(self.fd, os.POSIX_FADV_NORMAL)     # the same fd then serves blocks in any order

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
                self._read(buf, offset, size)
                slot.chunk = Chunk(offset, memoryview(buf)[:size], buf, self.free)
            except BaseException as exc:               # handed to the consumer, which raises it
                slot.error = exc
                with self.lock:
                    self.closed = True                 # nothing after a failed chunk is wanted
                    if self.next_offset <= self.length:
                        self.slots.put(_END)
                        self.next_offset = self.length + 1
            finally:
                slot.ready.set()

    def _read(self, buf: mmap.mmap, offset: int, size: int) -> None:
        view = memoryview(buf)
        try:
            got = 0
            if self.direct_ok and not resident(self.fd, offset, size):
                want = -(-size // DIRECT_ALIGN) * DIRECT_ALIGN   # the tail past the end reads short
                try:
                    got = min(size, os.preadv(self.direct_fd, [view[:want]], offset))
                    self.direct_bytes += got
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    self.direct_ok = False             # the file system takes no O_DIRECT after all
            while got < size:                          # from the page cache, or the rest of a short read
                n = os.preadv(self.fd, [view[got:size]], offset + got)
                if n == 0:
                    raise OSError(f"file ended at byte {offset + got}, expected {offset + size}")
                got += n
        finally:
            view.release()


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
_LOW_BIT = bytes(b & 1 for b in range(256))


def resident(fd: int, offset: int, size: int) -> bool:
    """Whether every page of the range is in the page cache (mincore(2) on a mapping that
    is never touched); False if that cannot be told."""
    if _libc is None or size <= 0:
        return False
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
