"""A folder as one torrent (BEP 3 ``files``) and magnet links (BEP 9), through the real CLI
against a real tracker and real peers: a mktorrent torrent downloads byte-identical
(``diff -r``), resumes, is removed with --delete, and comes back by magnet link in hex and
in base32; a source that sends the wrong info dict is ignored, as a bad piece is."""
import base64
import os
import shutil
import signal
import subprocess
import threading

import zmq

from protocol import messages as m
from protocol import metainfo
from protocol.codec import decode, encode
from tests.conftest import free_port, wait_for, write_random
from tests.hostile.test_bad_input import one_line_error
from tests.torrents import HOSTILE_PATHS

SIZES = {"a.bin": 700_000, "empty.txt": 0, "sub/c.txt": 3, "sub/deep/b.bin": 300_001,
         "sub/deep/also-empty": 0, "zz/last.bin": 65_536}


def make_folder(root):
    for i, (rel, n) in enumerate(SIZES.items()):
        write_random(root / rel, n, seed=40 + i)
    return root


def diff_r(a, b) -> subprocess.CompletedProcess:
    return subprocess.run(["diff", "-r", str(a), str(b)], capture_output=True, text=True)


def test_mktorrent_folder_downloads_identical_resumes_and_comes_back_by_magnet(swarm, tmp_path):
    tracker = swarm.tracker()
    for p in ("seeder", "leecher"):
        swarm.peer(p)
    src = make_folder(tmp_path / "in" / "folder")
    torrents = tmp_path / "output" / "torrents"
    torrents.mkdir(parents=True)
    assert shutil.which("mktorrent"), "mktorrent is missing: run `make test`, which installs it"
    subprocess.run(["mktorrent", "-l", "15", "-a", tracker, "-o", str(torrents / "folder.torrent"), str(src)],
                   check=True, capture_output=True)
    mk = metainfo.read(torrents / "folder.torrent")

    made = swarm.cli_json("create", "--input", str(src), "--one-torrent", "--piece-size", "32768")[0]
    assert made["info_hash"] == mk.info_hash and made["files"] == len(SIZES)   # ours == mktorrent's
    one_line_error(swarm.cli("create", "--input", str(src / "a.bin"), "--one-torrent", check=False), 2,
                   "--one-torrent needs a folder")
    up = swarm.cli_json("upload", "--input", str(src), "--one-torrent", "--peer-id", "seeder",
                        "--peer-port", str(swarm.peer_ports["seeder"]))[0]
    assert up["info_hash"] == mk.info_hash                  # mktorrent's torrent is used as it is
    assert up["magnet"].startswith(f"magnet:?xt=urn:btih:{mk.info_hash}&dn=folder&tr=")

    (tmp_path / "dl").mkdir()                                 # an existing folder: the content goes inside it
    args = ["--peer-id", "leecher", "--peer-port", str(swarm.peer_ports["leecher"]), "--output", "dl"]
    res = swarm.cli("download", "--torrent", str(torrents / "folder.torrent"), *args)
    assert "Total pieces downloaded" in res.stdout
    assert diff_r(src, tmp_path / "dl" / "folder").returncode == 0   # empty files, nested folders
    assert (tmp_path / "dl" / "folder" / "sub" / "deep" / "also-empty").stat().st_size == 0

    # a re-run re-attaches; a restarted peer resumes from its state without fetching again
    swarm.stop("leecher")
    (tmp_path / "leecher.ready").unlink()
    swarm.peer("leecher")
    args[3] = str(swarm.peer_ports["leecher"])
    job = swarm.job("leecher", mk.info_hash)
    assert job["state"] == "seeding" and job["have"] == job["num_pieces"]

    # remove --delete takes the folder away; the magnet link brings it back, hex then base32
    hex_link = up["magnet"]
    b32 = base64.b32encode(bytes.fromhex(mk.info_hash)).decode()
    for link in (hex_link, hex_link.replace(mk.info_hash, b32)):
        swarm.cli("remove", "--torrent", str(torrents / "folder.torrent"), "--peer-id", "leecher", "--delete")
        assert not (tmp_path / "dl" / "folder").exists()
        done = swarm.cli_json("download", "--magnet", link, *args)
        assert done["state"] == "seeding" and done["info_hash"] == mk.info_hash
        assert diff_r(src, tmp_path / "dl" / "folder").returncode == 0


