"""make bench-swarm: zorrent and libtorrent on the same namespace topology, as ratios to T_min.

    python bench/swarm.py                 # the three regimes, 3 runs each, alternating
    python bench/swarm.py --quick         # 1 run each, half the sizes
    python bench/swarm.py --regime seed-bound --only zorrent --runs 1
    python bench/swarm.py --quick --only zorrent --keys   # plain vs a private swarm (CURVE)

Every node runs in its own network namespace (ctl/lab.py) with its upload capped by HTB;
downloads are uncapped. The tracker has a host of its own. libtorrent 2.1 (PyPI) runs
tracker-less over TCP, and each leecher is told every other node's address. Every
output file is compared byte for byte.

The bound is the minimum distribution time (Kumar & Ross 2006): with F the file size,
u_s the seed's upload, u_i the leechers' and N leechers,

    T_min = max(F / u_s,  N * F / (u_s + sum(u_i)))

It counts link rates as payload rates. TCP/IP and Ethernet headers take 4.6% of a
1500-byte packet, so no TCP transfer reaches it: ``T_goodput`` is the same bound at
1448/1514 of each rate, the real floor. The seed's upload is read from its link's HTB
counters (bytes on the wire, headers included) and shown as a multiple of F: 1.0x is a
seed that sent every piece exactly once (BEP 16 reports 1.5-2x for a normal seed).
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ctl import client  # noqa: E402
from ctl.lab import Host, Lab  # noqa: E402
from protocol import messages as m  # noqa: E402
from protocol import metainfo  # noqa: E402
from ctl.commands.inputs import write_random_file  # noqa: E402
from tests.procs import PY, wait_for  # noqa: E402

MIB = 1024 * 1024
GOODPUT = 1448 / 1514          # TCP payload per Ethernet frame (timestamps on, MTU 1500)
PEER_PORT, TRACKER_PORT = 6881, 6969
CURVE = "zorrent+curve"        # zorrent as a private swarm (--keys)


@dataclass(frozen=True)
class Regime:
    name: str
    seed_mbit: float
    leech_mbit: float
    leechers: int
    size_mib: int
    loss_pct: float = 0.0

    def t_min(self, goodput: float = 1.0) -> float:
        bits = self.size_mib * MIB * 8
        us, ui = self.seed_mbit * 1e6 * goodput, self.leech_mbit * 1e6 * goodput
        return max(bits / us, self.leechers * bits / (us + self.leechers * ui))


REGIMES = [
    Regime("seed-bound", 20, 100, 6, 128),
    Regime("peer-bound", 100, 50, 6, 256),
    Regime("peer-bound, 2% loss", 100, 50, 6, 128, 2.0),
]


@dataclass
class Result:
    seconds: float
    seed_upload: float        # bytes the seed's link sent, as a multiple of F
    trace: list = None        # [(t, {host: bytes sent so far})] every TRACE_S, with --trace


TRACE_S = 0.5


class Tracer:
    """Samples every capped link's byte counter, to show when each uplink was busy."""

    def __init__(self, hosts: list[Host], on: bool) -> None:
        self.hosts, self.samples, self.stop = hosts, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True) if on else None

    def __enter__(self) -> "Tracer":
        if self.thread:
            self.t0 = time.time()
            self.samples.append((0.0, {h.name: _link_bytes(h) for h in self.hosts}))
            self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(TRACE_S):
            self.samples.append((time.time() - self.t0, {h.name: _link_bytes(h) for h in self.hosts}))

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread:
            self.thread.join()


def show_trace(res: Result, regime: Regime) -> None:
    """Per second: each uplink's use as a percent of its cap, and the swarm's total."""
    if not res.trace:
        return
    cap = {"seed": regime.seed_mbit}
    names = list(res.trace[0][1])
    print("    t(s)  " + " ".join(f"{n[-6:]:>6s}" for n in names) + "   all")
    prev_t, prev = 0.0, res.trace[0][1]
    for t, sample in res.trace[1:]:
        used = {n: (sample[n] - prev[n]) * 8 / 1e6 / (t - prev_t) for n in names}
        pct = {n: 100 * used[n] / cap.get(n, regime.leech_mbit) for n in names}
        total = 100 * sum(used.values()) / (regime.seed_mbit + regime.leechers * regime.leech_mbit)
        print(f"    {t:5.1f} " + " ".join(f"{pct[n]:5.0f}%" for n in names) + f" {total:5.0f}%")
        prev_t, prev = t, sample


def _link_bytes(host: Host) -> int:
    out = subprocess.run(host.argv("tc", "-s", "class", "show", "dev", "eth0"), capture_output=True, text=True).stdout
    found = re.search(r"Sent (\d+) bytes", out)
    return int(found.group(1)) if found else 0


def build(lab: Lab, regime: Regime) -> tuple[Host, Host, list[Host]]:
    tracker = lab.add_host("tracker", None, regime.loss_pct)
    seed = lab.add_host("seed", regime.seed_mbit, regime.loss_pct)
    leeches = [lab.add_host(f"leech{i}", regime.leech_mbit, regime.loss_pct) for i in range(regime.leechers)]
    return tracker, seed, leeches


