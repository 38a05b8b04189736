"""An encrypted (MSE/PE) handshake on a peer's BEP 3 port, from a scripted initiator:
answered and negotiated to plaintext when the initiator offers it (then a block is served
plain), closed with one line when it offers RC4 only or names a torrent not held."""
from __future__ import annotations

import hashlib
import secrets
import struct

from node.peer.bt import framing as f
from node.peer.bt.mse import P, PLAINTEXT, RC4, VC, Rc4
from tests.hostile.btwire import RawPeer, request
from tests.integration.bt_clients import bt_port
from tests.procs import wait_for


def sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def mse_initiator(port: int, info_hash: bytes, provide: int) -> tuple[RawPeer, bytes]:
    """Steps 1 and 3 of MSE as libtorrent sends them, our BitTorrent handshake as IA;
    returns the peer and the secret S."""
    peer = RawPeer(port)
    x = secrets.randbits(160)
    peer.send(pow(2, x, P).to_bytes(96, "big") + secrets.token_bytes(77))          # Ya, PadA
    secret = pow(int.from_bytes(peer.read_exactly(96), "big"), x, P).to_bytes(96, "big")
    rc4 = Rc4(sha1(b"keyA", secret, info_hash))
    ia = f.handshake(info_hash, b"-XX0001-encrypted000")
    peer.send(sha1(b"req1", secret) + bytes(a ^ b for a, b in zip(sha1(b"req2", info_hash), sha1(b"req3", secret)))
              + rc4.crypt(VC + struct.pack(">IH", provide, 3) + b"pad" + struct.pack(">H", len(ia))) + rc4.crypt(ia))
    return peer, secret


def test_an_encrypted_handshake_is_negotiated_to_plaintext_and_served(swarm):
    src, up = swarm.seeded("z1", [], "e.bin", 300 * 1024 + 1, seed=38)
    ih, port = bytes.fromhex(up["info_hash"]), bt_port(swarm, "z1")
    peer, secret = mse_initiator(port, ih, PLAINTEXT | RC4)
    step4 = Rc4(sha1(b"keyB", secret, ih)).crypt(peer.read_exactly(14))
    assert step4 == VC + struct.pack(">IH", PLAINTEXT, 0)                         # plaintext selected
    assert peer.read_exactly(f.HANDSHAKE_BYTES)[28:48] == ih                       # and the rest is plain
    peer.send(f.simple(f.INTERESTED))
    peer.until(f.UNCHOKE)
    peer.send(request(0, 0, 16 * 1024))
    assert peer.until(f.PIECE)[8:] == src.read_bytes()[:16 * 1024]
    peer.close()


def test_rc4_only_or_an_unknown_torrent_is_closed_with_one_line(swarm):
    src, up = swarm.seeded("z1", [], "e.bin", 100 * 1024, seed=39)
    ih, port = bytes.fromhex(up["info_hash"]), bt_port(swarm, "z1")
    peer, _ = mse_initiator(port, ih, RC4)
    assert peer.closed_by_remote()
    peer, _ = mse_initiator(port, bytes(20), PLAINTEXT)
    assert peer.closed_by_remote()
    log = lambda: (swarm.workdir / "logs" / "z1.log").read_text()              # noqa: E731
    wait_for(lambda: log().count("MSE with RC4 only") == 1 and log().count("MSE handshake for a torrent not held") == 1,
             what="one log line each")
