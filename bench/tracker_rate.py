"""How many piece announces per second the tracker acknowledges, each one durable first.

    python bench/tracker_rate.py [--announces 40000] [--mongo [--trackers 1,2] [--spy]]
    python bench/tracker_rate.py --no-sqlite --mongo --pieces 1000,10000,100000 [--holding 0.5]

Starts a real tracker (SQLite store; with --mongo also 1 and then 2 trackers on one
SecantusDB server), registers 8 peers and a 65,536-piece torrent, then has the 8 peers
pipeline ANNOUNCE requests (64 outstanding each; 1 on the slower MongoDB server, so that
the peers' heartbeats are not queued past their expiry) and counts the
acknowledgements. With several trackers, peer i talks to tracker i mod N. Reported
twice: one piece per ANNOUNCE (the worst case) and 32 pieces per ANNOUNCE (what peers
send when they batch within ANNOUNCE_BATCH_S).

With --pieces, it measures only MongoDB, by torrent size: each peer first holds --holding
of the pieces (announced 1,024 at a time), then announces new ones, so each update meets
documents of the size a swarm of that torrent has.

For the MongoDB runs it also prints the CPU seconds each side spent per announce
(trackers, server), and with --spy where each tracker's wall time went (py-spy, idle
frames included): waiting for the store, waiting for requests, or its own work.
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fastbencode
import psutil
import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from node.channel import call  # noqa: E402
from protocol import messages as m  # noqa: E402
from protocol.codec import decode, encode  # noqa: E402
from tests.procs import kill_tree, start_secantus, wait_for  # noqa: E402

PY_SPY = str(Path(sys.executable).parent / "py-spy")
PEERS = 8
WINDOW = 64          # announces outstanding per peer (SQLite)
SLOW_WINDOW = 1      # for a slow store: heartbeats wait behind PEERS * window announces
SLOW_BATCHED = 256   # 32-piece announces on SecantusDB, whose $addToSet slows as the arrays grow
NUM_PIECES = 65536


def fake_torrent(num_pieces: int = NUM_PIECES) -> bytes:
    info = {b"length": num_pieces * 16384, b"name": b"rate%d.bin" % num_pieces, b"piece length": 16384,
            b"pieces": os.urandom(20 * num_pieces)}
    return fastbencode.bencode({b"announce": b"tcp://127.0.0.1:1", b"info": info})


def heartbeat(zctx: zmq.Context, peers: list) -> None:
    socks = []
    for p in peers:
        sock = zctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(p[5])
        sock.send_multipart(encode(m.Heartbeat(peer_id=p[0], token=p[1]), 1))
        socks.append(sock)
    for sock in socks:
        if not sock.poll(30_000):
            raise SystemExit("a heartbeat got no answer in 30 s")
        reply = decode(sock.recv_multipart()).msg
        sock.close(0)
        if not isinstance(reply, (m.Ok, m.HeartbeatOk)):
            raise SystemExit(f"heartbeat refused: {reply}")


def join(zctx: zmq.Context, endpoints: list[str], tag: str, num_pieces: int = NUM_PIECES) -> tuple[str, list]:
    """Register a fresh torrent and PEERS peers (peer i on tracker i mod N): (info_hash, peers)."""
    raw = fake_torrent(num_pieces)
    owner = call(zctx, endpoints[0], m.RegisterPeer(peer_id=f"rate{tag}_owner", host="127.0.0.1", port=19999,
                                                    token=""), timeout_s=5, tries=2).msg.token
    info_hash = call(zctx, endpoints[0], m.RegisterTorrent(peer_id=f"rate{tag}_owner", token=owner, metainfo=raw),
                     timeout_s=30, tries=2).msg.info_hash
    peers = []
    for i in range(PEERS):
        pid = f"rate{tag}_{i}"
        endpoint = endpoints[i % len(endpoints)]
        token = call(zctx, endpoint, m.RegisterPeer(peer_id=pid, host="127.0.0.1", port=20000 + i, token=""),
                     timeout_s=5, tries=2).msg.token
        sock = zctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        peers.append([pid, token, sock, 0, 0, endpoint])  # id, token, socket, next piece, outstanding, tracker
    return info_hash, peers


def announce(zctx: zmq.Context, info_hash: str, peers: list, total: int, per_msg: int, window: int,
             num_pieces: int = NUM_PIECES, first: int = 0, cap_s: float = 0.0) -> tuple[float, float, int]:
    """Each peer announces ``total / PEERS`` times ``per_msg`` pieces from piece ``first`` on:
    (pieces acknowledged per second, seconds, announces acknowledged). With ``cap_s``, stop
    sending after that long (a store too slow to finish) and count what was acknowledged."""
    poller = zmq.Poller()
    for p in peers:
        p[3], p[4] = 0, 0
        poller.register(p[2], zmq.POLLIN)
    per_peer = total // PEERS
    acked = errors = 0
    started = time.perf_counter()
    stop = [False]

    def fill(p):
        while not stop[0] and p[4] < window and p[3] < per_peer * per_msg:
            pieces = [(first + p[3] + k) % num_pieces for k in range(per_msg)]
            p[2].send_multipart(encode(m.Announce(peer_id=p[0], token=p[1], info_hash=info_hash, pieces=pieces), 1))
            p[3] += per_msg
            p[4] += 1

    for p in peers:
        fill(p)
    by_sock = {p[2]: p for p in peers}
    last_beat = time.monotonic()
    while any(p[4] for p in peers):
        if cap_s and time.perf_counter() - started > cap_s:
            stop[0] = True
        if time.monotonic() - last_beat > 1.0:     # stay alive, as real peers do: all at once
            last_beat = time.monotonic()
            heartbeat(zctx, peers)
        for sock, _ in poller.poll(5000):
            p = by_sock[sock]
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                p[4] -= 1
                if isinstance(decode(frames).msg, m.Ok):
                    acked += 1
                else:
                    errors += 1
            fill(p)
    elapsed = time.perf_counter() - started
    for p in peers:
        poller.unregister(p[2])
    if errors and not cap_s:
        raise SystemExit(f"{errors} announces were refused")
    if errors:
        print(f"    {errors} announces refused (peers expired: the store was too slow to take their heartbeats)",
              flush=True)
    return acked * per_msg / elapsed, elapsed, acked


def measure(endpoints: list[str], total: int, per_msg: int, window: int) -> tuple[float, float]:
    """(pieces acknowledged per second, seconds the announcing took), on a fresh torrent."""
    zctx = zmq.Context()
    info_hash, peers = join(zctx, endpoints, str(per_msg))
    rate, elapsed, _ = announce(zctx, info_hash, peers, total, per_msg, window)
    for p in peers:
        p[2].close(0)
    zctx.term()
    return rate, elapsed


def by_size(endpoints: list[str], sizes: list[int], holding: float, total: int, cap_s: float) -> None:
    """Announces per second by torrent size: each peer first announces ``holding`` of the
    pieces (1,024 a message, timed too), then 1-piece and 32-piece announces of new pieces."""
    zctx = zmq.Context()
    try:
        for n in sizes:
            info_hash, peers = join(zctx, endpoints, f"n{n}", n)
            held = int(n * holding)
            chunk = 1024
            rate, secs, acked = announce(zctx, info_hash, peers, PEERS * -(-held // chunk), chunk, 1, n, 0, cap_s)
            short = "" if acked * chunk >= PEERS * held else f" (stopped after {cap_s:.0f} s: {acked * chunk // PEERS:,d} of {held:,d} each)"
            print(f"  {n:>7,d} pieces: filling to {holding:.0%} per peer at {rate:,.0f} pieces/s{short}", flush=True)
            one, secs1, acked1 = announce(zctx, info_hash, peers, total, 1, SLOW_WINDOW, n, held, cap_s)
            many, _, _ = announce(zctx, info_hash, peers, max(PEERS, total // 8), 32, SLOW_WINDOW, n, held + total, cap_s)
            print(f"  {n:>7,d} pieces: {one:,.0f} announces/s at 1 piece ({acked1:,d} in {secs1:.1f} s), "
                  f"{many:,.0f} pieces/s at 32 per announce", flush=True)
            for p in peers:
                p[2].close(0)
    finally:
        zctx.destroy(linger=0)


def start_tracker(work: Path, store: str, name: str = "tracker") -> tuple[subprocess.Popen, str]:
    ready = work / f"{name}.ready"
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, str(REPO / "main.py"), "tracker", "--port", "0", "--store", store,
                             "--ready-file", str(ready)], cwd=work, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=open(work / f"{name}.log", "ab"), stderr=subprocess.STDOUT)
    return proc, wait_for(lambda: ready.exists() and ready.read_text(), what=name)


def cpu_s(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds so far of these processes and their children."""
    total = 0.0
    for p in procs:
        for q in [p, *p.children(recursive=True)]:
            try:
                t = q.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    return total


