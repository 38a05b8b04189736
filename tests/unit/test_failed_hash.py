"""One rule for a hash that fails (an upload that does not match, a resumed seed that changed,
a read error): the FAILED holding serves and announces nothing, and the tracker forgets it."""
from types import SimpleNamespace

import pytest

from node.peer.holdings import Holdings, HashProgress
from protocol import messages as m
from protocol.pieces import Bitfield


class Told:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *a, **k: self.calls.append(name)


@pytest.mark.parametrize("verified", [None, [0, 1], [0, 1, 2]], ids=["read error", "some", "all-but-one"])
def test_a_failed_hash_serves_and_announces_nothing(verified):
    holdings, told = Holdings(), Told()
    holdings.connect(Told(), told)
    meta = SimpleNamespace(info_hash="ab" * 20, num_pieces=4, name="f", length=4)
    trusted = Bitfield(4)
    for i in range(4):
        trusted.add(i)                 # what the resume state vouched for
    h = holdings.hold(meta, None, trusted, m.JobState.HASHING, "seed", hashing=HashProgress(4))
    have = None
    if verified is not None:
        have = Bitfield(4)
        for i in verified:
            have.add(i)
    h = holdings.transition(meta.info_hash, m.JobState.FAILED, bitfield=have, error="no", expect=h)
    assert h.state == m.JobState.FAILED and len(h.bitfield) == 0
    assert told.calls[-1] == "withdrawn" and "reverified" not in told.calls
