"""The real web server and page, fed made-up observations (for bench/web_view.py --synthetic).

    python bench/web_fake.py PEERS TORRENTS PIECES READY_FILE

Every peer holds a random 60% of every torrent and downloads the rest; each poll it
gains a few pieces, so counters, rates and the piece maps move like a real swarm's.
"""
from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web  # noqa: E402

from node.process import write_ready_file  # noqa: E402
from node.web.server import allowed_hosts, make_app  # noqa: E402
from node.web.swarm import Observation  # noqa: E402
from protocol import messages as m  # noqa: E402
from protocol.pieces import Bitfield  # noqa: E402

PIECE = 16384


class FakePoller:
    def __init__(self, peers: int, torrents: int, pieces: int) -> None:
        self.rng = random.Random(1)
        self.ids = [f"peer{i:03d}" for i in range(peers)]
        self.pieces = pieces
        self.torrents = [m.SwarmTorrent(info_hash=f"{k:040x}", name=f"synthetic-{k}.bin", num_pieces=pieces,
                                        length=pieces * PIECE, piece_length=PIECE) for k in range(torrents)]
        self.bits = {(p, t.info_hash): Bitfield(pieces) for p in self.ids for t in self.torrents}
        for bits in self.bits.values():
            for i in range(pieces):
                if self.rng.random() < 0.6:
                    bits.add(i)
        self.received = {key: 0 for key in self.bits}

    def observe(self) -> Observation:
        for key, bits in self.bits.items():
            for _ in range(5):
                if bits.add(self.rng.randrange(self.pieces)):
                    self.received[key] += PIECE
        swarm = m.Swarm(peers=[m.SwarmPeer(peer_id=p, host="127.0.0.1", port=7000 + i, seen_s_ago=0.5)
                               for i, p in enumerate(self.ids)], torrents=self.torrents,
                        stats=m.TrackerStats(started_s_ago=1.0, requests=0, announces=0, pieces_announced=0,
                                             latency_buckets_s=[0.01], latency_counts=[0, 0], latency_sum_s=0.0))
        holders = {t.info_hash: m.PeerList(info_hash=t.info_hash, name=t.name, num_pieces=self.pieces,
                                           length=t.length, peers=[
            m.PeerInfo(peer_id=p, host="127.0.0.1", port=1, bitfield=self.bits[p, t.info_hash].to_bytes(),
                       have=len(self.bits[p, t.info_hash])) for p in self.ids]) for t in self.torrents}
        statuses = {}
        for i, p in enumerate(self.ids):
            jobs = []
            for t in self.torrents:
                have = len(self.bits[p, t.info_hash])
                src = self.ids[(i + 1) % len(self.ids)]
                jobs.append(m.JobStatus(
                    info_hash=t.info_hash, name=t.name, path="/x", state="downloading", num_pieces=self.pieces,
                    have=have, announced=have, resumed=0, fetched=self.received[p, t.info_hash] // PIECE,
                    length=t.length, bytes_done=have * PIECE, failed_attempts=0, ignored=0, elapsed_s=1.0,
                    error="", peers=[m.PeerStat(peer_id=src, pieces=0, bytes=self.received[p, t.info_hash],
                                                failures=0, score=1.0, banned=False)]))
            statuses[p] = m.StatusReply(peer_id=p, registered=True, jobs=jobs)
        return Observation(at=time.time(), tracker=swarm, holders=holders, statuses=statuses)

    def close(self) -> None:
        pass


async def serve(peers: int, torrents: int, pieces: int, ready: str) -> None:
    allowed: set[str] = set()
    app = make_app("synthetic", allowed, FakePoller(peers, torrents, pieces))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    allowed |= allowed_hosts("127.0.0.1", port, [])
    write_ready_file(ready, f"http://127.0.0.1:{port}/")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
