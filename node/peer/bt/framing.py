"""BEP 3 peer wire framing: the 68-byte handshake, the reserved bits we set, message ids,
and the encoders of every message we send. No sockets, no state: bytes in, bytes out.

Wire layout (BEP 3, BEP 6, BEP 10):

    handshake   <19><"BitTorrent protocol"><reserved 8><info_hash 20><peer_id 20>
    message     <length u32 BE><id u8><payload>      length 0 is a keep-alive
    have        <4 BE piece>                  request/cancel/reject  <piece><begin><length> (3 x u32 BE)
    piece       <piece><begin><block bytes>   extended (20)          <ext id u8><bencoded dict>[<raw>]
"""
from __future__ import annotations

import hashlib
import struct

import fastbencode

PROTOCOL = b"BitTorrent protocol"
HANDSHAKE_BYTES = 68
BLOCK_BYTES = 16 * 1024            # BEP 3's block: what every client requests and what we accept

# reserved bytes (BEP 4 assignments): byte 5 0x10 = BEP 10 extension protocol, byte 7 0x04 = BEP 6 Fast
RESERVED_EXTENSION = (5, 0x10)
RESERVED_FAST = (7, 0x04)

CHOKE, UNCHOKE, INTERESTED, NOT_INTERESTED, HAVE, BITFIELD, REQUEST, PIECE, CANCEL, PORT = range(10)
SUGGEST, HAVE_ALL, HAVE_NONE, REJECT, ALLOWED_FAST = 0x0D, 0x0E, 0x0F, 0x10, 0x11
EXTENDED = 20
EXT_HANDSHAKE = 0                  # BEP 10: extended message id 0 is the handshake

UT_METADATA = b"ut_metadata"
UT_METADATA_ID = 1                 # the id we ask others to use for ut_metadata messages to us
METADATA_PIECE_BYTES = 16 * 1024   # BEP 9
META_REQUEST, META_DATA, META_REJECT = 0, 1, 2

CLIENT_PREFIX = b"-ZR0100-"        # Azureus-style peer id: "ZR" is zorrent, version 0.1.0.0
CLIENT_NAME = "zorrent 0.1.0"

NAMES = {CHOKE: "choke", UNCHOKE: "unchoke", INTERESTED: "interested", NOT_INTERESTED: "not interested",
         HAVE: "have", BITFIELD: "bitfield", REQUEST: "request", PIECE: "piece", CANCEL: "cancel",
         PORT: "port", SUGGEST: "suggest", HAVE_ALL: "have all", HAVE_NONE: "have none",
         REJECT: "reject", ALLOWED_FAST: "allowed fast", EXTENDED: "extended"}
# fixed payload sizes: a message of one of these ids with another length is malformed
FIXED_PAYLOAD = {CHOKE: 0, UNCHOKE: 0, INTERESTED: 0, NOT_INTERESTED: 0, HAVE: 4, REQUEST: 12, CANCEL: 12,
                 PORT: 2, SUGGEST: 4, HAVE_ALL: 0, HAVE_NONE: 0, REJECT: 12, ALLOWED_FAST: 4}

_U32 = struct.Struct(">I")
_HEADER = struct.Struct(">IB")           # length, id
_TRIPLE = struct.Struct(">IBIII")        # request / cancel / reject
_PIECE_HEADER = struct.Struct(">IBII")   # length, id, piece, begin (the block follows)
_HAVE = struct.Struct(">IBI")
KEEPALIVE = b"\0\0\0\0"


class WireError(Exception):
    """The remote broke the protocol; the connection is closed with this one-line reason."""


def bt_peer_id(peer_id: str) -> bytes:
    """The 20-byte BEP 3 peer id of a zorrent peer: fixed by its zorrent id, so the tracker can
    hand it to standard clients (BEP 3 non-compact replies) and it matches the handshake."""
    return CLIENT_PREFIX + hashlib.sha1(peer_id.encode()).hexdigest()[:12].encode()


CLIENT_CODES = {"ZR": "zorrent", "LT": "libtorrent", "lt": "libTorrent (rakshasa)", "TR": "Transmission",
                "qB": "qBittorrent", "DE": "Deluge", "UT": "µTorrent", "BT": "BitTorrent", "AZ": "Vuze",
                "BC": "BitComet", "KT": "KTorrent", "WW": "WebTorrent"}


