"""Ten strangers who never read, next to one legitimate download (issue 17).

    flock /tmp/zorrent-heavy.lock python bench/hostile_load.py            # 256 MiB, 10 clients
    python bench/hostile_load.py --size-mib 64 --clients 4                # quicker

A tracker and a seeder of a random file on loopback. Each hostile client is its own
process with one DEALER on the seeder's data port: it sends ``--requests`` GetBlocks
(every piece, over and over; 8,192 for 256 MiB of 256 KiB pieces is eight times over)
and never reads a reply (RCVHWM 1, a 4 KiB receive buffer). The legitimate downloads
run A B A: unattacked, attacked (a fresh peer, started once the flood is under way), and
unattacked again; each is a fresh peer id, and each leecher is stopped before the next
run so the seeder is the only source. The seeder's RSS is sampled every 50 ms: idle
before the flood, the peak during it, and after the clients exit. Every output is
compared byte for byte.
"""
from __future__ import annotations

import argparse
import filecmp
import multiprocessing
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from protocol.metainfo import read as read_torrent  # noqa: E402
from tests.procs import Swarm, wait_for  # noqa: E402

MIB = 1024 * 1024


def hostile(endpoint: str, info_hash: str, num_pieces: int, piece_length: int, requests: int,
            hold_s: float, sent: "multiprocessing.synchronize.Event") -> None:
    import zmq

    from protocol import messages as m
    from protocol.codec import encode

    zctx = zmq.Context()
    sock = zctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 4096)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    for i in range(requests):
        piece = i % num_pieces
        sock.send_multipart(encode(m.GetBlock(info_hash=info_hash, piece_index=piece, block_offset=0,
                                              length=min(piece_length, m.MAX_BLOCK_BYTES)), i + 1))
    sent.set()
    time.sleep(hold_s)        # never read; then go away
    sock.close(linger=0)
    zctx.term()


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.samples: list[tuple[float, float]] = []
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                self.samples.append((time.monotonic(), self.proc.memory_info().rss / MIB))
            except psutil.Error:
                return
            time.sleep(0.05)

    def peak(self, start: float, end: float) -> float:
        return max((r for t, r in self.samples if start <= t <= end), default=0.0)

    def now(self) -> float:
        return self.proc.memory_info().rss / MIB


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--requests", type=int, default=8192)
    ap.add_argument("--hold-s", type=float, default=40.0, help="how long each client stays connected")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="zorrent-hostile-") as tmp:
        work = Path(tmp)
        swarm = Swarm(work)
        failed = True
        try:
            swarm.tracker()
            swarm.peer("seeder")
            src = work / "in" / "big.bin"
            src.parent.mkdir(parents=True)
            with open(src, "wb") as f:
                for i in range(args.size_mib):
                    f.write(random.Random(17 + i).randbytes(MIB))
            info = swarm.upload(src, "seeder")
            seeder_pid = next(p.pid for n, p, _ in swarm.procs if n == "seeder")
            endpoint = f"tcp://127.0.0.1:{swarm.peer_ports['seeder']}"
            meta = read_torrent(work / info["torrent"])
            sampler = RssSampler(seeder_pid)
            sampler.start()

            def legit(name: str) -> float:
                swarm.peer(name)
                out = work / "out" / name / "big.bin"
                swarm.cli("download", "--torrent", info["torrent"], "--output", str(out), "--peer-id", name,
                          "--peer-port", str(swarm.peer_ports[name]), timeout_s=600)
                job = swarm.job(name, info["info_hash"])
                assert filecmp.cmp(src, out, shallow=False), f"{name}: output differs"
                swarm.stop(name)
                return job["elapsed_s"]

            time.sleep(1.0)
            idle = sampler.now()
            base_a = legit("plain-a")
            idle_after_a = sampler.now()

            sent = [multiprocessing.Event() for _ in range(args.clients)]
            clients = [multiprocessing.Process(target=hostile, args=(
                endpoint, meta.info_hash, meta.num_pieces, meta.piece_length, args.requests, args.hold_s, ev))
                for ev in sent]
            flood_start = time.monotonic()
            for c in clients:
                c.start()
            wait_for(lambda: all(ev.is_set() for ev in sent), timeout_s=120, what="the flood to be sent")
            flooded_at = time.monotonic()
            attacked = legit("attacked")
            alive = swarm.cli_json("status", "--peer-id", "seeder")["registered"]
            for c in clients:
                c.join(timeout=args.hold_s + 30)
            flood_end = time.monotonic()
            time.sleep(2.0)
            after = sampler.now()
            base_b = legit("plain-b")
            sampler.running = False
            during = sampler.peak(flood_start, flood_end)
            baseline = (base_a + base_b) / 2
            size_mb = args.size_mib * MIB / 1e6
            print(f"hostile load: {args.clients} clients x {args.requests} GetBlocks, never reading; "
                  f"{args.size_mib} MiB torrent, {meta.num_pieces} pieces of {meta.piece_length // 1024} KiB "
                  f"(flood sent in {flooded_at - flood_start:.1f} s)")
            print(f"seeder RSS MiB: idle {idle:.1f} (after the first download {idle_after_a:.1f}), "
                  f"peak during the flood {during:.1f} (+{during - idle:.1f} over idle), "
                  f"after the clients left {after:.1f}")
            print(f"legitimate download: unattacked {base_a:.2f} s and {base_b:.2f} s "
                  f"({size_mb / baseline:.0f} MB/s), attacked {attacked:.2f} s ({size_mb / attacked:.0f} MB/s): "
                  f"{baseline / attacked:.2f}x of the unattacked speed; seeder registered and serving: {alive}")
            ok = during - idle <= 64 and baseline / attacked >= 0.8 and alive
            print("goal (RSS within 64 MiB of idle, >= 80% of the speed):", "met" if ok else "NOT met")
            failed = False
            return 0 if ok else 1
        finally:
            swarm.close(failed)


if __name__ == "__main__":
    sys.exit(main())
