"""BEP 10 extension handshake and BEP 9 ut_metadata, both directions.

Serving: the info dict of a held torrent, in 16 KiB pieces, to anyone who names its
info-hash in the handshake (a magnet link's whole need). Fetching: ``MetadataFetch``
collects the pieces of a remote's info dict and trusts it only if its SHA-1 is the
info-hash; a remote that sends another one is cut off with one log line.
"""
from __future__ import annotations

import hashlib
import logging

import fastbencode

from node import config
from node.peer.bt import framing as f
from node.peer.bt.framing import WireError

log = logging.getLogger("zorrent.bt")


def info_bytes(raw_torrent: bytes) -> bytes:
    """The bencoded info dict of a .torrent (what ut_metadata sends; its SHA-1 is the info-hash)."""
    return fastbencode.bencode(fastbencode.bdecode(raw_torrent)[b"info"])


def torrent_from_info(info: bytes, trackers: list[str] = ()) -> bytes:
    """A .torrent around an info dict fetched by ut_metadata (announce from the magnet's ``tr``)."""
    top = {b"info": fastbencode.bdecode(info)}
    if trackers:
        top[b"announce"] = trackers[0].encode()
    return fastbencode.bencode(top)


class Metadata:
    """One per BtService: the info dicts it serves (cached per info-hash) and the fetches running."""

    def __init__(self, service) -> None:
        self.service = service
        self.cache: dict[bytes, bytes] = {}

    def info_of(self, info_hash: bytes) -> bytes | None:
        holding = self.service.holding(info_hash)
        if holding is None:
            self.cache.pop(info_hash, None)
            return None
        if info_hash not in self.cache:
            self.cache[info_hash] = info_bytes(holding.meta.raw)
        return self.cache[info_hash]

    def on_extended(self, conn, ext_id: int, body: bytes) -> None:
        if ext_id == f.EXT_HANDSHAKE:
            self._on_handshake(conn, body)
        elif ext_id == f.UT_METADATA_ID:
            d, rest = f.split_bencoded(body)
            kind, piece = d.get(b"msg_type"), d.get(b"piece")
            if not isinstance(kind, int) or not isinstance(piece, int):
                raise WireError("ut_metadata message without msg_type or piece")
            if kind == f.META_REQUEST:
                self._serve(conn, piece)
            elif conn.downloader is not None and getattr(conn.downloader, "metadata", None) is not None:
                conn.downloader.metadata.on_message(conn, kind, piece, d.get(b"total_size"), rest)
        # other extensions (ut_pex, upload_only, ...) are not spoken: ignored

    def _on_handshake(self, conn, body: bytes) -> None:
        try:
            d = fastbencode.bdecode(body)
        except (ValueError, TypeError, RecursionError):
            raise WireError("bad extension handshake") from None
        if not isinstance(d, dict):
            raise WireError("extension handshake is not a dict")
        m = d.get(b"m", {})
        ut = m.get(f.UT_METADATA) if isinstance(m, dict) else None
        conn.remote_ut_metadata = ut if isinstance(ut, int) and 0 < ut < 256 else 0
        size = d.get(b"metadata_size", 0)
        if isinstance(size, int) and 0 < size <= config.BT_METADATA_MAX_BYTES:
            conn.remote_metadata_size = size
        reqq = d.get(b"reqq")
        if isinstance(reqq, int) and reqq > 0:
            conn.remote_reqq = reqq                  # how many of our requests it queues (remote.py keeps to it)
        v = d.get(b"v")
        if isinstance(v, bytes) and v:
            conn.client = v[:40].decode("utf-8", "replace")
        port = d.get(b"p")
        if isinstance(port, int) and 0 < port < 65536 and not conn.listen_port:
            conn.listen_port = port                  # where it listens: a download of ours may want it (service.adopt)
        if not conn.ext_seen:
            conn.ext_seen = True                     # with or without `p`: a download of ours may want it
            self.service.adopt(conn)
        if conn.downloader is not None:
            conn.downloader.on_ext_handshake()

    def _serve(self, conn, piece: int) -> None:
        if not conn.remote_ut_metadata:
            return
        info = self.info_of(conn.info_hash)
        count = -(-len(info) // f.METADATA_PIECE_BYTES) if info else 0
        if info is None or not 0 <= piece < count:
            conn.send(f.extended(conn.remote_ut_metadata, {b"msg_type": f.META_REJECT, b"piece": piece}))
            return
        chunk = info[piece * f.METADATA_PIECE_BYTES:(piece + 1) * f.METADATA_PIECE_BYTES]
        conn.send(f.extended(conn.remote_ut_metadata,
                             {b"msg_type": f.META_DATA, b"piece": piece, b"total_size": len(info)}, chunk))


class MetadataFetch:
    """The info dict of ``info_hash`` from remotes that have it, piece by piece (BEP 9)."""

    def __init__(self, info_hash: bytes, on_done) -> None:
        self.info_hash, self.on_done = info_hash, on_done
        self.size = 0
        self.buf: bytearray | None = None
        self.got: set[int] = set()
        self.done = False

    def start(self, conn) -> None:
        size = conn.remote_metadata_size
        if self.done or not conn.remote_ut_metadata or not size:
            return
        if self.buf is None:
            self.size, self.buf = size, bytearray(size)
        elif size != self.size:
            raise WireError(f"metadata_size {size}, another remote said {self.size}")
        for piece in range(-(-size // f.METADATA_PIECE_BYTES)):
            if piece not in self.got:
                conn.send(f.extended(conn.remote_ut_metadata, {b"msg_type": f.META_REQUEST, b"piece": piece}))

    def on_message(self, conn, kind: int, piece: int, total, data: bytes) -> None:
        if self.done or self.buf is None:
            return
        count = -(-self.size // f.METADATA_PIECE_BYTES)
        if kind == f.META_REJECT:
            raise WireError(f"metadata piece {piece} rejected")
        if kind != f.META_DATA:
            return
        expect = min(f.METADATA_PIECE_BYTES, self.size - piece * f.METADATA_PIECE_BYTES)
        if not 0 <= piece < count or total != self.size or len(data) != expect:
            raise WireError(f"metadata piece {piece} of {len(data)} bytes does not fit {self.size}")
        self.buf[piece * f.METADATA_PIECE_BYTES:piece * f.METADATA_PIECE_BYTES + expect] = data
        self.got.add(piece)
        if len(self.got) < count:
            return
        info = bytes(self.buf)
        if hashlib.sha1(info).digest() != self.info_hash:
            self.buf, self.got = None, set()
            raise WireError("metadata does not hash to the info-hash")
        self.done = True
        self.on_done(info)


def fetch_info(host: str, port: int, info_hash: bytes, timeout_s: float) -> bytes:
    """A magnet's info dict from a standard peer, blocking (the CLI's side of BEP 9):
    handshake, extension handshake, every metadata piece; WireError if the remote does not
    speak ut_metadata or sends an info dict that does not hash to ``info_hash``; OSError if
    it cannot be reached."""
    import os
    import socket
    import time

    got: list[bytes] = []
    fetch = MetadataFetch(info_hash, got.append)
    deadline = time.monotonic() + timeout_s
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        def recv_exactly(n: int) -> bytes:
            buf = bytearray()
            while len(buf) < n:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(min(n - len(buf), 1 << 16))
                if not chunk:
                    raise WireError("closed by remote")
                buf += chunk
            return bytes(buf)

        sock.sendall(f.handshake(info_hash, f.CLIENT_PREFIX + os.urandom(6).hex().encode()))
        reserved, their_hash, _ = f.parse_handshake(recv_exactly(f.HANDSHAKE_BYTES))
        if their_hash != info_hash:
            raise WireError("handshake names another torrent")
        if not f.has(reserved, f.RESERVED_EXTENSION):
            raise WireError("does not speak the extension protocol (BEP 10)")
        sock.sendall(f.ext_handshake(0, 0, 0))

        class Conn:                      # what MetadataFetch reads of a connection
            remote_ut_metadata = 0
            remote_metadata_size = 0

            @staticmethod
            def send(data: bytes) -> None:
                sock.sendall(data)

        conn = Conn()
        while not got:
            n = f.unpack_u32(recv_exactly(4), 0)
            if n > config.BT_METADATA_MAX_BYTES:
                raise WireError(f"message of {n} bytes")
            if not n:
                continue
            body = recv_exactly(n)
            if body[0] != f.EXTENDED or n < 2:
                continue
            if body[1] == f.EXT_HANDSHAKE:
                d = fastbencode.bdecode(body[2:])
                ut = d.get(b"m", {}).get(f.UT_METADATA) if isinstance(d, dict) else None
                size = d.get(b"metadata_size", 0)
                if not isinstance(ut, int) or not isinstance(size, int) or not 0 < size <= config.BT_METADATA_MAX_BYTES:
                    raise WireError("does not offer ut_metadata (BEP 9)")
                conn.remote_ut_metadata, conn.remote_metadata_size = ut, size
                fetch.start(conn)
            elif body[1] == f.UT_METADATA_ID:
                d, rest = f.split_bencoded(body[2:])
                fetch.on_message(conn, d.get(b"msg_type"), d.get(b"piece"), d.get(b"total_size"), rest)
    return got[0]
