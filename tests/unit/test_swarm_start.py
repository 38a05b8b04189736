"""Peers that start a download together find each other at once (issue 19): a young job
asks the tracker again PEER_REFRESH_MIN_S after its first list, so the other leechers,
listed a moment after this job's first ask, are dialed in parallel with the seed, not
at +0.2 s (the trace in bench/RESULTS.md: at RTT 100 the links between leechers were
ready only after their first relay requests were waiting on them).

A fake host and clock (tests/unit/test_engine.py's), no sockets."""
from __future__ import annotations

import pytest

from protocol import messages as m
from protocol.codec import Envelope
from protocol.pieces import Bitfield
from tests.unit.test_engine import FakeFile, FakeHost, torrent

TICK_S = 0.05        # node/peer/main.py: a downloading peer's tick


def _peer(peer_id: str, port: int, pieces: range, num_pieces: int) -> m.PeerInfo:
    bits = Bitfield(num_pieces)
    for i in pieces:
        bits.add(i)
    return m.PeerInfo(peer_id=peer_id, host="127.0.0.1", port=port, bitfield=bits.to_bytes(), have=len(bits))


@pytest.mark.parametrize("rtt_s", [0.0005, 0.02, 0.1])
def test_leechers_that_start_together_are_dialed_within_a_round_trip_of_the_first_list(rtt_s):
    from node.peer.engine import DownloadJob
    meta, data = torrent(16)
    host = FakeHost()
    start = host.clock.now
    holding = host.holdings.hold(meta, FakeFile(len(data)), Bitfield(16), m.JobState.DOWNLOADING, "download")
    job = DownloadJob(host, holding)
    host.holdings.attach(holding, job)
    job.refresh()
    asks = [s for s in host.tracker.sent if isinstance(s.msg, m.GetPeers)]
    assert len(asks) == 1
    host.clock.now += rtt_s                      # the first list: only the seed (the others not joined yet)
    first = m.PeerList(info_hash=meta.info_hash, name="f.bin", num_pieces=16, length=len(data),
                       peers=[_peer("seed", 7000, range(16), 16)], version=1)
    asks[0].callback(Envelope(1, first), None)
    assert list(job.remotes) == ["seed"]
    while len(host.tracker.sent) < 2:            # the peer's ticks, until the job asks again
        host.clock.now += TICK_S
        job.tick(host.clock.now)
        assert host.clock.now - start < 1.0
    asked_again = host.clock.now - start
    assert asked_again <= max(rtt_s, 0.05) + TICK_S + 1e-9     # once the first list is in (0.2 s before)
    host.clock.now += rtt_s
    second = m.PeerList(info_hash=meta.info_hash, name="f.bin", num_pieces=16, length=len(data),
                        peers=[_peer("leech1", 7001, range(0), 16)], version=2, delta=True)
    host.tracker.sent[1].callback(Envelope(2, second), None)
    assert set(job.remotes) == {"seed", "leech1"}
    assert "tcp://127.0.0.1:7001" in host.channels      # its link is being made now
    # met within two round trips of the first ask and a tick (at RTT 0 within 0.1 s, not 0.25)
    assert host.clock.now - start <= 2 * rtt_s + TICK_S + 0.05 + 1e-9
