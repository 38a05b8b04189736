"""PieceFile: O_DIRECT writes from an aligned copy, the last partial page buffered, a
fallback to buffered writes when the filesystem refuses O_DIRECT, and descriptors held
open for the reads and writes still on the disk threads."""
import ctypes
import errno
import os
import threading
import time

import pytest

from node.peer.direct import HUGE_PAGE, _huge_buffer
from node.peer.storage import PieceFile, StorageError
from protocol import metainfo

PIECE = 64 * 1024


def pieces_of(data: bytes):
    return [(i, data[o:o + PIECE]) for i, o in enumerate(range(0, len(data), PIECE))]


def as_blocks(piece: bytes, n: int):
    """The piece split into n received frames of uneven sizes."""
    cut = sorted({0, len(piece), *(len(piece) * k // (n + 1) + 3 for k in range(1, n))})
    return [memoryview(piece)[a:b] for a, b in zip(cut, cut[1:])]


@pytest.fixture
def torrent(tmp_path):
    data = os.urandom(5 * PIECE + 1234)          # the last piece ends mid-page
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    return data, metainfo.create(src, "tcp://127.0.0.1:1", PIECE)


def open_direct(meta, path):
    out = PieceFile.open_download(meta, path)
    if not out.use_direct_io():
        out.close()
        pytest.skip(f"the filesystem of {path.parent} refuses O_DIRECT")
    return out


@pytest.mark.parametrize("direct", [True, False])
def test_out_of_order_pieces_from_many_frames_land_byte_exact(tmp_path, torrent, direct):
    data, meta = torrent
    out = open_direct(meta, tmp_path / "out.bin") if direct else PieceFile.open_download(meta, tmp_path / "out.bin")
    for i, piece in reversed(pieces_of(data)):
        out.write_piece(i, as_blocks(piece, 3))
    assert out.recheck().complete
    out.close()
    assert (tmp_path / "out.bin").read_bytes() == data


def test_pieces_larger_than_a_direct_chunk_are_written_in_chunks(tmp_path):
    big = 4 * 1024 * 1024                         # two DIRECT_CHUNKs per piece
    data = os.urandom(2 * big + 3 * 1024 * 1024 + 1234)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    meta = metainfo.create(src, "tcp://127.0.0.1:1", big)
    out = open_direct(meta, tmp_path / "out.bin")
    for i, o in reversed(list(enumerate(range(0, len(data), big)))):
        out.write_piece(i, as_blocks(data[o:o + big], 5))
    out.close()
    assert (tmp_path / "out.bin").read_bytes() == data


def test_disk_threads_write_concurrently_each_from_its_own_buffer(tmp_path, torrent):
    data, meta = torrent
    out = open_direct(meta, tmp_path / "out.bin")
    work = pieces_of(data)
    threads = [threading.Thread(target=lambda part=work[k::2]: [out.write_piece(i, [p]) for i, p in part])
               for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.close()
    assert (tmp_path / "out.bin").read_bytes() == data


def test_a_filesystem_that_refuses_o_direct_gets_buffered_writes(tmp_path, torrent, monkeypatch):
    data, meta = torrent
    out = open_direct(meta, tmp_path / "out.bin")
    refusing, real = out.direct_fds[0], os.pwritev

    def pwritev(fd, buffers, offset):
        if fd == refusing:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "pwritev", pwritev)
    for i, piece in pieces_of(data):
        out.write_piece(i, [piece])
    assert out.direct_fds == [-1]
    out.close()
    assert (tmp_path / "out.bin").read_bytes() == data


def test_close_waits_for_the_queued_writes(tmp_path, torrent):
    """A removed job's file keeps its descriptors until the disk threads are done with
    them, so a queued write can never land in a file that reused the number."""
    data, meta = torrent
    out = PieceFile.open_download(meta, tmp_path / "out.bin")
    out.hold()
    out.close()
    assert out.fd >= 0 and out.closing
    out.write_piece(0, [data[:PIECE]])      # the write already on a disk thread goes through
    out.release()
    assert out.fd == -1
    assert (tmp_path / "out.bin").read_bytes() == data[:PIECE]


def test_the_bounce_buffer_is_huge_page_aligned_and_large_enough():
    for size in (1, 64 * 1024, HUGE_PAGE, HUGE_PAGE + 1):
        view = _huge_buffer(size)
        assert len(view) >= size and len(view) % HUGE_PAGE == 0
        assert ctypes.addressof(ctypes.c_char.from_buffer(view)) % HUGE_PAGE == 0


def test_a_pending_read_keeps_the_file_open_and_a_closed_file_refuses_it(tmp_path, torrent):
    data, meta = torrent
    out = PieceFile.open_download(meta, tmp_path / "out.bin")
    out.write_piece(1, [data[PIECE:2 * PIECE]])
    first, second = out.read_later(1, 100, 5000), out.read_later(1, 0, PIECE)
    assert first() == data[PIECE + 100:PIECE + 5100]     # read on a read thread in the peer
    out.close()
    assert out.fd >= 0                                    # the second read still holds it open
    with pytest.raises(StorageError, match="no longer served"):
        second()
    assert out.fd == -1


def test_a_pooled_read_fills_a_reused_buffer_with_the_block_and_nothing_stale(tmp_path, torrent, monkeypatch):
    from node import config
    from node.peer.blockpool import BlockPool
    monkeypatch.setattr(config, "SERVE_POOL_MIN_BYTES", 0)     # pool this test's 64 KiB pieces too
    data, meta = torrent
    out = PieceFile.open_download(meta, tmp_path / "out.bin")
    for i, piece in pieces_of(data):
        out.write_piece(i, [piece])
    pool = BlockPool(max_idle_bytes=4 * PIECE)
    first = out.read_later(0, 0, PIECE)(pool)
    assert first == data[:PIECE]
    pool.give(first)
    again = out.read_later(3, 0, PIECE)(pool)
    assert again is first and again == data[3 * PIECE:4 * PIECE]    # the same buffer, refilled
    assert out.read(2, 10, 100, pool) == data[2 * PIECE + 10:2 * PIECE + 110]
    out.close()


def test_the_bounce_copy_is_exact_from_any_buffer_and_refuses_what_does_not_fit():
    from node.peer.direct import RELEASED_COPY_MIN, address, copy_into

    view = _huge_buffer(HUGE_PAGE)
    base = address(view)
    data = os.urandom(3 * RELEASED_COPY_MIN + 5)
    frame = bytearray(data)                       # writable, like a received ZeroMQ frame
    copy_into(view, base, 7, memoryview(frame)[1:])          # long and writable: ctypes.memmove
    copy_into(view, base, 7 + len(data) - 1, memoryview(data)[:10])   # short, and read-only bytes
    copy_into(view, base, HUGE_PAGE - len(data), memoryview(data))     # long but read-only: a slice
    assert bytes(view[7:6 + len(data)]) == data[1:]
    assert bytes(view[6 + len(data):16 + len(data)]) == data[:10]
    assert bytes(view[HUGE_PAGE - len(data):HUGE_PAGE]) == data
    assert address(b"read-only") is None and address(bytearray()) is None
    for at in (-1, HUGE_PAGE - len(data) + 1):
        with pytest.raises(ValueError):
            copy_into(view, base, at, memoryview(frame))


def test_the_bounce_copy_lets_other_threads_run_meanwhile():
    """A write thread's copy of a piece into its bounce buffer releases the GIL: the event loop
    runs during it. (A slice assignment held the GIL for the whole copy.) With a switch interval
    of 5 s, the main thread can run while the worker is inside the copy only if it let go."""
    import sys

    from node.peer.direct import address, copy_into

    size = 32 * 1024 * 1024
    view, src = _huge_buffer(size), bytearray(size)
    base, state = address(view), {"in": False, "done": False, "ran": False}

    def work():
        state["in"] = True
        deadline = time.monotonic() + 2.0         # well inside the switch interval
        while not state["ran"] and time.monotonic() < deadline:   # copies until the main thread ran
            copy_into(view, base, 0, memoryview(src))
        state["in"] = False
        state["done"] = True

    old = sys.getswitchinterval()
    sys.setswitchinterval(5.0)
    try:
        t = threading.Thread(target=work)
        t.start()
        while not state["in"] and not state["done"]:
            time.sleep(0)                         # lets go of the GIL: the worker takes it
        ran = 0
        while state["in"]:                        # runs only while the worker's copy lets go of the GIL
            ran += 1
            state["ran"] = True
            time.sleep(0)                         # hands it back, as the event loop's poll does
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert ran > 0
