"""Peers start a few at a time (issue 20: 300 peers forked at once starved the tracker)."""
import pytest

from ctl.nodes import PeersNotStarted, PeerSpec, start_paced
from protocol.errors import TransportError, ZorrentError


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


def test_a_peer_that_fails_does_not_stop_the_others():
    """As with supervisord's autostart: the others start, then one error names each failure."""
    started, answered = [], []

    def start(spec):
        if spec.peer_id == "p4":
            raise ZorrentError("supervisord could not start p4: BAD_NAME")
        started.append(spec.peer_id)

    def wait(spec):
        if spec.peer_id == "p1":
            raise TransportError("peer p1 on 127.0.0.1:7001 is FATAL in supervisord: error: cannot listen")
        answered.append(spec.peer_id)

    with pytest.raises(PeersNotStarted) as failure:
        start_paced(specs(10), start, wait, window=2)
    assert started == [f"p{i}" for i in range(10) if i != 4]     # every one after the failures too
    assert answered == [f"p{i}" for i in range(10) if i not in (1, 4)]
    assert list(failure.value.failed) == ["p1", "p4"]
    assert failure.value.message == ("2 of 10 peers did not start: peer p1 on 127.0.0.1:7001 is FATAL in "
                                     "supervisord: error: cannot listen; supervisord could not start p4: BAD_NAME")
    assert "\n" not in failure.value.message


def test_a_bug_in_a_wait_is_not_taken_for_a_failed_peer():
    def wait(spec):
        raise KeyError(spec.peer_id)

    with pytest.raises(KeyError):
        start_paced(specs(3), lambda s: None, wait, window=2)


def test_supervisord_gone_midway_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    """Its socket gone (supervisord died during a long paced start): a TransportError (exit 1)."""
    from ctl import supervisor

    monkeypatch.setenv("ZORRENT_OUTPUT", str(tmp_path))      # no supervisord socket there
    with pytest.raises(TransportError, match=r"^supervisord stopped answering on .*supervisor.sock \("):
        supervisor.start("p1", wait=False)
    with pytest.raises(TransportError, match="supervisord stopped answering"):
        supervisor._wait_answers(PeerSpec("p1", "127.0.0.1", 1), timeout_s=5)


def test_hundreds_of_failures_make_one_short_line():
    from ctl.nodes import PEERS_NOT_STARTED_SHOWN, PeersNotStarted

    err = PeersNotStarted({f"p{i}": f"peer p{i} is FATAL" for i in range(300)}, 300)
    assert err.message.startswith("300 of 300 peers did not start: peer p0 is FATAL; ")
    assert err.message.count("is FATAL") == PEERS_NOT_STARTED_SHOWN and "and 297 more" in err.message
    assert "\n" not in err.message
