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

The queue is read over a raw netlink socket (KernelQueue): bound with the GSO flag, so a
GRO aggregate is held as one packet; released with one batch verdict per wake-up; and with
the kernel's receive stamps on, so the line sleeps until the next packet is due instead of
waking for each arrival, and releases on ticks of a fifth of the delay (at most 2 ms; each packet
within half a tick of its time, never reordered). bench/delay_line.py: at 20 ms and 50 Mbit/s 7% of a core (10.5%
with NetfilterQueue and every frame), at 500 Mbit/s 6.5% (27%). ZORRENT_DELAY_RAW=0 brings
back NetfilterQueue.

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
import contextlib
import errno
import math
import os
import random
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time

QUEUE_NUM = 0
RT_PRIORITY = 10           # SCHED_FIFO priority: a packet is released on time even when the lab's
                           # nodes (or anything else) keep both cores busy; the kernel's RT throttling
                           # (95% of each second) still bounds what a runaway line could take
QUEUE_PACKETS = 16384      # held at once per host: 100 ms at 1 Gbit/s of 1514-byte frames is 8,300
COPY_META = 1              # NFQNL_COPY_META: the id and metadata, no payload
RAW_QUEUE = os.environ.get("ZORRENT_DELAY_RAW", "1") != "0"   # KernelQueue; 0: NetfilterQueue, as before
STAMP_MAX_AGE_S = 1.0      # a receive stamp older than this is another clock's (a sender's departure time)
TICK_MAX_S, TICK_SHARE = 0.002, 0.2   # packets leave on ticks of a fifth of the delay, at most 2 ms, each
                                      # within half a tick of its time: a wake-up per tick, not per packet
RCVBUF_BYTES = 8 * 1024 * 1024      # packet notices waiting to be read (a few hundred bytes each)
# linux/netlink.h, linux/netfilter/nfnetlink_queue.h
NETLINK_NETFILTER, SOL_NETLINK, NETLINK_NO_ENOBUFS, SO_RCVBUFFORCE, SO_TIMESTAMP = 12, 270, 5, 33, 29
NLM_F_REQUEST, NLM_F_ACK, NLMSG_ERROR = 1, 4, 2
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_CONFIG, NFQNL_MSG_VERDICT_BATCH = 0, 2, 3
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 3, 4, 5
NFQA_CFG_F_GSO = 4
NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_TIMESTAMP = 1, 2, 4
NF_ACCEPT = 1
# nftables' own ``queue`` expression is not built into this kernel (CONFIG_NFT_QUEUE), the
# xtables target is (CONFIG_NETFILTER_XT_TARGET_NFQUEUE): so the rule is iptables'.
RULE = ["-t", "raw", "PREROUTING", "-i", "eth0", "-j", "NFQUEUE", "--queue-num", str(QUEUE_NUM)]
IPTABLES = "iptables-legacy"


class Stopped(Exception):
    """SIGTERM: leave the loop (a plain flag would wait in select for the next packet)."""


class DelayLine:
    """Packets of one queue, in arrival order, each with the time it is due. A packet is
    anything with ``accept()``; with ``accept_upto`` given, ``release`` calls it once with the
    last packet due instead (the kernel's batch verdict accepts every packet up to an id)."""

    def __init__(self, delay_s: float, jitter_s: float = 0.0, rng: random.Random | None = None,
                 accept_upto=None, tick_s: float = 0.0) -> None:
        self.delay_s, self.jitter_s, self.tick_s = delay_s, jitter_s, tick_s
        self.rng = rng or random.Random(0)
        self.held: collections.deque = collections.deque()
        self.last_due = 0.0
        self.packets = 0
        self.accept_upto = accept_upto

    def due_at(self, arrived: float) -> float:
        due = arrived + self.delay_s - self.tick_s / 2      # released at the next tick: on average on time
        if self.jitter_s:
            due += self.rng.uniform(-self.jitter_s, self.jitter_s)
        self.last_due = due = max(due, self.last_due)       # never before the packet ahead of it
        return due

    def hold(self, packet, arrived: float) -> None:
        self.held.append((self.due_at(arrived), packet))
        self.packets += 1

    def release(self, now: float) -> float | None:
        """Accept every packet that is due; return when the next one is (None: none held),
        with a tick the next multiple of it at or after that, so one wake-up releases every
        packet due within the tick (a few flows' packets at once, not each alone)."""
        held, last = self.held, None
        if self.accept_upto is None:
            while held and held[0][0] <= now:
                held.popleft()[1].accept()
        else:
            while held and held[0][0] <= now:
                last = held.popleft()[1]
            if last is not None:
                self.accept_upto(last)
        if not held:
            return None
        return math.ceil(held[0][0] / self.tick_s) * self.tick_s if self.tick_s else held[0][0]


