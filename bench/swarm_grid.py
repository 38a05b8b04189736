"""The cases bench/swarm.py runs: the three named regimes of `make bench-swarm`, and a grid
over the space of swarms (issue 19), plus what the runner measures besides time: each
uplink's use (HTB counters) and the machine's CPU.

A case's bound is the minimum distribution time (Kumar & Ross 2006), with several seeds
counted as one server of their summed upload (each holds the whole file):

    T_min = max(F / u_S,  N * F / (u_S + sum(u_i)))

In waves, T_min stays the bound of a single start (the issue's definition), which the
schedule alone can exceed (a second wave 10 s after a 7 s bound). Such cells are judged
against libtorrent, and also against a bound of their own, ``t_bound``: the first wave
cannot finish sooner than its own T_min, nor the second sooner than its start plus the
T_min of a swarm where the first wave has become seeds (the most it can have by then):

    T_waves = max(T_min(wave 1),  start_2 + max(F / u_2,  N_2 * F / (u_2 + sum(u_i of wave 2))))

with u_2 = the seeds' upload plus wave 1's. Both terms are lower bounds, so T_waves is one.
"""
from __future__ import annotations

import itertools
import re
import subprocess
import threading
import time
from dataclasses import dataclass, replace

import psutil

MIB = 1024 * 1024
TRACE_S = 0.5
CPU_LIMIT_PCT = 90.0        # the machine busier than this over a run (by anyone): the CPU, not only the links, may be the limit


@dataclass(frozen=True)
class Regime:
    name: str
    seed_mbit: float
    leech_mbit: tuple          # one cap per leecher
    size_mib: int
    loss_pct: float = 0.0
    seeds: int = 1
    wave_s: float = 0.0        # 0: every leecher at once; else half at once, the rest this much later
    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    piece_kib: int = 0         # 0: the torrent's own choice (protocol/metainfo.py auto_piece_length)

    @property
    def leechers(self) -> int:
        return len(self.leech_mbit)

    def t_min(self, goodput: float = 1.0) -> float:
        bits = self.size_mib * MIB * 8
        us = self.seeds * self.seed_mbit * 1e6 * goodput
        return max(bits / us, self.leechers * bits / (us + sum(self.leech_mbit) * 1e6 * goodput))

    def t_bound(self, goodput: float = 1.0) -> float:
        """The case's bound: T_min, or with waves T_waves (the module's docstring)."""
        if not self.wave_s:
            return self.t_min(goodput)
        half = (self.leechers + 1) // 2           # bench/swarm.py waves(): the first half at once
        first, second = self.leech_mbit[:half], self.leech_mbit[half:]
        t1 = replace(self, leech_mbit=first, wave_s=0.0).t_min(goodput)
        servers = self.seeds * self.seed_mbit + sum(first)
        bits = self.size_mib * MIB * 8
        u2 = servers * 1e6 * goodput
        t2 = max(bits / u2, len(second) * bits / (u2 + sum(second) * 1e6 * goodput))
        return max(t1, self.wave_s + t2)

    def goal(self) -> float:
        return 1.15 if self.rtt_ms >= 100 else 1.10

    def scaled(self, factor: float) -> "Regime":
        """Every rate times ``factor`` (the file stays): for when the CPU limits before the links."""
        return replace(self, seed_mbit=self.seed_mbit * factor,
                       leech_mbit=tuple(round(u * factor, 3) for u in self.leech_mbit),
                       name=f"{self.name} @{factor:g}x rates")

    def describe(self) -> str:
        ups = sorted(set(self.leech_mbit))
        up = f"{ups[0]:g}" if len(ups) == 1 else f"{min(ups):g}-{max(ups):g}"
        return (f"{self.size_mib} MiB, {self.seeds} seed(s) at {self.seed_mbit:g} Mbit/s, {self.leechers} leechers "
                f"at {up} Mbit/s, {'waves ' + format(self.wave_s, 'g') + ' s' if self.wave_s else 'at once'}, "
                f"RTT {self.rtt_ms:g} ms, loss {self.loss_pct:g}%")


def uniform(n: int, mbit: float) -> tuple:
    return (float(mbit),) * n


