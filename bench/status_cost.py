"""What one STATUS reply costs to encode and decode, by how many jobs and remotes it lists:
the web view asks every peer for one twice a second.

    python bench/status_cost.py [--jobs 2] [--remotes 0,50] [--runs 300]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocol import messages as m  # noqa: E402
from protocol.codec import decode, encode  # noqa: E402


def reply(jobs: int, remotes: int) -> m.StatusReply:
    peers = [m.PeerStat(peer_id=f"soak{i}", pieces=3, bytes=3 << 18, failures=0, score=1.234, banned=False,
                        hash_failures=0, rested=False) for i in range(remotes)]
    job = m.JobStatus(info_hash="ab" * 20, name="soak_001.bin", path="/tmp/x/soak_001.bin", state="seeding",
                      num_pieces=64, have=64, announced=64, resumed=0, fetched=64, length=16 << 20,
                      bytes_done=16 << 20, failed_attempts=0, ignored=0, elapsed_s=3.2, error="", peers=peers,
                      warning="")
    return m.StatusReply(peer_id="soak1", registered=True, jobs=[job] * jobs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--remotes", default="0,50")
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()
    for remotes in [int(x) for x in args.remotes.split(",")]:
        rep = reply(args.jobs, remotes)
        t = time.perf_counter()
        for _ in range(args.runs):
            frames = encode(rep, 1)
        enc = (time.perf_counter() - t) / args.runs
        t = time.perf_counter()
        for _ in range(args.runs):
            back = decode(frames).msg
        dec = (time.perf_counter() - t) / args.runs
        assert back == rep
        print(f"{args.jobs} jobs x {remotes} remotes: encode {enc * 1e6:.0f} us, decode {dec * 1e6:.0f} us, "
              f"{sum(len(f) for f in frames)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
