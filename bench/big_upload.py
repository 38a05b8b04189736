"""A big upload from a cold page cache (issue 20): is it hashed at disk (or SHA-1) speed,
does the peer keep answering, and does the tracker keep listing it?

    sudo python bench/big_upload.py --gib 16            # root: it drops the page cache
    python bench/big_upload.py --gib 4 --dir /work/tmp  # where the file goes (needs the room)

It writes a file of --gib GiB once (a random 4 MiB block, each copy stamped with its index,
so every piece differs; the torrent is built from the blocks' hashes as they are written),
then, in the same run:
- the disk's rate: the whole file read once from a cold cache
  (`echo 3 > /proc/sys/vm/drop_caches`) O_DIRECT, 8 MiB reads, eight in flight: what the device
  delivers. Measured before and after the upload(s); the faster is the bound (the strict one).
  A buffered read (4 MiB reads, what the bound was until "hashrate") is measured once
  too, for the record: on this VM it costs the kernel 1.3-1.9 s of CPU per GiB, so it
  measures a core's page-cache work as much as the disk;
- SHA-1's rate on one thread and on the threads the peer hashes one file with
  (pieces.hash_workers(); a 4 MiB buffer, hashlib releases the GIL), before and after; the
  bound takes the best of them (before or after, 1 or N threads);
- the upload: a tracker and a peer; a small torrent seeded first; the page cache dropped;
  `Upload` of the big file. Throughout, the data port is pinged every --ping-ms, the
  peer's `status` is read, and the tracker is asked whether it still lists the peer.
  With --baseline DIR (a checkout of other code, e.g. `git worktree add /tmp/base main`),
  the upload runs first with DIR's tracker and peer, then with this checkout's: a
  before-and-after in the same run, against the same bound.
Printed per upload: the hash rate and its ratio to min(disk, SHA-1), ping p50/p99/max (ms),
the peer's CPU time, whether the peer was ever missing from the tracker or logged as
expired. The file is deleted at the end (--keep keeps it, for a second run).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import mmap
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import fastbencode  # noqa: E402
import psutil  # noqa: E402

from ctl import client  # noqa: E402
from node.channel import call  # noqa: E402
from protocol import messages as m  # noqa: E402
from protocol import metainfo, pieces  # noqa: E402
from tests import procs  # noqa: E402

MIB = 1 << 20
BLOCK = 4 * MIB              # one piece; also the read size of the buffered disk rate
DIRECT_READ = 8 * MIB        # the device's rate: O_DIRECT reads of this size ...
DIRECT_DEPTH = 8             # ... this many in flight (the fastest of 1, 2, 4, 8 here: 5-20% over 1)
PING_TIMEOUT_S = 10.0


WARM = False                 # --warm: never drop the page cache (a smoke run, or not root)


def drop_caches() -> None:
    if WARM:
        return
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def write_file(path: Path, size: int) -> bytes:
    """``size`` bytes of stamped random blocks; the SHA-1 of each BLOCK-sized piece."""
    block = bytearray(os.urandom(BLOCK))
    hashes = []
    with open(path, "wb") as f:
        for i in range(size // BLOCK):
            block[:8] = i.to_bytes(8, "big")
            hashes.append(hashlib.sha1(block).digest())
            f.write(block)
        os.fsync(f.fileno())
    return b"".join(hashes)


def disk_rate(path: Path) -> float:
    """Bytes per second the device reads the whole file at from a cold cache: O_DIRECT
    (no page cache, so no kernel CPU in the way), DIRECT_READ bytes a read, DIRECT_DEPTH
    reads in flight."""
    drop_caches()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    size = os.fstat(fd).st_size
    offsets = iter(range(0, size, DIRECT_READ))
    lock = threading.Lock()

    def run() -> int:
        buf, total = mmap.mmap(-1, DIRECT_READ), 0          # page-aligned, as O_DIRECT needs
        while True:
            with lock:
                offset = next(offsets, None)
            if offset is None:
                return total
            total += os.preadv(fd, [buf], offset)

    try:
        started = time.monotonic()
        with ThreadPoolExecutor(DIRECT_DEPTH) as pool:
            total = sum(pool.map(lambda _: run(), range(DIRECT_DEPTH)))
        return total / (time.monotonic() - started)
    finally:
        os.close(fd)


def buffered_rate(path: Path) -> tuple[float, float]:
    """Bytes per second of one buffered sequential read (4 MiB reads) from a cold cache,
    and the kernel CPU seconds per GiB it took (the old bound, kept for the record)."""
    drop_caches()
    buf = bytearray(BLOCK)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        started, sys_s, total = time.monotonic(), os.times().system, 0
        while n := os.readv(fd, [buf]):
            total += n
        elapsed, sys_s = time.monotonic() - started, os.times().system - sys_s
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return total / elapsed, sys_s / (total / (1 << 30))


def sha1_rate(threads: int, seconds: float = 2.0) -> float:
    """Bytes per second of SHA-1 over 4 MiB buffers on ``threads`` threads at once."""
    buf = os.urandom(BLOCK)

    def run() -> int:
        done, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            hashlib.sha1(buf).digest()
            done += BLOCK
        return done

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: run(), range(threads)))
    return total / (time.monotonic() - started)


def busy_share(before, after) -> float:
    """The machine's share of CPU time not idle (nor waiting on I/O) between two psutil.cpu_times()."""
    spent = {k: getattr(after, k) - getattr(before, k) for k in after._fields}
    total = sum(spent.values()) or 1.0
    return 1 - (spent["idle"] + spent.get("iowait", 0.0)) / total


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def single_file(big: Path, hashes: bytes, size: int, announce: str) -> metainfo.Metainfo:
    """The torrent of the big file, from the hashes taken as it was written."""
    info = {b"length": size, b"name": big.name.encode(), b"piece length": BLOCK, b"pieces": hashes}
    return metainfo.parse(fastbencode.bencode({b"announce": announce.encode(), b"info": info}))


