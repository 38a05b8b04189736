"""A timeline of the 1 GiB ``download`` command, as a user runs it, with each process's CPU.

    python bench/cli_timeline.py --size-mib 1024 --runs 2

One tracker, one seeder and one leecher on loopback, a fresh swarm per run. The command runs
as ``python main.py download ...`` under a thin wrapper (bench/_cli_stamps.py) that stamps,
on the system-wide monotonic clock: the wrapper's first line (interpreter start-up done),
the imports, each control round trip, each status poll (with the bytes done), the end seen,
the statistics printed and the atexit hook. This script stamps the process's start and exit,
and reads the job's own span (``elapsed_s``, from its creation to its last verified piece)
and the leecher's disk line. It prints the timeline relative to the process start, and the
CPU seconds (user + system) of every process, and of each leecher and seeder thread, over
the command's life.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench import make_input  # noqa: E402
from bench.profile_swarm import threads, usage  # noqa: E402
from tests.procs import PY, Swarm  # noqa: E402

MIB = 1024 * 1024


class Blocked:
    """Samples, every 5 ms while the command runs, each seeder and leecher thread that is in
    uninterruptible sleep (state D: waiting on the disk or the filesystem), with the top of
    its kernel stack: where a stalled run waited."""

    def __init__(self, pids: dict[str, int]):
        import threading

        self.pids, self.seen, self.t0 = pids, {}, time.monotonic()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.005):
            for name, pid in self.pids.items():
                for task in Path(f"/proc/{pid}/task").glob("*"):
                    try:
                        if stat_state(task / "stat") != "D":
                            continue
                        stack = (task / "stack").read_text().split("\n")[:3]
                    except OSError:
                        continue
                    where = " < ".join(line.split("] ")[-1].split("+")[0] for line in stack if line)
                    key = (name, where)
                    self.seen[key] = self.seen.get(key, 0) + 1

    def report(self) -> list[str]:
        self.stop.set()
        self.thread.join()
        return [f"{n * 5} ms  {name}: {where}" for (name, where), n in
                sorted(self.seen.items(), key=lambda kv: -kv[1])[:6]]


def stat_state(path: Path) -> str:
    return path.read_text().rpartition(")")[2].split()[0]


def one_run(work: Path, src: Path, waits: bool = False, disk_io: str | None = None) -> dict:
    swarm = Swarm(work)
    try:
        swarm.tracker()
        swarm.peer("s0")
        swarm.peer("l0", *(["--disk-io", disk_io] if disk_io else []))
        info = swarm.upload(src, "s0")
        pids = {name: proc.pid for name, proc, _ in swarm.procs}
        stamps = work / "stamps.json"
        argv = [PY, str(REPO / "bench" / "_cli_stamps.py"), "download", "--torrent", str(work / info["torrent"]),
                "--output", str(work / "out.bin"), "--peer-id", "l0", "--peer-port", str(swarm.peer_ports["l0"])]
        env = swarm.env()
        env["ZORRENT_STAMPS"] = str(stamps)
        before = {name: usage(pid) for name, pid in pids.items()}
        before_threads = {p: threads(pids[p]) for p in ("s0", "l0")}
        blocked = Blocked({p: pids[p] for p in ("s0", "l0")}) if waits else None
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # the command's own CPU: wait4 gives the child's rusage
        _, status, ru = os.wait4(proc.pid, 0)
        t_exit = time.monotonic()
        waits = blocked.report() if blocked is not None else []
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"download exited {proc.returncode}: {proc.stderr.read().decode()[-800:]}")
        cpu = {name: tuple(a - b for a, b in zip(usage(pid), before[name])) for name, pid in pids.items()}
        cpu["download"] = (ru.ru_utime, ru.ru_stime, ru.ru_minflt)
        thr = {}
        for p, was in before_threads.items():
            now = threads(pids[p])
            thr[p] = {n: round(now[n] - was.get(n, 0), 2) for n in sorted(now) if now[n] - was.get(n, 0) >= 0.01}
        marks = json.loads(stamps.read_text())
        disk = [line.partition(": ")[2] for line in swarm.log("l0").splitlines() if "hashed in" in line]
        if not filecmp_same(src, work / "out.bin"):
            raise SystemExit("wrong file")
        return {"t0": t0, "exit": t_exit, "marks": marks, "cpu": cpu, "threads": thr,
                "disk": disk[-1] if disk else "", "blocked": waits}
    finally:
        swarm.close(failed=False)


def filecmp_same(a: Path, b: Path) -> bool:
    import filecmp

    return filecmp.cmp(a, b, shallow=False)


def show(res: dict, size: int) -> None:
    t0 = res["t0"]
    total = res["exit"] - t0
    print(f"  command {total:.3f} s ({size / 1e6 / total:.0f} MB/s)")
    prev = 0.0
    elapsed = None
    for name, t, extra in res["marks"]:
        at = t - t0
        if name == "poll" and extra.get("state") == "seeding":
            elapsed = extra.get("elapsed_s")
        label = name + (f" {extra}" if extra else "")
        print(f"  {at * 1000:8.1f} ms  (+{(at - prev) * 1000:6.1f})  {label}")
        prev = at
    print(f"  {total * 1000:8.1f} ms  (+{(total - prev) * 1000:6.1f})  exit")
    if elapsed is not None:
        print(f"  the job's own span (creation to last verified piece): {elapsed:.3f} s "
              f"({size / 1e6 / elapsed:.0f} MB/s); outside it {total - elapsed:.3f} s")
    print("  " + res["disk"])
    for line in res["blocked"]:
        print("  in D state (disk/filesystem wait), sampled: " + line)
    allcpu = 0.0
    for name, (user, system, minflt) in res["cpu"].items():
        allcpu += user + system
        print(f"  cpu {name:9s} user {user:5.2f} s  sys {system:5.2f} s  minor faults {minflt}")
    print(f"  cpu all {allcpu:.2f} s over {total:.2f} s ({allcpu / total:.2f} cores)")
    for p, per in res["threads"].items():
        print(f"  {p} threads: " + ", ".join(f"{n} {v:.2f}" for n, v in per.items()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--waits", action="store_true",
                    help="sample the seeder's and leecher's threads in D state (disk waits), with their kernel stacks")
    ap.add_argument("--disk-io", choices=["direct", "buffered"], help="the leecher's --disk-io (default: its own)")
    ap.add_argument("--dir", help="where the input file is kept (default: a temp dir)")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="zorrent-timeline-"))
    root.mkdir(parents=True, exist_ok=True)
    src = make_input(root, args.size_mib * MIB)
    try:
        for run in range(args.runs):
            work = root / f"run{run}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            print(f"run {run + 1}: {args.size_mib} MiB, code {REPO}", flush=True)
            show(one_run(work, src, args.waits, args.disk_io), src.stat().st_size)
            shutil.rmtree(work, ignore_errors=True)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