def client_of(peer_id: bytes) -> str:
    """The client a BEP 3 peer id names: Azureus style (``-LT2110-`` -> ``libtorrent 2.1.1.0``)
    or aria2's (``A2-1-36-0-`` -> ``aria2 1.36.0``); "BitTorrent client" when it names none."""
    text = peer_id.decode("latin-1")
    if len(text) >= 8 and text[0] == "-" and text[7] == "-" and text[3:7].isalnum():
        name = CLIENT_CODES.get(text[1:3], text[1:3])
        if text[1:3] == "TR":                     # Transmission: -TR4060- is 4.06
            return f"{name} {int(text[3])}.{text[4:6]}" if text[3:6].isdigit() else name
        return f"{name} {'.'.join(c for c in text[3:7])}"
    if text.startswith("A2-"):
        return "aria2 " + ".".join(text[3:].split("-")[:3])
    return "BitTorrent client"


def handshake(info_hash: bytes, peer_id: bytes) -> bytes:
    reserved = bytearray(8)
    for byte, bit in (RESERVED_EXTENSION, RESERVED_FAST):
        reserved[byte] |= bit
    return bytes([len(PROTOCOL)]) + PROTOCOL + bytes(reserved) + info_hash + peer_id


def parse_handshake(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(reserved, info_hash, peer_id) of a 68-byte handshake; WireError if it is not one."""
    if len(data) != HANDSHAKE_BYTES or data[0] != len(PROTOCOL) or data[1:20] != PROTOCOL:
        raise WireError(f"not a BitTorrent handshake ({bytes(data[:20])[:20]!r})")
    return bytes(data[20:28]), bytes(data[28:48]), bytes(data[48:68])


def has(reserved: bytes, flag: tuple[int, int]) -> bool:
    return bool(reserved[flag[0]] & flag[1])


def simple(msg_id: int) -> bytes:
    return _HEADER.pack(1, msg_id)


def have(piece: int) -> bytes:
    return _HAVE.pack(5, HAVE, piece)


def suggest(piece: int) -> bytes:
    return _HAVE.pack(5, SUGGEST, piece)


def triple(msg_id: int, piece: int, begin: int, length: int) -> bytes:
    return _TRIPLE.pack(13, msg_id, piece, begin, length)


def piece_header(piece: int, begin: int, length: int) -> bytes:
    return _PIECE_HEADER.pack(9 + length, PIECE, piece, begin)


def bitfield(bits: bytes) -> bytes:
    return _HEADER.pack(1 + len(bits), BITFIELD) + bits


def extended(ext_id: int, payload: dict, raw: bytes = b"") -> bytes:
    body = fastbencode.bencode(payload)
    return _HEADER.pack(2 + len(body) + len(raw), EXTENDED) + bytes([ext_id]) + body + raw


def ext_handshake(metadata_size: int, listen_port: int, reqq: int) -> bytes:
    d = {b"m": {UT_METADATA: UT_METADATA_ID}, b"v": CLIENT_NAME.encode(), b"reqq": reqq}
    if metadata_size:
        d[b"metadata_size"] = metadata_size
    if listen_port:
        d[b"p"] = listen_port
    return extended(EXT_HANDSHAKE, d)


def unpack_u32(buf, at: int) -> int:
    return _U32.unpack_from(buf, at)[0]


def unpack_pair(buf) -> tuple[int, int]:
    return struct.unpack_from(">II", buf, 0)


def unpack_triple(buf, at: int) -> tuple[int, int, int]:
    return struct.unpack_from(">III", buf, at)


def split_bencoded(data: bytes) -> tuple[dict, bytes]:
    """A ut_metadata message: its bencoded dict, then the raw bytes after it (BEP 9)."""
    try:
        d, rest = _bdecode_prefix(data)
    except (ValueError, TypeError, RecursionError) as exc:
        raise WireError(f"bad bencoded extension message: {exc}") from None
    if not isinstance(d, dict):
        raise WireError("extension message is not a dict")
    return d, rest


def _bdecode_prefix(data: bytes):
    """Decode one bencoded value at the start of ``data`` (fastbencode refuses trailing bytes)."""
    end = _value_end(data, 0, 0)
    return fastbencode.bdecode(bytes(data[:end])), bytes(data[end:])


def _value_end(data: bytes, i: int, depth: int) -> int:
    if depth > 8:
        raise ValueError("nested too deep")
    if i >= len(data):
        raise ValueError("truncated")
    c = data[i]
    if c in b"dl":
        i += 1
        while i < len(data) and data[i] != ord("e"):
            i = _value_end(data, i, depth + 1)
        if i >= len(data):
            raise ValueError("truncated")
        return i + 1
    if c == ord("i"):
        end = bytes(data[i:i + 24]).find(b"e")
        if end < 0:
            raise ValueError("bad integer")
        return i + end + 1
    colon = bytes(data[i:i + 12]).find(b":")
    if colon <= 0:
        raise ValueError("bad string length")
    n = int(bytes(data[i:i + colon]))
    end = i + colon + 1 + n
    if end > len(data):
        raise ValueError("truncated string")
    return end
