import hashlib
import os
import random
import threading

import pytest

from protocol import chunk_reader, pieces
from protocol.pieces import Bitfield, auto_piece_length, iter_piece_hashes, piece_count


@pytest.mark.parametrize("mib", [32, 64, 256, 1024, 4096])
def test_auto_piece_length_aims_at_1000_to_2000_pieces(mib):
    length = mib * 1024 * 1024
    assert 1000 <= piece_count(length, auto_piece_length(length)) <= 2000


def test_auto_piece_length_clamps():
    assert auto_piece_length(1) == 32 * 1024
    assert auto_piece_length(10**12) == 4 * 1024 * 1024


def test_bitfield_bep3_order_and_count():
    bf = Bitfield(10)
    assert bf.add(0) and bf.add(9) and not bf.add(9)
    assert bf.to_bytes() == b"\x80\x40"
    assert len(bf) == 2 and 9 in bf and 1 not in bf and 10 not in bf
    assert Bitfield(10, bf.to_bytes()).indexes() == [0, 9]
    with pytest.raises(IndexError):
        bf.add(10)


def test_bitfield_rejects_spare_bits_and_wrong_size():
    with pytest.raises(ValueError, match="past the last piece"):
        Bitfield(10, b"\x00\x01")
    with pytest.raises(ValueError, match="expected 2"):
        Bitfield(10, b"\x00")
    assert Bitfield.full(10).complete


# ---------------------------------------------------------------- whole-file hashing

KIB = 1024
FILE_BYTES = 19 * 1024 * KIB + 12345      # 3 reads of 8 MiB, the last one short and not 4 KiB-aligned


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hash") / "data.bin"
    data = random.Random(7).randbytes(FILE_BYTES)
    path.write_bytes(data)
    return path, data


def cold_fd(path) -> int:
    """The file opened, its pages dropped from the page cache (so reads go to the device)."""
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    return fd


def expected(data: bytes, length: int, piece_length: int) -> list[bytes]:
    return [hashlib.sha1(data[i:min(length, i + piece_length)]).digest() for i in range(0, length, piece_length)]


@pytest.mark.parametrize("piece_length, workers, direct, cold", [
    (16 * KIB, 2, True, True), (1024 * KIB, 1, True, True), (16 * 1024 * KIB, 2, True, True),
    (16 * KIB, 2, True, False), (1024 * KIB, 2, False, True), (1024 * KIB, 1, False, False)])
def test_iter_piece_hashes_hashes_every_piece_in_order(data_file, piece_length, workers, direct, cold):
    """Cold chunks are read O_DIRECT, cached ones through the page cache; either way every
    piece's SHA-1, in order, for a file of several reads whose last is short and unaligned."""
    path, data = data_file
    fd = cold_fd(path) if cold else os.open(path, os.O_RDONLY)
    try:
        for length in (FILE_BYTES, 5, 0):
            assert list(iter_piece_hashes(fd, length, piece_length, workers, direct)) == \
                expected(data, length, piece_length), length
    finally:
        os.close(fd)


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("hash-read")]


def test_a_hash_given_up_early_stops_its_readers(data_file, monkeypatch):
    """Chunks of 64 KiB, so the file is many more chunks than the reader has buffers: its
    threads must still be waiting for a free buffer when the hash is given up (with 8 MiB
    chunks all three fit, and a fast reader may be done before the first hash is read)."""
    monkeypatch.setattr(pieces, "HASH_READ_BYTES", 64 * KIB)
    path, data = data_file
    fd = cold_fd(path)
    try:
        hashes = iter_piece_hashes(fd, FILE_BYTES, 16 * KIB, 2)
        assert next(hashes) == expected(data, 16 * KIB, 16 * KIB)[0]
        assert reader_threads()
        hashes.close()
        assert not reader_threads()
    finally:
        os.close(fd)


def test_a_file_shorter_than_the_torrent_says_is_an_oserror(data_file):
    path, _ = data_file
    fd = cold_fd(path)
    try:
        with pytest.raises(OSError, match="file ended at byte"):
            list(iter_piece_hashes(fd, FILE_BYTES + 8 * 1024 * KIB, 1024 * KIB, 2))
        assert not reader_threads()
    finally:
        os.close(fd)


def test_the_reader_reuses_its_buffers_and_reads_cold_chunks_direct(data_file):
    """Memory is bounded: however many chunks, only ``buffers`` buffers are ever filled."""
    path, data = data_file
    fd = cold_fd(path)
    reader = chunk_reader.ChunkReader([(fd, FILE_BYTES)], 16 * KIB, buffers=3, depth=2)
    try:
        seen, got = set(), bytearray()
        for chunk in reader:
            seen.add(id(chunk._buf))
            got += chunk.view
            chunk.release()
        assert bytes(got) == data and len(seen) <= 3
        if reader.direct_ok:                          # the file system takes O_DIRECT: nothing was cached
            assert reader.direct_bytes == FILE_BYTES
    finally:
        reader.close()
        os.close(fd)


def test_resident_tells_a_cached_range_from_a_dropped_one(data_file):
    path, _ = data_file
    fd = os.open(path, os.O_RDONLY)
    try:
        os.pread(fd, 1024 * KIB, 0)
        assert chunk_reader.resident(fd, 0, 1024 * KIB)
        assert chunk_reader.resident(fd, 100, 512 * KIB)      # an unaligned span (a folder's) too
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        if chunk_reader.resident(fd, 0, 1024 * KIB):
            pytest.skip("this file system keeps the file in memory (tmpfs)")
        assert not chunk_reader.resident(fd, 0, 16 * KIB)
    finally:
        os.close(fd)


@pytest.mark.parametrize("size", [1, 7, 8, 9, 300, 1024])
def test_masks_count_and_list_the_pieces_each_bitfield_holds(size):
    rnd = random.Random(size)
    fields = []
    for _ in range(6):
        bf = Bitfield(size)
        for i in rnd.sample(range(size), rnd.randint(0, size)):
            bf.add(i)
        fields.append(bf)
    fields.append(Bitfield(size))
    for bf in fields:
        assert bf.mask == int.from_bytes(bf.to_bytes(), "big")
        assert list(pieces.mask_indexes(bf.mask, size)) == bf.indexes()
        assert all(bool(bf.mask & pieces.piece_bit(size, i)) == (i in bf) for i in range(size))
    assert pieces.count_pieces([bf.mask for bf in fields], size) == [sum(i in bf for bf in fields) for i in range(size)]
    assert pieces.count_pieces([], size) == [0] * size


def test_a_bitfields_mask_follows_each_add():
    bf = Bitfield(20)
    assert bf.mask == 0
    bf.add(0)
    assert bf.mask == pieces.piece_bit(20, 0) == 1 << 23
    bf.add(19)
    assert bf.mask == (1 << 23) | (1 << 4)


def test_all_pieces_mask_is_every_piece_bit_at_any_size():
    from protocol.pieces import all_pieces_mask, mask_indexes, piece_bit

    for size in (1, 7, 8, 9, 300, 301, 1023):
        assert all_pieces_mask(size) == sum(piece_bit(size, i) for i in range(size))
        assert list(mask_indexes(all_pieces_mask(size), size)) == list(range(size))
    held = Bitfield(301)
    for i in (0, 5, 300):
        held.add(i)
    pending = all_pieces_mask(301) & ~held.mask
    assert set(mask_indexes(pending, 301)) == set(range(301)) - {0, 5, 300}
