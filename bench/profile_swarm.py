"""Profile one zorrent transfer with py-spy: which functions the seeder and leecher spend time in.

    python bench/profile_swarm.py --seeders 3 --leechers 1 --size-mib 512
    python bench/profile_swarm.py --seeders 1 --leechers 3 --no-spy --perf /tmp/p.data

Runs the scenario on real processes, samples every seeder and leecher with py-spy
and prints the top self-time frames. It also prints, for the transfer only:
- where each leecher's pieces came from;
- each leecher's disk figures: hash and write thread time, and how long a write was in
  flight (near 100%, the disk is what limits the download);
- each process's CPU time and minor faults, and each thread's CPU time.

``--perf`` also records the whole machine (kernel included) during the transfer only;
read it with ``perf report -i FILE --sort comm,dso`` or ``--sort sym``.
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench import make_input  # noqa: E402
from ctl import client  # noqa: E402
from protocol import messages as m  # noqa: E402
from protocol import metainfo  # noqa: E402
from tests.procs import Swarm, wait_for  # noqa: E402

PY_SPY = str(Path(sys.executable).parent / "py-spy")


def top(raw: Path, n: int = 14) -> list[tuple[str, float]]:
    """Self time per leaf frame from py-spy's collapsed-stack output."""
    counts, total = collections.Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, num = line.rpartition(" ")
        leaf = stack.split(";")[-1]
        counts[leaf] += int(num)
        total += int(num)
    return [(f, 100 * c / total) for f, c in counts.most_common(n)]


def stat_fields(path: Path) -> list[str]:
    """/proc/.../stat after the command name: [0] is state, [7] minflt, [11] utime, [12] stime."""
    return path.read_text().rpartition(")")[2].split()


def usage(pid: int) -> tuple[float, float, int]:
    """(user s, system s, minor faults) of a process so far."""
    t = psutil.Process(pid).cpu_times()
    return t.user, t.system, int(stat_fields(Path(f"/proc/{pid}/stat"))[7])


def threads(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of each thread of a process, by thread name and id."""
    out: dict[str, float] = collections.Counter()
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = stat_fields(task / "stat")
        except OSError:
            continue
        out[f"{name}/{task.name}"] += (int(fields[11]) + int(fields[12])) / tick
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeders", type=int, default=1)
    ap.add_argument("--leechers", type=int, default=1)
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, py-spy output)")
    ap.add_argument("--no-spy", action="store_true", help="only the per-peer sources, no sampling")
    ap.add_argument("--perf", metavar="FILE", help="also record the whole machine with perf (kernel time "
                                                 "included) during the transfer only, into FILE")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zorrent-prof-"))
    src = make_input(work, args.size_mib * 1024 * 1024)
    swarm = Swarm(work)
    try:
        swarm.tracker()
        seeds = [f"s{i}" for i in range(args.seeders)]
        leeches = [f"l{i}" for i in range(args.leechers)]
        for p in seeds + leeches:
            swarm.peer(p)
        for p in seeds:
            info = swarm.upload(src, p)
        meta = metainfo.read(work / info["torrent"])
        os.environ["ZORRENT_OUTPUT"] = str(work / "output")
        pids = {name: proc.pid for name, proc, _ in swarm.procs}
        spies = {p: subprocess.Popen([PY_SPY, "record", "--pid", str(pids[p]), "--rate", "250", "--format", "raw",
                                      "--nonblocking", "-o", str(work / f"{p}.raw")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for p in ([] if args.no_spy else seeds + leeches)}
        time.sleep(0 if args.no_spy else 1.0)
        perf = (subprocess.Popen(["perf", "record", "-a", "-F", "999", "-o", args.perf],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if args.perf else None)
        if perf:
            time.sleep(0.1)   # perf is sampling before the first request
        before = {name: usage(pid) for name, pid in pids.items()}
        before_threads = {p: threads(pids[p]) for p in seeds + leeches}
        for p in leeches:
            client.peer_control(p, m.Download(metainfo=meta.raw, output=str(work / "out" / p)))
        wait_for(lambda: all(client.peer_control(p, m.Status(info_hash=meta.info_hash)).jobs[0].state == "seeding"
                             for p in leeches), timeout_s=300, interval_s=0.05)
        if perf:
            perf.send_signal(2)
            perf.wait(30)
        for p in leeches:
            job = client.peer_control(p, m.Status(info_hash=meta.info_hash)).jobs[0]
            print(f"{p}: {meta.length / 1e6 / job.elapsed_s:.0f} MB/s in {job.elapsed_s:.2f} s; pieces from "
                  + ", ".join(f"{s.peer_id} {s.pieces}" for s in job.peers))
            disk = [line for line in swarm.log(p).splitlines() if "hashed in" in line]
            print("  " + (disk[-1].partition(": ")[2] if disk else "(no disk figures in the log)"))
        for p, was in before_threads.items():
            now = threads(pids[p])
            print(f"  {p} threads, CPU s during the transfer: "
                  + ", ".join(f"{n} {now[n] - was.get(n, 0):.2f}" for n in sorted(now)
                            if now[n] - was.get(n, 0) >= 0.01))
        print("  during the transfer:")
        for name in ["tracker"] + seeds + leeches:
            if name in pids:
                user, system, minflt = (a - b for a, b in zip(usage(pids[name]), before[name]))
                print(f"  cpu {name:8s} user {user:6.2f} s  sys {system:6.2f} s  minor faults {minflt}")
        for spy in spies.values():
            spy.send_signal(2)
            spy.wait(30)
        for p in ([] if args.no_spy else seeds[:1] + leeches[:1]):
            print(f"\n{p}: top self time (% of samples, idle included)")
            for frame, pct in top(work / f"{p}.raw"):
                print(f"  {pct:5.1f}%  {frame}")
    finally:
        swarm.close(failed=False)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
