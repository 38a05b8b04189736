"""The HTTP tracker's wire format: BEP 3 announce queries, BEP 23 compact peers, BEP 7
``peers6``, BEP 48 scrape, and bencoded replies. Pure functions, no sockets.

Query values are percent-encoded bytes (an info_hash is 20 raw bytes), so the query is
split and unquoted here, from the raw query string, never decoded as text first. Every
problem raises QueryError with a one-line reason that goes back as ``failure reason``.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import fastbencode

from protocol import messages as m
from protocol.errors import ErrorCode, ZorrentError

HASH_BYTES = 20
EVENTS = ("", "started", "completed", "stopped", "paused")   # "paused": BEP 21, kept as a plain announce
MAX_FIELDS = 64
_NUMBER = re.compile(rb"[0-9]{1,19}")


class QueryError(ZorrentError):
    code = ErrorCode.BAD_FIELD


@dataclass(frozen=True)
class AnnounceQuery:
    msg: m.ClientAnnounce
    compact: bool
    no_peer_id: bool


def parse_query(raw_query: str, max_bytes: int) -> dict[bytes, list[bytes]]:
    """``a=1&b=%00..`` -> {b"a": [b"1"], b"b": [b"\\x00.."]}; capped in size and number of fields."""
    if len(raw_query) > max_bytes:
        raise QueryError(f"query is {len(raw_query)} bytes, limit {max_bytes}")
    fields: dict[bytes, list[bytes]] = {}
    parts = [p for p in raw_query.split("&") if p]
    if len(parts) > MAX_FIELDS:
        raise QueryError(f"query has {len(parts)} fields, limit {MAX_FIELDS}")
    for part in parts:
        key, _, value = part.partition("=")
        fields.setdefault(unquote_to_bytes(key.replace("+", " ")), []).append(
            unquote_to_bytes(value.replace("+", " ")))
    return fields


def _one(fields: dict[bytes, list[bytes]], name: str, default: bytes | None = None) -> bytes:
    values = fields.get(name.encode())
    if not values:
        if default is None:
            raise QueryError(f"{name} is missing")
        return default
    if len(values) > 1:
        raise QueryError(f"{name} is given {len(values)} times")
    return values[0]


def _hash(value: bytes, name: str) -> bytes:
    if len(value) != HASH_BYTES:
        raise QueryError(f"{name} must be {HASH_BYTES} bytes, not {len(value)}")
    return value


def _number(fields: dict[bytes, list[bytes]], name: str, default: bytes | None = None,
            low: int = 0, high: int = 2 ** 63 - 1) -> int:
    value = _one(fields, name, default)
    if not _NUMBER.fullmatch(value) or not low <= int(value) <= high:
        raise QueryError(f"{name} must be a number from {low} to {high}, not {value[:24]!r}")
    return int(value)


def _flag(fields: dict[bytes, list[bytes]], name: str, default: bytes) -> bool:
    value = _one(fields, name, default)
    if value not in (b"0", b"1"):
        raise QueryError(f"{name} must be 0 or 1, not {value[:24]!r}")
    return value == b"1"


def parse_announce(raw_query: str, host: str, max_bytes: int, default_numwant: int) -> AnnounceQuery:
    """A GET /announce query from ``host`` (the connection's address; ``ip=`` is ignored)."""
    fields = parse_query(raw_query, max_bytes)
    info_hash = _hash(_one(fields, "info_hash"), "info_hash")
    peer_id = _hash(_one(fields, "peer_id"), "peer_id")
    port = _number(fields, "port", low=1, high=65535)
    for name in ("uploaded", "downloaded"):
        _number(fields, name, b"0")
    left = _number(fields, "left")
    event = _one(fields, "event", b"").decode("ascii", "replace")
    if event not in EVENTS:
        raise QueryError(f"event must be one of started, completed, stopped, not {event[:24]!r}")
    numwant = _number(fields, "numwant", str(default_numwant).encode())
    msg = m.ClientAnnounce(info_hash=info_hash.hex(), peer_id=peer_id.hex(), host=host, port=port, left=left,
                           event="" if event == "paused" else event, numwant=numwant)
    return AnnounceQuery(msg, compact=_flag(fields, "compact", b"1"), no_peer_id=_flag(fields, "no_peer_id", b"0"))


def parse_scrape(raw_query: str, max_bytes: int, max_hashes: int) -> m.Scrape:
    """BEP 48: one or more info_hash parameters (a full scrape is not offered)."""
    hashes = parse_query(raw_query, max_bytes).get(b"info_hash", [])
    if not hashes:
        raise QueryError("info_hash is missing (a full scrape is not offered)")
    if len(hashes) > max_hashes:
        raise QueryError(f"{len(hashes)} info_hashes in one scrape, limit {max_hashes}")
    return m.Scrape(info_hashes=[_hash(h, "info_hash").hex() for h in hashes])


def _packed(host: str) -> bytes:
    return ipaddress.ip_address(host).packed


def swarm_reply(swarm: m.ClientSwarm, compact: bool, no_peer_id: bool) -> bytes:
    """BEP 3 reply; compact (BEP 23) puts IPv4 peers in ``peers`` and IPv6 ones in ``peers6`` (BEP 7)."""
    reply = {b"interval": swarm.interval_s, b"min interval": swarm.min_interval_s,
             b"complete": swarm.complete, b"incomplete": swarm.incomplete}
    if compact:
        v4, v6 = [], []
        for p in swarm.peers:
            addr = _packed(p.host)
            (v4 if len(addr) == 4 else v6).append(addr + p.port.to_bytes(2, "big"))
        reply[b"peers"] = b"".join(v4)
        if v6:
            reply[b"peers6"] = b"".join(v6)
    else:
        reply[b"peers"] = [{b"ip": p.host.encode(), b"port": p.port,
                            **({} if no_peer_id else {b"peer id": bytes.fromhex(p.peer_id)})}
                           for p in swarm.peers]
    return fastbencode.bencode(reply)


def scrape_reply(reply: m.ScrapeReply) -> bytes:
    return fastbencode.bencode({b"files": {
        bytes.fromhex(f.info_hash): {b"complete": f.complete, b"incomplete": f.incomplete,
                                     b"downloaded": f.downloaded} for f in reply.files}})


def failure(reason: str) -> bytes:
    return fastbencode.bencode({b"failure reason": reason.encode("utf-8", "replace")})


def normal_host(host: str) -> str:
    """The connection's address, with IPv4-mapped IPv6 (::ffff:a.b.c.d) as plain IPv4."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        raise QueryError(f"cannot announce from {host[:64]!r}: not an IP address") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return str(addr)
