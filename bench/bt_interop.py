"""The BEP 3 wire against libtorrent, on loopback, in one run (issue 18's goals).

    python bench/bt_interop.py --size-mib 1024 --runs 3 [--cases AB] [--baseline DIR] [--profile DIR]

Cases, run alternately (A B C, A B C, ...) on one file, one torrent, each node its own
process:
- A  zorrent seed    -> libtorrent leecher   (zorrent's BEP 3 port serving)
- B  libtorrent seed -> libtorrent leecher   (the baseline for A and C: the same leecher,
                                              and a libtorrent leecher from the same seed)
- C  libtorrent seed -> zorrent leecher      (zorrent taking pieces over BEP 3)
- A0, C0 (``--baseline DIR``): A and C with another checkout's code (say main's, from
  ``git archive main | tar -x -C DIR``, with this script copied into DIR/bench), in the
  same run, alternating with the rest: before/after figures on a shared machine.

Ratios: A / B (goal >= 1: a zorrent seed is at least as fast as a libtorrent one) and
C / B (goal >= 1). Each row also gives the CPU seconds the seed's and the leecher's
processes used during the transfer (on 2 shared cores, one side's CPU is the other's
wait). Every output is compared byte for byte. Medians; the machine is shared.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench import MIB, make_input  # noqa: E402
from ctl import client  # noqa: E402
from protocol import messages as m  # noqa: E402
from protocol import metainfo  # noqa: E402
from tests.procs import PY, Swarm, kill_tree, wait_for  # noqa: E402

LT_NODE = [PY, str(REPO / "bench" / "lt_node.py")]
PROFILE: Path | None = None     # --profile DIR: py-spy records the zorrent process of A and C there


@contextmanager
def profiled(swarm: Swarm, name: str, label: str):
    """py-spy (if --profile) on zorrent peer ``name`` while the body runs: collapsed stacks."""
    spy_bin = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if PROFILE is None or not spy_bin:
        yield
        return
    pid = next(proc.pid for n, proc, _ in swarm.procs if n == name)
    out = PROFILE / f"{label}.txt"
    spy = subprocess.Popen([spy_bin, "record", "-p", str(pid), "-r", "200", "-f", "raw", "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(2)
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill_tree(spy)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process and its children have used so far."""
    try:
        proc = psutil.Process(pid)
        return sum(sum(p.cpu_times()[:2]) for p in [proc, *proc.children(recursive=True)])
    except psutil.Error:
        return 0.0


