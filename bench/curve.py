"""What CURVE costs ZeroMQ itself, apart from zorrent: one DEALER streams messages to a
ROUTER over loopback tcp, plain and with CURVE (libsodium), at several message sizes.

    python bench/curve.py                    # 16 KiB, 256 KiB, 1 MiB, 4 MiB; 256 MiB each
    python bench/curve.py --mib 512 --size 4194304
    python bench/curve.py --streams 2 --size 1048576   # two connections, two I/O threads a side

The two ends are separate processes (each with its own libzmq I/O thread, as a seed and a
leecher are), with a bounded window of messages in flight, as zorrent's credit does. It
prints MB/s for each and the CURVE/plain ratio, measured in the same run, alternating.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MIB = 1024 * 1024
WINDOW_BYTES = 8 * MIB           # zorrent's PIPELINE_BYTES: what is in flight to one peer


def _server(keys: str | None, size: int, count: int, ready, streams: int = 1) -> None:
    """Answers each small request with one ``size``-byte payload frame (a GetBlock's reply)."""
    ctx = zmq.Context(io_threads=streams)
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.SNDHWM, 0)      # as bind_router: the window, not the HWM, bounds what is queued
    if keys:
        import os

        os.environ["ZORRENT_KEYS"] = keys
        from node import curve

        curve.secure_server(ctx, sock, "tcp://127.0.0.1:0")
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    ready.send(port)
    payload = zmq.Frame(b"\xab" * size)
    for _ in range(count):
        ident, _req = sock.recv_multipart(copy=False)
        sock.send_multipart([ident, b"h", payload], copy=False)
    ready.recv()                  # the client has everything
    sock.close(linger=0)
    if keys:
        from node import curve

        curve.stop(ctx)
    ctx.term()


def one(keys: str | None, size: int, total: int, streams: int = 1) -> float:
    """MB/s of one run: ``total`` bytes in ``size``-byte replies, a window in flight, over
    ``streams`` connections (each its own libzmq I/O thread on both sides)."""
    count = max(1, total // size)
    here, there = mp.Pipe()
    proc = mp.Process(target=_server, args=(keys, size, count, there, streams))
    proc.start()
    port = here.recv()
    import os

    if keys:
        os.environ["ZORRENT_KEYS"] = keys
    else:
        os.environ.pop("ZORRENT_KEYS", None)
    from node import curve

    ctx = zmq.Context(io_threads=streams)
    endpoint = f"tcp://127.0.0.1:{port}"
    socks = []
    poller = zmq.Poller()
    for _ in range(streams):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.RCVHWM, 0)
        curve.secure_client(sock, endpoint)
        sock.connect(endpoint)
        socks.append(sock)
        poller.register(sock, zmq.POLLIN)
    window = max(2, WINDOW_BYTES // size)
    sent = got = 0
    started = None
    while got < count:
        while sent < count and sent - got < window:
            socks[sent % streams].send(b"r")
            sent += 1
        ready = dict(poller.poll(30_000))
        if not ready:
            raise SystemExit(f"no reply for 30 s after {got} of {count} ({'CURVE' if keys else 'plain'}, {size} bytes)")
        for sock in ready:
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                if started is None:
                    started = time.perf_counter()          # from the first reply: the handshake is not counted
                got += 1
                assert len(frames[1]) == size
    seconds = time.perf_counter() - started
    here.send(b"done")
    proc.join()
    for sock in socks:
        sock.close(linger=0)
    ctx.term()
    return (count - 1) * size / 1e6 / seconds


def sodium_rate_mbps(size: int = 4 * MIB, reps: int = 64) -> float | None:
    """XSalsa20-Poly1305 (``crypto_box_easy_afternm``, what CURVE seals each message with) in
    pyzmq's own bundled libsodium, on one core: the cipher's cost without libzmq around it."""
    import ctypes
    import glob

    found = glob.glob(str(Path(zmq.__file__).parent.parent / "pyzmq.libs" / "libsodium*.so*"))
    if not found:
        return None
    lib = ctypes.CDLL(found[0])
    if lib.sodium_init() < 0:
        return None
    pk, sk, key = (ctypes.create_string_buffer(32) for _ in range(3))
    lib.crypto_box_keypair(pk, sk)
    lib.crypto_box_beforenm(key, pk, sk)
    plain, box, nonce = ctypes.create_string_buffer(size), ctypes.create_string_buffer(size + 16), \
        ctypes.create_string_buffer(24)
    started = time.perf_counter()
    for _ in range(reps):
        lib.crypto_box_easy_afternm(box, plain, ctypes.c_ulonglong(size), nonce, key)
    return reps * size / 1e6 / (time.perf_counter() - started)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256, help="bytes per run, in MiB")
    ap.add_argument("--size", type=int, action="append", help="message size in bytes (repeatable)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--streams", type=int, default=1, help="connections (and I/O threads each side)")
    args = ap.parse_args()
    from node import curve

    keys = str(curve.make_swarm(Path(tempfile.mkdtemp(prefix="zorrent-curve-")) / "keys").folder)
    sizes = args.size or [16 * 1024, 256 * 1024, MIB, 4 * MIB]
    rate = sodium_rate_mbps()
    print(f"libsodium XSalsa20-Poly1305 (pyzmq's bundled copy): {rate:.0f} MB/s on one core" if rate
          else "libsodium: not found beside pyzmq")
    print(f"{args.mib} MiB per run, {args.runs} runs each, alternating plain and CURVE, "
          f"{WINDOW_BYTES // MIB} MiB in flight over {args.streams} connection(s)", flush=True)
    print("\n| message | plain MB/s | CURVE MB/s | CURVE / plain |\n|---|---|---|---|")
    for size in sizes:
        plain, curved = [], []
        for _ in range(args.runs):
            plain.append(one(None, size, args.mib * MIB, args.streams))
            curved.append(one(keys, size, args.mib * MIB, args.streams))
        p, c = statistics.median(plain), statistics.median(curved)
        print(f"| {size // 1024} KiB | {p:.0f} | {c:.0f} | {c / p:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
