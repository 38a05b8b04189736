"""The BEP 3 wire against libtorrent, on loopback, in one run (issue 18's goals).

    python bench/bt_interop.py --size-mib 256 --runs 3

Cases, run alternately (A B C D, A B C D, ...) on one file, one torrent, each node its
own process:
- A  zorrent seed    -> libtorrent leecher   (zorrent's BEP 3 port serving)
- B  libtorrent seed -> libtorrent leecher   (the baseline for A and D)
- C  libtorrent seed -> zorrent leecher      (zorrent taking pieces over BEP 3)
- D  = B's leecher, for C: a libtorrent leecher from the same libtorrent seed

Ratios: A / B (goal >= 1: a zorrent seed is at least as fast as a libtorrent one) and
C / B (goal >= 1). Every output is compared byte for byte. Medians; the machine is shared.
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
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench import MIB, make_input  # noqa: E402
from ctl import client  # noqa: E402
from protocol import messages as m  # noqa: E402
from protocol import metainfo  # noqa: E402
from tests.procs import PY, Swarm, kill_tree, wait_for  # noqa: E402

LT_NODE = [PY, str(REPO / "bench" / "lt_node.py")]


def lt_seed(work: Path, torrent: Path, src: Path) -> tuple[subprocess.Popen, int]:
    ready = work / "ltseed.port"
    proc = subprocess.Popen(LT_NODE + ["--role", "seeder", "--torrent", str(torrent), "--dir", str(src.parent),
                                       "--ready", str(ready)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, int(wait_for(lambda: ready.exists() and ready.read_text(), what="lt seeder"))


def lt_leech(work: Path, torrent: Path, src: Path, port: int) -> tuple[float, subprocess.Popen]:
    ready, out, result, go = work / "ltleech.port", work / "ltleech", work / "ltleech.json", work / "go.json"
    out.mkdir()
    proc = subprocess.Popen(LT_NODE + ["--role", "leecher", "--torrent", str(torrent), "--dir", str(out), "--ready",
                                       str(ready), "--go", str(go), "--result", str(result)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: ready.exists() and ready.read_text(), what="lt leecher")
    go.write_text(json.dumps([port]))
    wait_for(lambda: result.exists() and result.read_text(), timeout_s=600, what="libtorrent download",
             interval_s=0.02)
    t = json.loads(result.read_text())
    if not filecmp.cmp(src, out / src.name, shallow=False):
        raise SystemExit("libtorrent wrote a wrong file")
    return t["finished"] - t["started"], proc


def case_a(work: Path, torrent: Path, src: Path) -> float:
    swarm = Swarm(work)
    procs = []
    try:
        swarm.tracker()
        swarm.peer("s0")
        (work / "output" / "torrents").mkdir(parents=True, exist_ok=True)
        shutil.copy(torrent, work / "output" / "torrents" / f"{src.name}.torrent")   # the leecher's torrent
        swarm.upload(src, "s0")
        port = int((work / "s0.ready.bt").read_text())
        seconds, proc = lt_leech(work, torrent, src, port)
        procs.append(proc)
        return seconds
    finally:
        for p in procs:
            kill_tree(p)
        swarm.close(failed=False)


def case_b(work: Path, torrent: Path, src: Path) -> float:
    seed, port = lt_seed(work, torrent, src)
    try:
        seconds, proc = lt_leech(work, torrent, src, port)
        kill_tree(proc)
        return seconds
    finally:
        kill_tree(seed)


def case_c(work: Path, torrent: Path, src: Path) -> float:
    seed, port = lt_seed(work, torrent, src)
    swarm = Swarm(work)
    try:
        swarm.tracker()
        swarm.peer("l0")
        meta = metainfo.read(torrent)
        os.environ["ZORRENT_OUTPUT"] = str(work / "output")
        sent = time.time()
        client.peer_control("l0", m.Download(metainfo=meta.raw, output=str(work / "out.bin"),
                                             peers=[f"127.0.0.1:{port}"]))

        def done():
            job = client.peer_control("l0", m.Status(info_hash=meta.info_hash)).jobs[0]
            if job.state == m.JobState.FAILED.value:
                raise SystemExit(f"zorrent download failed: {job.error}")
            return job.elapsed_s if job.state == m.JobState.SEEDING.value else None

        seconds = wait_for(done, timeout_s=600, what="zorrent download", interval_s=0.02)
        del sent
        if not filecmp.cmp(src, work / "out.bin", shallow=False):
            raise SystemExit("zorrent wrote a wrong file")
        return seconds
    finally:
        swarm.close(failed=False)
        os.environ.pop("ZORRENT_OUTPUT", None)
        kill_tree(seed)


CASES = {"A zorrent seed -> lt leecher": case_a, "B lt seed -> lt leecher": case_b,
         "C lt seed -> zorrent leecher": case_c}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="zorrent-bt-bench-"))
    (root / "inputs").mkdir(parents=True, exist_ok=True)
    src = make_input(root / "inputs", args.size_mib * MIB)
    meta = metainfo.create(src, "tcp://127.0.0.1:1")
    torrent = root / f"{src.name}.torrent"
    metainfo.write(meta, torrent)
    print(f"file {args.size_mib} MiB, {meta.num_pieces} pieces of {meta.piece_length // 1024} KiB; "
          f"{args.runs} runs each, alternating; loopback, shared machine", flush=True)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for run in range(args.runs):
        for name, case in CASES.items():
            work = root / f"run{run}-{name[0]}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            seconds = case(work, torrent, src)
            shutil.rmtree(work, ignore_errors=True)
            times[name].append(seconds)
            print(f"  run {run + 1} {name:30s} {src.stat().st_size / 1e6 / seconds:7.0f} MB/s  {seconds:6.2f} s",
                  flush=True)
    med = {name: statistics.median(v) for name, v in times.items()}
    rate = {name: src.stat().st_size / 1e6 / s for name, s in med.items()}
    print(f"\n| case ({args.size_mib} MiB, median of {args.runs}) | MB/s | ratio to B |")
    print("|---|---|---|")
    base = rate["B lt seed -> lt leecher"]
    for name in CASES:
        print(f"| {name} | {rate[name]:.0f} | {rate[name] / base:.2f}x |")
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
