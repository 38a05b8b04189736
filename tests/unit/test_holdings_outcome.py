"""node/peer/holdings.py: a download job that ends is let go (its remotes, bitfields and
channels with it), and what status shows of it then stops growing with the swarm: its
per-peer figures for FINISHED_PEERS_SHOWN_S, its totals after that."""
from types import SimpleNamespace

from node import config
from node.peer import holdings as holdings_mod
from node.peer.holdings import Holdings
from protocol import messages as m
from protocol.pieces import Bitfield


class Job:
    def __init__(self, remotes: int) -> None:
        self.failed_attempts, self.ignored, self.warning = 2, 1, ""
        self.stats_asked = 0
        self.remotes = remotes

    def peer_stats(self):
        self.stats_asked += 1
        return [m.PeerStat(peer_id=f"p{i}", pieces=1, bytes=1 << 18, failures=0, score=1.0, banned=False,
                           hash_failures=0, rested=False) for i in range(self.remotes)]


def _held(clock):
    meta = SimpleNamespace(info_hash="ab" * 20, name="f.bin", num_pieces=4, length=4 << 18, piece_length=1 << 18)
    piece_file = SimpleNamespace(path="/tmp/f.bin", close=lambda: None)
    hs = Holdings()
    h = hs.hold(meta, piece_file, Bitfield(4), m.JobState.DOWNLOADING, "download")
    job = Job(remotes=40)
    hs.attach(h, job)
    return hs, h, job


def test_a_finished_job_is_let_go_and_its_figures_kept(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(holdings_mod, "time", SimpleNamespace(monotonic=lambda: now[0]))
    trims = []
    monkeypatch.setattr(holdings_mod, "trim_heap", lambda: trims.append(1))
    hs, h, job = _held(now)
    assert len(h.status(0).peers) == 40                 # running: the job's live figures
    hs.transition(h.info_hash, m.JobState.SEEDING, expect=h)
    assert h.job is None and trims == [1]               # the job (and what it holds) is gone
    asked = job.stats_asked
    done = h.status(0)
    assert len(done.peers) == 40 and done.failed_attempts == 2 and done.ignored == 1
    assert job.stats_asked == asked                     # frozen at the end, not rebuilt per status
    assert hs.downloading() is False


def test_after_a_while_status_carries_a_finished_jobs_totals_only(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(holdings_mod, "time", SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr(holdings_mod, "trim_heap", lambda: None)
    hs, h, _ = _held(now)
    hs.transition(h.info_hash, m.JobState.SEEDING, expect=h)
    now[0] += config.FINISHED_PEERS_SHOWN_S - 1
    assert len(h.status(0).peers) == 40                 # the download command, the soak, the web view
    now[0] += 2
    late = h.status(0)
    assert late.peers == [] and late.failed_attempts == 2 and late.state == m.JobState.SEEDING.value
    assert h.outcome is not None and len(h.outcome.peers) == 40   # kept; only status leaves them out
    assert len(h.status(0, alone=True).peers) == 40     # a status of this torrent alone: `download` re-attached
