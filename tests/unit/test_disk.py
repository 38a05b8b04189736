"""DiskWorker: verify on a hash thread, write only what passed on a write thread, report
every piece once on the event loop, and finish every queued piece before close returns."""
import threading
import time

from node.peer.disk import DiskWorker
from node.reactor import Reactor


def run_until(reactor: Reactor, done, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "the disk threads did not report in time"
        reactor.run_once(max_wait_s=0.05)


def test_only_verified_pieces_are_written_and_each_is_reported_once():
    reactor = Reactor()
    disk = DiskWorker(reactor, hash_threads=2, write_threads=2)
    written, reported = set(), {}
    lock = threading.Lock()

    def job(i):
        def write():
            with lock:
                written.add(i)
        return (lambda: i % 3 != 0), write, lambda ok, err: reported.setdefault(i, []).append((ok, err))

    try:
        for i in range(60):
            disk.submit(*job(i))
        run_until(reactor, lambda: len(reported) == 60)
        stats = disk.snapshot()
    finally:
        disk.close()
    assert (stats.hashed, stats.written) == (60, 40)
    assert 0 < stats.busy_s <= stats.write_s
    assert written == {i for i in range(60) if i % 3}
    assert all(len(r) == 1 for r in reported.values())
    assert {i for i, r in reported.items() if r[0] == (True, None)} == written
    assert {i for i, r in reported.items() if r[0] == (False, None)} == {i for i in range(60) if i % 3 == 0}


def test_errors_from_either_stage_reach_the_event_loop():
    reactor = Reactor()
    disk = DiskWorker(reactor, hash_threads=1, write_threads=1)
    reported = {}

    def boom(what):
        raise OSError(28, what)

    try:
        disk.submit(lambda: boom("hash"), lambda: None, lambda ok, err: reported.setdefault("hash", (ok, err)))
        disk.submit(lambda: True, lambda: boom("write"), lambda ok, err: reported.setdefault("write", (ok, err)))
        run_until(reactor, lambda: len(reported) == 2)
    finally:
        disk.close()
    assert reported["hash"][0] is None and "hash" in str(reported["hash"][1])
    assert reported["write"][0] is None and "write" in str(reported["write"][1])


def test_close_writes_every_piece_already_queued():
    reactor = Reactor()
    disk = DiskWorker(reactor, hash_threads=1, write_threads=1)
    gate = threading.Event()
    written, reported = [], []

    def slow_verify():
        gate.wait(5)
        return True

    for i in range(5):
        disk.submit(slow_verify, lambda i=i: written.append(i), lambda ok, err: reported.append(ok))
    threading.Timer(0.05, gate.set).start()
    disk.close()                                  # hash threads finish first, then the writers
    assert sorted(written) == [0, 1, 2, 3, 4]
    assert reported == [True] * 5                 # close drains the results too
