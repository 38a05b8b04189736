"""The lab's delay line (ctl/delay.py): hosts see the RTT asked for, a swarm still works
across it, and the lab leaves nothing behind. Root only, as the other lab tests."""
from __future__ import annotations

import json
import re
import statistics
import subprocess

import psutil
import pytest

from ctl import lab as labmod
from tests.lab.test_netns import PORT, download_everywhere, swarm_on
from tests.procs import write_random

pytestmark = pytest.mark.xdist_group("heavy")   # with the other lab tests and the soaks: a delay line is
                                                # a timing measurement, and they load the cores hard

MIB = 1024 * 1024


def _lab(**kw):
    made = labmod.Lab(**kw)
    try:
        yield made
    finally:
        names = [h.ns for h in made.hosts.values()]
        lines = [h.delay_line.pid for h in made.hosts.values() if h.delay_line]
        made.close()
        assert not [ns for ns in labmod.namespaces() if ns in names], "the lab left namespaces behind"
        assert not [pid for pid in lines if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"], \
            "a delay line outlived its lab"


@pytest.fixture
def slow_lab():
    yield from _lab(rtt_ms=40)


@pytest.fixture
def far_lab():
    yield from _lab(rtt_ms=60)


def _ping_ms(src: labmod.Host, dst: labmod.Host, count: int = 10) -> list[float]:
    """User-to-user RTTs (-U): plain ping stamps a reply on arrival, before the delay line holds it."""
    out = subprocess.run(src.argv("ping", "-n", "-U", "-c", str(count), "-i", "0.05", dst.ip), capture_output=True,
                         text=True, timeout=30).stdout
    return [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]


def test_two_lab_hosts_ping_at_the_rtt_asked_for(slow_lab):
    a, b = slow_lab.add_host("a", 20), slow_lab.add_host("b", 20)
    c = slow_lab.add_host("c", 20, delay_ms=5)        # a host of its own delay: the RTT is the sum of both ways
    rtts = _ping_ms(a, b)
    assert len(rtts) == 10 and abs(statistics.median(rtts) - 40) <= 4 and min(rtts) >= 36, rtts
    rtts = _ping_ms(a, c)
    assert len(rtts) == 10 and abs(statistics.median(rtts) - 25) <= 2.5 and min(rtts) >= 22.5, rtts


def test_a_short_lab_swarm_with_latency_completes_byte_identical(far_lab, tmp_path):
    tracker, machines = swarm_on(far_lab, tmp_path, {"seed": 40, "leech1": 40, "leech2": 40})
    src = write_random(machines["seed"].dir / "in" / "far.bin", 4 * MIB + 33, seed=19)
    info = json.loads(machines["seed"].cli("--json", "upload", "--input", str(src), "--peer-id", "seed",
                                           "--peer-port", str(PORT)).stdout)[0]
    torrent = machines["seed"].dir / info["torrent"]
    download_everywhere(machines, "seed", torrent, src)
    assert _ping_ms(machines["leech1"].host, tracker, 3)[0] >= 54        # the latency was there all along
