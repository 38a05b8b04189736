"""A folder torrent hashed from a cold page cache (issue 20): `create` of a folder and the
recheck an `upload` / resume of a multi-file holding runs, before and after, in one run.

    sudo python bench/folder_hash.py --gib 4 --files 64 --dir /work/tmp-folder --baseline /tmp/base
    python bench/folder_hash.py --gib 1 --files 2000 --warm                  # not root: no cache drop

It writes a folder of --files files totalling --gib GiB once (sizes drawn from a seeded
generator, none a multiple of a page, so pieces span file boundaries at any offset; stamped
random blocks, so every piece differs), then, in one run:
- the device's rate over the folder from a cold cache: each file read O_DIRECT, 8 MiB reads,
  eight in flight (as bench/big_upload.py measures one file), before and after; the faster
  is the bound, with the best SHA-1 rate on 1 or 2 threads;
- for each checkout (--baseline DIR first, if given, then this one), in a child process that
  drops the page cache after its imports: `making.create_folder` (what `create --input
  FOLDER` runs), then, cold again, `PieceFile.open_seed(...).recheck()` (what the peer runs on
  a check thread for `upload` and resume). Printed: MiB/s, its ratio to the bound and to the
  baseline, and the child's CPU seconds (user + kernel).
With --upload, then, for each checkout: a tracker and a peer, the page cache dropped, and
`Upload` of the folder (bench/big_upload.py's upload: the data port pinged every 50 ms, the
tracker asked whether it lists the peer): the hash rate as the peer does it, and whether its
event loop kept answering meanwhile.
The pieces of every run must agree. The folder is deleted at the end (--keep keeps it).
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import big_upload  # noqa: E402

MIB = 1 << 20
BLOCK = 4 * MIB

CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
from protocol import making
from node.peer.storage import PieceFile

folder, warm = Path(sys.argv[1]), sys.argv[2] == "1"

def cold():
    if not warm:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")

def timed(fn):
    cold()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    out = fn()
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    return out, t1 - t0, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime

meta, c_s, c_u, c_k = timed(lambda: making.create_folder(folder, "tcp://127.0.0.1:1"))
seed = PieceFile.open_seed(meta, folder)
try:
    have, r_s, r_u, r_k = timed(seed.recheck)
finally:
    seed.close()
print(json.dumps({"pieces": meta.info_hash, "length": meta.length, "piece_length": meta.piece_length,
                  "complete": have.complete, "create": [c_s, c_u, c_k], "recheck": [r_s, r_u, r_k]}))
"""


def write_folder(root: Path, total: int, count: int, seed: int = 20) -> list[Path]:
    """``count`` files of about ``total / count`` bytes each (0.25x to 1.75x, never page-aligned)."""
    rng = random.Random(seed)
    mean = total / count
    sizes = [max(1, int(mean * rng.uniform(0.25, 1.75))) | 1 for _ in range(count)]
    scale = total / sum(sizes)
    sizes = [max(1, int(s * scale)) | 1 for s in sizes]
    block = bytearray(os.urandom(BLOCK))
    root.mkdir(parents=True)
    paths, stamp = [], 0
    for i, size in enumerate(sizes):
        path = root / f"d{i % 8}" / f"part-{i:05d}.bin"
        path.parent.mkdir(exist_ok=True)
        with open(path, "wb") as f:
            left = size
            while left:
                stamp += 1
                block[:8] = stamp.to_bytes(8, "big")
                n = min(left, BLOCK)
                f.write(block[:n])
                left -= n
            os.fsync(f.fileno())
        paths.append(path)
    return paths


def device_rate(paths: list[Path]) -> float:
    """Bytes per second the device reads every file at, cold: O_DIRECT, 8 MiB reads, 8 in flight."""
    big_upload.drop_caches()
    jobs = iter([(p, off) for p in paths for off in range(0, p.stat().st_size, big_upload.DIRECT_READ)])
    lock = threading.Lock()

    def run() -> int:
        buf, total, fds = mmap.mmap(-1, big_upload.DIRECT_READ), 0, {}
        try:
            while True:
                with lock:
                    job = next(jobs, None)
                if job is None:
                    return total
                path, off = job
                fd = fds.get(path)
                if fd is None:
                    for old in fds.values():
                        os.close(old)
                    fds.clear()
                    fd = fds[path] = os.open(path, os.O_RDONLY | os.O_DIRECT)
                total += os.preadv(fd, [buf], off)
        finally:
            for fd in fds.values():
                os.close(fd)

    started = time.monotonic()
    with ThreadPoolExecutor(big_upload.DIRECT_DEPTH) as pool:
        total = sum(pool.map(lambda _: run(), range(big_upload.DIRECT_DEPTH)))
    return total / (time.monotonic() - started)


