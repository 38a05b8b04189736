"""make bench: zorrent against libtorrent on this machine, in the same run.

    python bench/bench.py            # 1 GiB, 3 runs each, RSS flatness 256 MiB vs 4 GiB
    python bench/bench.py --quick    # 256 MiB, 3 runs each, no 4 GiB file
    python bench/bench.py --keys --only zorrent --no-extras   # plain vs CURVE (a private swarm)

For each scenario (1 seeder -> 1 leecher, 3 seeders -> 1 leecher, 1 seeder -> 3
leechers) zorrent and libtorrent run alternately (A B A B ...) on the same file and
the same piece size, each node its own process on loopback. Every output file is
compared byte for byte: a fast wrong answer is a failure. Figures are medians, and
shown as ratios to libtorrent and to this machine's single-core SHA-1 rate measured
in the same run. Peak RSS is each process's VmHWM.
"""
from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ctl import client  # noqa: E402
from protocol import messages as m  # noqa: E402
from protocol import metainfo  # noqa: E402
from tests.procs import PY, Swarm, kill_tree, wait_for  # noqa: E402

MIB = 1024 * 1024
CURVE = "zorrent+curve"     # zorrent as a private swarm (--keys)
SCENARIOS = [("1 seeder -> 1 leecher", 1, 1), ("3 seeders -> 1 leecher", 3, 1), ("1 seeder -> 3 leechers", 1, 3)]


@dataclass
class Result:
    seconds: float          # first start to last finish
    mbps: float             # aggregate MB/s (10^6 bytes) delivered to the leechers
    seed_rss_mib: float     # peak over the seeders
    leech_rss_mib: float    # peak over the leechers


def peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def sha1_rate_mbps(nbytes: int = 512 * MIB) -> float:
    buf = os.urandom(64 * MIB)
    started = time.perf_counter()
    h = hashlib.sha1()
    for _ in range(nbytes // len(buf)):
        h.update(buf)
    return nbytes / 1e6 / (time.perf_counter() - started)


def bare_sha1_pass(path: Path) -> float:
    """One single-core SHA-1 pass over the file, read with readinto: the floor for create."""
    buf = bytearray(4 * MIB)
    view = memoryview(buf)
    h = hashlib.sha1()
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return time.perf_counter() - started


def make_input(folder: Path, size: int) -> Path:
    path = folder / f"bench-{size // MIB}MiB.bin"
    if not path.exists() or path.stat().st_size != size:
        with open(path, "wb") as f:
            left = size
            while left:
                chunk = os.urandom(min(left, 16 * MIB))
                f.write(chunk)
                left -= len(chunk)
    return path


# ---------------------------------------------------------------- zorrent
def run_zorrent(work: Path, src: Path, seeders: int, leechers: int, peer_args: tuple[str, ...] = (),
                cli: bool = False, keys: Path | None = None) -> Result:
    """With ``cli``, each leecher's download is the ``download`` command, timed as a user sees
    it: from the start of its process to its exit (Python start-up, imports, the control
    round trips, status polling and the statistics table included). With ``keys``, a private
    swarm (CURVE on every tcp socket)."""
    swarm = Swarm(work)
    if keys is not None:
        os.environ["ZORRENT_KEYS"] = str(keys)       # the nodes (Swarm.env) and this process's client
    try:
        swarm.tracker()
        seeds = [f"s{i}" for i in range(seeders)]
        leeches = [f"l{i}" for i in range(leechers)]
        for peer_id in seeds + leeches:
            swarm.peer(peer_id, *peer_args)
        info = None
        for peer_id in seeds:
            info = swarm.upload(src, peer_id)
        meta = metainfo.read(work / info["torrent"])
        os.environ["ZORRENT_OUTPUT"] = str(work / "output")      # the control sockets live there
        sent = {}
        done = {}
        if cli:
            for peer_id, (started, seconds) in _cli_downloads(swarm, work, info["torrent"], leeches).items():
                sent[peer_id], done[peer_id] = started, started + seconds
        else:
            for peer_id in leeches:
                sent[peer_id] = time.time()
                client.peer_control(peer_id, m.Download(metainfo=meta.raw, output=str(work / "out" / peer_id)))

        def all_done():
            for peer_id in leeches:
                if peer_id not in done:
                    job = client.peer_control(peer_id, m.Status(info_hash=meta.info_hash)).jobs[0]
                    if job.state == m.JobState.SEEDING.value:
                        done[peer_id] = sent[peer_id] + job.elapsed_s
                    elif job.state == m.JobState.FAILED.value:
                        raise SystemExit(f"zorrent download failed: {job.error}")
            return len(done) == len(leeches)

        if not cli:
            wait_for(all_done, timeout_s=600, what="zorrent downloads", interval_s=0.02)
        seconds = max(done.values()) - min(sent.values())
        for peer_id in leeches:
            if not filecmp.cmp(src, work / "out" / peer_id, shallow=False):
                raise SystemExit(f"zorrent wrote a wrong file for {peer_id}")
        pids = {name: proc.pid for name, proc, _ in swarm.procs}
        return Result(seconds, leechers * src.stat().st_size / 1e6 / seconds,
                      max(peak_rss_mib(pids[p]) for p in seeds), max(peak_rss_mib(pids[p]) for p in leeches))
    finally:
        swarm.close(failed=False)
        os.environ.pop("ZORRENT_OUTPUT", None)
        os.environ.pop("ZORRENT_KEYS", None)


def _cli_downloads(swarm: Swarm, work: Path, torrent: str, leeches: list[str]) -> dict[str, tuple[float, float]]:
    """Every leecher's ``download`` command at once: {peer: (start time, seconds to exit)}."""
    (work / "out").mkdir(exist_ok=True)
    runs = {}
    for peer_id in leeches:
        argv = swarm.argv("download", "--torrent", str(work / torrent), "--output", str(work / "out" / peer_id),
                          "--peer-id", peer_id, "--peer-port", str(swarm.peer_ports[peer_id]))
        started = time.time()
        runs[peer_id] = (started, time.perf_counter(), subprocess.Popen(
            argv, cwd=work, env=swarm.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    result = {}
    for peer_id, (started, t0, proc) in runs.items():
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"zorrent download for {peer_id} exited {proc.returncode}: {err.decode()[-500:]}")
        result[peer_id] = (started, time.perf_counter() - t0)
    return result


# ---------------------------------------------------------------- libtorrent
def run_libtorrent(work: Path, src: Path, torrent: Path, seeders: int, leechers: int) -> Result:
    procs = []
    node = [PY, str(REPO / "bench" / "lt_node.py"), "--torrent", str(torrent)]
    try:
        ports = []
        for i in range(seeders):
            ready = work / f"seed{i}.port"
            procs.append(("seed", subprocess.Popen(node + ["--role", "seeder", "--dir", str(src.parent),
                                                           "--ready", str(ready)], stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL)))
            ports.append(int(wait_for(lambda: ready.exists() and ready.read_text(), what="lt seeder")))
        go = work / "go.json"
        results = []
        for i in range(leechers):
            ready, out = work / f"leech{i}.port", work / f"leech{i}"
            out.mkdir()
            results.append(work / f"leech{i}.json")
            procs.append(("leech", subprocess.Popen(node + ["--role", "leecher", "--dir", str(out), "--ready",
                                                            str(ready), "--go", str(go), "--result", str(results[-1])],
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
            ports.append(int(wait_for(lambda: ready.exists() and ready.read_text(), what="lt leecher")))
        go.write_text(json.dumps(ports))
        wait_for(lambda: all(r.exists() for r in results), timeout_s=600, what="libtorrent downloads", interval_s=0.02)
        times = [json.loads(r.read_text()) for r in results]
        seconds = max(t["finished"] for t in times) - min(t["started"] for t in times)
        for i in range(leechers):
            if not filecmp.cmp(src, work / f"leech{i}" / src.name, shallow=False):
                raise SystemExit(f"libtorrent wrote a wrong file for leecher {i}")
        return Result(seconds, leechers * src.stat().st_size / 1e6 / seconds,
                      max(peak_rss_mib(p.pid) for r, p in procs if r == "seed"),
                      max(peak_rss_mib(p.pid) for r, p in procs if r == "leech"))
    finally:
        for _, proc in procs:
            kill_tree(proc)


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.0f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="256 MiB and no 4 GiB RSS check")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mib", type=int)
    ap.add_argument("--scenario", type=int, action="append", help="only these scenario numbers (1-3)")
    ap.add_argument("--dir", help="work directory (default: a temp dir)")
    ap.add_argument("--only", choices=["zorrent", "libtorrent"], help="run one side (for tuning; no ratios)")
    ap.add_argument("--no-extras", action="store_true", help="skip the create and RSS-flatness measurements")
    ap.add_argument("--disk-io", choices=["direct", "buffered"], help="zorrent peers' --disk-io (default: theirs)")
    ap.add_argument("--cli", action="store_true", help="time zorrent's downloads as the download command, from "
                    "process start to exit (libtorrent: its session's time to the finished file)")
    ap.add_argument("--keys", action="store_true",
                    help="also run zorrent as a private swarm (CURVE), alternating, and print the keyed/plain ratio")
    args = ap.parse_args()
    size = (args.size_mib or (256 if args.quick else 1024)) * MIB
    root = Path(args.dir or tempfile.mkdtemp(prefix="zorrent-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    inputs = root / "inputs"
    inputs.mkdir(exist_ok=True)
    src = make_input(inputs, size)
    sha1 = sha1_rate_mbps()
    meta = metainfo.create(src, "tcp://127.0.0.1:1")
    torrent = root / f"{src.name}.torrent"
    metainfo.write(meta, torrent)
    print(f"file {size // MIB} MiB, {meta.num_pieces} pieces of {meta.piece_length // 1024} KiB; "
          f"single-core SHA-1 {sha1:.0f} MB/s; {args.runs} runs each, alternating", flush=True)

    peer_args = ("--disk-io", args.disk_io) if args.disk_io else ()
    chosen = [SCENARIOS[i - 1] for i in (args.scenario or [1, 2, 3])]
    impls = [args.only] if args.only else ["zorrent", "libtorrent"]
    keys = None
    if args.keys:
        from node import curve

        keys = curve.make_swarm(root / f"keys-{os.getpid()}").folder
        impls.insert(impls.index("zorrent") + 1 if "zorrent" in impls else 0, CURVE)
    table = {name: {impl: [] for impl in impls} for name, _, _ in chosen}
    for run in range(args.runs):
        for name, seeders, leechers in chosen:
            for impl in impls:
                work = root / f"run{run}-{impl}-{seeders}x{leechers}"
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir()
                res = (run_zorrent(work, src, seeders, leechers, peer_args, args.cli) if impl == "zorrent"
                       else run_zorrent(work, src, seeders, leechers, peer_args, args.cli, keys) if impl == CURVE
                       else run_libtorrent(work, src, torrent, seeders, leechers))
                shutil.rmtree(work, ignore_errors=True)
                table[name][impl].append(res)
                print(f"  run {run + 1} {name:24s} {impl:13s} {res.mbps:7.0f} MB/s  {res.seconds:6.2f} s  "
                      f"RSS seeder {res.seed_rss_mib:5.0f} MiB, leecher {res.leech_rss_mib:5.0f} MiB", flush=True)

    if CURVE in impls and "zorrent" in impls:
        print(f"\n| scenario ({size // MIB} MiB) | zorrent MB/s | zorrent + CURVE MB/s | CURVE / plain | "
              f"seeder RSS MiB (plain / CURVE) |")
        print("|---|---|---|---|---|")
        for name, _, _ in chosen:
            z, c = table[name]["zorrent"], table[name][CURVE]
            zm, cm = statistics.median(r.mbps for r in z), statistics.median(r.mbps for r in c)
            print(f"| {name} | {zm:.0f} | {cm:.0f} | {cm / zm:.2f} | "
                  f"{fmt([r.seed_rss_mib for r in z])} / {fmt([r.seed_rss_mib for r in c])} |")
    if args.only or "libtorrent" not in impls:
        return 0
    print(f"\n| scenario ({size // MIB} MiB) | zorrent MB/s | libtorrent MB/s | zorrent / libtorrent | "
          f"zorrent / SHA-1 | seeder RSS MiB (z / lt) | leecher RSS MiB (z / lt) |")
    print("|---|---|---|---|---|---|---|")
    for name, _, _ in chosen:
        z, lt = table[name]["zorrent"], table[name]["libtorrent"]
        zm, lm = statistics.median(r.mbps for r in z), statistics.median(r.mbps for r in lt)
        print(f"| {name} | {zm:.0f} | {lm:.0f} | {zm / lm:.2f}x | {zm / sha1:.2f} | "
              f"{fmt([r.seed_rss_mib for r in z])} / {fmt([r.seed_rss_mib for r in lt])} | "
              f"{fmt([r.leech_rss_mib for r in z])} / {fmt([r.leech_rss_mib for r in lt])} |")

    if args.no_extras:
        return 0
    # create: hashing cost against a bare single-core SHA-1 pass (page cache warm for both)
    bare = min(bare_sha1_pass(src) for _ in range(3))
    create = []
    for _ in range(3):
        started = time.perf_counter()
        metainfo.create(src, "tcp://127.0.0.1:1")
        create.append(time.perf_counter() - started)
    print(f"\ncreate {size // MIB} MiB: {min(create):.2f} s; bare SHA-1 pass {bare:.2f} s; "
          f"ratio {min(create) / bare:.2f}x")

    if not args.quick:
        big = make_input(inputs, 4096 * MIB)
        small = make_input(inputs, 256 * MIB)
        rss = {}
        for f in (small, big):
            work = root / f"rss-{f.stat().st_size // MIB}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            rss[f.stat().st_size // MIB] = run_zorrent(work, f, 1, 1)
            shutil.rmtree(work, ignore_errors=True)
        print("\nzorrent peak RSS, 1 seeder -> 1 leecher: " + ", ".join(
            f"{k} MiB file: seeder {r.seed_rss_mib:.0f} MiB, leecher {r.leech_rss_mib:.0f} MiB ({r.mbps:.0f} MB/s)"
            for k, r in rss.items()))
        big.unlink()
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
