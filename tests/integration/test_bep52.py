"""BEP 52: a hybrid torrent (made by libtorrent) downloads through its v1 part; a v2-only
torrent is refused with one line that names BEP 52."""
import libtorrent as lt
import pytest

from protocol.errors import MetainfoError
from protocol.metainfo import parse, read
from tests.procs import write_random

MIB = 1024 * 1024
V2_ERROR = ("v2-only torrents (BEP 52) are not supported; zorrent reads v1 and hybrid torrents "
            "(make one with v1 piece hashes)")


def lt_torrent(src, flags: int) -> bytes:
    ct = lt.create_torrent(lt.list_files(str(src)), 16384, flags)
    lt.set_piece_hashes(ct, str(src.parent))
    return lt.bencode(ct.generate())


def test_v2_only_is_one_line_naming_bep52(tmp_path):
    src = write_random(tmp_path / "f.bin", 100_000, seed=5)
    with pytest.raises(MetainfoError) as err:
        parse(lt_torrent(src, lt.create_torrent.v2_only))
    assert err.value.message == V2_ERROR


def test_v2_only_at_the_command_line(swarm):
    src = write_random(swarm.workdir / "f.bin", 100_000, seed=5)
    (swarm.workdir / "v2.torrent").write_bytes(lt_torrent(src, lt.create_torrent.v2_only))
    res = swarm.cli("get", "--torrent", "v2.torrent", check=False)
    assert res.returncode == 2 and res.stderr.strip() == f"error: v2.torrent: {V2_ERROR}", res.stderr


def test_hybrid_downloads_through_its_v1_part(swarm):
    swarm.tracker()
    swarm.peer("p1")
    swarm.peer("p2")
    src = write_random(swarm.workdir / "in" / "h.bin", 2 * MIB + 123, seed=52)
    raw = lt_torrent(src, 0)                                 # 0: hybrid, v1 and v2 hashes
    ti = lt.torrent_info(lt.bdecode(raw))
    assert ti.info_hashes().has_v1() and ti.info_hashes().has_v2()
    torrent = swarm.workdir / "output" / "torrents" / "h.bin.torrent"
    torrent.parent.mkdir(parents=True)
    torrent.write_bytes(raw)                                 # upload uses the torrent that is there
    assert read(torrent).info_hash == str(ti.info_hashes().v1)
    assert swarm.upload(src, "p1")["info_hash"] == str(ti.info_hashes().v1)
    out = swarm.workdir / "got.bin"
    swarm.cli("download", "--torrent", str(torrent), "--output", str(out), "--peer-id", "p2",
              "--peer-port", str(swarm.peer_ports["p2"]))
    assert out.read_bytes() == src.read_bytes()
