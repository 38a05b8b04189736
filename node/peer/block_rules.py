"""What a peer serves, whichever wire asks: the rules both the ZeroMQ data port
(node/peer/handlers.py) and the BEP 3 port (node/peer/bt/) apply to a block request.

A block is served only from a verified piece of a torrent that is not suspended
(node/peer/integrity.py), read at its offset with the file checked before and after;
an origin seed sends each piece to one requester first (node/peer/seeding.py).
"""
from __future__ import annotations

import time

from node import config
from node.peer.integrity import SUSPENDED
from node.peer.seedview import SwarmView
from node.peer.storage import PendingRead
from protocol.errors import ErrorCode, ZorrentError


def check_block(holding, piece_index: int, block_offset: int, length: int, max_length: int) -> None:
    """Raise unless the block lies inside a verified piece and is at most ``max_length``."""
    meta = holding.meta
    if not 0 <= piece_index < meta.num_pieces:
        raise ZorrentError(f"piece {piece_index} is out of range 0..{meta.num_pieces - 1}", ErrorCode.BAD_FIELD)
    size = meta.piece_size(piece_index)
    if not (0 <= block_offset < size and 0 < length <= max_length and block_offset + length <= size):
        raise ZorrentError(f"block {block_offset}+{length} does not fit piece of {size} bytes",
                           ErrorCode.BAD_FIELD)
    if piece_index not in holding.bitfield or holding.state in SUSPENDED:
        raise ZorrentError(f"piece {piece_index} is not verified here", ErrorCode.PIECE_UNAVAILABLE)


def send_once(holding, piece_index: int, requester, host=None, offer: int = config.SEND_ONCE_SUGGEST) -> list[int] | None:
    """None: serve it. A list: an origin seed sent this piece elsewhere; offer these instead
    (at most ``offer`` pieces).
    ``host`` (the node) lends its tracker for the seed's view of what other seeds sent
    (node/peer/seedview.py)."""
    if holding.role != "seed":
        return None
    sender, now = holding.sender(), time.monotonic()
    tracker = getattr(host, "tracker", None)
    if tracker is not None and sender.fresh:
        if sender.view is None:
            sender.view = SwarmView(sender, holding.meta.info_hash, holding.meta.num_pieces, host.peer_id)
        sender.view.maybe_ask(tracker, now)
    return sender.admit(piece_index, requester, now, offer)


def read_block(read_failed, holding, piece_index: int, block_offset: int, length: int) -> bytes | PendingRead:
    """The bytes now, or a PendingRead for a read thread when the file bypasses the page cache."""
    if holding.file.cache_bypassed:     # not in the page cache: a read thread waits for the device
        return holding.file.read_later(piece_index, block_offset, length)
    try:                                # the file is checked before and after (integrity.py)
        return holding.file.read(piece_index, block_offset, length)
    except ZorrentError as exc:
        read_failed(holding.file, exc)
        raise
