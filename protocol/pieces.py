"""Piece math, piece hashing and the BEP-3 bitfield."""
from __future__ import annotations

import hashlib
import os
import sys
from array import array
from collections import deque
from typing import TYPE_CHECKING, Iterable, Iterator

if TYPE_CHECKING:     # imported when a hash runs: metainfo.read (every download) needs neither (~10 ms)
    from protocol.chunk_reader import Chunk, Source

MIN_AUTO_PIECE_BYTES = 32 * 1024
MAX_AUTO_PIECE_BYTES = 4 * 1024 * 1024
TARGET_MAX_PIECES = 2000            # auto piece size keeps the count in (1000, 2000]
MIN_PIECE_BYTES = 16 * 1024         # what we accept in a torrent (BEP-3 practice)
MAX_PIECE_BYTES = 16 * 1024 * 1024
HASH_BYTES = 20
HASH_READ_BYTES = 8 * 1024 * 1024      # one read of a whole-file hash (two 4 MiB device requests), or a piece
HASH_READ_AHEAD_BYTES = 64 * 1024 * 1024   # reads in flight: 8 of 8 MiB (16 GiB cold, same run: 1255 MiB/s,
                                           # 4 in flight 1165; one 950-1130 in a bare read)


def hash_read_depth(chunk: int) -> int:
    """Reads of ``chunk`` bytes a whole-file hash keeps in flight."""
    return max(1, HASH_READ_AHEAD_BYTES // chunk)


def hash_read_buffers(workers: int, depth: int) -> int:
    """Chunks of a whole-file hash in memory at once: one per hash thread, one per read in
    flight, one filled and waiting, so neither the device nor a hash thread waits for the other."""
    return workers + depth + 1


def auto_piece_length(length: int) -> int:
    """The smallest power of two that keeps the piece count at or under 2,000, clamped."""
    want = max(1, -(-length // TARGET_MAX_PIECES))
    size = 1 << (want - 1).bit_length()
    return min(MAX_AUTO_PIECE_BYTES, max(MIN_AUTO_PIECE_BYTES, size))


def piece_count(length: int, piece_length: int) -> int:
    return -(-length // piece_length)


def piece_size(index: int, length: int, piece_length: int) -> int:
    """Bytes in piece ``index``; the last one may be short."""
    return min(piece_length, length - index * piece_length)


def hash_workers() -> int:
    """Threads that hash one file's pieces at once: one per core, at most 4 (two per core
    hashed 4 GiB from a cold cache no faster, and slowed the event loop's replies)."""
    return min(4, os.cpu_count() or 1)


def _hash_chunk(chunk: Chunk, piece_length: int) -> list[bytes]:
    """SHA-1 of each piece in one piece-aligned chunk of the file; the buffer goes back after."""
    try:
        view = chunk.view
        return [hashlib.sha1(view[i:i + piece_length]).digest() for i in range(0, len(view), piece_length)]
    finally:
        chunk.release()


def iter_piece_hashes(fd: int, length: int, piece_length: int, workers: int = 0,
                      direct: bool = True) -> Iterator[bytes]:
    """SHA-1 of each piece of an open file, in order (``iter_stream_hashes`` of one file)."""
    return iter_stream_hashes([(fd, length)], piece_length, workers, direct)


def iter_stream_hashes(parts: Iterable[tuple[Source, int]], piece_length: int, workers: int = 0,
                       direct: bool = True) -> Iterator[bytes]:
    """SHA-1 of each piece of a file, or of several read as one stream (a folder torrent:
    pieces span file boundaries), in order.

    ``parts`` is (source, length) per file (chunk_reader.Source: an open descriptor, -1 for
    ``length`` zero bytes of a BEP 47 pad file, or an opener whose descriptor is closed once
    read). hash_read_depth() threads read the stream in order (chunk_reader: O_DIRECT where a
    chunk is not in the page cache) in piece-aligned chunks of about HASH_READ_BYTES, ahead of
    ``workers`` hash threads (hashlib releases the GIL). Memory: hash_read_buffers() chunks,
    allocated once. ``direct=False`` reads through the page cache only.
    """
    parts = list(parts)
    length = sum(n for _, n in parts)
    chunk = max(piece_length, HASH_READ_BYTES // piece_length * piece_length)
    workers = workers or hash_workers()
    chunks = piece_count(length, chunk)
    depth = min(hash_read_depth(chunk), chunks)
    from concurrent.futures import ThreadPoolExecutor

    from protocol.chunk_reader import ChunkReader

    reader = ChunkReader(parts, chunk, min(hash_read_buffers(workers, depth), chunks), depth, direct)
    try:
        if workers == 1 or length <= chunk:
            for part in reader:
                yield from _hash_chunk(part, piece_length)
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hash") as pool:
            pending: deque = deque()
            try:
                for part in reader:
                    pending.append(pool.submit(_hash_chunk, part, piece_length))
                    while pending and (pending[0].done() or len(pending) > workers):
                        yield from pending.popleft().result()
                while pending:
                    yield from pending.popleft().result()
            finally:
                for future in pending:          # given up early: free the buffers, wake the reader
                    future.cancel()
    finally:
        reader.close()


class Bitfield:
    """Which pieces are present. Bit order follows BEP-3: piece 0 is the MSB of byte 0.

    ``mask`` is the same bits as one int (piece i is ``piece_bit(size, i)``), cached until the
    next ``add``: a download job intersects remotes' pieces with the ones it still wants in
    one C-speed ``&`` instead of a Python test per piece (node/peer/engine.py)."""

    __slots__ = ("size", "_bits", "_count", "_mask")

    def __init__(self, size: int, data: bytes | None = None) -> None:
        self.size = size
        nbytes = (size + 7) // 8
        if data is None:
            self._bits = bytearray(nbytes)
            self._count = 0
        else:
            if len(data) != nbytes:
                raise ValueError(f"bitfield is {len(data)} bytes, expected {nbytes} for {size} pieces")
            self._bits = bytearray(data)
            spare = nbytes * 8 - size
            if spare and self._bits[-1] & ((1 << spare) - 1):
                raise ValueError("bitfield has bits set past the last piece")
            self._count = int.from_bytes(self._bits, "big").bit_count()
        self._mask: int | None = None

    @classmethod
    def full(cls, size: int) -> "Bitfield":
        bf = cls(size)
        for i in range(size):
            bf.add(i)
        return bf

    def __contains__(self, index: int) -> bool:
        return 0 <= index < self.size and bool(self._bits[index >> 3] & (0x80 >> (index & 7)))

    def add(self, index: int) -> bool:
        """Set a bit; True if it was not set before."""
        if not 0 <= index < self.size:
            raise IndexError(f"piece {index} out of range 0..{self.size - 1}")
        mask = 0x80 >> (index & 7)
        if self._bits[index >> 3] & mask:
            return False
        self._bits[index >> 3] |= mask
        self._count += 1
        self._mask = None
        return True

    @property
    def mask(self) -> int:
        """The pieces present as one int (see ``piece_bit``)."""
        if self._mask is None:
            self._mask = int.from_bytes(self._bits, "big")
        return self._mask

    def __len__(self) -> int:
        return self._count

    def __or__(self, other: "Bitfield") -> "Bitfield":
        """The pieces in either (both of the same size)."""
        n = len(self._bits)
        return Bitfield(self.size, (int.from_bytes(self._bits, "big") | int.from_bytes(other._bits, "big")).to_bytes(n, "big"))

    @property
    def complete(self) -> bool:
        return self._count == self.size

    def indexes(self) -> list[int]:
        return [i for i in range(self.size) if i in self]

    def to_bytes(self) -> bytes:
        return bytes(self._bits)


def piece_bit(size: int, index: int) -> int:
    """Piece ``index``'s bit in a ``Bitfield.mask`` of ``size`` pieces."""
    return 1 << (((size + 7) & ~7) - 1 - index)


def all_pieces_mask(size: int) -> int:
    """Every piece of ``size`` set, as a ``Bitfield.mask``: built in one step (a sum of
    ``piece_bit``s costs O(size^2): seconds at 400,000 pieces)."""
    return ((1 << size) - 1) << (((size + 7) & ~7) - size)


def mask_indexes(mask: int, size: int) -> Iterator[int]:
    """The pieces set in a ``Bitfield.mask`` of ``size`` pieces, lowest index first; costs one
    step per piece set, not per piece."""
    top = ((size + 7) & ~7) - 1
    while mask:
        pos = mask.bit_length() - 1
        yield top - pos
        mask ^= 1 << pos


_LANES = [b"".join(b"\x00\x01" if byte & (0x80 >> k) else b"\x00\x00" for k in range(8)) for byte in range(256)]


def count_pieces(masks: Iterable[int], size: int) -> list[int]:
    """How many of ``masks`` (each a ``Bitfield.mask`` of ``size`` pieces) hold each piece.

    Each mask's bits are spread into 16-bit lanes (a table per byte, in C), and the spread
    ints are added: one addition counts every piece at once, since no lane can carry with
    fewer than 65,536 masks. A job counts its remotes' pieces this way on every peer-list
    refresh: remotes x pieces Python tests before (12 x 1,024 in a 12-leecher swarm)."""
    nbytes = (size + 7) // 8
    total, n = 0, 0
    for mask in masks:
        if mask:
            total += int.from_bytes(b"".join(map(_LANES.__getitem__, mask.to_bytes(nbytes, "big"))), "big")
        n += 1
        if n == 0xFFFF:
            raise ValueError("count_pieces counts at most 65,535 masks")
    counts = array("H", total.to_bytes(2 * nbytes * 8, "big"))
    if sys.byteorder == "little":
        counts.byteswap()
    return counts[:size].tolist()
