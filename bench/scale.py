"""make bench-scale: what a swarm of N idle peers costs on this machine, and how the CLI and
a busy peer feel (issue 20).

    python bench/scale.py                       # 10, 100 and 300 peers
    python bench/scale.py --sizes 10 --idle-s 20 --upload-mib 1024

For each size, N peers (peers.json on loopback) come up as a user brings them up:
`python main.py swarm up`, under supervisord, with the tracker and the web view. Once
they have settled, every process's CPU time is read twice, --idle-s apart: first as
`swarm up` leaves it (the web view running, nobody looking at it: it polls every peer every
WEB_IDLE_POLL_S), then with the web view stopped (peers that nobody asks anything). Printed: each phase's CPU (% of one
core) and RSS per peer, of the tracker, the web view and supervisord, the tracker's CPU
per peer per second, and the load average.

At the smallest size it also times the CLI (`--help`, and `status` against a running
peer) against a bare `python -c pass` in the same run, and pings one peer's data port
every 10 ms while that peer hashes a large file for `upload` (evicted from the page
cache first): ping latency p50/p99/max against the same pings while it is idle, and
whether the tracker expired the peer meanwhile.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ctl import supervisor  # noqa: E402
from node import config  # noqa: E402
from ctl.commands.inputs import write_random_file  # noqa: E402
from protocol import messages as m  # noqa: E402
from protocol.codec import decode, encode  # noqa: E402
from tests.procs import PY, free_port  # noqa: E402

MAIN = str(REPO / "main.py")
MIB = 1024 * 1024
PING_EVERY_S = 0.01
PING_TIMEOUT_S = 5.0


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO)
    for k in ("ZORRENT_TRACKER", "ZORRENT_STORE"):
        e.pop(k, None)
    # Python caches bytecode unless told not to; an environment that turns it off (as CI
    # shells may) adds the compiling of every module to every start: not what a user sees.
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    return e


def cli(work: Path, *args: str, timeout_s: float = 900) -> subprocess.CompletedProcess:
    res = subprocess.run([PY, MAIN, *args], cwd=work, env=env(), capture_output=True, text=True, timeout=timeout_s)
    if res.returncode != 0:
        raise SystemExit(f"zorrent {' '.join(args)} exited {res.returncode}: {res.stderr.strip()[-800:]}")
    return res


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (a port freed is often handed out again at once)."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


# ---------------------------------------------------------------- idle cost
@dataclass
class Phase:
    peer_cpu_pct: list[float]
    peer_rss_mib: list[float]
    tracker_cpu_pct: float
    tracker_rss_mib: float
    web_cpu_pct: float | None
    web_rss_mib: float | None
    supervisord_cpu_pct: float
    load: tuple[float, float, float]
    seconds: float


def cpu_s(proc: psutil.Process) -> float:
    """User + system CPU seconds of a process so far."""
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


def rss_mib(proc: psutil.Process) -> float:
    try:
        return proc.memory_info().rss / MIB
    except psutil.Error:
        return 0.0


def measure(programs: dict[str, psutil.Process], peers: list[str], idle_s: float) -> Phase:
    before = {name: cpu_s(p) for name, p in programs.items()}
    t0 = time.monotonic()
    time.sleep(idle_s)
    seconds = time.monotonic() - t0
    pct = {name: 100 * (cpu_s(p) - before[name]) / seconds for name, p in programs.items()}
    rss = {name: rss_mib(p) for name, p in programs.items()}
    web = "web" in programs
    return Phase([pct[p] for p in peers], [rss[p] for p in peers], pct["tracker"], rss["tracker"],
                 pct["web"] if web else None, rss["web"] if web else None, pct["supervisord"],
                 os.getloadavg(), seconds)


def programs_of(peers: list[str]) -> dict[str, psutil.Process]:
    info = {p["name"]: p for p in supervisor.process_info()}
    procs = {name: psutil.Process(p["pid"]) for name, p in info.items() if p["pid"]}
    missing = [n for n in ["tracker", "web", *peers] if n not in procs]
    if missing:
        raise SystemExit(f"not running under supervisord: {missing[:5]}")
    procs["supervisord"] = psutil.Process(int((config.run_dir() / "supervisord.pid").read_text()))
    return procs


@dataclass
class Size:
    peers: int
    up_s: float
    down_s: float = 0.0
    phases: dict[str, Phase] = field(default_factory=dict)
    cli: dict[str, list[float]] = field(default_factory=dict)
    ping: dict[str, dict] = field(default_factory=dict)
    upload: dict = field(default_factory=dict)


def run_size(root: Path, n: int, idle_s: float, settle_s: float, extras: bool, upload_mib: int,
             cli_runs: int) -> Size:
    work = root / f"peers-{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    peers = [f"p{i:03d}" for i in range(1, n + 1)]
    ports = dict(zip(peers, free_ports(n)))
    (work / "peers.json").write_text(json.dumps({p: {"ip": "127.0.0.1", "port": ports[p]} for p in peers}))
    tport, wport = [p for p in free_ports(n + 2) if p not in ports.values()][:2]
    here = os.getcwd()
    os.chdir(work)                      # this process reads the same supervisord socket
    try:
        started = time.monotonic()
        cli(work, "swarm", "up", "--config", "peers.json", "--tracker-port", str(tport), "--web-port", str(wport))
        size = Size(n, time.monotonic() - started)
        print(f"  {n} peers: swarm up took {size.up_s:.1f} s; settling {settle_s:g} s", flush=True)
        time.sleep(settle_s)
        programs = programs_of(peers)
        size.phases["web view on"] = measure(programs, peers, idle_s)
        supervisor.rpc().supervisor.stopProcess(f"{config.SUPERVISOR_GROUP}:web", True)
        programs.pop("web")
        size.phases["web view off"] = measure(programs, peers, idle_s)
        if extras:
            size.cli = time_cli(work, peers[0], cli_runs)
            size.ping, size.upload = ping_during_upload(work, peers[0], ports[peers[0]], upload_mib)
    finally:
        t = time.monotonic()
        subprocess.run([PY, MAIN, "swarm", "down"], cwd=work, env=env(), capture_output=True, timeout=600)
        os.chdir(here)
    size.down_s = time.monotonic() - t
    shutil.rmtree(work, ignore_errors=True)
    return size


# ---------------------------------------------------------------- CLI start-up
def time_cli(work: Path, peer: str, runs: int) -> dict[str, list[float]]:
    """Wall seconds from process start to exit, each command ``runs`` times (after one warm-up)."""
    commands = {"python -c pass": [PY, "-c", "pass"], "zorrent --help": [PY, MAIN, "--help"],
                "zorrent status": [PY, MAIN, "status", "--peer-id", peer]}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(runs + 1):
        for name, argv in commands.items():     # interleaved, so load changes hit all alike
            t = time.perf_counter()
            subprocess.run(argv, cwd=work, env=env(), stdout=subprocess.DEVNULL, check=True)
            if i:
                times[name].append(time.perf_counter() - t)
    return times


# ---------------------------------------------------------------- ping during upload
class Pinger(threading.Thread):
    """Pings a peer's data port every PING_EVERY_S, one at a time, on one DEALER."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.latencies_s: list[float] = []
        self.lost = 0
        self.running = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        zctx = zmq.Context.instance()
        sock = zctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        msg_id = 0
        while not self.stop.is_set():
            msg_id += 1
            t = time.perf_counter()
            sock.send_multipart(encode(m.Ping(), msg_id))
            got = False
            while sock.poll(int(max(0.0, t + PING_TIMEOUT_S - time.perf_counter()) * 1000)):
                if decode(sock.recv_multipart()).id == msg_id:
                    got = True
                    break
            if got:
                if self.running.is_set():
                    self.latencies_s.append(time.perf_counter() - t)
            elif self.running.is_set():
                self.lost += 1
            time.sleep(max(0.0, t + PING_EVERY_S - time.perf_counter()))
        sock.close()


