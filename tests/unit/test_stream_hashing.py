"""A folder torrent's files hashed as one stream on the whole-file reader (protocol/chunk_reader.py,
pieces.iter_stream_hashes): pieces that span files of any size, pad files, files opened only
while reads cover them, O_DIRECT for what is not cached, and no thread or descriptor left."""
from __future__ import annotations

import hashlib
import os
import random
import threading

import pytest

from protocol import chunk_reader
from protocol.pieces import iter_stream_hashes

KIB = 1024
MIB = 1024 * KIB
# sizes chosen so that file boundaries fall anywhere: unaligned, empty, one byte, one page less
# one byte, a pad file (None: zeros), and a file bigger than a read (8 MiB)
SIZES = [5 * MIB + 123, 0, 4095, 1, 9 * MIB + 4097, None, 3 * MIB + 77, 16 * KIB, 2 * MIB - 1]
PAD_BYTES = 12 * KIB + 5


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """(paths, lengths, the stream's bytes); None in paths is a pad file."""
    root = tmp_path_factory.mktemp("stream")
    rng = random.Random(11)
    paths, lengths, stream = [], [], bytearray()
    for i, size in enumerate(SIZES):
        if size is None:
            paths.append(None)
            lengths.append(PAD_BYTES)
            stream += bytes(PAD_BYTES)
            continue
        data = rng.randbytes(size)
        path = root / f"f{i}.bin"
        path.write_bytes(data)
        paths.append(path)
        lengths.append(size)
        stream += data
    return paths, lengths, bytes(stream)


def drop(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def expected(data: bytes, piece_length: int) -> list[bytes]:
    return [hashlib.sha1(data[i:i + piece_length]).digest() for i in range(0, len(data), piece_length)]


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("hash-read")]


class Openers:
    """Each file opened by the reader (and closed by it); records how many descriptors were open."""

    def __init__(self, paths) -> None:
        self.paths, self.opened, self.most_open = paths, 0, 0

    def parts(self, lengths):
        return [(-1 if p is None else self._opener(p), n) for p, n in zip(self.paths, lengths)]

    def _opener(self, path):
        def open_it() -> int:
            self.opened += 1
            self.most_open = max(self.most_open, len(open_fds()))
            return os.open(path, os.O_RDONLY)
        return open_it


@pytest.mark.parametrize("piece_length, workers, direct, cold", [
    (16 * KIB, 2, True, True), (1 * MIB, 1, True, True), (16 * MIB, 2, True, True),
    (16 * KIB, 2, True, False), (1 * MIB, 2, False, True), (256 * KIB, 1, False, False)])
def test_a_folder_hashes_as_one_stream_whatever_its_file_sizes(folder, piece_length, workers, direct, cold):
    paths, lengths, stream = folder
    for p in paths:
        if p is not None:
            drop(p) if cold else p.read_bytes()
    before = open_fds()
    openers = Openers(paths)
    assert list(iter_stream_hashes(openers.parts(lengths), piece_length, workers, direct)) == \
        expected(stream, piece_length)
    assert openers.opened == sum(1 for p, n in zip(paths, lengths) if p is not None and n)   # empty: never opened
    assert open_fds() == before and not reader_threads()


def test_open_descriptors_of_the_callers_are_read_and_left_open(folder):
    """As storage.recheck passes them: the held torrent's own fds, and -1 for a pad file."""
    paths, lengths, stream = folder
    fds = [-1 if p is None else os.open(p, os.O_RDONLY) for p in paths]
    try:
        assert list(iter_stream_hashes(list(zip(fds, lengths)), 64 * KIB, 2)) == expected(stream, 64 * KIB)
        for fd in fds:
            if fd >= 0:
                os.fstat(fd)                            # still open
    finally:
        for fd in fds:
            if fd >= 0:
                os.close(fd)


def test_a_cold_folder_is_read_o_direct_and_stays_out_of_the_page_cache(folder):
    """The reason for the reader: a buffered read of a cold 100 GiB folder costs the kernel
    1.3-1.9 s of CPU per GiB (bench/RESULTS.md "hashrate"), and fills the page cache."""
    paths, lengths, stream = folder
    real = [(p, n) for p, n in zip(paths, lengths) if p is not None and n >= 64 * KIB]
    for p, _ in real:
        drop(p)
    fd = os.open(real[0][0], os.O_RDONLY)
    try:
        if chunk_reader.resident(fd, 0, real[0][1]):
            pytest.skip("this file system keeps files in memory (tmpfs)")
    finally:
        os.close(fd)
    made = []
    real_init = chunk_reader.ChunkReader.__init__

    def spy(self, *args, **kwargs):                     # the reader threads did the reading (recorded
        real_init(self, *args, **kwargs)                # when made: a fast disk lets them finish
        made.append(len(self.threads))                  # before any look at the running threads)

    fds = [-1 if p is None else os.open(p, os.O_RDONLY) for p in paths]
    try:
        chunk_reader.ChunkReader.__init__ = spy
        hashes = iter_stream_hashes(list(zip(fds, lengths)), 16 * KIB)
        digests = list(hashes)
    finally:
        chunk_reader.ChunkReader.__init__ = real_init
        for fd in fds:
            if fd >= 0:
                os.close(fd)
    assert digests == expected(stream, 16 * KIB)
    assert made and made[0] >= 1
    for p, n in real:
        fd = os.open(p, os.O_RDONLY)
        try:
            assert not chunk_reader.resident(fd, 0, n), f"{p.name} was read through the page cache"
        finally:
            os.close(fd)