def wall_shares(raw: Path) -> dict[str, float]:
    """py-spy --idle collapsed stacks of one tracker -> % of wall time: waiting for the store
    (inside pymongo, in a socket read), waiting for requests (the reactor's poll), or working."""
    counts: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, num = line.rpartition(" ")
        frames = stack.split(";")
        leaf = frames[-1]
        if "_bootstrap" in frames[0]:
            continue             # other threads (pymongo's monitors, the HTTP door): not the request path
        in_pymongo = any("pymongo" in f for f in frames)
        if in_pymongo and any(w in leaf for w in ("recv", "receive", "poll", "select", "wait_for_read")):
            counts["waiting for the store (pymongo socket read)"] += int(num)
        elif "reactor.py" in stack and ("poll" in leaf or "select" in leaf) and not in_pymongo:
            counts["waiting for requests (reactor poll)"] += int(num)
        elif in_pymongo:
            counts["own work: pymongo (BSON, commands, send)"] += int(num)
        else:
            counts["own work: zorrent + pyzmq + msgpack"] += int(num)
    total = sum(counts.values()) or 1
    return {k: 100 * v / total for k, v in counts.most_common()}


def top_leaves(raw: Path, n: int = 8) -> list[tuple[str, float]]:
    """% of samples per leaf frame (idle included)."""
    counts: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, num = line.rpartition(" ")
        if "_bootstrap" not in stack.split(";")[0]:     # the main thread only
            counts[stack.split(";")[-1]] += int(num)
    total = sum(counts.values()) or 1
    return [(f, 100 * c / total) for f, c in counts.most_common(n)]