def summary(latencies_s: list[float], lost: int) -> dict:
    if not latencies_s:
        return {"pings": 0, "lost": lost}
    q = statistics.quantiles(latencies_s, n=100, method="inclusive")
    return {"pings": len(latencies_s), "lost": lost, "p50_ms": 1000 * statistics.median(latencies_s),
            "p99_ms": 1000 * q[98], "max_ms": 1000 * max(latencies_s)}


def ping_window(endpoint: str, seconds: float) -> dict:
    pinger = Pinger(endpoint)
    pinger.start()
    pinger.running.set()
    time.sleep(seconds)
    pinger.stop.set()
    pinger.join()
    return summary(pinger.latencies_s, pinger.lost)


def ping_during_upload(work: Path, peer: str, port: int, upload_mib: int) -> tuple[dict, dict]:
    import random

    endpoint = f"tcp://127.0.0.1:{port}"
    idle = ping_window(endpoint, 5.0)
    src = work / "inputs" / "big.bin"
    src.parent.mkdir(exist_ok=True)
    write_random_file(src, upload_mib * MIB, random.Random(20))
    fd = os.open(src, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)   # this file only: a cold read, nobody else's cache
    finally:
        os.close(fd)
    pinger = Pinger(endpoint)
    pinger.start()
    pinger.running.set()
    t = time.perf_counter()
    cli(work, "upload", "--input", str(src), "--peer-id", peer, "--peer-port", str(port))
    seconds = time.perf_counter() - t
    pinger.stop.set()
    pinger.join()
    log = (work / "output" / "logs" / "tracker.log").read_text(errors="replace")
    upload = {"mib": upload_mib, "seconds": seconds, "mb_per_s": upload_mib * MIB / 1e6 / seconds,
              "expired": f"expired silent peer {peer}" in log}
    src.unlink()
    return {"idle": idle, "upload": summary(pinger.latencies_s, pinger.lost)}, upload


