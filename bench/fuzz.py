"""Fuzz the decoder and both nodes' request loops with many hypothesis-generated frames.

    python bench/fuzz.py --frames 100000

Starts a real tracker and a real peer in a temp directory, then sends --frames frames
to each of: the decoder (in process), the tracker, the peer's data port and the peer's
control socket. Every frame must get a well-formed reply within 3 s (no hang), no node
may die, and each must answer a ping at the end. Prints the counts; exits 1 on failure.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hypothesis import given, settings, strategies as st  # noqa: E402

from protocol import messages as m  # noqa: E402
from protocol.codec import decode  # noqa: E402
from protocol.errors import ProtocolError  # noqa: E402
from tests.hostile.frames import frame_lists  # noqa: E402
from tests.hostile.test_fuzz import FUZZ, Prober  # noqa: E402


def batches(total: int, batch: int, exclude=frozenset()):
    return settings(FUZZ, max_examples=max(1, total // batch)), st.lists(
        frame_lists(exclude), min_size=batch, max_size=batch)


def fuzz_decoder(total: int, batch: int) -> int:
    count = [0]
    conf, strategy = batches(total, batch)

    @conf
    @given(strategy)
    def run(many):
        for frames in many:
            count[0] += 1
            try:
                decode(frames)
            except ProtocolError:
                pass

    run()
    return count[0]


def fuzz_node(endpoint: str, total: int, batch: int, exclude=frozenset()) -> int:
    prober = Prober(endpoint)
    conf, strategy = batches(total, batch, exclude)

    @conf
    @given(strategy)
    def run(many):
        for frames in many:
            prober.probe(frames)

    try:
        run()
        assert isinstance(prober.ping(), m.Pong), "no ping reply after fuzzing"
        return prober.sent
    finally:
        prober.close()


def spawn(workdir: Path, name: str, *args: str) -> tuple[subprocess.Popen, str]:
    ready = workdir / f"{name}.ready"
    log = open(workdir / f"{name}.log", "ab")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(REPO / "main.py"), *args, "--ready-file", str(ready)],
                            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not start: {(workdir / f'{name}.log').read_text()}")
        time.sleep(0.05)
    return proc, ready.read_text()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100_000, help="frames per target")
    ap.add_argument("--batch", type=int, default=50, help="frames drawn per hypothesis example")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="zorrent-fuzz-") as tmp:
        workdir = Path(tmp)
        tracker, tracker_ep = spawn(workdir, "tracker", "tracker", "--port", "0")
        peer, peer_ep = spawn(workdir, "peer", "peer", "--peer-id", "fuzzed", "--port", "0", "--tracker", tracker_ep)
        try:
            for name, fn in [
                ("decoder", lambda: fuzz_decoder(args.frames, args.batch)),
                ("tracker", lambda: fuzz_node(tracker_ep, args.frames, args.batch)),
                ("peer data port", lambda: fuzz_node(peer_ep, args.frames, args.batch)),
                ("peer control socket", lambda: fuzz_node(f"ipc://{workdir}/output/run/fuzzed.sock", args.frames,
                                                          args.batch, frozenset({m.MsgType.SHUTDOWN}))),
            ]:
                started = time.monotonic()
                results[name] = (fn(), time.monotonic() - started)
                print(f"{name:22s} {results[name][0]:>8,d} frames  {results[name][1]:6.1f} s  0 crashes, 0 hangs",
                      flush=True)
            alive = tracker.poll() is None and peer.poll() is None
        finally:
            for proc in (peer, tracker):
                proc.terminate()
                proc.wait(10)
    total = sum(n for n, _ in results.values())
    print(f"total {total:,d} frames; nodes alive and answering ping: {alive}")
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