def run_mongo(work: Path, uri_base: str, server: subprocess.Popen, trackers: int, total: int,
              spy: bool) -> None:
    uri = f"{uri_base}/rate{trackers}?retryWrites=false"
    procs = [start_tracker(work, uri, f"tracker{i + 1}") for i in range(trackers)]
    endpoints = [ep for _, ep in procs]
    label = f"MongoDB protocol (SecantusDB), {trackers} tracker{'s' if trackers > 1 else ''}"
    spies = []
    try:
        tracker_ps = [psutil.Process(p.pid) for p, _ in procs]
        server_ps = [psutil.Process(server.pid)]
        t0, s0 = cpu_s(tracker_ps), cpu_s(server_ps)
        single, secs = measure(endpoints, total, 1, SLOW_WINDOW)
        t1, s1 = cpu_s(tracker_ps), cpu_s(server_ps)
        print(f"{label}: {single:,.0f} announces/s at 1 piece each ({total:,d} announces, {PEERS} peers x "
              f"{SLOW_WINDOW} outstanding, {secs:.1f} s)", flush=True)
        print(f"  CPU per announce: trackers {1e6 * (t1 - t0) / total:,.0f} us (all trackers together), "
              f"server {1e6 * (s1 - s0) / total:,.0f} us; busy: trackers {100 * (t1 - t0) / secs:.0f}% "
              f"of a core, server {100 * (s1 - s0) / secs:.0f}%", flush=True)
        batched, _ = measure(endpoints, SLOW_BATCHED, 32, SLOW_WINDOW)
        print(f"{label}: {batched:,.0f} pieces/s at 32 pieces per announce ({SLOW_BATCHED} announces)", flush=True)
        if spy:                  # a third run under py-spy (it pauses the tracker to sample: no rates from it)
            for i, (proc, _) in enumerate(procs):
                out = work / f"spy{trackers}_{i + 1}.txt"
                spies.append((subprocess.Popen([PY_SPY, "record", "--idle", "--format", "raw", "-r", "200",
                                                "-o", str(out), "-p", str(proc.pid)],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out))
            time.sleep(1.0)      # py-spy attaches
            measure(endpoints, total, 1, SLOW_WINDOW)
            for sp, out in spies:
                sp.send_signal(signal.SIGINT)
                sp.wait(timeout=30)
                if out.exists():
                    shares = ", ".join(f"{k} {v:.0f}%" for k, v in wall_shares(out).items())
                    print(f"  {out.name} (py-spy, main thread wall time of one tracker): {shares}", flush=True)
                    for frame, pct in top_leaves(out):
                        print(f"      {pct:5.1f}%  {frame}", flush=True)
            spies = []
    finally:
        for sp, _ in spies:
            sp.kill()
        for proc, _ in procs:
            kill_tree(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--announces", type=int, default=40000)
    ap.add_argument("--mongo", action="store_true", help="also measure the MongoDB store (SecantusDB)")
    ap.add_argument("--trackers", default="1,2", help="with --mongo: tracker counts to measure, e.g. 1,2")
    ap.add_argument("--spy", action="store_true", help="with --mongo: py-spy each tracker during the 1-piece run")
    ap.add_argument("--no-sqlite", action="store_true", help="skip the SQLite run")
    ap.add_argument("--pieces", default="", help="with --mongo: only announces/s by torrent size, e.g. 1000,10000,100000")
    ap.add_argument("--holding", type=float, default=0.5, help="with --pieces: what each peer holds first")
    ap.add_argument("--cap-s", type=float, default=120.0, help="with --pieces: stop a phase after this long")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zorrent-rate-"))
    server = None
    try:
        if not args.no_sqlite:
            name = "SQLite (WAL, synchronous=FULL, group commit)"
            proc, endpoint = start_tracker(work, f"sqlite:///{work / 'tracker.db'}")
            try:
                single, _ = measure([endpoint], args.announces, 1, WINDOW)
                print(f"{name}: {single:,.0f} announces/s at 1 piece each "
                      f"({args.announces:,d} announces, {PEERS} peers x {WINDOW} outstanding)", flush=True)
                batched, _ = measure([endpoint], args.announces, 32, WINDOW)
                print(f"{name}: {batched:,.0f} pieces/s at 32 pieces per announce", flush=True)
            finally:
                kill_tree(proc)
        if args.mongo:
            server, base = start_secantus(work / "mongo")
            if args.pieces:
                proc, endpoint = start_tracker(work, f"{base}/sizes?retryWrites=false", "tracker_sizes")
                try:
                    print(f"MongoDB protocol (SecantusDB), 1 tracker, {PEERS} peers, by torrent size:", flush=True)
                    by_size([endpoint], [int(x) for x in args.pieces.split(",")], args.holding,
                            max(PEERS, args.announces // 40), args.cap_s)
                finally:
                    kill_tree(proc)
                return 0
            for n in (int(x) for x in args.trackers.split(",")):
                run_mongo(work, base, server, n, max(1000, args.announces // 40), args.spy)
    finally:
        if server is not None:
            kill_tree(server)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
