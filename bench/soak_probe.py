"""Watch a running soak from beside it: what the machine's load is made of, every few seconds.

    python bench/soak_probe.py --every 15 --out /tmp/probe.jsonl [--spy-top 2 --spy-s 5]

Each sample prints one line: the 1-min load, the CPU (% of one core over the interval) and
RSS of the tracker, the web view, supervisord, the soak and the peers (sum, count, the
busiest few by name), and each group's threads running or waiting for a CPU (R) and in disk waits (D): its share of the load. With ``--spy-top N`` it also takes
a ``py-spy dump`` of the N busiest peers and of the tracker (what they were doing), into
the JSONL file. It finds the swarm's processes by their command line
(``-m ctl peer --peer-id ID``, ``-m ctl tracker``, ``-m ctl web``), so it needs no
handle on the soak. It stops when no peer is left for two samples, or after --max-s.
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

import psutil

MIB = 1024 * 1024


def role(cmd: list[str]) -> str | None:
    """'tracker', 'web', 'supervisord', 'soak', 'peer:ID' or None for a process of no interest."""
    if not cmd:
        return None
    joined = " ".join(cmd)
    if "supervisord" in joined and "-m ctl" not in joined:
        return "supervisord"
    if "-m" in cmd and "ctl" in cmd:
        rest = cmd[cmd.index("ctl") + 1:]
        if "peer" in rest and "--peer-id" in rest:
            return "peer:" + rest[rest.index("--peer-id") + 1]
        if "tracker" in rest:
            return "tracker"
        if "web" in rest:
            return "web"
    if "main.py" in joined and "soak" in cmd:
        return "soak"
    return None


def scan(known: dict[int, tuple[str, psutil.Process]], under: str = "") -> None:
    """Add the swarm's new processes to ``known``: with ``under``, only the supervisord whose
    command line names that path, its children, and the soak that names it (other swarms on
    the machine, tests' trackers and peers, are left out)."""
    procs = list(psutil.process_iter(["pid", "ppid", "cmdline"]))
    roots = {p.pid for p in procs if under and under in " ".join(p.info["cmdline"] or [])}
    for p in procs:
        if p.pid in known:
            continue
        if under and p.pid not in roots and p.info["ppid"] not in roots:
            continue
        r = role(p.info["cmdline"] or [])
        if r:
            known[p.pid] = (r, p)


def runnable(pid: int) -> tuple[int, int, list[str]]:
    """Threads of ``pid`` now running or waiting for a CPU (R), and in uninterruptible sleep
    (D: disk I/O, fsync): both count in the load average. Also the names of the D ones."""
    r = d = 0
    names = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    text = f.read()
            except OSError:
                continue
            state = text.rpartition(")")[2].split()[0]
            if state == "R":
                r += 1
            elif state == "D":
                d += 1
                names.append(text[text.find("(") + 1:text.rfind(")")])
    except OSError:
        pass
    return r, d, names


def cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def spy(pid: int, seconds: float) -> dict[str, int]:
    """py-spy's samples of ``pid`` over ``seconds``, as collapsed stacks -> count (idle
    samples left out): where a busy process spends its CPU."""
    exe = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        try:
            subprocess.run([exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", "200",
                            "--format", "raw", "--nonblocking", "--output", f.name],
                           capture_output=True, text=True, timeout=seconds + 20)
            lines = open(f.name).read().splitlines()
        except (OSError, subprocess.TimeoutExpired):
            return {}
    out = {}
    for line in lines:
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            out[stack] = out.get(stack, 0) + int(n)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=float, default=15.0)
    ap.add_argument("--out", default="")
    ap.add_argument("--top", type=int, default=5, help="busiest peers named per line")
    ap.add_argument("--spy-top", type=int, default=0, help="py-spy record of this many busiest peers per sample")
    ap.add_argument("--spy-s", type=float, default=3.0, help="seconds of each py-spy record")
    ap.add_argument("--max-s", type=float, default=1800.0)
    ap.add_argument("--under", default="", help="only the swarm whose supervisord (and soak) name this path")
    args = ap.parse_args()
    out = open(args.out, "a") if args.out else None
    known: dict[int, tuple[str, psutil.Process]] = {}
    last: dict[int, float] = {}
    t0 = time.monotonic()
    prev_t = t0
    empty = 0
    seen_peers = False
    while time.monotonic() - t0 < args.max_s:
        scan(known, args.under)
        now = time.monotonic()
        dt = max(1e-3, now - prev_t)
        prev_t = now
        rows = []
        dnames: dict[str, int] = {}
        for pid, (r, p) in list(known.items()):
            try:
                c, rss, nth = cpu_s(p), p.memory_info().rss / MIB, runnable(pid)
                for name in nth[2]:
                    dnames[name] = dnames.get(name, 0) + 1
            except psutil.Error:
                del known[pid]
                last.pop(pid, None)
                continue
            pct = 100.0 * (c - last[pid]) / dt if pid in last else 0.0
            last[pid] = c
            rows.append((r, pid, pct, rss, nth))
        peers = [x for x in rows if x[0].startswith("peer:")]
        seen_peers = seen_peers or bool(peers)
        empty = empty + 1 if seen_peers and not peers else 0
        if empty >= 2:
            break
        groups = {}
        for r, pid, pct, rss, nth in rows:
            g = "peers" if r.startswith("peer:") else r
            s = groups.setdefault(g, [0.0, 0.0, 0, 0, 0])
            s[0] += pct
            s[1] += rss
            s[2] += 1
            s[3] += nth[0]
            s[4] += nth[1]
        busy = sorted(peers, key=lambda x: -x[2])[: args.top]
        rss_sorted = sorted(x[3] for x in peers)
        sample = {
            "t": round(now - t0, 1), "utc": time.strftime("%H:%M:%S", time.gmtime()),
            "load1": os.getloadavg()[0],
            "groups": {g: {"cpu_pct": round(v[0], 1), "rss_mib": round(v[1], 1), "n": v[2], "R": v[3], "D": v[4]}
                       for g, v in groups.items()},
            "busy": [[r[5:], round(pct, 1), round(rss, 1)] for r, _, pct, rss, _ in busy],
            "peer_rss_median": rss_sorted[len(rss_sorted) // 2] if rss_sorted else 0,
            "peer_rss_max": rss_sorted[-1] if rss_sorted else 0,
            "peers_over_5pct": sum(1 for x in peers if x[2] > 5),
            "peers_over_1pct": sum(1 for x in peers if x[2] > 1),
        }
        if args.spy_top and busy:
            sample["spy"] = {r: spy(pid, args.spy_s) for r, pid, *_ in busy[: args.spy_top]}
            for g in ("tracker", "web"):
                tr = [x for x in rows if x[0] == g]
                if tr:
                    sample["spy"][g] = spy(tr[0][1], args.spy_s)
        sample["R"] = sum(v[3] for v in groups.values())
        sample["D"] = sum(v[4] for v in groups.values())
        sample["D_threads"] = dnames
        try:
            sample["io_full_avg10"] = float(open("/proc/pressure/io").read().split("full avg10=")[1].split()[0])
        except (OSError, IndexError, ValueError):
            sample["io_full_avg10"] = -1.0
        gtxt = " ".join(f"{g}={v['cpu_pct']:.0f}%/{v['rss_mib']:.0f}M/n{v['n']}/R{v['R']}D{v['D']}"
                        for g, v in sorted(sample["groups"].items()))
        btxt = " ".join(f"{n}:{c:.0f}%" for n, c, _ in sample["busy"])
        print(f"{sample['utc']} load {sample['load1']:.1f} ours R{sample['R']} D{sample['D']} "
              f"io-full {sample['io_full_avg10']:.0f}% {gtxt} >5%:{sample['peers_over_5pct']} "
              f">1%:{sample['peers_over_1pct']} rss med/max {sample['peer_rss_median']:.1f}/"
              f"{sample['peer_rss_max']:.1f} | {btxt}", flush=True)
        if out:
            out.write(json.dumps(sample) + "\n")
            out.flush()
        time.sleep(max(0.0, args.every - (time.monotonic() - now)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
