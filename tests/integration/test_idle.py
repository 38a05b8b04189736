"""An idle peer sleeps: its event loop wakes for its timers (heartbeat, file checks), not on a
fixed short tick. Measured as the main thread's voluntary context switches (each wait the
loop ends is one), which a busy machine does not inflate the way it does CPU figures."""
import time
from pathlib import Path

from tests.conftest import wait_for, write_random

WINDOW_S = 4.0


def main_thread_switches(pid: int) -> int:
    for line in Path(f"/proc/{pid}/task/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc")


def settled(pid: int, sample_s: float = 0.5, quiet: int = 5) -> None:
    """Two samples in a row in which the loop woke at most ``quiet`` times (a timer may fall in one)."""
    calm, last = 0, main_thread_switches(pid)

    def calm_twice() -> bool:
        nonlocal calm, last
        time.sleep(sample_s)
        now = main_thread_switches(pid)
        calm, last = (calm + 1 if now - last <= quiet else 0), now
        return calm >= 2
    wait_for(calm_twice, what="the peer's loop to settle", interval_s=0)


def test_idle_seed_sleeps_between_timers(swarm, tmp_path):
    swarm.tracker()
    swarm.peer("peer1")
    src = write_random(tmp_path / "in" / "f.bin", 1 << 20, 7)
    info = swarm.upload(src, "peer1")
    pid = next(p.pid for name, p, _ in swarm.procs if name == "peer1")
    wait_for(lambda: swarm.job("peer1", info["info_hash"])["announced"] == info["num_pieces"],
             what="every piece announced")
    settled(pid)      # the upload's last saves and announces are done
    before = main_thread_switches(pid)
    time.sleep(WINDOW_S)
    wakeups = main_thread_switches(pid) - before
    # due in the window: ~4 file checks and ~2 heartbeats (+ their replies); a 50 ms tick is 80
    assert wakeups < 30, f"the idle peer's loop woke {wakeups} times in {WINDOW_S:.0f}s"
    assert swarm.status("peer1")["registered"]
