"""A large upload is hashed off the peer's event loop: while it is, the peer answers
``status`` (which shows the hash's progress), serves what it already seeds, and stays
listed by the tracker."""
import hashlib
import random
import time

import fastbencode

from ctl import client
from protocol import messages as m
from protocol import metainfo
from tests.conftest import write_random

MIB = 1024 * 1024
PIECE = MIB
BLOCK = 4 * MIB                 # the big file repeats one random block: written fast, hashed like any file
BIG = 512 * MIB                 # enough for many status rounds while it hashes
DEADLINE_S = 90.0


def repeated_file(path, block: bytes, total: int, announce: str) -> metainfo.Metainfo:
    """Write ``block`` over and over to ``total`` bytes; its metainfo, built without reading it back."""
    with open(path, "wb") as f:
        for _ in range(total // len(block)):
            f.write(block)
    hashes = b"".join(hashlib.sha1(block[i:i + PIECE]).digest() for i in range(0, len(block), PIECE))
    info = {b"length": total, b"name": path.name.encode(), b"piece length": PIECE,
            b"pieces": hashes * (total // len(block))}
    return metainfo.parse(fastbencode.bencode({b"announce": announce.encode(), b"info": info}))


def test_status_and_serving_go_on_while_a_large_upload_is_hashed(swarm, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)          # talk to the peer's control socket and the tracker directly
    swarm.tracker()
    swarm.peer("peer1")
    small = swarm.upload(write_random(tmp_path / "in" / "small.bin", MIB, 3), "peer1")
    big = tmp_path / "in" / "big.bin"
    meta = repeated_file(big, random.Random(5).randbytes(BLOCK), BIG, swarm.tracker_endpoint)
    try:
        client.peer_control("peer1", m.Upload(path=str(big), metainfo=meta.raw), timeout_s=2, tries=1)
        # a second torrent uploaded meanwhile is hashed beside the big one, not after it
        other = repeated_file(tmp_path / "in" / "other.bin", random.Random(6).randbytes(BLOCK), BLOCK,
                              swarm.tracker_endpoint)
        client.peer_control("peer1", m.Upload(path=str(tmp_path / "in" / "other.bin"), metainfo=other.raw),
                            timeout_s=2, tries=1)
        seen, listed, other_state = [], 0, None
        deadline = time.monotonic() + DEADLINE_S
        while True:
            assert time.monotonic() < deadline, f"still hashing after {DEADLINE_S:.0f}s"
            # answered at all (one try, no retry) is the point; no wall-clock bound on 2 shared cores
            job = client.peer_control("peer1", m.Status(info_hash=meta.info_hash), timeout_s=2, tries=1).jobs[0]
            if job.state != "hashing":
                break
            seen.append(job.hashed_bytes)
            if other_state != "seeding":
                other_state = client.peer_control("peer1", m.Status(info_hash=other.info_hash),
                                                  timeout_s=2, tries=1).jobs[0].state
            assert job.hash_bytes == BIG and job.announced == 0
            peers = client.tracker(swarm.tracker_endpoint, m.GetPeers(info_hash=small["info_hash"]),
                                   timeout_s=2, tries=1).peers
            listed += [p.peer_id for p in peers] == ["peer1"]
            block = client.request(f"tcp://127.0.0.1:{swarm.peer_ports['peer1']}",
                                   m.GetBlock(info_hash=small["info_hash"], piece_index=0, block_offset=0,
                                              length=16384), "peer1's data port", timeout_s=2, tries=1)
            assert isinstance(block, (m.Block, m.Elsewhere))   # answered (Elsewhere: ask those pieces first)
            time.sleep(0.02)
        assert job.state == "seeding", job
        assert seen, "the hash ended before status could see it"
        assert seen == sorted(seen) and seen[-1] <= BIG   # all hashed, not yet announced: still "hashing"
        assert listed == len(seen)       # never expired meanwhile
        assert other_state == "seeding", f"the small torrent was {other_state} all through the big one's hash"
        res = swarm.cli("status", "--peer-id", "peer1")
        assert "big.bin" in res.stdout and "seeding" in res.stdout
        assert swarm.status("peer1")["registered"]
    finally:
        big.unlink(missing_ok=True)
