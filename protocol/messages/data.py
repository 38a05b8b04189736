"""A peer's data port: blocks of pieces, redirects, and the long poll for new pieces."""
from protocol.messages.base import Message, message
from protocol.messages.names import MsgType


@message(MsgType.GET_BLOCK)
class GetBlock(Message):
    info_hash: str
    piece_index: int
    block_offset: int
    length: int
    requester: str = ""    # the asking peer's id, for logs only: a seed trusts the connection, not this


@message(MsgType.BLOCK)
class Block(Message):
    """Reply to GET_BLOCK; the bytes follow as frame 1."""

    info_hash: str
    piece_index: int
    block_offset: int


@message(MsgType.ELSEWHERE)
class Elsewhere(Message):
    """Reply to GET_BLOCK from a seed that already sent that piece to another peer while
    pieces nobody has are left: fetch it from the swarm, and take these from the seed."""

    info_hash: str
    piece_index: int
    suggest: list[int]     # pieces this seed has sent to nobody, reserved for the asker


@message(MsgType.WATCH)
class Watch(Message):
    """Long poll on a peer's data port for the pieces it verifies: answered at once when it
    has verified more than ``since`` pieces, else as soon as it does (or empty after a while)."""

    info_hash: str
    since: int             # the ``seq`` of the last HAVES from this peer; -1: just tell me seq


@message(MsgType.HAVES)
class Haves(Message):
    info_hash: str
    seq: int               # how many pieces this peer has verified in this run
    pieces: list[int]      # the ones after ``since``