def mixed(n: int, low: float = 10.0, high: float = 100.0) -> tuple:
    """``n`` uplinks spread evenly from ``low`` to ``high``, in an order that alternates ends,
    so a first wave holds slow and fast leechers alike."""
    ups = [round(low + (high - low) * i / max(1, n - 1), 1) for i in range(n)]
    return tuple(ups[i // 2] if i % 2 == 0 else ups[n - 1 - i // 2] for i in range(n))


REGIMES = [
    Regime("seed-bound", 20, uniform(6, 100), 128),
    Regime("peer-bound", 100, uniform(6, 50), 256),
    Regime("peer-bound, 2% loss", 100, uniform(6, 50), 128, 2.0),
]

# The grid's axes (issue 19). A seed is a server at 100 Mbit/s; uniform leechers are at 50.
AXES = {
    "leechers": [4, 12, 24],
    "sizes": [64, 256, 1024],
    "uplinks": ["uniform", "mixed"],
    "seeds": [1, 2],
    "starts": ["once", "waves"],
    "rtts": [0, 20, 100],
}
SEED_MBIT, UNIFORM_MBIT, WAVE_S = 100.0, 50.0, 10.0


def grid(**only) -> list[Regime]:
    """Every cell of the grid, or of the axes' values given in ``only`` (lists)."""
    axes = {k: only.get(k) or v for k, v in AXES.items()}
    cells = []
    for n, size, up, seeds, start, rtt in itertools.product(*(axes[k] for k in AXES)):
        ups = uniform(n, UNIFORM_MBIT) if up == "uniform" else mixed(n)
        name = f"n{n} {size}M {up} s{seeds} {start} rtt{rtt:g}"
        cells.append(Regime(name, SEED_MBIT, ups, int(size), seeds=int(seeds),
                            wave_s=WAVE_S if start == "waves" else 0.0, rtt_ms=float(rtt)))
    return cells


def link_bytes(host) -> int:
    out = subprocess.run(host.argv("tc", "-s", "class", "show", "dev", "eth0"), capture_output=True, text=True).stdout
    found = re.search(r"Sent (\d+) bytes", out)
    return int(found.group(1)) if found else 0


class Tracer:
    """Samples every capped link's byte counter each TRACE_S, to show when each uplink was busy."""

    def __init__(self, hosts: list, on: bool) -> None:
        self.hosts, self.samples, self.stop = hosts, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True) if on else None

    def __enter__(self) -> "Tracer":
        if self.thread:
            self.t0 = time.time()
            self.samples.append((0.0, {h.name: link_bytes(h) for h in self.hosts}))
            self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(TRACE_S):
            self.samples.append((time.time() - self.t0, {h.name: link_bytes(h) for h in self.hosts}))

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread:
            self.thread.join()


def show_trace(trace: list, caps: dict) -> None:
    """Each uplink's use per sample as a percent of its cap, and the swarm's total."""
    if not trace:
        return
    names = list(trace[0][1])
    print("    t(s)  " + " ".join(f"{n[-6:]:>6s}" for n in names) + "   all")
    prev_t, prev = 0.0, trace[0][1]
    for t, sample in trace[1:]:
        used = {n: (sample[n] - prev[n]) * 8 / 1e6 / (t - prev_t) for n in names}
        pct = {n: 100 * used[n] / caps[n] for n in names}
        total = 100 * sum(used.values()) / sum(caps[n] for n in names)
        print(f"    {t:5.1f} " + " ".join(f"{pct[n]:5.0f}%" for n in names) + f" {total:5.0f}%")
        prev_t, prev = t, sample


class CpuWatch:
    """The machine's CPU over a run, and the CPU of the lab's processes by kind, so a run can
    say when the CPU rather than the links set its time."""

    def __init__(self, lab) -> None:
        self.lab = lab

    def __enter__(self) -> "CpuWatch":
        psutil.cpu_percent(None)
        self.t0, self.before = time.time(), self._by_kind()
        return self

    def _by_kind(self) -> dict:
        kinds: dict = {}
        for host in self.lab.hosts.values():
            pids = subprocess.run(["ip", "netns", "pids", host.ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    proc = psutil.Process(int(pid))
                    cpu = sum(proc.cpu_times()[:2])
                    kind = "delay" if host.delay_line and proc.pid == host.delay_line.pid else \
                        "tracker" if host.name == "tracker" else "seed" if host.name.startswith("seed") else "leecher"
                except psutil.Error:
                    continue
                kinds[(kind, pid)] = cpu
        return kinds

    def __exit__(self, *exc) -> None:
        self.seconds = time.time() - self.t0
        self.busy_pct = psutil.cpu_percent(None)
        self.load = psutil.getloadavg()[0]
        after, per_kind = self._by_kind(), {}
        for (kind, pid), cpu in after.items():
            per_kind.setdefault(kind, []).append(cpu - self.before.get((kind, pid), 0.0))
        self.per_kind = per_kind

    @property
    def limited(self) -> bool:
        return self.busy_pct >= CPU_LIMIT_PCT

    def summary(self) -> str:
        cores = lambda xs: 100 * sum(xs) / self.seconds       # noqa: E731
        parts = [f"{k} {cores(v):.0f}% ({len(v)}, max {100 * max(v) / self.seconds:.0f}%)"
                 for k, v in sorted(self.per_kind.items())]
        lab = sum(sum(v) for v in self.per_kind.values()) / self.seconds / psutil.cpu_count()
        return (f"machine {self.busy_pct:.0f}% busy of {psutil.cpu_count()} cores (this lab {100 * lab:.0f}% of it, "
                f"the rest other work), load {self.load:.1f}; lab CPU as % of one core: {', '.join(parts)}")
