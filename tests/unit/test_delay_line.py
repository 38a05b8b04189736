"""The delay line's schedule (ctl/delay.py DelayLine), without a kernel queue."""
from __future__ import annotations

import random
import statistics
import struct

import pytest

from ctl import delay
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


def _notice(packet_id: int, stamp: float | None) -> bytes:
    """A kernel's packet notice as NFQUEUE sends it (nlmsghdr, nfgenmsg, attributes)."""
    attrs = struct.pack("=HH", 4 + 7, delay.NFQA_PACKET_HDR) + struct.pack("!IHB", packet_id, 0x0800, 0) + bytes(1)
    if stamp is not None:
        sec = int(stamp)
        attrs += struct.pack("=HH", 20, delay.NFQA_TIMESTAMP) + struct.pack("!QQ", sec, round((stamp - sec) * 1e6))
    body = struct.pack("!BBH", 2, 0, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), delay.NFNL_SUBSYS_QUEUE << 8 | delay.NFQNL_MSG_PACKET, 0, 0, 0) + body


class FakeSocket:
    def __init__(self, datagrams: list) -> None:
        self.datagrams, self.sent = list(datagrams), []

    def recv_into(self, buf, size=0, flags=0) -> int:
        if not self.datagrams:
            raise BlockingIOError
        data = self.datagrams.pop(0)
        buf[:len(data)] = data
        return len(data)

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)


def test_the_raw_queue_reads_ids_and_stamps_and_accepts_up_to_an_id_in_one_message():
    queue = delay.KernelQueue.__new__(delay.KernelQueue)
    queue.number, queue.seq, queue.buf, queue.stamped = 3, 0, bytearray(4096), False
    queue.sock = FakeSocket([_notice(7, 1000.25) + _notice(8, 1000.5), _notice(9, None)])
    got: list = []
    queue.read(lambda packet_id, stamp: got.append((packet_id, stamp)))
    assert got == [(7, 1000.25), (8, 1000.5), (9, 0.0)] and not queue.stamped   # the last came without one
    queue.accept_upto(9)
    (msg,) = queue.sock.sent
    length, kind = struct.unpack_from("=IH", msg)
    assert length == len(msg) == 16 + 4 + 12 and kind == delay.NFNL_SUBSYS_QUEUE << 8 | delay.NFQNL_MSG_VERDICT_BATCH
    assert struct.unpack_from("!H", msg, 18)[0] == 3                               # the queue's number
    assert struct.unpack_from("!II", msg, 24) == (delay.NF_ACCEPT, 9)


def test_the_raw_queue_skips_cut_short_notices_and_attributes_and_trusts_only_what_arrived_says():
    """A notice whose length runs past the datagram is not read from the last datagram's
    bytes, a too-short attribute is skipped (no struct.error), and ``stamped`` follows what
    the caller trusted, not the mere presence of a stamp (review4 findings 3 and 4)."""
    queue = delay.KernelQueue.__new__(delay.KernelQueue)
    queue.number, queue.seq, queue.buf, queue.stamped = 3, 0, bytearray(4096), False
    whole = _notice(5, 1000.25)
    cut = struct.pack("=I", len(whole) + 64) + whole[4:20]          # claims more than the datagram holds
    short = bytearray(_notice(6, None))
    struct.pack_into("=H", short, 20, 6)                            # a PACKET_HDR of 6 bytes: too short for an id
    queue.sock = FakeSocket([whole, cut, bytes(short), _notice(7, 12345.678)])
    got: list = []
    queue.read(lambda packet_id, stamp: got.append((packet_id, stamp)) or stamp > 100000)
    assert got == [(5, 1000.25), (7, 12345.678)]                    # 5 once, nothing from the cut or the short one
    assert not queue.stamped                                        # a stamp the caller did not trust
