"""BEP 9 magnet links: ``magnet:?xt=urn:btih:HASH&dn=NAME&tr=TRACKER&x.pe=HOST:PORT``.

HASH is the v1 info-hash in hex (40 characters) or base32 (32). A magnet link carries no
metainfo: it is fetched by info-hash and trusted only once SHA-1 of its info dict equals
HASH. This module holds no session state.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit

from protocol.errors import ErrorCode, ZorrentError
from protocol.metainfo import Metainfo

MAX_MAGNET_CHARS = 8192
BTIH = "urn:btih:"


class MagnetError(ZorrentError):
    code = ErrorCode.BAD_INPUT


@dataclass(frozen=True)
class Magnet:
    info_hash: str                  # v1 info-hash, 40 lowercase hex digits
    name: str = ""                  # dn: a display name, never used as a path before the metainfo is checked
    trackers: tuple[str, ...] = ()  # tr
    peers: tuple[tuple[str, int], ...] = ()   # x.pe: peers that may hold the metainfo


def link(meta: Metainfo) -> str:
    """The torrent's magnet link (hex btih, its name, its tracker)."""
    parts = [f"xt={BTIH}{meta.info_hash}", f"dn={quote(meta.name, safe='')}"]
    if meta.announce:
        parts.append(f"tr={quote(meta.announce, safe='')}")
    return "magnet:?" + "&".join(parts)


def _btih(value: str) -> str:
    digest = value[len(BTIH):]
    try:
        if len(digest) == 40:
            return bytes.fromhex(digest).hex()
        if len(digest) == 32:
            return base64.b32decode(digest.upper()).hex()
    except (ValueError, binascii.Error):
        pass
    raise MagnetError(f"magnet link: xt {value[:80]!r} must end in 40 hex or 32 base32 characters")


def _peer(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MagnetError(f"magnet link: x.pe {value[:80]!r} must be HOST:PORT")
    return host, int(port)


def parse(uri: str) -> Magnet:
    """Validate a magnet link; raise MagnetError with one line naming the problem."""
    if len(uri) > MAX_MAGNET_CHARS:
        raise MagnetError(f"magnet link is {len(uri)} characters, limit {MAX_MAGNET_CHARS}")
    parts = urlsplit(uri)
    if parts.scheme.lower() != "magnet":
        raise MagnetError(f"not a magnet link (it must start with magnet:?): {uri[:80]!r}")
    try:
        fields = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False)
    except ValueError as exc:
        raise MagnetError(f"magnet link: {exc}") from None
    xts = [v for k, v in fields if k == "xt"]
    btih = [v for v in xts if v.lower().startswith(BTIH)]
    if not btih:
        if any(v.lower().startswith("urn:btmh:") for v in xts):
            raise MagnetError("magnet link has only a v2 hash (urn:btmh, BEP 52); zorrent needs urn:btih")
        raise MagnetError("magnet link has no xt=urn:btih:... (the info-hash)")
    hashes = {_btih(v) for v in btih}
    if len(hashes) > 1:
        raise MagnetError("magnet link names two different btih info-hashes")
    name = next((v for k, v in fields if k == "dn"), "")
    trackers = tuple(v for k, v in fields if k == "tr" and v)
    peers = tuple(_peer(v) for k, v in fields if k == "x.pe")
    return Magnet(info_hash=hashes.pop(), name=name, trackers=trackers, peers=peers)
