"""make bench-swarm: zorrent and libtorrent on the same namespace topology, as ratios to T_min.

    python bench/swarm.py                 # the three regimes, 3 runs each, alternating
    python bench/swarm.py --quick         # 1 run each, half the sizes
    python bench/swarm.py --regime seed-bound --only zorrent --runs 1
    python bench/swarm.py --quick --only zorrent --keys   # plain vs a private swarm (CURVE)
    python bench/swarm.py --rtt-ms 100 --quick      # the same with 100 ms between any two hosts
    python bench/swarm.py --mix --regime seed-bound --runs 1   # zorrent seed, zorrent + libtorrent leechers
    python bench/swarm.py --mix --mix-lt 4 --quick   # 4 of the 6 leechers libtorrent, 2 zorrent
    python bench/swarm.py --grid --runs 1           # the grid of bench/swarm_grid.py (hours)
    python bench/swarm.py --grid --leechers 4 --sizes 64 --rtts 0,100 --seeds 1 --starts once

Every node runs in its own network namespace (ctl/lab.py) with its upload capped by HTB;
downloads are uncapped. The tracker has a host of its own. libtorrent 2.1 (PyPI) runs
tracker-less over TCP, and each leecher is told every other node's address. Every
output file is compared byte for byte.

The bound is the minimum distribution time (Kumar & Ross 2006): with F the file size,
u_s the seeds' summed upload, u_i the leechers' and N leechers,

    T_min = max(F / u_s,  N * F / (u_s + sum(u_i)))

With ``--rtt-ms N`` every host gets a delay line of N/2 ms one way (ctl/delay.py), so any
two hosts see an RTT of N. Each run also says how busy the machine's CPU was and what the
lab's processes used; a run the CPU limited is marked, and ``--auto-scale`` runs it again
at half the rates.

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
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.swarm_grid import AXES, REGIMES, CpuWatch, Regime, Tracer, grid, link_bytes, show_trace  # noqa: E402
from ctl import client  # noqa: E402
from ctl.lab import Host, Lab  # noqa: E402
from node import config  # noqa: E402
from protocol import messages as m  # noqa: E402
from protocol import metainfo  # noqa: E402
from protocol.errors import ZorrentError  # noqa: E402
from ctl.commands.inputs import write_random_file  # noqa: E402
from tests.procs import PY, wait_for  # noqa: E402

MIB = 1024 * 1024
GOODPUT = 1448 / 1514          # TCP payload per Ethernet frame (timestamps on, MTU 1500)
PEER_PORT, TRACKER_PORT = 6881, 6969
CURVE = "zorrent+curve"        # zorrent as a private swarm (--keys)
MIXED = "mixed"                # --mix: a zorrent seed, zorrent and libtorrent leechers (run_mixed)
MIX_LT: int | None = None      # --mix-lt N: libtorrent leechers in the mixed swarm (None: every other one)


@dataclass
class Result:
    seconds: float
    seed_upload: float        # bytes the seeds' links sent, as a multiple of F
    trace: list = None        # [(t, {host: bytes sent so far})] every TRACE_S, with --trace
    cpu: CpuWatch = None
    finished: dict = None     # leecher -> seconds from the run's start to its finish (uneven progress)


def build(lab: Lab, regime: Regime) -> tuple[Host, list[Host], list[Host]]:
    tracker = lab.add_host("tracker", None, regime.loss_pct)
    seeds = [lab.add_host(f"seed{i}", regime.seed_mbit, regime.loss_pct) for i in range(regime.seeds)]
    leeches = [lab.add_host(f"leech{i}", up, regime.loss_pct) for i, up in enumerate(regime.leech_mbit)]
    return tracker, seeds, leeches


def waves(regime: Regime, leeches: list[Host]) -> list[tuple[float, list[Host]]]:
    """(seconds after the start, leechers that start then)."""
    if not regime.wave_s:
        return [(0.0, leeches)]
    half = (len(leeches) + 1) // 2
    return [(0.0, leeches[:half]), (regime.wave_s, leeches[half:])]


def _spawn(host: Host, work: Path, name: str, argv: list[str]) -> subprocess.Popen:
    log = open(work / f"{name}.log", "ab")
    env = {**os.environ, "PYTHONPATH": str(REPO), "ZORRENT_OUTPUT": str(work / "output")}
    return host.popen(argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)



def _start_zorrent(work: Path, tracker: Host, peers: list[Host]) -> str:
    """A zorrent tracker and a zorrent peer on each of ``peers``; the tracker's endpoint."""
    endpoint = f"tcp://{tracker.ip}:{TRACKER_PORT}"
    _spawn(tracker, work, "tracker", [PY, str(REPO / "main.py"), "tracker", "--host", tracker.ip,
                                      "--port", str(TRACKER_PORT)])
    for host in peers:
        _spawn(host, work, host.name, [PY, str(REPO / "main.py"), "peer", "--peer-id", host.name,
                                       "--host", host.ip, "--port", str(PEER_PORT), "--tracker", endpoint])
    return endpoint

