"""The delay line's schedule (ctl/delay.py DelayLine), without a kernel queue."""
from __future__ import annotations

import random
import statistics

import pytest

from ctl.delay import DelayLine


class Packet:
    def __init__(self, n: int, log: list) -> None:
        self.n, self.log = n, log

    def accept(self) -> None:
        self.log.append(self.n)


def test_each_packet_is_released_after_its_delay_in_arrival_order():
    log: list = []
    line = DelayLine(0.05)
    for n, t in enumerate([0.0, 0.001, 0.002]):
        line.hold(Packet(n, log), t)
    assert line.release(0.0505) == pytest.approx(0.051) and log == [0]
    assert line.release(0.06) is None and log == [0, 1, 2]


def test_jitter_spreads_the_delay_but_never_reorders():
    log: list = []
    line = DelayLine(0.02, 0.005, random.Random(3))
    dues = []
    for n in range(500):
        line.hold(Packet(n, log), n * 0.0001)
        dues.append(line.held[-1][0] - n * 0.0001)
    assert all(0.015 <= d <= 0.025 + 0.05 for d in dues) and max(dues) - min(dues) > 0.005
    line.release(10.0)
    assert log == list(range(500))


def test_a_batch_verdict_accepts_up_to_the_last_packet_due_once_per_release():
    batches: list = []
    line = DelayLine(0.01, accept_upto=batches.append)
    for n, t in enumerate([0.0, 0.001, 0.002, 0.02]):
        line.hold(n, t)
    assert line.release(0.005) == pytest.approx(0.01) and batches == []
    assert line.release(0.0125) == pytest.approx(0.03) and batches == [2]
    assert line.release(0.05) is None and batches == [2, 3]


def test_a_tick_releases_the_packets_due_within_it_at_once_on_average_on_time():
    released: dict = {}
    line = DelayLine(0.01, tick_s=0.002)
    line.accept_upto = lambda last: released.update({n: clock[0] for n in range(len(released), last + 1)})
    arrivals = [0.0001 * n for n in range(100)]
    for n, t in enumerate(arrivals):
        line.hold(n, t)
    clock = [0.0]
    wake, wakes = line.release(0.0), 0
    while wake is not None:
        clock[0] = wake
        wake, wakes = line.release(wake), wakes + 1
    assert sorted(released) == list(range(100)) and wakes == 6    # 10 ms of arrivals on 2 ms ticks, not 100
    late = [released[n] - (t + 0.01) for n, t in enumerate(arrivals)]
    assert all(-0.001 - 1e-9 <= x <= 0.001 + 1e-9 for x in late) and abs(statistics.mean(late)) < 0.0002
