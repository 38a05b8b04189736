"""Send-once seeding over BEP 3 (node/peer/bt/upload.py), with a scripted raw-socket peer:
a standard client asks a piece 16 KiB at a time, so when a seed refuses a piece that it
sent to someone else first, it refuses the piece's other blocks too without handing out
more unsent pieces, and it tells the client which unsent pieces it may have instead
(BEP 6 suggest). Those it serves; another client is refused them."""
from __future__ import annotations

import struct

from node import config
from node.peer.bt import framing as f
from protocol import metainfo
from tests.hostile.btwire import RawPeer, request
from tests.integration.bt_clients import bt_port

BLOCK = 16 * 1024


def unchoked(port: int, info_hash: bytes, name: bytes) -> RawPeer:
    peer = RawPeer(port)
    assert peer.handshake(info_hash, b"-XX0001-" + name.ljust(12, b"0"))[28:48] == info_hash
    peer.send(f.simple(f.INTERESTED))
    peer.until(f.UNCHOKE)
    return peer


def answers(peer: RawPeer, asks: list[tuple[int, int]]) -> tuple[list[str], list[int]]:
    """Each block's answer ("piece" or "reject"), and every piece suggested meanwhile."""
    for piece, begin in asks:
        peer.send(request(piece, begin, BLOCK))
    got, suggested = [], []
    while len(got) < len(asks):
        msg = peer.message()
        if msg is None:
            continue
        if msg[0] == f.PIECE:
            got.append("piece")
        elif msg[0] == f.REJECT:
            got.append("reject")
        elif msg[0] == f.SUGGEST:
            suggested.append(struct.unpack(">I", msg[1])[0])
    return got, suggested


def test_a_piece_sent_elsewhere_is_refused_whole_and_unsent_ones_are_suggested(swarm):
    src, up = swarm.seeded("z1", [], "once.bin", 6 * 1024 * 1024 + 7, seed=43)
    meta = metainfo.read(swarm.workdir / up["torrent"])
    blocks = meta.piece_length // BLOCK
    assert blocks >= 2 and meta.num_pieces > 2 * config.SEND_ONCE_SUGGEST, meta.piece_length
    ih, port = bytes.fromhex(meta.info_hash), bt_port(swarm, "z1")
    a, b, c = (unchoked(port, ih, name) for name in (b"a", b"b", b"c"))
    assert answers(a, [(0, 0)])[0] == ["piece"]                    # a takes piece 0 first

    got, suggested = answers(b, [(0, i * BLOCK) for i in range(blocks)])
    assert got == ["reject"] * blocks                              # every block of it, for b
    assert 0 < len(suggested) <= config.SEND_ONCE_SUGGEST, suggested   # offered once, not once a block
    assert 0 not in suggested and len(set(suggested)) == len(suggested)

    mine = suggested[0]
    assert answers(b, [(mine, i * BLOCK) for i in range(blocks)])[0] == ["piece"] * blocks
    assert answers(c, [(mine, 0)])[0] == ["reject"]                # b's to relay, not c's to take


def test_a_client_that_leaves_offers_unasked_gets_no_more_until_it_asks(swarm):
    """Offers held for a client that ignores suggests are first copies nobody gets: while
    BT_LIVE_OFFERS of its offers wait unasked, a refusal offers it nothing more, and each
    offer it takes up makes room for one new one."""
    src, up = swarm.seeded("z1", [], "ignore.bin", 6 * 1024 * 1024 + 7, seed=44)
    meta = metainfo.read(swarm.workdir / up["torrent"])
    assert meta.num_pieces > 4 + 2 * config.BT_LIVE_OFFERS, meta.num_pieces
    ih, port = bytes.fromhex(meta.info_hash), bt_port(swarm, "z1")
    a, b = (unchoked(port, ih, name) for name in (b"a", b"b"))
    assert answers(a, [(0, 0), (1, 0), (2, 0)])[0] == ["piece"] * 3    # a takes pieces 0, 1, 2 first

    got, offered = answers(b, [(0, 0)])
    assert got == ["reject"] and len(offered) == config.BT_LIVE_OFFERS, offered
    got, more = answers(b, [(1, 0)])
    assert got == ["reject"] and more == [], more                        # its offers still wait
    assert answers(b, [(offered[0], 0)])[0] == ["piece"]                 # it takes one up
    got, more = answers(b, [(2, 0)])
    assert got == ["reject"] and len(more) == 1 and more[0] not in offered, more
