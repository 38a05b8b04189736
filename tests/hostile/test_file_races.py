"""Races on held files (issue 10): a file removed while it is being read, replaced by a
symlink, turned into a directory. Blocks are requested all the while: each reply is a
refusal or bytes that pass their piece's hash; the CLI says what is wrong in one line."""
import filecmp
import hashlib
import os
import shutil
import threading
from dataclasses import asdict

import pytest

from ctl import client
from node import config
from node.channel import call
from protocol import messages as m
from protocol import metainfo
from protocol.errors import RemoteError
from tests.conftest import wait_for
from tests.hostile.test_bad_input import one_line_error
from tests.integration.test_swarm import download

MIB = 1024 * 1024


class Hammer:
    """Asks a peer for every piece, round and round, on a thread; keeps what went wrong."""

    def __init__(self, port: int, meta: metainfo.Metainfo) -> None:
        self.endpoint, self.meta = config.endpoint("127.0.0.1", port), meta
        self.served = self.refused = 0
        self.wrong: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        meta, i = self.meta, 0
        while not self.stop.is_set():
            piece = i % meta.num_pieces
            i += 1
            try:
                env = call(client.zctx(), self.endpoint, m.GetBlock(
                    info_hash=meta.info_hash, piece_index=piece, block_offset=0, length=meta.piece_size(piece)),
                    timeout_s=5, tries=1)
            except RemoteError:
                self.refused += 1
                continue
            except Exception as exc:     # a timeout is a hang: a failure too
                self.wrong.append(f"piece {piece}: {exc!r}")
                continue
            if hashlib.sha1(env.payload).digest() != meta.piece_hash(piece):
                self.wrong.append(f"piece {piece} served with bytes that fail its hash")
            else:
                self.served += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture(autouse=True)
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)     # polls ask the peers' control sockets directly (fast)


def state_of(swarm, peer_id, info) -> dict:
    return asdict(client.peer_control(peer_id, m.Status(info_hash=info["info_hash"]), timeout_s=2).jobs[0])


def test_a_download_removed_symlinked_or_made_a_directory_while_served(swarm, tmp_path):
    src, info = swarm.seeded("p1", ["p2"], "h.bin", 2 * MIB, seed=201)
    meta = metainfo.read(tmp_path / info["torrent"])
    out = tmp_path / "out" / "h.bin"
    download(swarm, info["torrent"], out, "p2")

    def wait_missing(text):
        job = wait_for(lambda: (j := state_of(swarm, "p2", info))["state"] == "missing" and j,
                       what="p2 to show missing")
        assert text in job["error"], job
        status = swarm.cli("status", "--peer-id", "p2")
        assert "missing" in status.stdout and "Traceback" not in status.stdout + status.stderr

    with Hammer(swarm.peer_ports["p2"], meta) as hammer:
        wait_for(lambda: hammer.served > 5, what="blocks served")
        out.unlink()                                   # removed while it is being read
        wait_missing("is missing")
        download(swarm, info["torrent"], out, "p2")
        assert filecmp.cmp(src, out, shallow=False)

        out.unlink()                                   # a symlink in its place: never followed
        out.symlink_to(src)
        wait_missing("is a symlink now; not following it")
        res = swarm.cli("download", "--torrent", info["torrent"], "--output", str(out), "--peer-id", "p2",
                        "--peer-port", str(swarm.peer_ports["p2"]), check=False)
        one_line_error(res, 3, f"refusing to write through the symlink {out}")
        out.unlink()
        download(swarm, info["torrent"], out, "p2")
        assert filecmp.cmp(src, out, shallow=False)

        out.unlink()                                   # a directory in its place
        out.mkdir()
        wait_missing("is a directory now, not a file")
        res = swarm.cli("download", "--torrent", info["torrent"], "--output", str(out), "--peer-id", "p2",
                        "--peer-port", str(swarm.peer_ports["p2"]), check=False)
        one_line_error(res, 3, f"cannot write {out}: Is a directory")   # the job p2 holds at {out}
    assert hammer.wrong == [] and hammer.served > 5, (hammer.wrong, hammer.served)
    assert "Traceback" not in swarm.log("p2")


def test_a_seed_replaced_by_a_symlink_or_a_directory_while_served(swarm, tmp_path):
    src, info = swarm.seeded("p1", ["p2"], "s.bin", 2 * MIB, seed=202)
    meta = metainfo.read(tmp_path / info["torrent"])
    other = tmp_path / "other.bin"
    other.write_bytes(os.urandom(2 * MIB))
    kept = tmp_path / "kept.bin"
    shutil.copyfile(src, kept)
    with Hammer(swarm.peer_ports["p1"], meta) as hammer:
        wait_for(lambda: hammer.served > 5, what="blocks served")
        link = src.with_name("s.link")                 # a seed may be a symlink: followed, and re-hashed
        link.symlink_to(other)
        os.replace(link, src)                          # in one step: the checks never see it missing
        job = wait_for(lambda: (j := state_of(swarm, "p1", info))["state"] == "changed" and j,
                       what="p1 to show changed")
        assert job["have"] == 0 and "was replaced by another file" in job["error"], job
        src.unlink()
        src.mkdir()
        wait_for(lambda: state_of(swarm, "p1", info)["state"] in ("missing", "changed")
                 and "not a file" in state_of(swarm, "p1", info)["error"], what="p1 to see the directory")
        res = swarm.cli("upload", "--input", str(src), "--peer-id", "p1",
                        "--peer-port", str(swarm.peer_ports["p1"]), check=False)
        one_line_error(res, 2, f"{src} has no files to share")
        src.rmdir()
        os.replace(kept, src)                          # the original back: upload checks it whole
        swarm.upload(src, "p1")
        assert state_of(swarm, "p1", info)["state"] == "seeding"
    assert hammer.wrong == [] and hammer.served > 5, (hammer.wrong, hammer.served)
    assert "Traceback" not in swarm.log("p1")