def test_the_reader_counts_what_it_read_direct_and_moved_into_place(folder):
    paths, lengths, stream = folder
    for p in paths:
        if p is not None:
            drop(p)
    reader = chunk_reader.ChunkReader(Openers(paths).parts(lengths), 8 * MIB, buffers=3, depth=2)
    try:
        got = bytearray()
        for chunk in reader:
            got += chunk.view
            chunk.release()
        assert bytes(got) == stream
        if reader.direct_ok:
            assert reader.direct_bytes == len(stream) - PAD_BYTES
            assert 0 < reader.moved_bytes < reader.direct_bytes   # the largest span of a chunk is never moved
    finally:
        reader.close()


def test_a_file_shorter_than_its_length_or_gone_is_an_error_and_leaves_nothing_open(folder, tmp_path):
    paths, lengths, _ = folder
    before = open_fds()
    longer = list(lengths)
    longer[4] += 3 * MIB                                # f4 is 3 MiB shorter than the torrent says
    with pytest.raises(OSError, match="file ended at byte"):
        list(iter_stream_hashes(Openers(paths).parts(longer), 1 * MIB, 2))
    gone = list(paths)
    gone[6] = tmp_path / "missing.bin"
    with pytest.raises(FileNotFoundError):
        list(iter_stream_hashes(Openers(gone).parts(lengths), 1 * MIB, 2))
    assert open_fds() == before and not reader_threads()


def test_a_folder_of_many_files_holds_only_those_the_reads_in_flight_cover(tmp_path):
    rng = random.Random(5)
    paths, lengths, stream = [], [], bytearray()
    for i in range(400):
        data = rng.randbytes(rng.randrange(1, 300 * KIB))
        (tmp_path / f"{i}.bin").write_bytes(data)
        paths.append(tmp_path / f"{i}.bin")
        lengths.append(len(data))
        stream += data
    before = len(open_fds())
    openers = Openers(paths)
    hashes = iter_stream_hashes(openers.parts(lengths), 32 * KIB, 2)
    first = next(hashes)                                # given up early: every file opened so far is closed
    hashes.close()
    assert first == expected(stream[:32 * KIB], 32 * KIB)[0]
    assert len(open_fds()) == before and not reader_threads()
    openers = Openers(paths)
    reader = chunk_reader.ChunkReader(openers.parts(lengths), 64 * KIB, buffers=3, depth=2)
    try:
        got = bytearray()
        for chunk in reader:
            got += chunk.view
            chunk.release()
    finally:
        reader.close()
    assert bytes(got) == stream and openers.opened == 400
    # two reads of 64 KiB in flight over files of ~150 KiB: a few files (two fds each), never all 400
    assert openers.most_open - before <= 12
    assert len(open_fds()) == before


def test_a_move_inside_the_read_buffer_is_memmove_and_checks_its_bounds():
    """chunk_reader.move (a span read O_DIRECT moved into place, with the GIL released): overlapping
    moves either way, as mmap.move does; out-of-range moves refused."""
    import mmap

    data = os.urandom(3 * MIB)
    for dest, src, n in ((0, 4096 - 17, 2 * MIB), (4096 - 17, 0, 2 * MIB), (5, 5, 100), (0, 3 * MIB, 0)):
        buf, ref = mmap.mmap(-1, 3 * MIB), mmap.mmap(-1, 3 * MIB)
        buf.write(data)
        ref.write(data)
        chunk_reader.move(buf, dest, src, n)
        ref.move(dest, src, n)
        assert buf[:] == ref[:]
        buf.close()                               # nothing still exports it
    buf = mmap.mmap(-1, MIB)
    for dest, src, n in ((1, 0, MIB), (0, 1, MIB), (-1, 0, 5), (0, 0, -1)):
        with pytest.raises(ValueError):
            chunk_reader.move(buf, dest, src, n)
