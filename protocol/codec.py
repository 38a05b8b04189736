"""msgpack envelope <-> message objects.

A message is one or two ZeroMQ frames (after any ROUTER identity):

    frame 0  msgpack {"v": 1, "id": <uint>, "type": "<MsgType value>", "body": {...}}
    frame 1  optional raw payload (piece bytes), sent with copy=False

Sizes are checked before anything is unpacked, and msgpack is told the same limits,
so no length field from the wire is ever used to allocate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from protocol.errors import ErrorCode, FieldError, ProtocolError
from protocol.messages import (
    MAX_BLOCK_BYTES,
    MAX_HEADER_BYTES,
    PROTOCOL_VERSION,
    REGISTRY,
    Error,
    Message,
    MsgType,
)

MAX_MSG_ID = 2**63 - 1


@dataclass(frozen=True)
class Envelope:
    id: int
    msg: Message
    payload: Any = None     # bytes-like (zmq.Frame buffer / memoryview) or None


def encode(msg: Message, msg_id: int = 0, payload: Any = None) -> list[Any]:
    """Frames for ``msg``; ``payload`` is passed through untouched for a zero-copy send."""
    header = msgpack.packb(
        {"v": PROTOCOL_VERSION, "id": msg_id, "type": msg.TYPE.value, "body": msg.to_body()},
        use_bin_type=True,
    )
    return [header] if payload is None else [header, payload]


def _buffer(frame: Any) -> Any:
    return frame.buffer if hasattr(frame, "buffer") else frame


def decode_id(frames: list[Any]) -> int:
    """Best-effort request id of a frame list that failed to decode (0 if unknown)."""
    try:
        raw = msgpack.unpackb(_buffer(frames[0]), raw=False, max_bin_len=0,
                              max_str_len=64, max_array_len=0, max_map_len=8)
        ident = raw.get("id", 0) if isinstance(raw, dict) else 0
        ok = isinstance(ident, int) and not isinstance(ident, bool) and 0 <= ident <= MAX_MSG_ID
        return ident if ok else 0
    except Exception:
        return 0


def decode(frames: list[Any]) -> Envelope:
    """Parse frames into an Envelope, or raise ProtocolError naming the problem."""
    if not 1 <= len(frames) <= 2:
        raise ProtocolError(f"expected 1 or 2 frames, got {len(frames)}")
    header = _buffer(frames[0])
    if len(header) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header frame is {len(header)} bytes, limit {MAX_HEADER_BYTES}")
    payload = _buffer(frames[1]) if len(frames) == 2 else None
    if payload is not None and len(payload) > MAX_BLOCK_BYTES:
        raise ProtocolError(f"payload frame is {len(payload)} bytes, limit {MAX_BLOCK_BYTES}")
    try:
        raw = msgpack.unpackb(
            header, raw=False, strict_map_key=True,
            max_bin_len=MAX_HEADER_BYTES, max_str_len=MAX_HEADER_BYTES,
            max_array_len=MAX_HEADER_BYTES // 2, max_map_len=4096, max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"header is not valid msgpack: {type(exc).__name__}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(f"header must be map, not {type(raw).__name__}")
    for key, tp in (("v", int), ("id", int), ("type", str), ("body", dict)):
        if key not in raw:
            raise FieldError(f"[{key!r}]", "is missing")
        if not isinstance(raw[key], tp) or isinstance(raw[key], bool):
            raise FieldError(f"[{key!r}]", f"must be {tp.__name__}, not {type(raw[key]).__name__}")
    if raw["v"] != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {raw['v']} is not {PROTOCOL_VERSION}",
                            ErrorCode.BAD_VERSION)
    if not 0 <= raw["id"] <= MAX_MSG_ID:
        raise FieldError("['id']", "is out of range")
    try:
        cls = REGISTRY[MsgType(raw["type"])]
    except ValueError:
        raise ProtocolError(f"unknown message type {raw['type'][:40]!r}",
                            ErrorCode.UNKNOWN_TYPE) from None
    return Envelope(raw["id"], cls.from_body(raw["body"]), payload)


def error_frames(msg_id: int, code: int, text: str, retry_after_s: float = 0.0) -> list[Any]:
    return encode(Error(code=int(code), message=text, retry_after_s=float(retry_after_s)), msg_id)