def registered(peer_id: str) -> bool:
    try:
        return client.peer_control(peer_id, m.Status(info_hash=""), timeout_s=0.5, tries=1).registered
    except Exception:
        return False


def note_finished(name: str, meta, sent: dict, done: dict) -> None:
    """Record when zorrent leecher ``name`` finished (its request time + the job's elapsed)."""
    job = client.peer_control(name, m.Status(info_hash=meta.info_hash)).jobs
    if job and job[0].state == m.JobState.SEEDING.value:
        done[name] = sent[name] + job[0].elapsed_s
    elif job and job[0].state == m.JobState.FAILED.value:
        raise SystemExit(f"zorrent download failed on {name}: {job[0].error}")


def run_zorrent(work: Path, src: Path, regime: Regime, trace: bool = False, keys: Path | None = None) -> Result:
    """One zorrent run; with ``keys``, a private swarm (CURVE on every tcp socket)."""
    os.environ["ZORRENT_OUTPUT"] = str(work / "output")        # the control sockets live there
    if keys is not None:
        os.environ["ZORRENT_KEYS"] = str(keys)                # every node (_spawn) and this process's client
    with Lab(rtt_ms=regime.rtt_ms, jitter_ms=regime.jitter_ms) as lab:
        tracker, seeds, leeches = build(lab, regime)
        endpoint = _start_zorrent(work, tracker, [*seeds, *leeches])

        for host in [*seeds, *leeches]:
            wait_for(lambda: registered(host.name), timeout_s=30, what=f"{host.name} to register")
        meta = metainfo.create(src, endpoint, piece_length=regime.piece_kib * 1024 or None)
        for seed in seeds:
            client.seed(seed.name, str(src), meta, timeout_s=300)
            wait_for(lambda: (j := client.peer_control(seed.name, m.Status(info_hash=meta.info_hash)).jobs[0])
                     .announced >= j.have, timeout_s=30, what="the seed's pieces at the tracker")
        seed_bytes = sum(link_bytes(s) for s in seeds)
        sent, done, asked = {}, {}, set()
        tracer = Tracer([*seeds, *leeches], trace).__enter__()
        cpu = CpuWatch(lab).__enter__()

        def start(host: Host) -> None:
            sent[host.name] = time.time()
            client.peer_control(host.name, m.Download(metainfo=meta.raw, output=str(work / "out" / host.name)))
            asked.add(host.name)     # polled only from now: before, the peer may not hold it yet

        t0 = time.time()

        def start_wave(after_s: float, hosts: list[Host]) -> None:
            time.sleep(max(0.0, t0 + after_s - time.time()))     # the schedule of the case itself
            starters = [threading.Thread(target=start, args=(h,)) for h in hosts]
            for t in starters:
                t.start()
            for t in starters:
                t.join()

        wave_threads = [threading.Thread(target=start_wave, args=w) for w in waves(regime, leeches)]
        for t in wave_threads:
            t.start()

        def all_done() -> bool:
            for host in leeches:
                if host.name not in done and host.name in asked:
                    note_finished(host.name, meta, sent, done)
            return len(done) == len(leeches)

        wait_for(all_done, timeout_s=20 * regime.t_min() + regime.wave_s + 60, what="zorrent downloads",
                 interval_s=0.05)
        for t in wave_threads:
            t.join()
        cpu.__exit__()
        tracer.__exit__()
        seconds = max(done.values()) - min(sent.values())
        upload = (sum(link_bytes(s) for s in seeds) - seed_bytes) / src.stat().st_size
        for host in leeches:
            if not filecmp.cmp(src, work / "out" / host.name, shallow=False):
                raise SystemExit(f"zorrent wrote a wrong file on {host.name}")
    os.environ.pop("ZORRENT_OUTPUT", None)
    os.environ.pop("ZORRENT_KEYS", None)
    return Result(seconds, upload, tracer.samples, cpu, {n: t - min(sent.values()) for n, t in done.items()})


