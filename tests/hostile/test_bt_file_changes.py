"""A seeded file changed on disk while BEP 3 connections are open: no changed byte is
served (blocks go out by sendfile, node/peer/bt/spans.py), a connection opened before the
change serves only what the re-hash verified, and the rest is still served."""
from __future__ import annotations

import os

from node.peer.bt import framing as f
from protocol import metainfo
from tests.hostile.btwire import RawPeer, request
from tests.integration.bt_clients import bt_port
from tests.procs import wait_for

BLOCK = 16 * 1024


def unchoked(port: int, info_hash: bytes) -> RawPeer:
    peer = RawPeer(port)
    assert peer.handshake(info_hash)[28:48] == info_hash
    peer.send(f.simple(f.INTERESTED))
    peer.until(f.UNCHOKE)
    return peer


def ask(peer: RawPeer, piece: int, begin: int) -> tuple[str, bytes]:
    """("piece", block) or ("reject", b"") for a request of one block; ("closed", b"") if
    the seed hung up (or reset the connection) first."""
    try:
        peer.send(request(piece, begin, BLOCK))
        while True:
            got = peer.message()
            if got is None:
                continue
            if got[0] == f.PIECE:
                return "piece", got[1][8:]
            if got[0] == f.REJECT:
                return "reject", b""
    except (ConnectionError, OSError):
        return "closed", b""


def test_a_file_changed_on_disk_is_never_served_and_a_stale_connection_serves_only_what_verifies(swarm):
    src, up = swarm.seeded("z1", [], "clip.bin", 1024 * 1024 + 99, seed=37)
    meta = metainfo.read(swarm.workdir / up["torrent"])
    ih, port = bytes.fromhex(meta.info_hash), bt_port(swarm, "z1")
    original = src.read_bytes()
    a, b = unchoked(port, ih), unchoked(port, ih)     # b is opened before the change and kept across it
    assert ask(a, 0, 0) == ("piece", original[:BLOCK])

    changed = bytes(x ^ 0xFF for x in original[meta.piece_length:meta.piece_length + BLOCK])
    with open(src, "r+b") as fh:                      # in place: same inode, new mtime
        fh.seek(meta.piece_length)
        fh.write(changed)
        fh.flush()
        os.fsync(fh.fileno())
    kind, data = ask(a, 1, 0)
    assert kind in ("reject", "closed") and data != changed, kind

    def state() -> str:
        jobs = swarm.status("z1")["jobs"]
        return jobs[0]["state"] if jobs else ""

    wait_for(lambda: state() == "changed", timeout_s=30, what="z1 to notice the change and re-hash")
    kind, data = ask(b, 1, 0)                         # piece 1 no longer verifies: never served
    assert kind in ("reject", "closed"), (kind, data[:16])
    if kind == "reject":      # and the pieces that still verify are (each asker its own: send-once seeding)
        assert ask(b, 2, 0) == ("piece", original[2 * meta.piece_length:2 * meta.piece_length + BLOCK])
    c = unchoked(port, ih)
    assert ask(c, 3, 0) == ("piece", original[3 * meta.piece_length:3 * meta.piece_length + BLOCK])
    assert ask(c, 1, 0)[0] == "reject"
    for peer in (a, b, c):
        peer.close()
