"""Held files that change on disk (issue 10): a deleted, shrunk or replaced download and a
modified seed are noticed, stop being served and announced, are re-hashed, and only what
still verifies is claimed again. `download` again fetches a byte-identical file."""
import filecmp
import hashlib
import os
from dataclasses import asdict

import pytest

from ctl import client
from node import config
from node.channel import call
from protocol import messages as m
from protocol import metainfo
from protocol.errors import RemoteError
from tests.conftest import wait_for
from tests.integration.test_swarm import download

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)     # polls ask the peers' control sockets and the tracker directly (fast)


def job_of(swarm, peer_id, info) -> dict:
    return asdict(client.peer_control(peer_id, m.Status(info_hash=info["info_hash"]), timeout_s=2).jobs[0])


def holders(swarm, info) -> dict[str, int]:
    reply = client.tracker(swarm.tracker_endpoint, m.GetPeers(info_hash=info["info_hash"]), timeout_s=2)
    return {p.peer_id: p.have for p in reply.peers}


def wait_state(swarm, peer_id, info, state):
    return wait_for(lambda: (j := job_of(swarm, peer_id, info))["state"] == state and j,
                    what=f"{peer_id} to show {state}")


def get_block(swarm, peer_id, meta, piece):
    """The bytes the peer serves for a whole piece, or the RemoteError it answers with."""
    endpoint = config.endpoint("127.0.0.1", swarm.peer_ports[peer_id])
    try:
        env = call(client.zctx(), endpoint, m.GetBlock(info_hash=meta.info_hash, piece_index=piece, block_offset=0,
                                                       length=meta.piece_size(piece)), timeout_s=5, tries=1)
    except RemoteError as err:
        return err
    return bytes(env.payload)


def assert_verifies_or_refused(reply, meta, piece):
    if not isinstance(reply, RemoteError):
        assert hashlib.sha1(reply).digest() == meta.piece_hash(piece), f"piece {piece} served wrong"


def test_deleted_download_is_missing_and_download_fetches_it_again(swarm, tmp_path):
    src, info = swarm.seeded("p1", ["p2"], "a.bin", 2 * MIB + 777, seed=101)
    out = tmp_path / "out" / "a.bin"
    download(swarm, info["torrent"], out, "p2")
    # the case: deleted, then `download` at once: fetched again, not "all verified" over nothing
    out.unlink()
    download(swarm, info["torrent"], out, "p2")
    assert filecmp.cmp(src, out, shallow=False)
    # deleted and left alone: noticed by itself, shown, and the tracker stops listing p2
    out.unlink()
    job = wait_state(swarm, "p2", info, "missing")
    assert job["have"] == 0 and f"{out} is missing" in job["error"]
    wait_for(lambda: holders(swarm, info) == {"p1": info["num_pieces"]}, what="the tracker to forget p2")
    assert "missing" in swarm.cli("status", "--peer-id", "p2").stdout
    assert [p["peer_id"] for p in swarm.cli_json("get", "--torrent", info["torrent"])["peers"]] == ["p1"]
    download(swarm, info["torrent"], out, "p2")
    assert filecmp.cmp(src, out, shallow=False)
    assert job_of(swarm, "p2", info)["state"] == "seeding"
    wait_for(lambda: holders(swarm, info) == {"p1": info["num_pieces"], "p2": info["num_pieces"]},
             what="p2 announced again")


def test_shrunk_or_replaced_download_claims_only_what_verifies(swarm, tmp_path):
    src, info = swarm.seeded("p1", ["p2"], "s.bin", 2 * MIB, seed=102)
    meta = metainfo.read(tmp_path / info["torrent"])
    out = tmp_path / "out" / "s.bin"
    download(swarm, info["torrent"], out, "p2")
    os.truncate(out, MIB + 100)
    intact = (MIB + 100) // meta.piece_length
    job = wait_state(swarm, "p2", info, "changed")
    assert job["have"] == intact and "changed size" in job["error"], job
    wait_for(lambda: holders(swarm, info).get("p2") == intact, what="p2 to announce only the intact pieces")
    assert isinstance(get_block(swarm, "p2", meta, info["num_pieces"] - 1), RemoteError)
    assert_verifies_or_refused(get_block(swarm, "p2", meta, 0), meta, 0)
    download(swarm, info["torrent"], out, "p2")
    assert filecmp.cmp(src, out, shallow=False)
    # replaced by another file (a new inode) with the same bytes: re-hashed, and whole again
    copy = out.with_name("copy")
    copy.write_bytes(src.read_bytes())
    os.replace(copy, out)
    wait_for(lambda: "was replaced by another file" in swarm.log("p2"), what="p2 to notice the new inode")
    job = wait_state(swarm, "p2", info, "seeding")
    assert job["have"] == info["num_pieces"] and job["error"] == ""
    wait_for(lambda: holders(swarm, info).get("p2") == info["num_pieces"], what="p2 announced whole again")


