"""How faithful the lab's delay line (ctl/delay.py) is, and what it costs.

    python bench/delay_line.py                     # RTT 0, 20, 100 ms at 50 Mbit/s, then a rate sweep
    python bench/delay_line.py --rtts 20 --sweep 200,400

For each RTT, three hosts: a sender ``a`` and a receiver ``b`` with capped uplinks, and a
prober ``c``. It measures
- ping a -> b on idle links: the RTT asked for, within 10%? (``ping -U``: user to user. Plain
  ping times the reply by the kernel's receive stamp, taken before the delay line on the
  pinging host holds it, so it shows only the far host's half.)
- one TCP flow a -> b for ``--seconds``: its goodput after the first second (slow start),
  as a share of the cap's TCP goodput (1448/1514 of the rate), so 100% is a full link;
- ping c -> b during the flow: the delay the line adds while it carries the flow;
- the receiver's delay line: CPU per packet and as a share of one core.
The sweep does the same at higher caps, to find the packet rate up to which the line
keeps its delay and the flow its rate. The machine may be shared: its load is printed.
"""
from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from ctl.lab import Host, Lab  # noqa: E402

GOODPUT = 1448 / 1514
PORT = 5201
WARM_S = 1.0
CHUNK = 256 * 1024


def receive(port: int, seconds: float) -> None:
    """Accept one flow; print the bytes received in each 0.1 s after the first byte."""
    srv = socket.create_server(("0.0.0.0", port))
    print("ready", flush=True)
    conn, _ = srv.accept()
    buf, bins, t0 = bytearray(CHUNK), [], None
    while True:
        n = conn.recv_into(buf)
        if not n:
            break
        now = time.monotonic()
        t0 = t0 or now
        slot = int((now - t0) / 0.1)
        bins.extend([0] * (slot + 1 - len(bins)))
        bins[slot] += n
    print(json.dumps(bins), flush=True)


def send(to: str, seconds: float) -> None:
    sock = socket.create_connection((to, PORT))
    data, end = memoryview(bytes(CHUNK)), time.monotonic() + seconds
    while time.monotonic() < end:
        sock.sendall(data)
    sock.close()


def ping(src: Host, dst: Host, count: int, interval_s: float = 0.1) -> dict:
    out = subprocess.run(src.argv("ping", "-n", "-U", "-c", str(count), "-i", str(interval_s), dst.ip),
                         capture_output=True, text=True, timeout=count * interval_s + 30).stdout
    rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]
    return {"n": len(rtts), "min": min(rtts), "median": statistics.median(rtts), "max": max(rtts)} if rtts else {}


def packets_sent(host: Host) -> int:
    out = subprocess.run(host.argv("tc", "-s", "class", "show", "dev", "eth0"), capture_output=True, text=True).stdout
    found = re.search(r"Sent \d+ bytes (\d+) pkt", out)
    return int(found.group(1)) if found else 0


def packets_held(host: Host) -> int:
    """Packets the host's delay line was handed: its NFQUEUE rule's counter (an aggregate is one)."""
    out = subprocess.run(host.argv("iptables-legacy", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n"),
                         capture_output=True, text=True).stdout
    found = re.search(r"^\s*(\d+)\s+\d+\s+NFQUEUE", out, re.M)
    return int(found.group(1)) if found else 0


def measure(rtt_ms: float, mbit: float, seconds: float) -> dict:
    me = [sys.executable, str(Path(__file__).resolve())]
    with Lab(rtt_ms=rtt_ms) as lab:
        a, b, c = lab.add_host("a", mbit), lab.add_host("b", mbit), lab.add_host("c")
        idle = ping(a, b, 20)
        recv = b.popen(me + ["--role", "recv", "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True)
        assert recv.stdout.readline().strip() == "ready"
        cpu0, pkts0, held0 = b.delay_cpu_s(), packets_sent(a), packets_held(b)
        sender = a.popen(me + ["--role", "send", "--to", b.ip, "--seconds", str(seconds)])
        time.sleep(WARM_S)                       # the probe starts after slow start
        loaded = ping(c, b, int((seconds - WARM_S - 0.5) / 0.05), 0.05)
        sender.wait(timeout=seconds + 30)
        bins = json.loads(recv.communicate(timeout=30)[0])
        cpu, pkts, held = b.delay_cpu_s() - cpu0, packets_sent(a) - pkts0, packets_held(b) - held0
        steady = bins[int(WARM_S / 0.1):int(seconds / 0.1)]
        rate_mbit = sum(steady) * 8 / 1e6 / (len(steady) * 0.1) if steady else 0.0
        return {"rtt_ms": rtt_ms, "cap_mbit": mbit, "idle": idle, "loaded": loaded,
                "goodput_mbit": rate_mbit, "fill": rate_mbit / (mbit * GOODPUT),
                "packets": pkts, "pps": pkts / seconds, "held_pps": held / seconds,
                "delay_cpu_us_per_pkt": 1e6 * cpu / pkts if pkts and rtt_ms else 0.0,
                "delay_cpu_pct": 100 * cpu / seconds, "load": psutil.getloadavg()[0]}


def show(r: dict) -> None:
    asked = r["rtt_ms"] or float("nan")
    idle, loaded = r["idle"], r["loaded"]
    print(f"| {r['rtt_ms']:g} | {r['cap_mbit']:g} | {idle['min']:.2f} / {idle['median']:.2f} / {idle['max']:.2f} "
          f"({idle['median'] / asked:.3f}x) | {loaded.get('median', 0):.2f} ({loaded.get('median', 0) / asked:.3f}x) | "
          f"{r['goodput_mbit']:.1f} ({100 * r['fill']:.0f}%) | {r['pps']:.0f} | {r['held_pps']:.0f} | "
          f"{r['delay_cpu_us_per_pkt']:.1f} | "
          f"{r['delay_cpu_pct']:.1f}% | {r['load']:.1f} |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", choices=["recv", "send"])
    ap.add_argument("--to")
    ap.add_argument("--rtts", default="0,20,100")
    ap.add_argument("--mbit", type=float, default=50.0)
    ap.add_argument("--sweep", default="200,500,1000", help="caps (Mbit/s) tried at the sweep's RTT")
    ap.add_argument("--sweep-rtt", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=6.0)
    args = ap.parse_args()
    if args.role == "recv":
        receive(PORT, args.seconds)
        return 0
    if args.role == "send":
        send(args.to, args.seconds)
        return 0
    print("| RTT asked ms | cap Mbit/s | idle ping min / median / max ms | ping under the flow, median ms | "
          "TCP goodput Mbit/s (of the cap) | wire packets/s | held by the line /s | delay line us/wire packet | "
          "delay line CPU | load |")
    print("|---" * 10 + "|")
    for rtt in [float(x) for x in args.rtts.split(",") if x]:
        show(measure(rtt, args.mbit, args.seconds))
    for mbit in [float(x) for x in args.sweep.split(",") if x]:
        show(measure(args.sweep_rtt, mbit, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