def lt_seed(work: Path, torrent: Path, src: Path) -> tuple[subprocess.Popen, int]:
    ready = work / "ltseed.port"
    proc = subprocess.Popen(LT_NODE + ["--role", "seeder", "--torrent", str(torrent), "--dir", str(src.parent),
                                       "--ready", str(ready)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, int(wait_for(lambda: ready.exists() and ready.read_text(), what="lt seeder"))


def lt_leech(work: Path, torrent: Path, src: Path, port: int, seed_pid: int) -> tuple[float, float, float]:
    """(seconds, the seed's CPU seconds, the leecher's) of a libtorrent download from ``port``."""
    ready, out, result, go = work / "ltleech.port", work / "ltleech", work / "ltleech.json", work / "go.json"
    out.mkdir()
    proc = subprocess.Popen(LT_NODE + ["--role", "leecher", "--torrent", str(torrent), "--dir", str(out), "--ready",
                                       str(ready), "--go", str(go), "--result", str(result)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: ready.exists() and ready.read_text(), what="lt leecher")
        seed0, leech0 = cpu_s(seed_pid), cpu_s(proc.pid)
        go.write_text(json.dumps([port]))
        wait_for(lambda: result.exists() and result.read_text(), timeout_s=600, what="libtorrent download",
                 interval_s=0.02)
        seed_cpu, leech_cpu = cpu_s(seed_pid) - seed0, cpu_s(proc.pid) - leech0
        t = json.loads(result.read_text())
        if not filecmp.cmp(src, out / src.name, shallow=False):
            raise SystemExit("libtorrent wrote a wrong file")
        return t["finished"] - t["started"], seed_cpu, leech_cpu
    finally:
        kill_tree(proc)


def case_a(work: Path, torrent: Path, src: Path) -> tuple[float, float, float]:
    swarm = Swarm(work)
    try:
        swarm.tracker()
        swarm.peer("s0")
        (work / "output" / "torrents").mkdir(parents=True, exist_ok=True)
        shutil.copy(torrent, work / "output" / "torrents" / f"{src.name}.torrent")   # the leecher's torrent
        swarm.upload(src, "s0")
        port = int((work / "s0.ready.bt").read_text())
        pid = next(proc.pid for n, proc, _ in swarm.procs if n == "s0")
        with profiled(swarm, "s0", work.name):
            return lt_leech(work, torrent, src, port, pid)
    finally:
        swarm.close(failed=False)


def case_b(work: Path, torrent: Path, src: Path) -> tuple[float, float, float]:
    seed, port = lt_seed(work, torrent, src)
    try:
        return lt_leech(work, torrent, src, port, seed.pid)
    finally:
        kill_tree(seed)


def case_c(work: Path, torrent: Path, src: Path) -> tuple[float, float, float]:
    seed, port = lt_seed(work, torrent, src)
    swarm = Swarm(work)
    try:
        swarm.tracker()
        swarm.peer("l0")
        pid = next(proc.pid for n, proc, _ in swarm.procs if n == "l0")
        meta = metainfo.read(torrent)
        os.environ["ZORRENT_OUTPUT"] = str(work / "output")
        seed0, leech0 = cpu_s(seed.pid), cpu_s(pid)
        client.peer_control("l0", m.Download(metainfo=meta.raw, output=str(work / "out.bin"),
                                             peers=[f"127.0.0.1:{port}"]))

        def done():
            job = client.peer_control("l0", m.Status(info_hash=meta.info_hash)).jobs[0]
            if job.state == m.JobState.FAILED.value:
                raise SystemExit(f"zorrent download failed: {job.error}")
            return job.elapsed_s if job.state == m.JobState.SEEDING.value else None

        with profiled(swarm, "l0", work.name):
            seconds = wait_for(done, timeout_s=600, what="zorrent download", interval_s=0.02)
        cpu = cpu_s(seed.pid) - seed0, cpu_s(pid) - leech0
        if not filecmp.cmp(src, work / "out.bin", shallow=False):
            raise SystemExit("zorrent wrote a wrong file")
        return seconds, *cpu
    finally:
        swarm.close(failed=False)
        os.environ.pop("ZORRENT_OUTPUT", None)
        kill_tree(seed)


CASES = {"A": ("zorrent seed -> lt leecher", case_a), "B": ("lt seed -> lt leecher", case_b),
         "C": ("lt seed -> zorrent leecher", case_c)}


def run_case(letter: str, work: Path, torrent: Path, src: Path, baseline: Path | None) -> tuple[float, float, float]:
    """One case in a fresh folder: with this tree's code, or (``baseline``) another tree's,
    in a child process running that tree's copy of this script (``--one``)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        if baseline is None:
            return CASES[letter][1](work, torrent, src)
        res = subprocess.run([PY, str(baseline / "bench" / "bt_interop.py"), "--one", letter, "--dir", str(work),
                              "--torrent", str(torrent), "--src", str(src)],
                             env={**os.environ, "PYTHONPATH": str(baseline)}, capture_output=True, text=True,
                             timeout=900)
        if res.returncode:
            raise SystemExit(f"baseline case {letter} failed: {res.stderr.strip()[-2000:]}")
        return tuple(json.loads(res.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir")
    ap.add_argument("--cases", default="ABC", help="which cases to run (letters), e.g. AB")
    ap.add_argument("--baseline", help="another checkout (e.g. `git worktree add /tmp/base main`, with this "
                                       "script copied in): its code runs A and C too, as A0 and C0")
    ap.add_argument("--profile", help="a folder: py-spy records the zorrent process of A and C there")
    ap.add_argument("--one", help=argparse.SUPPRESS)        # a child run: this case only, JSON on stdout
    ap.add_argument("--torrent", help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global PROFILE
    if args.profile:
        PROFILE = Path(args.profile)
        PROFILE.mkdir(parents=True, exist_ok=True)
    if args.one:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
        print(json.dumps(CASES[args.one][1](Path(args.dir), Path(args.torrent), Path(args.src))))
        return 0
    baseline = Path(args.baseline).resolve() if args.baseline else None
    plan = [(letter, None) for letter in CASES if letter in args.cases.upper()]
    if baseline is not None:
        plan += [(letter, baseline) for letter in "AC" if letter in args.cases.upper()]
    root = Path(args.dir or tempfile.mkdtemp(prefix="zorrent-bt-bench-"))
    (root / "inputs").mkdir(parents=True, exist_ok=True)
    src = make_input(root / "inputs", args.size_mib * MIB)
    meta = metainfo.create(src, "tcp://127.0.0.1:1")
    torrent = root / f"{src.name}.torrent"
    metainfo.write(meta, torrent)
    print(f"file {args.size_mib} MiB, {meta.num_pieces} pieces of {meta.piece_length // 1024} KiB; "
          f"{args.runs} runs each, alternating; loopback, shared machine"
          + (f"; A0/C0 = the code of {baseline}" if baseline else ""), flush=True)
    size_mb = src.stat().st_size / 1e6
    results: dict[str, list[tuple[float, float, float]]] = {}
    for run in range(args.runs):
        for letter, base in plan:
            name = letter + ("0" if base else "")
            r = run_case(letter, root / f"run{run}-{name}", torrent, src, base)
            results.setdefault(name, []).append(r)
            print(f"  run {run + 1} {name:2s} {CASES[letter][0]:28s} {size_mb / r[0]:7.0f} MB/s  {r[0]:6.2f} s"
                  f"  CPU seed {r[1]:5.2f} s, leecher {r[2]:5.2f} s", flush=True)
    med = {name: [statistics.median(x[k] for x in v) for k in range(3)] for name, v in results.items()}
    print(f"\n| case ({args.size_mib} MiB, median of {args.runs}) | MB/s | ratio to B | seed CPU s | leecher CPU s |")
    print("|---|---|---|---|---|")
    base_rate = size_mb / med["B"][0] if "B" in med else None
    for name, (seconds, seed_cpu, leech_cpu) in med.items():
        rate = size_mb / seconds
        ratio = f"{rate / base_rate:.2f}x" if base_rate else "-"
        label = CASES[name[0]][0] + (" (baseline code)" if name.endswith("0") else "")
        print(f"| {name} {label} | {rate:.0f} | {ratio} | {seed_cpu:.2f} | {leech_cpu:.2f} |")
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