def test_a_modified_seed_never_serves_the_changed_piece(swarm, tmp_path):
    src, info = swarm.seeded("p1", ["p2", "p3"], "m.bin", 3 * MIB, seed=103)
    meta = metainfo.read(tmp_path / info["torrent"])
    n = info["num_pieces"]
    download(swarm, info["torrent"], tmp_path / "p2" / "m.bin", "p2")
    original = src.read_bytes()
    with open(src, "r+b") as f:              # the case: the first 4 KiB overwritten
        f.write(os.urandom(4096))
    for _ in range(5):                        # asked at once, before any sweep: never the new bytes
        assert isinstance(get_block(swarm, "p1", meta, 0), RemoteError)
        assert_verifies_or_refused(get_block(swarm, "p1", meta, 1), meta, 1)
    job = wait_state(swarm, "p1", info, "changed")
    assert job["have"] == n - 1 and f"1 of {n} pieces no longer verify" in job["error"], job
    wait_for(lambda: holders(swarm, info) == {"p1": n - 1, "p2": n}, what="p1 to claim only n-1 pieces")
    assert get_block(swarm, "p1", meta, 1) == original[meta.piece_length:2 * meta.piece_length]
    res = download(swarm, info["torrent"], tmp_path / "p3" / "m.bin", "p3", json_out=True)
    assert res["failed_attempts"] == 0, res       # nothing bad was served to p3
    assert filecmp.cmp(tmp_path / "p2" / "m.bin", tmp_path / "p3" / "m.bin", shallow=False)
    src.write_bytes(original)                 # put back: `upload` again checks it whole
    swarm.upload(src, "p1")
    assert job_of(swarm, "p1", info)["state"] == "seeding"
    wait_for(lambda: holders(swarm, info).get("p1") == n, what="p1 whole again")


def test_restart_does_not_trust_a_file_whose_inode_changed(swarm, tmp_path):
    src, info = swarm.seeded("p1", ["p2"], "r.bin", MIB, seed=104)
    out = tmp_path / "out" / "r.bin"
    download(swarm, info["torrent"], out, "p2")
    swarm.stop("p2")
    data = bytearray(out.read_bytes())
    data[5] ^= 0xFF
    tmp = out.with_name("tmp")
    tmp.write_bytes(data)
    st = os.stat(out)
    os.replace(tmp, out)
    os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))    # same size and mtime: only the inode says so
    swarm.peer("p2")
    job = wait_state(swarm, "p2", info, "seeding")
    assert job["resumed"] == info["num_pieces"] - 1, job     # re-hashed, not trusted: one piece fetched again
    assert filecmp.cmp(src, out, shallow=False)


def test_a_file_of_a_folder_torrent_deleted_or_modified(swarm, tmp_path):
    """One file of a folder goes missing: the whole torrent is `missing` (as qBittorrent's
    "missing files"), and `download` again restores the folder. A seed's file modified: only
    the pieces over it are dropped."""
    from tests.integration.test_multifile_magnet import diff_r, make_folder

    swarm.tracker()
    swarm.peer("p1")
    swarm.peer("p2")
    src = make_folder(tmp_path / "in" / "folder")
    swarm.cli("create", "--input", str(src), "--one-torrent", "--piece-size", "32768")
    info = swarm.cli_json("upload", "--input", str(src), "--one-torrent",
                          "--peer-id", "p1", "--peer-port", str(swarm.peer_ports["p1"]))[0]
    n = info["num_pieces"]
    (tmp_path / "dl").mkdir()                            # an existing folder: the torrent's goes inside it
    download(swarm, info["torrent"], tmp_path / "dl", "p2")
    out = tmp_path / "dl" / "folder"
    (out / "sub" / "deep" / "b.bin").unlink()
    job = wait_state(swarm, "p2", info, "missing")
    assert "sub/deep/b.bin is missing" in job["error"], job
    wait_for(lambda: "p2" not in holders(swarm, info), what="the tracker to forget p2")
    download(swarm, info["torrent"], tmp_path / "dl", "p2")
    assert diff_r(src, out).returncode == 0
    with open(src / "zz" / "last.bin", "r+b") as f:      # its first bytes: one piece
        f.write(os.urandom(10))
    job = wait_state(swarm, "p1", info, "changed")
    assert job["have"] == n - 1 and "zz/last.bin was modified" in job["error"], job
