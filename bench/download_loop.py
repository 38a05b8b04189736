"""Sequential downloads from one seed, with both peers' RSS after each: what a long-lived
peer keeps per torrent it downloaded (a leak shows as growth per download).

    python bench/download_loop.py --downloads 12 --mib 16

A tracker and two peers on loopback (real processes, tests/procs.py's Swarm), in a temporary
directory removed at the end. Each round writes a new random file, uploads it at the seed,
downloads it at the leecher with the `download` command, and prints both RSS figures. A
download that does not finish within --timeout-s ends the run with its log's last lines.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.procs import Swarm  # noqa: E402

MIB = 1024 * 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--downloads", type=int, default=12)
    ap.add_argument("--mib", type=int, default=16, help="size of each file")
    ap.add_argument("--timeout-s", type=float, default=120.0, help="per download")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zorrent-loop-"))
    swarm = Swarm(work)
    ok = False
    try:
        swarm.tracker()
        swarm.peer("seed")
        leech_port = swarm.peer("leech")
        procs = {name: psutil.Process(p.pid) for name, p, _ in swarm.procs}

        def rss(name: str) -> float:
            return procs[name].memory_info().rss / MIB

        print(f"start: seed {rss('seed'):.1f} MiB, leech {rss('leech'):.1f} MiB", flush=True)
        for i in range(args.downloads):
            src = work / "in" / f"f{i}.bin"
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_bytes(os.urandom(args.mib * MIB))
            torrent = swarm.upload(src, "seed")["torrent"]
            try:
                swarm.cli("download", "--torrent", str(torrent), "--output", str(work / "out" / src.name),
                          "--peer-id", "leech", "--peer-port", str(leech_port), timeout_s=args.timeout_s)
            except subprocess.TimeoutExpired:
                print(f"download {i} did not finish in {args.timeout_s:g} s; the leecher's log ends:", flush=True)
                print("\n".join(swarm.log("leech").splitlines()[-10:]))
                return 1
            print(f"{i + 1:3d}: seed {rss('seed'):.1f} MiB, leech {rss('leech'):.1f} MiB", flush=True)
        ok = True
        return 0
    finally:
        swarm.close(not ok)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
