"""The reactor sleeps until the earliest thing due: a timer or a reported deadline."""
import os
import signal
import threading
import time

from node.reactor import Reactor


def reactor() -> Reactor:
    """A reactor with something to poll (a node always has its sockets; zmq_poll of nothing
    does not wait)."""
    r = Reactor()
    rfd, _ = os.pipe()
    r.add(rfd, lambda: None)
    return r


def test_an_idle_reactor_sleeps_for_the_whole_wait():
    r = reactor()
    r.add_deadline(lambda: None, lambda now: None)       # nothing due
    started = time.monotonic()
    r.run_once(max_wait_s=0.3)
    assert time.monotonic() - started >= 0.29


def test_a_deadline_ends_the_wait_and_is_called_once_due():
    r = reactor()
    due = [time.monotonic() + 0.1]
    calls = []

    def on_due(now):
        calls.append(now)
        due[0] = None

    r.add_deadline(lambda: due[0], on_due)
    started = time.monotonic()
    while not calls and time.monotonic() - started < 2:
        r.run_once(max_wait_s=0.5)
    assert calls and 0.09 <= calls[0] - started < 0.5    # called when due, not at the end of the wait
    assert r.wakeups <= 3                                # slept, did not spin


def test_a_deadline_in_the_past_is_called_at_once():
    r = reactor()
    calls = []
    r.add_deadline(lambda: 0.0 if not calls else None, calls.append)
    started = time.monotonic()
    r.run_once(max_wait_s=0.2)
    assert calls and calls[0] - started < 0.1


def test_a_signal_ends_the_wait():
    r = reactor()
    r.wake_on_signals()
    got = []
    old = signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
    killer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        started = time.monotonic()
        killer.start()
        r.run_once(max_wait_s=5.0)                       # the signal ends this wait
        assert got and time.monotonic() - started < 2.0
    finally:
        killer.cancel()
        signal.signal(signal.SIGUSR1, old)
        signal.set_wakeup_fd(-1)
