"""Tracker bytes out for one downloading job in a swarm of many holders: whole peer lists
(what every refresh was before issue 20) against GET_PEERS since a version (deltas).

    python bench/tracker_delta.py [--holders 100] [--pieces 10000] [--rate 5] [--rounds 20] [--mongo]

Starts a real tracker (SQLite; --mongo: on a SecantusDB server), registers --holders
peers of one torrent, each holding half its pieces, then runs --rounds rounds: every
holder announces --rate new pieces, and the job refreshes once, as it does every
PEER_REFRESH_S (1 s), so bytes per refresh are bytes per second for that job. Prints the
reply bytes per refresh both ways and their ratio. With --full-only it asks without a
cursor (what the code before issue 20 understood), to measure an older tree.
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.tracker_rate import fake_torrent, start_tracker  # noqa: E402
from node.channel import call  # noqa: E402
from protocol import messages as m  # noqa: E402
from protocol.codec import decode, encode  # noqa: E402
from tests.procs import kill_tree, start_secantus  # noqa: E402


def ask(sock: zmq.Socket, msg: m.Message) -> tuple[m.Message, int]:
    sock.send_multipart(encode(msg, 1))
    if not sock.poll(30_000):
        raise SystemExit("the tracker did not answer in 30 s")
    frames = sock.recv_multipart()
    return decode(frames).msg, sum(len(f) for f in frames)


def run(endpoint: str, holders: int, pieces: int, rate: int, rounds: int, modes: list[str]) -> dict[str, float]:
    zctx = zmq.Context()
    rnd = random.Random(7)
    owner = call(zctx, endpoint, m.RegisterPeer(peer_id="delta_owner", host="127.0.0.1", port=19999, token=""),
                 timeout_s=5, tries=1).msg.token
    info_hash = call(zctx, endpoint, m.RegisterTorrent(peer_id="delta_owner", token=owner,
                                                       metainfo=fake_torrent(pieces)),
                     timeout_s=30, tries=1).msg.info_hash
    sock = zctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    peers = []
    last_beat = [time.monotonic()]

    def beat() -> None:                  # the holders stay alive, as real peers do
        if time.monotonic() - last_beat[0] > 1.0:
            last_beat[0] = time.monotonic()
            for pid, token, _ in peers:
                ask(sock, m.Heartbeat(peer_id=pid, token=token))

    for i in range(holders):
        pid = f"h{i}"
        token = ask(sock, m.RegisterPeer(peer_id=pid, host="127.0.0.1", port=30000 + i, token=""))[0].token
        missing = list(range(pieces))
        rnd.shuffle(missing)
        have, missing = missing[:pieces // 2], missing[pieces // 2:]
        for k in range(0, len(have), 4096):
            ask(sock, m.Announce(peer_id=pid, token=token, info_hash=info_hash, pieces=sorted(have[k:k + 4096])))
        peers.append((pid, token, missing))
        beat()
    cursor = {mode: -1 for mode in modes}
    sent = {mode: [] for mode in modes}
    spent = {mode: 0.0 for mode in modes}
    for _ in range(rounds + 1):
        for pid, token, missing in peers:
            batch, missing[:] = missing[:rate], missing[rate:]
            ask(sock, m.Announce(peer_id=pid, token=token, info_hash=info_hash, pieces=sorted(batch)))
        beat()
        for mode in modes:
            msg = m.GetPeers(info_hash=info_hash) if mode == "whole" else m.GetPeers(info_hash=info_hash,
                                                                                   since=cursor[mode])
            t0 = time.perf_counter()
            reply, size = ask(sock, msg)
            spent[mode] += time.perf_counter() - t0
            if mode == "delta":
                cursor[mode] = reply.version
            sent[mode].append(size)
    sock.close(0)
    zctx.term()
    out = {}
    for mode in modes:
        steady = sent[mode][1:]          # the first delta refresh is a whole list, as for a new job
        out[mode] = sum(steady) / len(steady)
        print(f"  {mode:>5}: first refresh {sent[mode][0]:,d} B, then {out[mode]:,.0f} B per refresh "
              f"(= B/s for one job at PEER_REFRESH_S = 1 s), {1000 * spent[mode] / (rounds + 1):.1f} ms per "
              f"refresh on the tracker", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--holders", type=int, default=100)
    ap.add_argument("--pieces", type=int, default=10_000)
    ap.add_argument("--rate", type=int, default=5, help="new pieces each holder announces per refresh")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--mongo", action="store_true", help="the tracker on a SecantusDB server")
    ap.add_argument("--full-only", action="store_true", help="whole lists only (an older tree)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zorrent-delta-"))
    server = proc = None
    try:
        if args.mongo:
            server, base = start_secantus(work / "mongo")
            store = f"{base}/delta?retryWrites=false"
        else:
            store = f"sqlite:///{work / 'tracker.db'}"
        proc, endpoint = start_tracker(work, store)
        print(f"{args.holders} holders x {args.pieces:,d} pieces, {args.rate} new pieces each per refresh, "
              f"{'MongoDB (SecantusDB)' if args.mongo else 'SQLite'} store:", flush=True)
        out = run(endpoint, args.holders, args.pieces, args.rate, args.rounds,
                  ["whole"] if args.full_only else ["whole", "delta"])
        if "delta" in out:
            print(f"  delta / whole: {out['delta'] / out['whole']:.4f} "
                  f"({out['whole'] / out['delta']:,.0f}x fewer bytes); at 100 such jobs: "
                  f"{100 * out['whole'] / 1e6:,.1f} MB/s against {100 * out['delta'] / 1e6:,.2f} MB/s", flush=True)
    finally:
        if proc is not None:
            kill_tree(proc)
        if server is not None:
            kill_tree(server)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
