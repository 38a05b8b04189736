"""A delay line for the namespace lab: every packet that enters a host is held for a chosen
one-way delay (and optional jitter) before the host's stack sees it. This kernel has no
netem, so the lab does it with NFQUEUE: an iptables ``NFQUEUE`` rule in the raw table's
PREROUTING chain hands each packet arriving on eth0 to this process, which keeps only
the packet's id and arrival time (copy mode META: no payload crosses to user space) and
accepts it when it is due. The packet itself waits in the kernel.

Why on the way in: a packet held on the sender's own output path stays charged to its
socket, so TCP Small Queues would throttle the flow to about a millisecond of data per
delay (netem orphans such packets for that reason). A packet that arrives has already
crossed the sender's HTB cap, so a link is a rate, then a delay, as on a real wire.

The delay is per host and counts once per direction: two hosts with one-way delays a
and b see an RTT of a + b, so ``--rtt-ms N`` gives every host N/2. Jitter is uniform in
[-jitter, +jitter] but never reorders a host's packets (a packet is never due before the
one that arrived ahead of it), as a real link does not reorder.

One process per host, started inside the host's namespace with ``ip netns exec``, so it
dies with the namespace's other processes when the lab closes or is swept. The rule has
no bypass: if the process dies, the host receives nothing, which a test notices, rather
than silently losing its latency (stopped with SIGTERM, it takes its rule away first). Bounds: at most QUEUE_PACKETS held per host
(the kernel drops beyond, as a full link buffer does).

    python -m ctl.delay --delay-ms 50 --jitter-ms 2      # inside a namespace; prints "ready"
"""
from __future__ import annotations

import argparse
import collections
import os
import random
import resource
import selectors
import signal
import subprocess
import sys
import time

QUEUE_NUM = 0
QUEUE_PACKETS = 16384      # held at once per host: 100 ms at 1 Gbit/s of 1514-byte frames is 8,300
COPY_META = 1              # NFQNL_COPY_META: the id and metadata, no payload
# nftables' own ``queue`` expression is not built into this kernel (CONFIG_NFT_QUEUE), the
# xtables target is (CONFIG_NETFILTER_XT_TARGET_NFQUEUE): so the rule is iptables'.
RULE = ["-t", "raw", "PREROUTING", "-i", "eth0", "-j", "NFQUEUE", "--queue-num", str(QUEUE_NUM)]
IPTABLES = "iptables-legacy"


class Stopped(Exception):
    """SIGTERM: leave the loop (a plain flag would wait in select for the next packet)."""


class DelayLine:
    """Packets of one queue, in arrival order, each with the time it is due."""

    def __init__(self, delay_s: float, jitter_s: float = 0.0, rng: random.Random | None = None) -> None:
        self.delay_s, self.jitter_s = delay_s, jitter_s
        self.rng = rng or random.Random(0)
        self.held: collections.deque = collections.deque()
        self.last_due = 0.0
        self.packets = 0

    def due_at(self, arrived: float) -> float:
        due = arrived + self.delay_s
        if self.jitter_s:
            due += self.rng.uniform(-self.jitter_s, self.jitter_s)
        self.last_due = due = max(due, self.last_due)       # never before the packet ahead of it
        return due

    def hold(self, packet, arrived: float) -> None:
        self.held.append((self.due_at(arrived), packet))
        self.packets += 1

    def release(self, now: float) -> float | None:
        """Accept every packet that is due; return when the next one is (None: none held)."""
        held = self.held
        while held and held[0][0] <= now:
            held.popleft()[1].accept()
        return held[0][0] if held else None


def serve(delay_s: float, jitter_s: float, ready=sys.stdout) -> None:
    """Bind the queue, add the rule, then hold and release packets until SIGTERM."""
    try:
        from netfilterqueue import NetfilterQueue
    except ImportError:
        raise SystemExit("delay line: needs the NetfilterQueue package (pip install -e '.[test]')") from None

    line = DelayLine(delay_s, jitter_s, random.Random(os.getpid()))
    clock = time.time

    def arrived(packet) -> None:
        stamp = packet.get_timestamp()      # the kernel's receive time, where it stamps it
        now = clock()
        line.hold(packet, stamp if 0 < stamp <= now else now)

    queue = NetfilterQueue()
    queue.bind(QUEUE_NUM, arrived, max_len=QUEUE_PACKETS, mode=COPY_META, range=0)
    try:
        rule = subprocess.run([IPTABLES, *RULE[:2], "-A", *RULE[2:]], text=True, capture_output=True)
    except FileNotFoundError:
        raise SystemExit(f"delay line: {IPTABLES} is not installed (Debian package iptables)") from None
    if rule.returncode != 0:
        raise SystemExit(f"delay line: {IPTABLES} failed: {rule.stderr.strip()[:200]}")
    def stop(*_) -> None:
        raise Stopped

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sel = selectors.DefaultSelector()
    sel.register(queue.get_fd(), selectors.EVENT_READ)
    print("ready", file=ready, flush=True)
    next_due = None
    try:
        while True:
            timeout = None if next_due is None else max(0.0, next_due - clock())
            if sel.select(timeout):
                queue.run(block=False)
            next_due = line.release(clock())
    except Stopped:
        pass
    finally:
        subprocess.run([IPTABLES, *RULE[:2], "-D", *RULE[2:]], capture_output=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"delay line: {line.packets} packets, {usage.ru_utime + usage.ru_stime:.2f} s CPU", file=sys.stderr,
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description="hold every packet entering eth0 for a one-way delay")
    ap.add_argument("--delay-ms", type=float, required=True)
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    args = ap.parse_args()
    if args.delay_ms < 0 or args.jitter_ms < 0 or args.jitter_ms > args.delay_ms:
        raise SystemExit("delay line: need 0 <= jitter <= delay")
    serve(args.delay_ms / 1000, args.jitter_ms / 1000)


if __name__ == "__main__":
    main()
