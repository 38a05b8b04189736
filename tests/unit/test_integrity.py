"""PieceFile.change and read: a held file that is gone, replaced, a symlink or a directory
now, shrunk or modified is noticed, and read never returns bytes from a changed file."""
import os

import pytest

from node.peer.integrity import extent
from node.peer.storage import FileChanged, PieceFile
from protocol import metainfo
from protocol.pieces import Bitfield
from tests.conftest import wait_for

PIECE = 16 * 1024


@pytest.fixture
def seed(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(4 * PIECE + 100))
    meta = metainfo.create(src, "tcp://127.0.0.1:1", PIECE)
    f = PieceFile.open_seed(meta, src)
    yield src, meta, f
    f.close()


def test_an_unchanged_seed_reads_and_reports_nothing(seed):
    src, meta, f = seed
    assert f.change() == "" and f.read(1, 0, PIECE) == src.read_bytes()[PIECE:2 * PIECE]


@pytest.mark.parametrize("how, why", [
    (lambda p, t: p.unlink(), "is missing"),
    (lambda p, t: (p.unlink(), p.mkdir()), "is a directory now, not a file"),
    (lambda p, t: (t.write_bytes(p.read_bytes()), os.replace(t, p)), "was replaced by another file"),
    (lambda p, t: os.truncate(p, PIECE), "changed size"),
])
def test_each_change_is_named_and_nothing_is_read(seed, tmp_path, how, why):
    src, meta, f = seed
    how(src, tmp_path / "tmp")
    assert why in f.change()
    with pytest.raises(FileChanged, match=why):
        f.read(0, 0, PIECE)


def test_bytes_overwritten_in_place_are_never_returned(seed, tmp_path):
    src, meta, f = seed
    st = os.stat(src)
    probe = tmp_path / "probe"                 # file times tick coarsely: wait until a write would move them
    wait_for(lambda: probe.write_bytes(b"") == 0 and os.stat(probe).st_ctime_ns > st.st_ctime_ns,
             timeout_s=2, what="the file clock to tick", interval_s=0.001)
    with open(src, "r+b") as out:
        out.write(b"\xff" * 10)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))   # mtime put back: ctime still moved
    with pytest.raises(FileChanged, match="was modified"):
        f.read(0, 0, PIECE)


def test_a_download_never_follows_a_symlink_but_a_seed_may(tmp_path, seed):
    src, meta, _ = seed
    out = tmp_path / "out.bin"
    d = PieceFile.open_download(meta, out)
    out.unlink()
    out.symlink_to(src)
    assert "is a symlink now" in d.change()
    d.close()
    link = tmp_path / "link.bin"
    link.symlink_to(src)
    s = PieceFile.open_seed(meta, link)
    assert s.change() == ""
    s.close()


def test_a_download_in_progress_must_keep_its_verified_extent(tmp_path, seed):
    src, meta, _ = seed
    d = PieceFile.open_download(meta, tmp_path / "out.bin")
    d.write_piece(2, [src.read_bytes()[2 * PIECE:3 * PIECE]])
    have = Bitfield(meta.num_pieces)
    have.add(0)
    have.add(2)
    assert extent(meta, have) == 3 * PIECE and d.needed(0, have) == 3 * PIECE
    assert d.change(need=lambda i: d.needed(i, have)) == ""
    os.truncate(d.path, PIECE)
    assert "shrank" in d.change(need=lambda i: d.needed(i, have))
    d.close()
    full = Bitfield.full(meta.num_pieces)
    assert extent(meta, full) == meta.length and extent(meta, Bitfield(meta.num_pieces)) == 0


def test_a_folder_download_needs_in_each_file_only_what_its_own_verified_pieces_cover(tmp_path):
    """Pieces land in any order: a later file complete says nothing about an earlier one's size."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(3 * PIECE))
    (src / "b.bin").write_bytes(os.urandom(2 * PIECE + 10))
    meta = metainfo.create_folder(src, "tcp://127.0.0.1:1", PIECE)
    d = PieceFile.open_download(meta, tmp_path / "out")
    have = Bitfield(meta.num_pieces)
    have.add(meta.num_pieces - 1)                  # only b.bin's last piece
    d.write_piece(meta.num_pieces - 1, [(src / "b.bin").read_bytes()[2 * PIECE:]])
    a, b = (next(i for i, e in enumerate(meta.files) if e.path[-1] == name) for name in ("a.bin", "b.bin"))
    assert d.needed(a, have) == 0 and d.needed(b, have) == 2 * PIECE + 10
    assert d.change(need=lambda i: d.needed(i, have)) == ""
    have.add(1)                                    # a.bin's middle piece: a.bin must reach 2 pieces
    assert "a.bin shrank to 0 bytes" in d.change(need=lambda i: d.needed(i, have))
    d.close()