def upload(work: Path, big: Path, hashes: bytes, size: int, ping_s: float, code: Path, make=None) -> dict:
    """One upload of ``big`` by a peer (and tracker) run from the checkout ``code``;
    ``make(announce)`` gives its torrent (default: ``single_file``; bench/folder_hash.py
    passes a folder's)."""
    procs.REPO = code                             # Swarm starts its nodes from this checkout
    swarm = procs.Swarm(work)
    failed = True
    try:
        swarm.tracker()
        port = swarm.peer("peer1")
        small = swarm.upload(procs.write_random(work / "in" / "small.bin", MIB, 3), "peer1")
        meta = (make or (lambda announce: single_file(big, hashes, size, announce)))(swarm.tracker_endpoint)
        drop_caches()
        done = threading.Event()
        lat: list[float] = []
        at: list[float] = []                      # when each ping was sent (monotonic)
        missing = [0, 0]                          # tracker asks without peer1, tracker asks

        def pinger() -> None:
            ep = f"tcp://127.0.0.1:{port}"
            while not done.is_set():
                started = time.monotonic()
                at.append(started)
                try:
                    call(client.zctx(), ep, m.Ping(), timeout_s=PING_TIMEOUT_S, tries=1)
                    lat.append(time.monotonic() - started)
                except Exception:                 # noqa: BLE001 - a lost ping counts as the full wait
                    lat.append(PING_TIMEOUT_S)
                done.wait(max(0.0, ping_s - (time.monotonic() - started)))

        def lister() -> None:
            while not done.is_set():
                peers = client.tracker(swarm.tracker_endpoint, m.GetPeers(info_hash=small["info_hash"]),
                                       timeout_s=5, tries=1).peers
                missing[1] += 1
                missing[0] += "peer1" not in [p.peer_id for p in peers]
                done.wait(0.5)

        threads = [threading.Thread(target=pinger), threading.Thread(target=lister)]
        for t in threads:
            t.start()
        time.sleep(1.0)                           # pings of the idle peer first
        idle = len(lat)
        peer = psutil.Process(next(p.pid for name, p, _ in swarm.procs if name == "peer1"))
        cpu0, machine0 = peer.cpu_times(), psutil.cpu_times()
        started = time.monotonic()
        client.peer_control("peer1", m.Upload(path=str(big), metainfo=meta.raw), timeout_s=10, tries=1)
        while True:
            job = client.peer_control("peer1", m.Status(info_hash=meta.info_hash), timeout_s=10, tries=1).jobs[0]
            if job.state != "hashing":
                break
            time.sleep(0.05)
        hash_s = time.monotonic() - started
        cpu1, machine1 = peer.cpu_times(), psutil.cpu_times()
        busy = len(lat)
        done.set()
        for t in threads:
            t.join()
        expired = "expired silent peer peer1" in swarm.log("tracker")
        failed = False
        during = lat[idle:busy]
        return {"state": job.state, "hash_s": hash_s, "hash_rate": size / hash_s, "pings": len(during),
                "idle_p50_ms": 1000 * statistics.median(lat[:idle]),
                "p50_ms": 1000 * statistics.median(during), "p99_ms": 1000 * pct(during, 0.99),
                "max_ms": 1000 * max(during), "lost": sum(x >= PING_TIMEOUT_S for x in during),
                "tracker_asks": missing[1], "tracker_missing": missing[0], "expired_logged": expired,
                "peer_user_s": cpu1.user - cpu0.user, "peer_sys_s": cpu1.system - cpu0.system,
                "machine_busy": busy_share(machine0, machine1),
                "slow": [(round(at[i] - started, 1), round(1000 * lat[i])) for i in range(idle, busy) if lat[i] > 0.05]}
    finally:
        swarm.close(failed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=16.0)
    ap.add_argument("--dir", default=None, help="where the big file goes (default: a temp dir under /work)")
    ap.add_argument("--ping-ms", type=float, default=50.0)
    ap.add_argument("--keep", action="store_true", help="keep the big file (reused by the next run)")
    ap.add_argument("--warm", action="store_true", help="never drop the page cache (figures are then not cold)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="a checkout of other code: its upload runs first, in the same run (before-and-after)")
    args = ap.parse_args()
    global WARM
    WARM = args.warm
    size = int(args.gib * 1024) * MIB // BLOCK * BLOCK
    base = Path(args.dir or ("/work" if Path("/work").is_dir() else tempfile.gettempdir()))
    free = shutil.disk_usage(base).free
    big = base / f"zorrent-big-{size // MIB}M.bin"
    hashes_path = big.with_suffix(".hashes")
    if not big.exists() and free < size + (4 << 30):
        sys.exit(f"big_upload: {base} has {free >> 30} GiB free, {size >> 30} GiB + 4 GiB needed")
    if args.baseline and not (args.baseline / "main.py").is_file():
        sys.exit(f"big_upload: {args.baseline} is not a zorrent checkout (no main.py)")
    codes = ([("baseline", args.baseline.resolve())] if args.baseline else []) + [("this", REPO)]
    threads = pieces.hash_workers()
    ups = {}
    try:
        if big.exists() and hashes_path.exists() and big.stat().st_size == size:
            hashes = hashes_path.read_bytes()
            print(f"reusing {big}")
        else:
            started = time.monotonic()
            hashes = write_file(big, size)
            hashes_path.write_bytes(hashes)
            print(f"wrote {big} ({size / MIB:.0f} MiB) in {time.monotonic() - started:.1f} s")
        buffered, sys_per_gib = buffered_rate(big)
        disk = [disk_rate(big)]
        sha1 = [{1: sha1_rate(1), threads: sha1_rate(threads)}]
        for label, code in codes:
            with tempfile.TemporaryDirectory(dir=base) as work:
                os.chdir(work)
                ups[label] = upload(Path(work), big, hashes, size, args.ping_ms / 1000, code)
                os.chdir(base)
        disk.append(disk_rate(big))
        sha1.append({1: sha1_rate(1), threads: sha1_rate(threads)})
    finally:
        procs.REPO = REPO
        if not args.keep:
            big.unlink(missing_ok=True)
            hashes_path.unlink(missing_ok=True)
    best_sha1 = max(v for run in sha1 for v in run.values())
    bound = min(max(disk), best_sha1)             # strict: the best the device and SHA-1 showed
    old_bound = min(buffered, min(disk), max(min(run[k] for run in sha1) for k in sha1[0]))
    result = {"size_mib": size // MIB, "disk_direct_mib_s": [round(d / MIB) for d in disk],
              "disk_buffered_mib_s": round(buffered / MIB), "buffered_sys_s_per_gib": round(sys_per_gib, 2),
              "sha1_mib_s": [{k: round(v / MIB) for k, v in run.items()} for run in sha1], "hash_threads": threads,
              "bound_mib_s": round(bound / MIB), "lenient_bound_mib_s": round(old_bound / MIB), "uploads": {}}
    print(f"{size / MIB / 1024:.1f} GiB cold: disk O_DIRECT {result['disk_direct_mib_s']} MiB/s (before, after), "
          f"buffered {result['disk_buffered_mib_s']} MiB/s ({sys_per_gib:.2f} s kernel CPU per GiB); "
          f"SHA-1 {result['sha1_mib_s']} MiB/s (threads: rate; before, after)")
    print(f"bound = min(best disk, best SHA-1) = {result['bound_mib_s']} MiB/s "
          f"(lenient: min(slowest disk incl. buffered, slower SHA-1) = {result['lenient_bound_mib_s']} MiB/s)")
    for label, up in ups.items():
        ratio = up["hash_rate"] / bound
        result["uploads"][label] = {"hash_mib_s": round(up["hash_rate"] / MIB), "ratio": round(ratio, 3),
                                    "lenient_ratio": round(up["hash_rate"] / old_bound, 3),
                                    **{k: (round(v, 2) if isinstance(v, float) else v)
                                       for k, v in up.items() if k != "hash_rate"}}
        print(f"[{label}] hashed in {up['hash_s']:.1f} s = {up['hash_rate'] / MIB:.0f} MiB/s = {ratio:.2f} x bound "
              f"({up['hash_rate'] / old_bound:.2f} x lenient; state {up['state']}); peer CPU "
              f"{up['peer_user_s']:.1f} s user + {up['peer_sys_s']:.1f} s sys, machine {100 * up['machine_busy']:.0f}% busy")
        print(f"[{label}] data-port ping during the hash ({up['pings']} pings, every {args.ping_ms:.0f} ms): "
              f"p50 {up['p50_ms']:.1f} ms, p99 {up['p99_ms']:.1f} ms, max {up['max_ms']:.1f} ms, lost {up['lost']} "
              f"(idle p50 {up['idle_p50_ms']:.1f} ms)")
        print(f"[{label}] tracker: peer missing in {up['tracker_missing']} of {up['tracker_asks']} GetPeers, "
              f"expired logged: {up['expired_logged']}")
    if len(ups) == 2:
        print(f"this / baseline hash rate: {ups['this']['hash_rate'] / ups['baseline']['hash_rate']:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