class KernelQueue:
    """One NFQUEUE over a raw netfilter netlink socket (no library): bound in copy mode META
    with the GSO flag, so an aggregate (GRO on the way in, ctl/lab.py) is queued whole rather
    than cut into wire packets first, and released with one batch verdict for every packet up
    to an id. NetfilterQueue sets no flags and answers each packet with its own send."""

    def __init__(self, number: int, max_len: int) -> None:
        self.number, self.seq = number, 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        for opt, value in ((SO_RCVBUFFORCE, RCVBUF_BYTES), (socket.SO_RCVBUF, RCVBUF_BYTES)):
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, opt, value)
        with contextlib.suppress(OSError):     # a full buffer loses a packet's notice, not the packet:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)   # the next batch verdict accepts it
        self.buf = bytearray(64 * 1024)
        # Any socket asking for receive stamps turns the kernel's stamping on (a machine-wide
        # switch): a packet's notice then carries the time it was queued, so it may be read
        # late without being held longer, and the line need not wake for every arrival.
        self.stamper = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.stamper.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        self.stamped = False      # the last notice carried a stamp that ``arrived`` trusted
        self._config([(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, 0))])
        self._config([(NFQA_CFG_PARAMS, struct.pack("!IB", 0, COPY_META)),
                      (NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", max_len)),
                      (NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_GSO)),
                      (NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_GSO))])

    def get_fd(self) -> int:
        return self.sock.fileno()

    def _send(self, msg_type: int, attrs: list, flags: int = NLM_F_REQUEST) -> int:
        self.seq += 1
        body = struct.pack("!BBH", socket.AF_UNSPEC, 0, self.number) + b"".join(
            struct.pack("=HH", 4 + len(data), kind) + data + bytes(-len(data) % 4) for kind, data in attrs)
        self.sock.send(struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags,
                                   self.seq, 0) + body)
        return self.seq

    def _config(self, attrs: list) -> None:
        seq = self._send(NFQNL_MSG_CONFIG, attrs, NLM_F_REQUEST | NLM_F_ACK)
        while True:
            n = self.sock.recv_into(self.buf)
            for kind, mseq, payload in self._messages(n):
                if kind == NLMSG_ERROR and mseq == seq:
                    err = -struct.unpack_from("=i", payload)[0]
                    if err:
                        raise OSError(err, f"NFQUEUE config: {os.strerror(err)}")
                    return

    def _messages(self, n: int):
        buf, at = self.buf, 0
        while at + 16 <= n:
            length, kind, _, seq, _ = struct.unpack_from("=IHHII", buf, at)
            if length < 16 or at + length > n:      # cut short: never read the last datagram's bytes
                break
            yield kind, seq, memoryview(buf)[at + 16:at + length]
            at += (length + 3) & ~3

    def read(self, arrived) -> None:
        """Hand every packet notice waiting on the socket to ``arrived(packet_id, stamp)``, which
        says whether it trusted the stamp."""
        while True:
            try:
                n = self.sock.recv_into(self.buf, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:   # notices lost, not packets: the next batch verdict accepts them
                    continue
                raise
            for kind, _, payload in self._messages(n):
                if kind != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    continue
                packet_id, stamp, at = None, 0.0, 4          # after the nfgenmsg
                while at + 4 <= len(payload):
                    length, attr = struct.unpack_from("=HH", payload, at)
                    if length < 4 or at + length > len(payload):
                        break
                    attr &= 0x3FFF
                    if attr == NFQA_PACKET_HDR and length >= 8:
                        packet_id = struct.unpack_from("!I", payload, at + 4)[0]
                    elif attr == NFQA_TIMESTAMP and length >= 20:
                        sec, usec = struct.unpack_from("!QQ", payload, at + 4)
                        stamp = sec + usec / 1e6
                    at += (length + 3) & ~3
                if packet_id is not None:
                    self.stamped = arrived(packet_id, stamp)

    def accept_upto(self, packet_id: int) -> None:
        self._send(NFQNL_MSG_VERDICT_BATCH, [(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send(NFQNL_MSG_CONFIG, [(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_UNBIND, 0, 0))])
        self.sock.close()
        self.stamper.close()


def serve(delay_s: float, jitter_s: float, ready=sys.stdout) -> None:
    """Bind the queue, add the rule, then hold and release packets until SIGTERM."""
    clock = time.time
    if RAW_QUEUE:
        queue = KernelQueue(QUEUE_NUM, QUEUE_PACKETS)
        line = DelayLine(delay_s, jitter_s, random.Random(os.getpid()), accept_upto=queue.accept_upto,
                         tick_s=min(TICK_MAX_S, delay_s * TICK_SHARE))

        def arrived(packet_id: int, stamp: float) -> bool:
            """Hold the packet from its stamp if the stamp is trusted (then the line may read lazily)."""
            now = clock()
            trusted = now - STAMP_MAX_AGE_S < stamp <= now
            line.hold(packet_id, stamp if trusted else now)
            return trusted

        def run() -> None:
            queue.read(arrived)

        def lazy() -> bool:       # arrivals are stamped by the kernel: read them when a release is due
            return queue.stamped
    else:
        try:
            from netfilterqueue import NetfilterQueue
        except ImportError:
            raise SystemExit("delay line: needs the NetfilterQueue package (pip install -e '.[test]')") from None
        line = DelayLine(delay_s, jitter_s, random.Random(os.getpid()))

        def arrived_one(packet) -> None:
            stamp = packet.get_timestamp()      # the kernel's receive time, where it stamps it
            now = clock()
            line.hold(packet, stamp if now - STAMP_MAX_AGE_S < stamp <= now else now)

        queue = NetfilterQueue()
        queue.bind(QUEUE_NUM, arrived_one, max_len=QUEUE_PACKETS, mode=COPY_META, range=0)

        def run() -> None:
            queue.run(block=False)

        def lazy() -> bool:
            return False
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
    _run_first()
    sel = selectors.DefaultSelector()
    sel.register(queue.get_fd(), selectors.EVENT_READ)
    print("ready", file=ready, flush=True)
    next_due = None
    try:
        while True:
            timeout = None if next_due is None else max(0.0, next_due - clock())
            if next_due is not None and lazy():
                # nothing that arrives now is due before the packet ahead of it
                if timeout:
                    time.sleep(timeout)
                run()
            elif sel.select(timeout):
                run()
            next_due = line.release(clock())
    except Stopped:
        pass
    finally:
        subprocess.run([IPTABLES, *RULE[:2], "-D", *RULE[2:]], capture_output=True)
        if RAW_QUEUE:
            queue.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"delay line: {line.packets} packets, {usage.ru_utime + usage.ru_stime:.2f} s CPU", file=sys.stderr,
          flush=True)


def _run_first() -> None:
    """Real-time scheduling where allowed (root), else the highest nice we may take: the
    delay line's fidelity is its wake-up latency, which a busy machine otherwise adds to."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
    except (OSError, AttributeError):
        try:
            os.nice(-10)
        except OSError:
            pass


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
