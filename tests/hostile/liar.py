"""A peer that lies on purpose, for the hostile-peer tests.

It registers with the tracker and announces every piece of a torrent, like a seeder,
then misbehaves according to --mode:

    corrupt   answers every block with flipped bytes
    stall     accepts requests and never answers
    trickle   answers correctly, one block every --delay seconds
    claim     has nothing: refuses every block (PIECE_UNAVAILABLE)
    unasked   answers correctly, and also sends blocks nobody asked for

Usage: python tests/hostile/liar.py --tracker tcp://.. --peer-id liar --torrent T --file F --mode M --ready-file R
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from node.channel import call  # noqa: E402
from protocol import messages as m  # noqa: E402
from protocol.codec import decode, encode, error_frames  # noqa: E402
from protocol.errors import ErrorCode  # noqa: E402
from protocol.metainfo import read  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracker", required=True)
    ap.add_argument("--peer-id", required=True)
    ap.add_argument("--torrent", required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--mode", required=True, choices=["corrupt", "stall", "trickle", "claim", "unasked"])
    ap.add_argument("--delay", type=float, default=2.0)
    ap.add_argument("--ready-file", required=True)
    args = ap.parse_args()

    meta = read(args.torrent)
    fd = os.open(args.file, os.O_RDONLY)
    zctx = zmq.Context()
    sock = zctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    reg = call(zctx, args.tracker, m.RegisterPeer(peer_id=args.peer_id, host="127.0.0.1", port=port, token=""),
               timeout_s=2, tries=3).msg
    call(zctx, args.tracker, m.RegisterTorrent(peer_id=args.peer_id, token=reg.token, metainfo=meta.raw), timeout_s=2, tries=3)
    call(zctx, args.tracker, m.Announce(peer_id=args.peer_id, token=reg.token, info_hash=meta.info_hash,
                                        pieces=list(range(meta.num_pieces))), timeout_s=2, tries=3)
    Path(args.ready_file).write_text(f"tcp://127.0.0.1:{port}")
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    rng = random.Random(1)
    next_beat = time.monotonic()
    trickle: list = []
    while running[0]:
        now = time.monotonic()
        if now >= next_beat:
            next_beat = now + 1.0
            call(zctx, args.tracker, m.Heartbeat(peer_id=args.peer_id, token=reg.token), timeout_s=2, tries=1)
        while trickle and trickle[0][0] <= now:
            _, ident, frames = trickle.pop(0)
            sock.send_multipart([ident, *frames])
        if not sock.poll(50):
            continue
        ident, *frames = sock.recv_multipart()
        env = decode(frames)
        if isinstance(env.msg, m.Ping):
            sock.send_multipart([ident, *encode(m.Pong(node="peer", peer_id=args.peer_id, pid=os.getpid()), env.id)])
            continue
        req = env.msg
        if args.mode == "stall":
            continue
        if args.mode == "claim":
            sock.send_multipart([ident, *error_frames(env.id, ErrorCode.PIECE_UNAVAILABLE, "not here")])
            continue
        data = os.pread(fd, req.length, req.piece_index * meta.piece_length + req.block_offset)
        if args.mode == "corrupt":
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        reply = encode(m.Block(info_hash=req.info_hash, piece_index=req.piece_index,
                               block_offset=req.block_offset), env.id, data)
        if args.mode == "trickle":
            due = max([now] + [t for t, _, _ in trickle]) + args.delay
            trickle.append((due, ident, reply))
            continue
        sock.send_multipart([ident, *reply])
        if args.mode == "unasked":   # a block nobody asked for: an unknown id, garbage bytes
            junk = m.Block(info_hash=meta.info_hash, piece_index=rng.randrange(meta.num_pieces), block_offset=0)
            sock.send_multipart([ident, *encode(junk, 10**12 + rng.randrange(10**6), os.urandom(1024))])
    sock.close(0)
    zctx.term()


if __name__ == "__main__":
    main()
