"""Peers start a few at a time (issue 20: 300 peers forked at once starved the tracker)."""
import pytest

from ctl.nodes import PeerSpec, start_paced


def specs(n: int) -> list[PeerSpec]:
    return [PeerSpec(f"p{i}", "127.0.0.1", 7000 + i) for i in range(n)]


@pytest.mark.parametrize("n, window", [(1, 4), (3, 4), (10, 4), (300, 4), (7, 1)])
def test_at_most_window_start_at_once_in_order_and_all_answer(n, window):
    events, starting, most = [], set(), 0

    def start(spec):
        nonlocal most
        starting.add(spec.peer_id)
        most = max(most, len(starting))
        events.append(("start", spec.peer_id))

    def wait(spec):
        starting.remove(spec.peer_id)
        events.append(("up", spec.peer_id))

    start_paced(specs(n), start, wait, window=window)
    assert most == min(n, window)
    assert [p for e, p in events if e == "start"] == [s.peer_id for s in specs(n)]
    assert [p for e, p in events if e == "up"] == [s.peer_id for s in specs(n)]
    assert not starting
    # the window refills as soon as the oldest answers: peer k + window starts right after peer k is up
    for k in range(n - window):
        assert events.index(("up", f"p{k}")) + 1 == events.index(("start", f"p{k + window}"))


def test_a_peer_that_never_answers_stops_the_start():
    started = []

    def wait(spec):
        if spec.peer_id == "p1":
            raise TimeoutError("p1 did not answer")

    with pytest.raises(TimeoutError):
        start_paced(specs(10), lambda s: started.append(s.peer_id), wait, window=2)
    assert started == ["p0", "p1", "p2"]      # nothing more is started after the failure
