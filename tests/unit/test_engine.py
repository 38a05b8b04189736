"""The download engine's scheduling on plain stand-ins: no sockets, no disk, no wall clock.
What the hostile-peer tests used to time (a stalled or trickling peer must not hold a
download), shown as the decisions the engine makes."""
from types import SimpleNamespace

import pytest

from node import config
from node.peer import engine
from node.peer.engine import DownloadJob
from node.peer.remote import RemotePeer
from protocol import messages as m
from protocol import metainfo
from protocol.pieces import Bitfield
from tests.procs import write_random

PIECE = 16384


class Channel:
    """Records requests; answers none (the remote stalls)."""

    def __init__(self) -> None:
        self.sent: list[m.GetBlock] = []
        self.cancelled: list[int] = []

    def request(self, msg, callback, timeout_s, tries):
        self.sent.append(msg)
        return len(self.sent)

    def cancel(self, rid: int) -> None:
        self.cancelled.append(rid)

    def close(self) -> None:
        pass

    def pieces(self) -> set[int]:
        return {r.piece_index for r in self.sent}


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(engine, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now


def job_for(tmp_path, pieces: int) -> DownloadJob:
    meta = metainfo.create(write_random(tmp_path / "f.bin", pieces * PIECE, seed=pieces), "tcp://127.0.0.1:1", PIECE)
    node = SimpleNamespace(peer_id="me", zctx=None, reactor=None, tracker=Channel(), holdings={}, state_dirty=False,
                           disk=SimpleNamespace(snapshot=lambda: None), queue_announce=lambda *a: None)
    holding = SimpleNamespace(meta=meta, file=None, bitfield=Bitfield(meta.num_pieces), fetched=0,
                              finish=lambda error="": None)
    return DownloadJob(node, holding)


def remote(job: DownloadJob, peer_id: str) -> RemotePeer:
    full = Bitfield(job.meta.num_pieces)
    for i in range(job.meta.num_pieces):
        full.add(i)
    job.remotes[peer_id] = r = RemotePeer(peer_id, f"tcp://127.0.0.1:{len(job.remotes) + 1}", Channel(), full)
    job._rebuild_order()
    return r


def test_endgame_duplicates_a_stalled_peers_pieces_once_they_are_late(tmp_path, clock):
    job = job_for(tmp_path, config.MIN_PIPELINE_REQUESTS)     # the staller's first credit takes every piece
    staller = remote(job, "staller")
    job.schedule()
    assert staller.channel.pieces() == set(range(job.meta.num_pieces)) and not job.pending
    seeder, third = remote(job, "seeder"), remote(job, "third")
    clock[0] += config.ENDGAME_AFTER_S / 2
    job.schedule()
    assert seeder.channel.sent == [] and third.channel.sent == []    # not late yet: no duplicate
    clock[0] += config.ENDGAME_AFTER_S
    job.schedule()                                                   # late: long before BLOCK_TIMEOUT_S
    assert config.ENDGAME_AFTER_S * 1.5 < config.BLOCK_TIMEOUT_S
    assert (seeder.channel.pieces() | third.channel.pieces()) == set(range(job.meta.num_pieces))
    assert all(len(attempts) == 2 for attempts in job.fetches.values())   # one duplicate each, never more
    assert staller.channel.cancelled == [] and staller.failures == 0      # nothing waited for a timeout


def test_credit_follows_the_measured_rate(tmp_path, clock):
    """A trickling peer gets the floor of two pieces in flight; a fast one up to PIPELINE_BYTES."""
    job = job_for(tmp_path, 64)
    slow, fast = remote(job, "slow"), remote(job, "fast")
    slow.first_request = fast.first_request = clock[0] - 10.0
    slow.bytes, fast.bytes = PIECE, 400 * 1024 * 1024              # 1.6 KiB/s against 40 MiB/s
    assert job._credit(slow.score(clock[0])) == config.MIN_PIPELINE_REQUESTS * PIECE
    assert job._credit(fast.score(clock[0])) == config.PIPELINE_BYTES
    job.schedule()
    assert len(slow.channel.pieces()) == config.MIN_PIPELINE_REQUESTS
    assert len(fast.channel.pieces()) == min(config.MAX_PIPELINE_REQUESTS, config.PIPELINE_BYTES // PIECE,
                                             64 - config.MIN_PIPELINE_REQUESTS)
