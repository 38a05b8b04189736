"""The engine's credit toward a standard (BEP 3) peer: BT_CREDIT_WINDOW_S of its rate, not
CREDIT_WINDOW_S. A libtorrent leecher queues ~3 s of requests from each of its peers and
serves them in turn, so a reply takes seconds under load; half a second of its rate in flight
shrinks to the two-piece floor: the libtorrent leechers then finish seconds before the
zorrent ones (the mixed swarm, bench/RESULTS.md, fifth stop)."""
from __future__ import annotations

from node import config
from node.peer.bt.remote import BtRemoteChannel
from node.peer.remote import MIB
from tests.unit.test_engine import bare_job, full_remote


def test_a_standard_peer_gets_its_longer_window_of_credit():
    job, host = bare_job(256)
    zorrent, standard = full_remote(job, "zorrent"), full_remote(job, "standard")
    standard.channel.credit_window_s = BtRemoteChannel.credit_window_s     # what the BEP 3 channel says
    now = host.clock.now
    for remote in (zorrent, standard):                                     # both at 1 MiB/s for 10 s
        remote.first_request = remote.first_reply = now - 10.0
        remote.bytes = 10 * MIB
    assert job._credit(zorrent, now) == int(MIB * config.CREDIT_WINDOW_S)
    assert job._credit(standard, now) == int(MIB * config.BT_CREDIT_WINDOW_S)
    job.schedule()
    piece = job.meta.piece_length
    assert standard.inflight_bytes >= config.BT_CREDIT_WINDOW_S * MIB - piece
    assert zorrent.inflight_bytes < standard.inflight_bytes

