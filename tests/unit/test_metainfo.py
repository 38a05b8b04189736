import hashlib

import fastbencode
import pytest

from protocol import metainfo
from protocol.errors import MetainfoError
from tests.conftest import write_random
from tests.torrents import HOSTILE, torrent

ANNOUNCE = "tcp://127.0.0.1:6969"


@pytest.fixture(params=[16 * 1024, 64 * 1024, 256 * 1024], ids=lambda p: f"{p // 1024}KiB")
def piece_length(request):
    return request.param


def test_create_and_read_round_trip(tmp_path, piece_length):
    src = write_random(tmp_path / "data.bin", 1_000_003, seed=piece_length)
    meta = metainfo.create(src, ANNOUNCE, piece_length)
    metainfo.write(meta, tmp_path / "t" / "data.bin.torrent")
    again = metainfo.read(tmp_path / "t" / "data.bin.torrent")
    assert again == meta
    assert again.num_pieces == -(-1_000_003 // piece_length)
    data = src.read_bytes()
    for i in range(meta.num_pieces):
        chunk = data[i * piece_length:(i + 1) * piece_length]
        assert meta.piece_hash(i) == hashlib.sha1(chunk).digest()
    info = fastbencode.bdecode(meta.raw)[b"info"]
    assert meta.info_hash == hashlib.sha1(fastbencode.bencode(info)).hexdigest()


def test_libtorrent_reads_the_same_info_hash(tmp_path):
    import libtorrent as lt
    src = write_random(tmp_path / "movie.bin", 3_000_000, seed=1)
    meta = metainfo.create(src, ANNOUNCE)
    metainfo.write(meta, tmp_path / "movie.bin.torrent")
    ti = lt.torrent_info(str(tmp_path / "movie.bin.torrent"))
    assert str(ti.info_hashes().v1) == meta.info_hash
    assert ti.num_pieces() == meta.num_pieces and ti.total_size() == meta.length


def test_reads_a_torrent_made_by_libtorrent(tmp_path):
    import libtorrent as lt
    src = write_random(tmp_path / "movie.bin", 3_000_000, seed=2)
    fs = lt.file_storage()
    lt.add_files(fs, str(src))
    ct = lt.create_torrent(fs, 65536, flags=lt.create_torrent.v1_only)
    ct.set_creator("libtorrent")
    lt.set_piece_hashes(ct, str(tmp_path))
    raw = lt.bencode(ct.generate())
    meta = metainfo.parse(raw)
    assert meta.info_hash == str(lt.torrent_info(raw).info_hashes().v1)
    assert meta.name == "movie.bin" and meta.piece_length == 65536


@pytest.mark.parametrize("raw, text", [(raw, text) for _, raw, text in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_rejects_bad_metainfo_with_one_line(raw, text):
    with pytest.raises(MetainfoError) as info:
        metainfo.parse(raw)
    assert info.value.message.startswith(text)
    assert "\n" not in info.value.message


@pytest.mark.parametrize("name", ["..hidden", "a..b", "ünïcødé.txt", "spaces and (brackets).mkv", "-dash"])
def test_accepts_merely_unusual_names(name):
    assert metainfo.parse(torrent(name=name.encode())).name == name


def test_read_names_the_file(tmp_path):
    with pytest.raises(MetainfoError, match="torrent file not found"):
        metainfo.read(tmp_path / "nope.torrent")
    bad = tmp_path / "bad.torrent"
    bad.write_bytes(b"garbage")
    with pytest.raises(MetainfoError, match=r"bad.torrent: not valid bencode"):
        metainfo.read(bad)