def run_libtorrent(work: Path, src: Path, torrent: Path, regime: Regime, trace: bool = False) -> Result:
    node = [PY, str(REPO / "bench" / "lt_node.py"), "--torrent", str(torrent)]
    with Lab(rtt_ms=regime.rtt_ms, jitter_ms=regime.jitter_ms) as lab:
        _, seeds, leeches = build(lab, regime)
        for seed in seeds:
            ready = work / f"{seed.name}.port"
            _spawn(seed, work, f"lt-{seed.name}", node + ["--role", "seeder", "--dir", str(src.parent), "--ready",
                                                         str(ready), "--listen", f"{seed.ip}:{PEER_PORT}"])
            wait_for(ready.exists, timeout_s=30, what="the libtorrent seeder")
        results, gos = [], []
        for after_s, hosts in waves(regime, leeches):
            for host in hosts:
                out = work / host.name
                out.mkdir()
                results.append(work / f"{host.name}.json")
                gos.append((after_s, host, work / f"go-{host.name}.json"))
                _spawn(host, work, f"lt-{host.name}", node + [
                    "--role", "leecher", "--dir", str(out), "--ready", str(work / f"{host.name}.port"), "--go",
                    str(gos[-1][2]), "--result", str(results[-1]), "--listen", f"{host.ip}:{PEER_PORT}"])
        for host in leeches:
            wait_for((work / f"{host.name}.port").exists, timeout_s=30, what=f"libtorrent on {host.name}")
        seed_bytes = sum(link_bytes(s) for s in seeds)
        # each leecher dials the seeds and only the leechers after it: two libtorrent nodes that
        # dial each other at once both drop the incoming one as a duplicate peer id, and their
        # retries cross again on libtorrent's 1 s tick (at RTT 50 every pair lost both); the
        # mixed swarm does the same (run_mixed)
        with Tracer([*seeds, *leeches], trace) as tracer, CpuWatch(lab) as cpu:
            t0 = time.time()
            for after_s, host, go in gos:
                time.sleep(max(0.0, t0 + after_s - time.time()))     # the schedule of the case itself
                later = leeches[leeches.index(host) + 1:]
                go.with_suffix(".tmp").write_text(json.dumps([f"{h.ip}:{PEER_PORT}" for h in [*seeds, *later]]))
                go.with_suffix(".tmp").rename(go)                    # whole, or lt_node reads it empty
            wait_for(lambda: all(r.exists() for r in results), timeout_s=20 * regime.t_min() + regime.wave_s + 60,
                     what="libtorrent downloads", interval_s=0.05)
        times = [json.loads(r.read_text()) for r in results]
        seconds = max(t["finished"] for t in times) - min(t["started"] for t in times)
        upload = (sum(link_bytes(s) for s in seeds) - seed_bytes) / src.stat().st_size
        for host in leeches:
            if not filecmp.cmp(src, work / host.name / src.name, shallow=False):
                raise SystemExit(f"libtorrent wrote a wrong file on {host.name}")
    start = min(t["started"] for t in times)
    return Result(seconds, upload, tracer.samples, cpu,
                  {h.name: t["finished"] - start for h, t in zip([g[1] for g in gos], times)})


