"""The reactor sleeps until the earliest thing due: a timer or a reported deadline.
No wall-clock bounds: a fake clock, and a spy on the wait the reactor asks zmq_poll for."""
import os
import signal
import threading

import pytest

from node.reactor import Reactor
from tests.unit.test_tracker_handlers import Clock


@pytest.fixture
def reactor():
    """A reactor with something to poll (a node always has its sockets; zmq_poll of nothing
    does not wait), whose waits are recorded and return at once."""
    clock = Clock()
    r = Reactor(clock=clock)
    rfd, wfd = os.pipe()
    r.add(rfd, lambda: None)
    real_poll = r.poller.poll
    r.waits = []

    def poll(timeout_ms):
        r.waits.append(timeout_ms)
        return real_poll(0)

    r.poller.poll, r.clock_ = poll, clock
    yield r
    r.close()
    os.close(rfd)
    os.close(wfd)


def test_an_idle_reactor_sleeps_for_the_whole_wait(reactor):
    reactor.add_deadline(lambda: None, lambda now: None)       # nothing due
    reactor.run_once(max_wait_s=0.3)
    assert reactor.waits == [301]


def test_a_deadline_ends_the_wait_and_is_called_once_due(reactor):
    clock = reactor.clock_
    due = [clock.now + 0.1]
    calls = []

    def on_due(now):
        calls.append(now)
        due[0] = None

    reactor.add_deadline(lambda: due[0], on_due)
    reactor.run_once(max_wait_s=0.5)
    assert not calls and reactor.waits == [101]                # sleeps until it is due, not the whole wait
    clock.now += 0.1
    reactor.run_once(max_wait_s=0.5)
    assert calls == [clock.now] and reactor.waits[-1] == 501   # called, and then nothing is due


def test_a_deadline_in_the_past_is_called_at_once(reactor):
    calls = []
    reactor.add_deadline(lambda: 0.0 if not calls else None, calls.append)
    reactor.run_once(max_wait_s=0.2)
    assert calls == [reactor.clock_.now]


def test_a_signal_ends_the_wait():
    r = Reactor()
    rfd, wfd = os.pipe()
    r.add(rfd, lambda: None)
    r.wake_on_signals()
    r.wake_on_signals()                                        # again: the old pipe is closed
    woken = []
    real_poll = r.poller.poll
    r.poller.poll = lambda ms: woken.extend(real_poll(ms)) or woken
    got = []
    old = signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
    killer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        killer.start()
        r.run_once(max_wait_s=60.0)                            # the signal ends this wait
        assert got and [s for s, _ in woken if s == r._wake[0]]   # woken by the pipe, not a timeout
    finally:
        killer.cancel()
        signal.signal(signal.SIGUSR1, old)
        r.close()
        os.close(rfd)
        os.close(wfd)
    assert r._wake is None and signal.set_wakeup_fd(-1) == -1