def _spawn(host: Host, work: Path, name: str, argv: list[str]) -> subprocess.Popen:
    log = open(work / f"{name}.log", "ab")
    env = {**os.environ, "PYTHONPATH": str(REPO), "ZORRENT_OUTPUT": str(work / "output")}
    return host.popen(argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)


def run_zorrent(work: Path, src: Path, regime: Regime, trace: bool = False, keys: Path | None = None) -> Result:
    """One zorrent run; with ``keys``, a private swarm (CURVE on every tcp socket)."""
    os.environ["ZORRENT_OUTPUT"] = str(work / "output")        # the control sockets live there
    if keys is not None:
        os.environ["ZORRENT_KEYS"] = str(keys)                # every node (_spawn) and this process's client
    with Lab() as lab:
        tracker, seed, leeches = build(lab, regime)
        endpoint = f"tcp://{tracker.ip}:{TRACKER_PORT}"
        _spawn(tracker, work, "tracker", [PY, str(REPO / "main.py"), "tracker", "--host", tracker.ip,
                                          "--port", str(TRACKER_PORT)])
        for host in [seed, *leeches]:
            _spawn(host, work, host.name, [PY, str(REPO / "main.py"), "peer", "--peer-id", host.name,
                                           "--host", host.ip, "--port", str(PEER_PORT), "--tracker", endpoint])

        def registered(peer_id: str) -> bool:
            try:
                return client.peer_control(peer_id, m.Status(info_hash=""), timeout_s=0.5, tries=1).registered
            except Exception:
                return False

        for host in [seed, *leeches]:
            wait_for(lambda: registered(host.name), timeout_s=30, what=f"{host.name} to register")
        meta = metainfo.create(src, endpoint)
        client.seed("seed", str(src), meta, timeout_s=300)
        wait_for(lambda: (j := client.peer_control("seed", m.Status(info_hash=meta.info_hash)).jobs[0]).announced
                 >= j.have, timeout_s=30, what="the seed's pieces at the tracker")
        seed_bytes = _link_bytes(seed)
        sent, done = {}, {}
        tracer = Tracer([seed, *leeches], trace).__enter__()

        def start(host: Host) -> None:      # all at once, as libtorrent's leechers start on one go file
            sent[host.name] = time.time()
            client.peer_control(host.name, m.Download(metainfo=meta.raw, output=str(work / "out" / host.name)))

        starters = [threading.Thread(target=start, args=(h,)) for h in leeches]
        for t in starters:
            t.start()
        for t in starters:
            t.join()

        def all_done() -> bool:
            for host in leeches:
                if host.name not in done:
                    job = client.peer_control(host.name, m.Status(info_hash=meta.info_hash)).jobs[0]
                    if job.state == m.JobState.SEEDING.value:
                        done[host.name] = sent[host.name] + job.elapsed_s
                    elif job.state == m.JobState.FAILED.value:
                        raise SystemExit(f"zorrent download failed on {host.name}: {job.error}")
            return len(done) == len(leeches)

        wait_for(all_done, timeout_s=20 * regime.t_min() + 60, what="zorrent downloads", interval_s=0.05)
        tracer.__exit__()
        seconds = max(done.values()) - min(sent.values())
        upload = (_link_bytes(seed) - seed_bytes) / src.stat().st_size
        for host in leeches:
            if not filecmp.cmp(src, work / "out" / host.name, shallow=False):
                raise SystemExit(f"zorrent wrote a wrong file on {host.name}")
    os.environ.pop("ZORRENT_OUTPUT", None)
    os.environ.pop("ZORRENT_KEYS", None)
    return Result(seconds, upload, tracer.samples)


