"""Issue 20 at small scale: a 20,000-piece torrent on the MongoDB store, and a peer whose
jobs x remotes pass its socket limit."""
import filecmp
import itertools
import os

import pytest
import zmq

from node.channel import call
from protocol import messages as m
from protocol.metainfo import create
from tests.conftest import wait_for, write_random

_dbs = itertools.count()


@pytest.mark.mongo
def test_upload_of_20000_pieces_on_mongodb_is_acknowledged_and_listed(swarm, tmp_path, mongo_uri):
    """Before: every announce was $addToSet on one array per torrent, and 1,221 pieces kept
    SecantusDB busy past upload's deadline. A sparse file keeps this fast: 20,000 pieces of
    16 KiB that read as zeros without touching the disk."""
    swarm.tracker("--store", f"{mongo_uri}/big{next(_dbs)}?retryWrites=false")
    swarm.peer("p1")
    src = tmp_path / "in" / "big.bin"
    src.parent.mkdir()
    with open(src, "wb") as f:
        f.truncate(20_000 * 16384)
    torrent = tmp_path / "big.torrent"
    torrent.write_bytes(create(src, swarm.tracker_endpoint, 16384).raw)
    (swarm.workdir / "output" / "torrents").mkdir(parents=True, exist_ok=True)
    os.link(torrent, swarm.workdir / "output" / "torrents" / "big.bin.torrent")   # upload uses it as it is
    info = swarm.upload(src, "p1")                     # returns once the tracker acknowledged every piece
    assert info["num_pieces"] == 20_000
    got = swarm.cli_json("get", "--torrent", str(torrent))
    assert [(p["peer_id"], p["have"]) for p in got["peers"]] == [("p1", 20_000)]


def control(swarm, zctx, peer_id, msg):
    endpoint = f"ipc://{(swarm.workdir / 'output' / 'run' / f'{peer_id}.sock').resolve()}"
    return call(zctx, endpoint, msg, timeout_s=10, tries=1).msg


def test_many_torrents_from_many_remotes_pass_the_socket_limit(swarm, tmp_path, monkeypatch):
    """8 torrents from 6 seeds each: 48 (job, remote) pairs at once, on a leecher whose
    ZeroMQ context allows 24 sockets (before: the 22nd DEALER failed inside a callback, and
    that job waited for other jobs to finish and let theirs go; a job that could never
    have all its DEALERs, as on the 8-socket leecher, stalled for good). One DEALER per remote, shared by the jobs, needs 6 (plus
    the peer's own 3). A second leecher allowed 8 sockets cannot link to every seed:
    it says so in status, and still finishes from the seeds it reached."""
    seeds = [f"s{i}" for i in range(6)]
    swarm.tracker()
    for pid in seeds:     # capped, so that all 16 jobs run at once (finished jobs let their sockets go)
        swarm.peer(pid, "--upload-rate", str(256 * 1024))
    monkeypatch.setenv("ZORRENT_MAX_SOCKETS", "24")
    swarm.peer("wide")
    monkeypatch.setenv("ZORRENT_MAX_SOCKETS", "8")
    swarm.peer("narrow")
    monkeypatch.delenv("ZORRENT_MAX_SOCKETS")
    metas = []
    for k in range(8):
        src = write_random(tmp_path / "in" / f"f{k}.bin", 32 * 16384 + k, seed=40 + k)
        metas.append((src, create(src, swarm.tracker_endpoint, 16384)))
    zctx = zmq.Context()
    try:
        for pid in seeds:
            for src, meta in metas:
                assert isinstance(control(swarm, zctx, pid, m.Upload(path=str(src), metainfo=meta.raw)), m.Uploaded)
        for leecher in ("wide", "narrow"):
            for k, (_, meta) in enumerate(metas):
                out = tmp_path / leecher / f"f{k}.bin"
                out.parent.mkdir(exist_ok=True)
                control(swarm, zctx, leecher, m.Download(metainfo=meta.raw, output=str(out)))
        warnings = set()

        def finished(leecher):
            jobs = control(swarm, zctx, leecher, m.Status(info_hash="")).jobs
            warnings.update(getattr(j, "warning", "") for j in jobs if getattr(j, "warning", ""))
            assert not [j.error for j in jobs if j.state == m.JobState.FAILED.value]
            return len(jobs) == 8 and all(j.state == m.JobState.SEEDING.value for j in jobs)

        wait_for(lambda: finished("wide"), timeout_s=60, what="every download of the 24-socket leecher")
        assert not warnings
        assert "Too many open files" not in (swarm.workdir / "logs" / "wide.log").read_text()  # never had to wait
        wait_for(lambda: finished("narrow"), timeout_s=60, what="every download of the 8-socket leecher")
        assert any("peers not contacted" in w and "limit 8 sockets" in w for w in warnings), warnings
    finally:
        zctx.destroy(linger=0)
    for leecher in ("wide", "narrow"):
        for k, (src, _) in enumerate(metas):
            assert filecmp.cmp(src, tmp_path / leecher / f"f{k}.bin", shallow=False)