# ---------------------------------------------------------------- report
def pct(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} (max {max(values):.2f})"


def print_report(sizes: list[Size]) -> None:
    print("\n| peers | phase | peer CPU % of a core: mean (max) | peer RSS MiB: median (max) | tracker CPU % | "
          "tracker RSS MiB | tracker CPU per peer per s | web CPU % | web RSS MiB | supervisord CPU % | "
          "load avg 1 min |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in sizes:
        for name, ph in s.phases.items():
            per_peer_us = 1e6 * ph.tracker_cpu_pct / 100 / s.peers
            web = f"{ph.web_cpu_pct:.1f} | {ph.web_rss_mib:.0f}" if ph.web_cpu_pct is not None else "- | -"
            print(f"| {s.peers} | {name} | {pct(ph.peer_cpu_pct)} | {statistics.median(ph.peer_rss_mib):.1f} "
                  f"({max(ph.peer_rss_mib):.1f}) | {ph.tracker_cpu_pct:.2f} | {ph.tracker_rss_mib:.0f} | "
                  f"{per_peer_us:.0f} us | {web} | {ph.supervisord_cpu_pct:.2f} | {ph.load[0]:.2f} |")
    print("\n| peers | swarm up (s) | swarm down (s) | all peers' CPU, web view off (% of a core) | "
          "all peers' RSS (GiB) |")
    print("|---|---|---|---|---|")
    for s in sizes:
        ph = s.phases["web view off"]
        print(f"| {s.peers} | {s.up_s:.1f} | {s.down_s:.1f} | {sum(ph.peer_cpu_pct):.1f} | "
              f"{sum(ph.peer_rss_mib) / 1024:.2f} |")
    for s in sizes:
        if s.cli:
            base = statistics.median(s.cli["python -c pass"])
            print(f"\nCLI start-up, process start to exit ({len(s.cli['python -c pass'])} runs each, "
                  f"{s.peers} idle peers running): median (min) ms, and the median less bare Python's")
            for name, times in s.cli.items():
                med = statistics.median(times)
                print(f"  {name:16s} {1000 * med:6.0f} ({1000 * min(times):4.0f})   +{1000 * (med - base):4.0f}")
        if s.ping:
            up = s.upload
            print(f"\nData-port ping every {1000 * PING_EVERY_S:g} ms during `upload` of {up['mib']} MiB "
                  f"(evicted from the page cache): upload took {up['seconds']:.1f} s ({up['mb_per_s']:.0f} MB/s); "
                  f"tracker expired the peer: {'YES' if up['expired'] else 'no'}")
            for name, r in s.ping.items():
                if r.get("pings"):
                    print(f"  {name:7s} {r['pings']:5d} pings, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
                          f"max {r['max_ms']:.1f} ms, unanswered within {PING_TIMEOUT_S:g} s: {r['lost']}")
                else:
                    print(f"  {name:7s} no ping answered ({r['lost']} unanswered)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,300", help="peer counts, comma-separated")
    ap.add_argument("--idle-s", type=float, default=30.0, help="seconds each CPU reading spans")
    ap.add_argument("--settle-s", type=float, default=10.0, help="seconds after swarm up before reading")
    ap.add_argument("--upload-mib", type=int, default=2048, help="file the pinged peer hashes for upload")
    ap.add_argument("--cli-runs", type=int, default=15)
    ap.add_argument("--dir", help="work directory (default: a temp dir)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="zorrent-scale-")).resolve()
    counts = sorted(int(x) for x in args.sizes.split(","))
    print(f"{os.cpu_count()} cores, sizes {counts}, {args.idle_s:g} s per reading", flush=True)
    sizes, failed = [], []
    for i, n in enumerate(counts):
        try:
            sizes.append(run_size(root, n, args.idle_s, args.settle_s, i == 0, args.upload_mib, args.cli_runs))
        except SystemExit as exc:           # a size that does not come up is a result too
            failed.append((n, str(exc)))
            print(f"  {n} peers FAILED: {exc}", flush=True)
    print_report(sizes)
    for n, why in failed:
        print(f"\n{n} peers: FAILED: {why}")
    if args.json:
        Path(args.json).write_text(json.dumps([s.__dict__ | {"phases": {k: v.__dict__ for k, v in s.phases.items()}}
                                               for s in sizes], indent=1))
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