def hash_in(code: Path, folder: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(folder), "1" if big_upload.WARM else "0"],
                         cwd=code, env=env, capture_output=True, text=True, timeout=1200)
    if out.returncode:
        raise SystemExit(f"the hash in {code} failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=4.0)
    ap.add_argument("--files", type=int, default=64)
    ap.add_argument("--dir", type=Path, default=Path("/work/tmp-folder"))
    ap.add_argument("--baseline", type=Path, help="a checkout of other code, hashed first")
    ap.add_argument("--warm", action="store_true", help="never drop the page cache")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--upload", action="store_true", help="also upload the folder to a real peer, per checkout")
    ap.add_argument("--upload-only", action="store_true", help="only the uploads (and the bound)")
    args = ap.parse_args()
    big_upload.WARM = args.warm
    total = int(args.gib * (1 << 30))
    folder = args.dir / f"folder-{args.files}"
    if not folder.exists():
        started = time.monotonic()
        write_folder(folder, total, args.files)
        print(f"wrote {args.files} files, {total / MIB:.0f} MiB, in {time.monotonic() - started:.1f} s")
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    try:
        disk = [device_rate(paths)]
        sha = [big_upload.sha1_rate(1), big_upload.sha1_rate(2)]
        codes = ([args.baseline] if args.baseline else []) + [REPO]
        runs = [] if args.upload_only else [(str(code), hash_in(code, folder)) for code in codes]
        disk.append(device_rate(paths))
        sha += [big_upload.sha1_rate(1), big_upload.sha1_rate(2)]
        bound = min(max(disk), max(sha))
        print(f"{len(paths)} files, {total / MIB:.0f} MiB; device O_DIRECT {disk[0] / MIB:.0f}, "
              f"{disk[1] / MIB:.0f} MiB/s (before, after); SHA-1 1/2 threads "
              f"{sha[0] / MIB:.0f}/{sha[1] / MIB:.0f}, {sha[2] / MIB:.0f}/{sha[3] / MIB:.0f} MiB/s; "
              f"bound {bound / MIB:.0f} MiB/s")
        if runs and (len({r["pieces"] for _, r in runs}) != 1 or not all(r["complete"] for _, r in runs)):
            raise SystemExit("the runs disagree on the pieces")
        base = runs[0][1] if runs else None
        if runs:
            print(f"piece length {base['piece_length'] // 1024} KiB")
            print("| code | what | s | MiB/s | / bound | / first | CPU user + kernel s |")
            print("|---|---|---|---|---|---|---|")
        for code, r in runs:
            for what in ("create", "recheck"):
                s, user, kern = r[what]
                rate = r["length"] / s
                print(f"| {code} | {what} | {s:.2f} | {rate / MIB:.0f} | {rate / bound:.2f} | "
                      f"{base[what][0] / s:.2f} | {user:.1f} + {kern:.1f} |")
        if args.upload or args.upload_only:
            uploads(folder, total, codes, bound)
    finally:
        big_upload.procs.REPO = REPO
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def uploads(folder: Path, total: int, codes: list[Path], bound: float) -> None:
    import fastbencode

    from protocol import making, metainfo

    info = fastbencode.bdecode(making.create_folder(folder, "tcp://127.0.0.1:1").raw)[b"info"]

    def make(announce: str) -> metainfo.Metainfo:
        return metainfo.parse(fastbencode.bencode({b"announce": announce.encode(), b"info": info}))

    first = None
    print("| code | upload hashed MiB/s | / bound | / first | ping p50 / p99 / max ms | lost | "
          "tracker missing | expired | peer CPU user + kernel s |")
    print("|---|---|---|---|---|---|---|---|---|")
    here = os.getcwd()
    for code in codes:
        with tempfile.TemporaryDirectory(dir=folder.parent) as work:
            os.chdir(work)
            try:
                up = big_upload.upload(Path(work), folder, b"", total, 0.05, code, make=make)
            finally:
                os.chdir(here)
        first = first or up["hash_rate"]
        print(f"| {code} | {up['hash_rate'] / MIB:.0f} | {up['hash_rate'] / bound:.2f} | "
              f"{up['hash_rate'] / first:.2f} | {up['p50_ms']:.1f} / {up['p99_ms']:.1f} / {up['max_ms']:.1f} | "
              f"{up['lost']} | {up['tracker_missing']} of {up['tracker_asks']} | {up['expired_logged']} | "
              f"{up['peer_user_s']:.1f} + {up['peer_sys_s']:.1f} |")
        if up["slow"]:
            print(f"  pings over 50 ms (s into the hash, ms): {up['slow'][:20]}")


if __name__ == "__main__":
    main()
