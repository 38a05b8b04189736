"""Multi-file torrents (BEP 3 ``files``, BEP 47 pad files): metainfo, and the folder on disk.

Hostile paths are refused with exact one-line messages; libtorrent and mktorrent agree
with us on the info-hash and the file list; pieces that span files land byte-exact, pad
files are never written, empty files and nested folders are created."""
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from node.peer.storage import PieceFile, StorageError
from protocol import metainfo
from protocol.errors import MetainfoError
from tests.conftest import write_random
from tests.torrents import HOSTILE_PATHS

ANNOUNCE = "tcp://127.0.0.1:6969"
PIECE = 16 * 1024


def make_tree(root: Path) -> dict[str, bytes]:
    """Files of awkward sizes, an empty file, nested folders; {relative path: bytes}."""
    sizes = {"a.bin": 100_000, "empty.txt": 0, "sub/c.txt": 3, "sub/deep/b.bin": 50_000,
             "sub/deep/z.bin": PIECE, "zz/last.bin": 7}
    out = {}
    for i, (rel, n) in enumerate(sizes.items()):
        out[rel] = write_random(root / rel, n, seed=i).read_bytes()
    return out


@pytest.mark.parametrize("raw, text", [(raw, text) for _, raw, text in HOSTILE_PATHS],
                         ids=[c[0] for c in HOSTILE_PATHS])
def test_every_hostile_path_class_is_refused_with_one_exact_line(raw, text):
    with pytest.raises(MetainfoError) as info:
        metainfo.parse(raw)
    assert info.value.message == text


def test_create_folder_agrees_with_libtorrent(tmp_path):
    import libtorrent as lt
    tree = make_tree(tmp_path / "folder")
    meta = metainfo.create_folder(tmp_path / "folder", ANNOUNCE, PIECE)
    assert meta.multi_file and meta.name == "folder" and meta.length == sum(map(len, tree.values()))
    metainfo.write(meta, tmp_path / "folder.torrent")
    ti = lt.torrent_info(str(tmp_path / "folder.torrent"))
    assert str(ti.info_hashes().v1) == meta.info_hash
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        files = ti.files()
        theirs = [(files.file_path(i), files.file_size(i)) for i in range(ti.num_files())]
    assert theirs == [(os.path.join("folder", *f.path), f.length) for f in meta.files]
    assert sorted(f.shown for f in meta.files) == sorted(tree)


def test_reads_mktorrent_and_libtorrent_pad_files(tmp_path):
    import libtorrent as lt
    make_tree(tmp_path / "folder")
    assert shutil.which("mktorrent"), "mktorrent is missing: run `make test`, which installs it"
    subprocess.run(["mktorrent", "-l", "15", "-a", ANNOUNCE, "-o", str(tmp_path / "mk.torrent"),
                    str(tmp_path / "folder")], check=True, capture_output=True)
    mk = metainfo.read(tmp_path / "mk.torrent")
    assert mk.info_hash == str(lt.torrent_info(str(tmp_path / "mk.torrent")).info_hashes().v1)
    ours = metainfo.create_folder(tmp_path / "folder", ANNOUNCE, 2 * PIECE)
    assert (mk.info_hash, mk.files) == (ours.info_hash, ours.files)   # same order, same bytes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fs = lt.file_storage()
        lt.add_files(fs, str(tmp_path / "folder"))
        ct = lt.create_torrent(fs, PIECE, flags=lt.create_torrent.v1_only | lt.create_torrent.canonical_files)
        lt.set_piece_hashes(ct, str(tmp_path))
        raw = lt.bencode(ct.generate())
    meta = metainfo.parse(raw)
    assert meta.info_hash == str(lt.torrent_info(raw).info_hashes().v1)
    pads = [f for f in meta.files if f.pad]
    assert pads and all(f.path[0] == ".pad" for f in pads)


def seeded(tmp_path, pads: bool):
    """(source tree, metainfo): ours, or libtorrent's with BEP 47 pad files."""
    tree = make_tree(tmp_path / "folder")
    if not pads:
        return tree, metainfo.create_folder(tmp_path / "folder", ANNOUNCE, PIECE)
    import libtorrent as lt
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fs = lt.file_storage()
        lt.add_files(fs, str(tmp_path / "folder"))
        ct = lt.create_torrent(fs, PIECE, flags=lt.create_torrent.v1_only | lt.create_torrent.canonical_files)
        lt.set_piece_hashes(ct, str(tmp_path))
        return tree, metainfo.parse(lt.bencode(ct.generate()))