def run_mixed(work: Path, src: Path, torrent: Path, regime: Regime, trace: bool = False) -> Result:
    """``--mix`` (issue 18): zorrent seeds, and the leechers alternately zorrent and libtorrent
    (leech0, leech2, ... zorrent; ``--mix-lt N``: N libtorrent ones, spread evenly). A libtorrent leecher is told the zorrent nodes' BEP 3
    addresses (data port + 1000) and the libtorrent leechers after it; a zorrent leecher finds the seeds and the
    other zorrent leechers through the tracker, and takes the libtorrent leechers as BEP 3
    sources (Download.peers, as x.pe)."""
    os.environ["ZORRENT_OUTPUT"] = str(work / "output")
    bt_port = PEER_PORT + config.BT_PORT_OFFSET                  # each zorrent peer's default BEP 3 port
    node = [PY, str(REPO / "bench" / "lt_node.py"), "--torrent", str(torrent)]
    with Lab(rtt_ms=regime.rtt_ms, jitter_ms=regime.jitter_ms) as lab:
        tracker, seeds, leeches = build(lab, regime)
        ll = lt_leechers(leeches, len(leeches) // 2 if MIX_LT is None else MIX_LT)
        zl = [h for h in leeches if h not in ll]
        endpoint = _start_zorrent(work, tracker, [*seeds, *zl])
        results = {}
        for host in ll:
            (work / host.name).mkdir()
            results[host.name] = work / f"{host.name}.json"
            _spawn(host, work, f"lt-{host.name}", node + [
                "--role", "leecher", "--dir", str(work / host.name), "--ready", str(work / f"{host.name}.port"),
                "--go", str(work / f"go-{host.name}.json"), "--result", str(results[host.name]),
                "--listen", f"{host.ip}:{PEER_PORT}"] + (["--trace"] if trace else []))

        for host in [*seeds, *zl]:
            wait_for(lambda: registered(host.name), timeout_s=30, what=f"{host.name} to register")
        for host in ll:
            wait_for((work / f"{host.name}.port").exists, timeout_s=30, what=f"libtorrent on {host.name}")
        meta = metainfo.create(src, endpoint, piece_length=regime.piece_kib * 1024 or None)
        assert meta.info_hash == metainfo.read(torrent).info_hash, "the libtorrent leechers' torrent differs"
        for seed in seeds:
            client.seed(seed.name, str(src), meta, timeout_s=300)
            wait_for(lambda: (j := client.peer_control(seed.name, m.Status(info_hash=meta.info_hash)).jobs[0])
                     .announced >= j.have, timeout_s=30, what="the seed's pieces at the tracker")
        seed_bytes = sum(link_bytes(s) for s in seeds)
        lt_peers = [f"{h.ip}:{PEER_PORT}" for h in ll]
        # each libtorrent leecher dials the zorrent nodes and only the libtorrent leechers after
        # it: two libtorrent nodes that dial each other at once each drop the other's connection
        # as a duplicate and lose both, and at RTT 50 ms their 1 s retries cross again every time
        dials = {h.name: json.dumps([f"{z.ip}:{bt_port}" for z in [*seeds, *zl]] + lt_peers[i + 1:])
                 for i, h in enumerate(ll)}
        sent, done = {}, {}
        tracer = Tracer([*seeds, *leeches], trace).__enter__()
        cpu = CpuWatch(lab).__enter__()

        def start(host: Host) -> None:
            sent[host.name] = time.time()
            if host in ll:                 # whole or not at all: lt_node reads it as soon as it exists
                (work / f"go-{host.name}.tmp").write_text(dials[host.name])
                (work / f"go-{host.name}.tmp").rename(work / f"go-{host.name}.json")
            else:
                client.peer_control(host.name, m.Download(metainfo=meta.raw, output=str(work / "out" / host.name),
                                                          peers=lt_peers))

        t0 = time.time()
        for after_s, hosts in waves(regime, leeches):
            time.sleep(max(0.0, t0 + after_s - time.time()))
            for host in hosts:
                start(host)

        def all_done() -> bool:
            for host in leeches:
                if host.name in done or host.name not in sent:
                    continue
                if host in ll:
                    if results[host.name].exists() and results[host.name].read_text():
                        t = json.loads(results[host.name].read_text())
                        sent[host.name] = t["started"]
                        done[host.name] = t["finished"]
                    continue
                note_finished(host.name, meta, sent, done)
            return len(done) == len(leeches)

        wait_for(all_done, timeout_s=20 * regime.t_min() + regime.wave_s + 60, what="mixed downloads",
                 interval_s=0.05)
        cpu.__exit__()
        tracer.__exit__()
        if trace:
            print_givers(src.stat().st_size, meta, [*seeds, *leeches], zl, ll, results)
        seconds = max(done.values()) - min(sent.values())
        upload = (sum(link_bytes(s) for s in seeds) - seed_bytes) / src.stat().st_size
        for host in leeches:
            out = work / host.name / src.name if host in ll else work / "out" / host.name
            if not filecmp.cmp(src, out, shallow=False):
                raise SystemExit(f"the mixed swarm wrote a wrong file on {host.name}")
        print(f"    mixed: zorrent leechers {', '.join(f'{h.name} {done[h.name] - sent[h.name]:.1f} s' for h in zl)}; "
              f"libtorrent leechers {', '.join(f'{h.name} {done[h.name] - sent[h.name]:.1f} s' for h in ll)}",
              flush=True)
    os.environ.pop("ZORRENT_OUTPUT", None)
    return Result(seconds, upload, tracer.samples, cpu)


def lt_leechers(leeches: list, count: int) -> list:
    """``count`` of ``leeches`` spread evenly over the list (3 of 6: leech1, leech3, leech5), so
    each kind has fast and slow links alike when the rates differ."""
    n, k = len(leeches), max(0, min(count, len(leeches)))
    return [h for i, h in enumerate(leeches) if (i + 1) * k // n > i * k // n]


def print_givers(size: int, meta, hosts: list[Host], zl: list[Host], ll: list[Host], results: dict) -> None:
    """--mix --trace: who each leecher got its bytes from, as a share of F (a zorrent leecher's
    job stats; a libtorrent leecher's peer list when it finished)."""
    by_ip = {h.ip: h.name for h in hosts}
    names = [h.name for h in hosts]
    print("    got from (x F): " + " ".join(f"{n:>7s}" for n in names), flush=True)
    for host in [*zl, *ll]:
        got = dict.fromkeys(names, 0)
        if host in zl:
            for stat in client.peer_control(host.name, m.Status(info_hash=meta.info_hash)).jobs[0].peers:
                name = stat.peer_id if stat.peer_id in got else by_ip.get(stat.peer_id.split(":")[1], "?") \
                    if stat.peer_id.startswith("bt:") else "?"
                got[name] = got.get(name, 0) + stat.bytes
        else:
            for addr, n in json.loads(results[host.name].read_text()).get("from", {}).items():
                name = by_ip.get(addr.rsplit(":", 1)[0], "?")
                got[name] = got.get(name, 0) + n
        kind = "zorrent" if host in zl else "lt"
        print(f"    {host.name:>6s} {kind:>7s}: " + " ".join(f"{got[n] / size:7.2f}" for n in names)
              + (f"  ? {got['?'] / size:.2f}" if got.get("?") else ""), flush=True)


def run_cell(root: Path, number: int, run: int, impl: str, src: Path, torrent: Path, regime: Regime,
             trace: bool, keys: Path | None = None, logs: Path | None = None) -> Result:
    work = root / f"regime{number}-run{run}-{impl}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        return run_zorrent(work, src, regime, trace) if impl == "zorrent" else \
            run_zorrent(work, src, regime, trace, keys) if impl == CURVE else \
            run_mixed(work, src, torrent, regime, trace) if impl == MIXED else \
            run_libtorrent(work, src, torrent, regime, trace)
    finally:
        if logs is not None:                 # the nodes' logs outlive the run (--logs)
            keep = logs / work.name
            keep.mkdir(parents=True, exist_ok=True)
            for log in work.glob("*.log"):
                shutil.copy(log, keep / log.name)
        shutil.rmtree(work, ignore_errors=True)


def _csv(kind):
    return lambda text: [kind(x) for x in text.split(",") if x]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 run each, half the file sizes")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--regime", action="append", choices=[r.name for r in REGIMES], help="only these regimes")
    ap.add_argument("--only", choices=["zorrent", "libtorrent"], help="run one side (for tuning)")
    ap.add_argument("--dir", help="work directory (default: a temp dir)")
    ap.add_argument("--trace", action="store_true", help="print each uplink's use every 0.5 s")
    ap.add_argument("--rtt-ms", type=float, help="RTT between any two hosts (the named regimes; the grid has its own)")
    ap.add_argument("--jitter-ms", type=float, default=0.0, help="jitter of each host's one-way delay")
    ap.add_argument("--logs", type=Path, help="keep every node's log under this folder (one sub-folder a run)")
    ap.add_argument("--grid", action="store_true", help="the grid of bench/swarm_grid.py instead of the regimes")
    for axis, values in AXES.items():
        ap.add_argument(f"--{axis}", type=_csv(int if axis in ("leechers", "sizes", "seeds") else
                                               float if axis == "rtts" else str),
                        help=f"with --grid: only these (default {','.join(map(str, values))})")
    ap.add_argument("--piece-kib", type=int, default=0, help="piece length of the torrent (default: its own choice)")
    ap.add_argument("--scale", type=float, default=1.0, help="every link rate times this (the CPU's share)")
    ap.add_argument("--keys", action="store_true",
                    help="also run zorrent as a private swarm (CURVE), alternating, and print the CURVE/plain ratio")
    ap.add_argument("--mix", action="store_true",
                    help="a mixed swarm (zorrent seed, zorrent and libtorrent leechers) instead of all-zorrent")
    ap.add_argument("--mix-lt", type=int, help="with --mix: this many of the leechers run libtorrent (default half)")
    ap.add_argument("--auto-scale", action="store_true",
                    help="a run the CPU limited is run again at half the rates (twice at most)")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    global MIX_LT
    MIX_LT = args.mix_lt
    if args.grid:
        regimes = grid(**{axis: getattr(args, axis) for axis in AXES})
    else:
        regimes = [r for r in REGIMES if not args.regime or r.name in args.regime]
        if args.rtt_ms is not None:
            regimes = [replace(r, rtt_ms=args.rtt_ms, name=f"{r.name}, RTT {args.rtt_ms:g} ms") for r in regimes]
    if args.quick:
        regimes = [replace(r, size_mib=r.size_mib // 2) for r in regimes]
    regimes = [replace(r.scaled(args.scale) if args.scale != 1 else r, jitter_ms=args.jitter_ms,
                       piece_kib=args.piece_kib) for r in regimes]
    root = Path(args.dir or tempfile.mkdtemp(prefix="zorrent-swarm-"))
    root.mkdir(parents=True, exist_ok=True)
    impls = [args.only] if args.only else ["zorrent", "libtorrent"]
    if args.mix:
        impls = [MIXED, *(i for i in impls if i != "zorrent")]
    keys = None
    if args.keys:
        from node import curve

        keys = curve.make_swarm(root / f"keys-{os.getpid()}").folder
        impls.insert(impls.index("zorrent") + 1 if "zorrent" in impls else 0, CURVE)
    table: list[tuple[Regime, dict[str, list[Result]]]] = []
    print(f"{len(regimes)} case(s) x {len(impls)} x {runs} run(s); the machine is shared, figures are ratios "
          f"within one run", flush=True)
    try:
        for number, regime in enumerate(regimes):
            src = root / "inputs" / f"swarm-{regime.size_mib}MiB.bin"
            if not src.exists():
                src.parent.mkdir(parents=True, exist_ok=True)
                write_random_file(src, regime.size_mib * MIB, random.Random(14))
            meta = metainfo.create(src, "tcp://127.0.0.1:1", piece_length=regime.piece_kib * 1024 or None)
            torrent = root / f"{src.name}.torrent"
            metainfo.write(meta, torrent)
            for attempt in range(3 if args.auto_scale else 1):
                print(f"{regime.name}: {regime.describe()} ({meta.num_pieces} pieces of {meta.piece_length // 1024} "
                      f"KiB): T_min {regime.t_min():.1f} s, T_goodput {regime.t_min(GOODPUT):.1f} s"
                      + (f", T_waves {regime.t_bound():.1f} s (bench/swarm_grid.py)" if regime.wave_s else ""),
                      flush=True)
                cell = {i: [] for i in impls}
                for run in range(runs):
                    for impl in impls:
                        try:
                            res = run_cell(root, number, run, impl, src, torrent, regime, args.trace, keys, args.logs)
                        except (AssertionError, SystemExit, ZorrentError) as exc:    # the cell, not the grid
                            print(f"  run {run + 1} {impl:10s} FAILED: {str(exc)[:200]}", flush=True)
                            cell[impl].append(None)
                            continue
                        cell[impl].append(res)
                        waves_bound = (f" = {res.seconds / regime.t_bound():.3f}x T_waves" if regime.wave_s else "")
                        print(f"  run {run + 1} {impl:13s} {res.seconds:7.2f} s = {res.seconds / regime.t_min():.3f}x "
                              f"T_min{waves_bound}; the seeds uploaded {res.seed_upload:.2f}x F", flush=True)
                        print(f"    cpu: {res.cpu.summary()}" + ("  << CPU-LIMITED" if res.cpu.limited else ""),
                              flush=True)
                        if res.finished:
                            print("    done at (x T_min): " + " ".join(
                                f"{n} {t / regime.t_min():.3f}" for n, t in sorted(res.finished.items())), flush=True)
                        show_trace(res.trace, caps_of(regime))
                limited = any(r.cpu.limited for rs in cell.values() for r in rs if r)
                if not (args.auto_scale and limited and attempt < 2):
                    break
                print("  the CPU was the limit: again at half the rates", flush=True)
                regime = regime.scaled(0.5)
            table.append((regime, cell))
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    print_table(table, impls)
    return 0


def caps_of(regime: Regime) -> dict:
    return {**{f"seed{i}": regime.seed_mbit for i in range(regime.seeds)},
            **{f"leech{i}": u for i, u in enumerate(regime.leech_mbit)}}


def print_table(table: list, impls: list[str]) -> None:
    both = {"zorrent", "libtorrent"} <= set(impls)
    curved = {"zorrent", CURVE} <= set(impls)
    print(f"\n| case | T_min s | bound s | {' | '.join(f'{i} s (x T_min, x bound)' for i in impls)} | "
          f"{' | '.join(f'{i} seed upload / F' for i in impls)} |" + (" libtorrent / zorrent | goal |" if both else "")
          + (" CURVE speed / plain |" if curved else "") + " CPU-limited |")
    print("|---" * (4 + 2 * len(impls) + 2 * both + curved) + "|")
    for regime, cell in table:
        ok_runs = {i: [r for r in cell[i] if r] for i in impls}
        med = {i: statistics.median(r.seconds for r in ok_runs[i]) if ok_runs[i] else None for i in impls}
        ups = {i: statistics.median(r.seed_upload for r in ok_runs[i]) if ok_runs[i] else None for i in impls}
        bound = regime.t_bound()
        row = [regime.name, f"{regime.t_min():.1f}", f"{bound:.1f}",
               *(f"{med[i]:.1f} ({med[i] / regime.t_min():.2f}x, {med[i] / bound:.2f}x)" if med[i] else "failed"
                 for i in impls),
               *(f"{ups[i]:.2f}x" if ups[i] else "-" for i in impls)]
        if both and None in med.values():
            row += ["-", "-"]
        elif both:
            speedup = med["libtorrent"] / med["zorrent"]
            ok = speedup >= 1.3 if regime.wave_s else med["zorrent"] / regime.t_min() <= regime.goal()
            row += [f"{speedup:.2f}x", ("met" if ok else "MISSED") + (" (>=1.3x lt)" if regime.wave_s else
                                                                     f" (<={regime.goal():.2f}x)")]
        if curved:
            row.append(f"{med['zorrent'] / med[CURVE]:.2f}" if med["zorrent"] and med[CURVE] else "-")
        row.append(", ".join(i for i in impls if any(r.cpu.limited for r in ok_runs[i])) or "no")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    sys.exit(main())