def run_libtorrent(work: Path, src: Path, torrent: Path, regime: Regime, trace: bool = False) -> Result:
    node = [PY, str(REPO / "bench" / "lt_node.py"), "--torrent", str(torrent)]
    with Lab() as lab:
        _, seed, leeches = build(lab, regime)
        ready = work / "seed.port"
        _spawn(seed, work, "lt-seed", node + ["--role", "seeder", "--dir", str(src.parent), "--ready", str(ready),
                                              "--listen", f"{seed.ip}:{PEER_PORT}"])
        wait_for(ready.exists, timeout_s=30, what="the libtorrent seeder")
        go, results = work / "go.json", []
        for host in leeches:
            out = work / host.name
            out.mkdir()
            results.append(work / f"{host.name}.json")
            _spawn(host, work, f"lt-{host.name}", node + [
                "--role", "leecher", "--dir", str(out), "--ready", str(work / f"{host.name}.port"), "--go", str(go),
                "--result", str(results[-1]), "--listen", f"{host.ip}:{PEER_PORT}"])
        for host in leeches:
            wait_for((work / f"{host.name}.port").exists, timeout_s=30, what=f"libtorrent on {host.name}")
        seed_bytes = _link_bytes(seed)
        with Tracer([seed, *leeches], trace) as tracer:
            go.write_text(json.dumps([f"{h.ip}:{PEER_PORT}" for h in [seed, *leeches]]))
            wait_for(lambda: all(r.exists() for r in results), timeout_s=20 * regime.t_min() + 60,
                     what="libtorrent downloads", interval_s=0.05)
        times = [json.loads(r.read_text()) for r in results]
        seconds = max(t["finished"] for t in times) - min(t["started"] for t in times)
        upload = (_link_bytes(seed) - seed_bytes) / src.stat().st_size
        for host in leeches:
            if not filecmp.cmp(src, work / host.name / src.name, shallow=False):
                raise SystemExit(f"libtorrent wrote a wrong file on {host.name}")
    return Result(seconds, upload, tracer.samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 run each, half the file sizes")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--regime", action="append", choices=[r.name for r in REGIMES], help="only these regimes")
    ap.add_argument("--only", choices=["zorrent", "libtorrent"], help="run one side (for tuning)")
    ap.add_argument("--dir", help="work directory (default: a temp dir)")
    ap.add_argument("--trace", action="store_true", help="print each uplink's use, second by second")
    ap.add_argument("--keys", action="store_true",
                    help="also run zorrent as a private swarm (CURVE), alternating, and print the CURVE/plain ratio")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    regimes = [r for r in REGIMES if not args.regime or r.name in args.regime]
    if args.quick:
        regimes = [Regime(r.name, r.seed_mbit, r.leech_mbit, r.leechers, r.size_mib // 2, r.loss_pct) for r in regimes]
    root = Path(args.dir or tempfile.mkdtemp(prefix="zorrent-swarm-"))
    root.mkdir(parents=True, exist_ok=True)
    impls = [args.only] if args.only else ["zorrent", "libtorrent"]
    keys = None
    if args.keys:
        from node import curve

        keys = curve.make_swarm(root / f"keys-{os.getpid()}").folder
        impls.insert(impls.index("zorrent") + 1 if "zorrent" in impls else 0, CURVE)
    table: dict[str, dict[str, list[Result]]] = {r.name: {i: [] for i in impls} for r in regimes}
    try:
        for number, regime in enumerate(regimes):
            src = root / "inputs" / f"swarm-{regime.size_mib}MiB.bin"
            src.parent.mkdir(parents=True, exist_ok=True)
            write_random_file(src, regime.size_mib * MIB, random.Random(14))
            meta = metainfo.create(src, "tcp://127.0.0.1:1")
            torrent = root / f"{src.name}.torrent"
            metainfo.write(meta, torrent)
            print(f"{regime.name}: {regime.size_mib} MiB ({meta.num_pieces} pieces of {meta.piece_length // 1024} "
                  f"KiB), seed {regime.seed_mbit:g} Mbit/s, {regime.leechers} leechers at {regime.leech_mbit:g} "
                  f"Mbit/s, loss {regime.loss_pct:g}%: T_min {regime.t_min():.1f} s, T_goodput "
                  f"{regime.t_min(GOODPUT):.1f} s", flush=True)
            for run in range(runs):
                for impl in impls:
                    work = root / f"regime{number}-run{run}-{impl}"
                    shutil.rmtree(work, ignore_errors=True)
                    work.mkdir(parents=True)
                    res = run_zorrent(work, src, regime, args.trace) if impl == "zorrent" else \
                        run_zorrent(work, src, regime, args.trace, keys) if impl == CURVE else \
                        run_libtorrent(work, src, torrent, regime, args.trace)
                    table[regime.name][impl].append(res)
                    shutil.rmtree(work, ignore_errors=True)
                    print(f"  run {run + 1} {impl:13s} {res.seconds:7.2f} s = {res.seconds / regime.t_min():.3f}x "
                          f"T_min; the seed uploaded {res.seed_upload:.2f}x F", flush=True)
                    show_trace(res, regime)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    versus = {"zorrent", "libtorrent"} <= set(impls)
    curved = {"zorrent", CURVE} <= set(impls)
    print(f"\n| regime | T_min s | {' | '.join(f'{i} s (x T_min)' for i in impls)} | "
          f"{' | '.join(f'{i} seed upload / F' for i in impls)} |" + (" zorrent speed-up |" if versus else "")
          + (" CURVE speed / plain |" if curved else ""))
    print("|---" * (2 + 2 * len(impls) + versus + curved) + "|")
    for regime in regimes:
        med = {i: statistics.median(r.seconds for r in table[regime.name][i]) for i in impls}
        ups = {i: statistics.median(r.seed_upload for r in table[regime.name][i]) for i in impls}
        row = [regime.name, f"{regime.t_min():.1f}",
               *(f"{med[i]:.1f} ({med[i] / regime.t_min():.2f}x)" for i in impls), *(f"{ups[i]:.2f}x" for i in impls)]
        if versus:
            row.append(f"{med['libtorrent'] / med['zorrent']:.2f}x")
        if curved:
            row.append(f"{med['zorrent'] / med[CURVE]:.2f}")
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