@pytest.mark.parametrize("pads", [False, True], ids=["plain", "bep47-pads"])
@pytest.mark.parametrize("direct", [False, True], ids=["buffered", "direct"])
def test_pieces_spanning_files_land_byte_exact(tmp_path, pads, direct):
    tree, meta = seeded(tmp_path, pads)
    seed = PieceFile.open_seed(meta, tmp_path / "folder")
    assert seed.recheck().complete
    out = PieceFile.open_download(meta, tmp_path / "out" / "folder")
    assert out.fresh
    if direct and not out.use_direct_io():
        pytest.skip("the filesystem refuses O_DIRECT")
    for i in reversed(range(meta.num_pieces)):          # out of order, in uneven frames
        piece = seed.read(i, 0, meta.piece_size(i))
        cut = len(piece) // 3 + 1
        out.write_piece(i, [memoryview(piece)[:cut], memoryview(piece)[cut:]])
    assert out.recheck().complete
    assert out.read(0, 5, 1000) == seed.read(0, 5, 1000)
    out.close()
    seed.close()
    got = {str(p.relative_to(tmp_path / "out" / "folder")): p.read_bytes()
           for p in (tmp_path / "out" / "folder").rglob("*") if p.is_file()}
    assert got == tree                                    # empty file and nested folders included
    assert not (tmp_path / "out" / "folder" / ".pad").exists()   # pad files are never written


def test_resume_rules_and_delete_hold_per_file(tmp_path):
    tree, meta = seeded(tmp_path, pads=False)
    out_root = tmp_path / "out" / "folder"
    out = PieceFile.open_download(meta, out_root)
    seed = PieceFile.open_seed(meta, tmp_path / "folder")
    out.write_piece(0, [seed.read(0, 0, PIECE)])
    out.close()
    with pytest.raises(StorageError, match=r"a.bin already exists with 16384 bytes; the torrent says 100000"):
        PieceFile.open_download(meta, out_root)            # not ours, not complete: refused
    again = PieceFile.open_download(meta, out_root, resuming=True)
    assert again.recheck(None).indexes() == [0]
    (out_root / "mine.txt").write_text("not the torrent's")
    again.delete()
    again.close()
    seed.close()
    assert sorted(p.name for p in out_root.rglob("*")) == ["mine.txt"]   # only the torrent's files go


def test_a_symlink_planted_in_the_tree_is_refused(tmp_path):
    _, meta = seeded(tmp_path, pads=False)
    out_root = tmp_path / "out" / "folder"
    (tmp_path / "victim").mkdir()
    out_root.mkdir(parents=True)
    os.symlink(tmp_path / "victim", out_root / "sub")
    with pytest.raises(StorageError, match=r"refusing to write into .*/out/folder/sub: it is not a folder"):
        PieceFile.open_download(meta, out_root)
    os.symlink(tmp_path / "victim", tmp_path / "out" / "link")
    with pytest.raises(StorageError, match=r"refusing to write into .*/out/link: it is not a folder"):
        PieceFile.open_download(meta, tmp_path / "out" / "link")
    assert list((tmp_path / "victim").iterdir()) == []


def test_thousands_of_files_fit_the_descriptor_limit(tmp_path):
    """Each file of a held torrent stays open, so the peer raises its soft limit to fit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = 1500
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        for i in range(n):
            (tmp_path / "many" / f"d{i % 7}").mkdir(parents=True, exist_ok=True)
            (tmp_path / "many" / f"d{i % 7}" / f"f{i}").write_bytes(bytes([i % 251]) * (i % 50 + 1))
        meta = metainfo.create_folder(tmp_path / "many", ANNOUNCE, PIECE)    # one file open at a time
        assert len(meta.files) == n
        if hard != resource.RLIM_INFINITY and hard < n + 512:
            pytest.skip(f"the hard descriptor limit is {hard}")
        seed = PieceFile.open_seed(meta, tmp_path / "many")
        out = PieceFile.open_download(meta, tmp_path / "out" / "many")
        for i in range(meta.num_pieces):
            out.write_piece(i, [seed.read(i, 0, meta.piece_size(i))])
        assert out.recheck().complete
        seed.close()
        out.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert diff_r(tmp_path / "many", tmp_path / "out" / "many")


def diff_r(a: Path, b: Path) -> bool:
    return subprocess.run(["diff", "-r", str(a), str(b)], capture_output=True).returncode == 0
