"""How many piece announces per second the tracker acknowledges, each one durable first.

    python bench/tracker_rate.py [--announces 40000] [--mongo]

Starts a real tracker (SQLite store; with --mongo also one on a SecantusDB server),
registers 8 peers and a 65,536-piece torrent, then has the 8 peers pipeline ANNOUNCE
requests (64 outstanding each; 1 on the slower MongoDB server, so that the peers'
heartbeats are not queued past their expiry) and counts the acknowledgements. Reported twice: one
piece per ANNOUNCE (the worst case) and 32 pieces per ANNOUNCE (what peers send when
they batch within ANNOUNCE_BATCH_S).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fastbencode
import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from node.channel import call  # noqa: E402
from protocol import messages as m  # noqa: E402
from protocol.codec import decode, encode  # noqa: E402
from tests.procs import free_port, kill_tree, wait_for  # noqa: E402

PEERS = 8
WINDOW = 64          # announces outstanding per peer (SQLite)
SLOW_WINDOW = 1      # for a slow store: heartbeats wait behind PEERS * window announces
NUM_PIECES = 65536


def fake_torrent() -> bytes:
    info = {b"length": NUM_PIECES * 16384, b"name": b"rate.bin", b"piece length": 16384,
            b"pieces": os.urandom(20 * NUM_PIECES)}
    return fastbencode.bencode({b"announce": b"tcp://127.0.0.1:1", b"info": info})


def heartbeat(zctx: zmq.Context, endpoint: str, peers: list) -> None:
    socks = []
    for p in peers:
        sock = zctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        sock.send_multipart(encode(m.Heartbeat(peer_id=p[0], token=p[1]), 1))
        socks.append(sock)
    for sock in socks:
        if not sock.poll(30_000):
            raise SystemExit("a heartbeat got no answer in 30 s")
        reply = decode(sock.recv_multipart()).msg
        sock.close(0)
        if not isinstance(reply, m.Ok):
            raise SystemExit(f"heartbeat refused: {reply}")


def measure(endpoint: str, total: int, per_msg: int, window: int) -> float:
    zctx = zmq.Context()
    raw = fake_torrent()
    info_hash = call(zctx, endpoint, m.RegisterTorrent(metainfo=raw), timeout_s=5, tries=2).msg.info_hash
    peers = []
    for i in range(PEERS):
        pid = f"rate{per_msg}_{i}"
        token = call(zctx, endpoint, m.RegisterPeer(peer_id=pid, host="127.0.0.1", port=20000 + i, token=""),
                     timeout_s=5, tries=2).msg.token
        sock = zctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        peers.append([pid, token, sock, 0, 0])     # id, token, socket, next piece, outstanding
    poller = zmq.Poller()
    for p in peers:
        poller.register(p[2], zmq.POLLIN)
    per_peer = total // PEERS
    acked = errors = 0
    started = time.perf_counter()

    def fill(p):
        while p[4] < window and p[3] < per_peer * per_msg:
            pieces = [(p[3] + k) % NUM_PIECES for k in range(per_msg)]
            p[2].send_multipart(encode(m.Announce(peer_id=p[0], token=p[1], info_hash=info_hash, pieces=pieces), 1))
            p[3] += per_msg
            p[4] += 1

    for p in peers:
        fill(p)
    by_sock = {p[2]: p for p in peers}
    last_beat = time.monotonic()
    while acked + errors < per_peer * PEERS:
        if time.monotonic() - last_beat > 1.0:     # stay alive, as real peers do: all at once
            last_beat = time.monotonic()
            heartbeat(zctx, endpoint, peers)
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
        p[2].close(0)
    zctx.term()
    if errors:
        raise SystemExit(f"{errors} announces were refused")
    return acked * per_msg / elapsed


def start_tracker(work: Path, store: str) -> tuple[subprocess.Popen, str]:
    ready = work / "tracker.ready"
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, str(REPO / "main.py"), "tracker", "--port", "0", "--store", store,
                             "--ready-file", str(ready)], cwd=work, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=open(work / "tracker.log", "ab"), stderr=subprocess.STDOUT)
    return proc, wait_for(lambda: ready.exists() and ready.read_text(), what="tracker")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--announces", type=int, default=40000)
    ap.add_argument("--mongo", action="store_true", help="also measure the MongoDB store (SecantusDB)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zorrent-rate-"))
    stores = [("SQLite (WAL, synchronous=FULL, group commit)", f"sqlite:///{work / 'tracker.db'}", args.announces,
               WINDOW)]
    server = None
    if args.mongo:
        binary = shutil.which("secantusd-py", path=str(Path(sys.executable).parent))
        port = free_port()
        server = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port), "--storage-path",
                                   str(work / "mongo")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stores.append(("MongoDB protocol (SecantusDB)", f"mongodb://127.0.0.1:{port}/rate?retryWrites=false",
                       max(1000, args.announces // 40), SLOW_WINDOW))
    try:
        for name, uri, total, window in stores:
            proc, endpoint = start_tracker(work, uri)
            try:
                single = measure(endpoint, total, 1, window)
                print(f"{name}: {single:,.0f} announces/s at 1 piece each "
                      f"({total:,d} announces, {PEERS} peers x {window} outstanding)", flush=True)
                batched = measure(endpoint, total, 32, window)
                print(f"{name}: {batched:,.0f} pieces/s at 32 pieces per announce", flush=True)
            finally:
                kill_tree(proc)
    finally:
        if server is not None:
            kill_tree(server)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