def test_a_folder_download_killed_midway_resumes_without_refetching(swarm, tmp_path):
    swarm.tracker()
    swarm.peer("seeder", "--upload-rate", str(2 * 1024 * 1024))
    fixed = ("--port", str(free_port()))    # restarted on its own address, it takes its record back at once
    swarm.peer("leecher", *fixed)
    src = tmp_path / "in" / "folder"
    for i, n in enumerate([1_500_000, 0, 2_000_001, 700_000]):
        write_random(src / ("deep/er" if i % 2 else "") / f"f{i}.bin", n, seed=60 + i)
    up = swarm.cli_json("upload", "--input", str(src), "--one-torrent", "--peer-id", "seeder",
                        "--peer-port", str(swarm.peer_ports["seeder"]))[0]
    args = ["download", "--torrent", up["torrent"], "--output", "dl/folder", "--peer-id", "leecher"]
    swarm.spawn("first-download", *args, "--peer-port", str(swarm.peer_ports["leecher"]))
    third = up["num_pieces"] // 3
    job = wait_for(lambda: (j := swarm.job("leecher", up["info_hash"])) and j["have"] >= third and j,
                   what="leecher at a third")
    leecher = next(p for n, p, _ in swarm.procs if n == "leecher")
    os.kill(leecher.pid, signal.SIGKILL)
    leecher.wait()
    (tmp_path / "leecher.ready").unlink()
    swarm.peer("leecher", *fixed)
    res = swarm.cli_json(*args, "--peer-port", str(swarm.peer_ports["leecher"]))
    assert res["state"] == "seeding" and res["have"] == up["num_pieces"]
    assert res["resumed"] >= job["have"] - 2, (job["have"], res["resumed"])   # kept, not fetched again
    assert diff_r(src, tmp_path / "dl" / "folder").returncode == 0


def test_libtorrent_pad_files_are_never_written(swarm, tmp_path):
    """A libtorrent torrent with BEP 47 pad files: seeded and downloaded through real peers."""
    import warnings

    import libtorrent as lt
    swarm.tracker()
    for p in ("seeder", "leecher"):
        swarm.peer(p)
    src = make_folder(tmp_path / "in" / "folder")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fs = lt.file_storage()
        lt.add_files(fs, str(src))
        ct = lt.create_torrent(fs, 32768, flags=lt.create_torrent.v1_only | lt.create_torrent.canonical_files)
        lt.set_piece_hashes(ct, str(src.parent))
        raw = lt.bencode(ct.generate())
    assert any(f.pad for f in metainfo.parse(raw).files)
    (tmp_path / "output" / "torrents").mkdir(parents=True)
    (tmp_path / "output" / "torrents" / "folder.torrent").write_bytes(raw)
    up = swarm.cli_json("upload", "--input", str(src), "--one-torrent", "--peer-id", "seeder",
                        "--peer-port", str(swarm.peer_ports["seeder"]))[0]
    assert up["info_hash"] == str(lt.torrent_info(raw).info_hashes().v1)
    swarm.cli("download", "--torrent", up["torrent"], "--output", "dl/folder", "--peer-id", "leecher",
              "--peer-port", str(swarm.peer_ports["leecher"]))
    assert diff_r(src, tmp_path / "dl" / "folder").returncode == 0       # and no .pad/ folder


class WrongMetainfo:
    """A hostile data port that answers GET_METAINFO with another torrent's metainfo."""

    def __init__(self, raw: bytes) -> None:
        self.raw, self.stop = raw, threading.Event()
        self.zctx = zmq.Context()
        self.sock = self.zctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.sock.poll(50):
                ident, *frames = self.sock.recv_multipart()
                env = decode(frames)
                reply = m.MetainfoReply(info_hash=env.msg.info_hash, metainfo=self.raw)
                self.sock.send_multipart([ident, *encode(reply, env.id)])

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()
        self.zctx.term()


def test_a_wrong_info_dict_is_ignored_and_the_next_source_is_used(swarm, tmp_path, mute_endpoint):
    swarm.tracker()
    for p in ("seeder", "leecher"):
        swarm.peer(p)
    src = write_random(tmp_path / "in" / "f.bin", 200_000, seed=3)
    other = write_random(tmp_path / "in" / "other.bin", 100_000, seed=4)
    info = swarm.upload(src, "seeder")
    liar = WrongMetainfo(metainfo.create(other, "tcp://127.0.0.1:1").raw)
    try:
        dead_tracker = mute_endpoint
        base = f"magnet:?xt=urn:btih:{info['info_hash']}&tr={dead_tracker}&x.pe=127.0.0.1:{liar.port}"
        args = ["--peer-id", "leecher", "--peer-port", str(swarm.peer_ports["leecher"]), "--output", "dl"]
        res = swarm.cli("download", "--magnet", base, *args, check=False)
        one_line_error(res, 3, f"wrong metainfo from peer 127.0.0.1:{liar.port}")
        assert "does not hash to btih" in res.stderr
        honest = f"{base}&x.pe=127.0.0.1:{swarm.peer_ports['seeder']}"
        done = swarm.cli_json("download", "--magnet", honest, *args)
        assert done["state"] == "seeding"
        assert (tmp_path / "dl").read_bytes() == src.read_bytes()
    finally:
        liar.close()


def test_a_hostile_path_through_the_real_cli_is_one_line(swarm, tmp_path):
    name, raw, text = next(c for c in HOSTILE_PATHS if c[0] == "dotdot")
    (tmp_path / "bad.torrent").write_bytes(raw)
    res = swarm.cli("download", "--torrent", "bad.torrent", "--peer-id", "p2", "--peer-port", "1", check=False)
    one_line_error(res, 2, text)
    assert not (tmp_path / "x").exists()
