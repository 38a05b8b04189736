"""A standard BitTorrent peer as one of the download engine's remotes.

The engine (node/peer/engine.py) talks to a remote through a channel: ``request(msg,
callback, timeout_s=, tries=)``, ``cancel(id)``, ``expire(now)``, ``close()``. This is
that channel over one BEP 3 connection, so the engine schedules, verifies, bans and
scores a libtorrent seed exactly as it does a zorrent peer (the peer_connection side of
libtorrent's split; the framing is connection.py):

- GET_BLOCK (up to MAX_BLOCK_BYTES) becomes 16 KiB requests, at most
  BT_REQUESTS_PER_REMOTE in flight (and no more than the remote's BEP 10 `reqq`),
  sent while the remote unchokes us; the blocks land
  in one buffer per GET_BLOCK, which the engine hashes and writes as it does a frame.
- WATCH is answered from the remote's bitfield and have messages.
- A reject while unchoked fails the request (a failed attempt, as a refusal is); one
  while choked, or a choke without the Fast extension, puts the requests back.

One connection per remote, whichever side opened it: a standard client that connects to
our BEP 3 port first (it found us through the tracker, or our own dial reached it before it
had added the torrent, so it hung up) is that remote, and the channel downloads over that
connection too (``adopt``; the service matches it by address and the BEP 10 listen port
``p``). A channel with nothing open dials again while the engine still asks something of
it, after config.BT_RECONNECT_MIN_S, doubling to config.BT_RECONNECT_MAX_S.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from node import config
from node.peer.bt.framing import BLOCK_BYTES, CANCEL, REQUEST, triple
from protocol import messages as m
from protocol.codec import Envelope
from protocol.errors import TransportError, ZorrentError



@dataclass(eq=False)
class _Get:
    msg_id: int
    msg: m.GetBlock
    callback: object
    deadline: float
    buffer: bytearray
    remaining: int
    parts: list = field(default_factory=list)      # (piece, begin, length) not yet answered


class BtRemoteChannel:
    _ids = iter(range(1, 1 << 62))

    def __init__(self, service, host: str, port: int, info_hash: str, num_pieces: int) -> None:
        self.service, self.host, self.port = service, host, port
        self.info_hash = info_hash
        self.num_pieces = num_pieces
        self.endpoint = f"{config.BT_SCHEME}{host}:{port}"
        self.dropped = 0
        self.gets: dict[int, _Get] = {}
        self.queue: deque = deque()                # (piece, begin, length) to send
        self.sent: dict[tuple[int, int], tuple[_Get, int]] = {}   # (piece, begin) -> (get, length)
        self.have_log: list[int] = []
        self.have_seen: set[int] = set()
        self.watch: tuple[int, int, object, float] | None = None  # (msg_id, since, callback, deadline)
        self.conn = None
        self.closed = False
        self.remote_peer_id = b""                  # from its handshake, once a connection has opened
        self.last_connect = float("-inf")
        self.backoff_s = config.BT_RECONNECT_MIN_S
        self.redial = None                         # the timer of the next dial
        self.grace = None                          # the timer that fails what a closed connection left (on_closed)
        service.register(self)
        self._connect()

    # ------------------------------------------------------------------ the engine's side
    def request(self, msg, callback, *, payload=None, timeout_s: float, tries: int = 1) -> int:
        msg_id = next(self._ids)
        deadline = time.monotonic() + timeout_s
        if isinstance(msg, m.Watch):
            self.watch = (msg_id, msg.since, callback, deadline)
            self.service.reactor.call_later(0, self._answer_watch)
            if self.conn is None:
                self._connect()
        elif isinstance(msg, m.GetBlock):
            get = _Get(msg_id, msg, callback, deadline, bytearray(msg.length), msg.length)
            for begin in range(msg.block_offset, msg.block_offset + msg.length, BLOCK_BYTES):
                part = (msg.piece_index, begin, min(BLOCK_BYTES, msg.block_offset + msg.length - begin))
                get.parts.append(part)
                self.queue.append((get, part))
            self.gets[msg_id] = get
            if self.conn is None:
                self._connect()
            self._send_requests()
        else:
            self.service.reactor.call_later(
                0, lambda: callback(None, ZorrentError(f"{msg.TYPE.value} is not spoken over BEP 3")))
        return msg_id

    def cancel(self, msg_id: int) -> None:
        get = self.gets.pop(msg_id, None)
        if get is None:
            if self.watch and self.watch[0] == msg_id:
                self.watch = None
            return
        for piece, begin, length in get.parts:
            if self.sent.pop((piece, begin), None) is not None and self.conn is not None:
                self.conn.send(triple(CANCEL, piece, begin, length))
        self._send_requests()

    def expire(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for get in [g for g in self.gets.values() if g.deadline <= now]:
            self._fail(get, TransportError(f"no reply from {self.endpoint}"))
        if self.watch and self.watch[3] <= now:
            self._reply_watch([])

    def close(self) -> None:
        self.closed = True
        self.service.unregister(self)
        for timer in (self.redial, self.grace):
            if timer is not None:
                timer.cancel()
        self.redial = self.grace = None
        self.gets.clear()
        self.queue.clear()
        self.sent.clear()
        self.watch = None
        if self.conn is not None:
            conn, self.conn = self.conn, None
            conn.downloader = None
            if conn.remote_interested:             # it still downloads from us: only we are done
                conn.set_interested(False)
            else:
                conn.close()

    def adopt(self, conn) -> bool:
        """``conn``, opened by the remote, is this channel's connection from now on (unless
        our own is already open)."""
        old = self.conn
        if self.closed or (old is not None and old.state == "open"):
            return False
        if old is not None:                        # our dial, still connecting: one connection is enough
            old.downloader = None
            old.close("the remote connected to us meanwhile")
        self.conn = conn
        conn.downloader = self
        self.on_open(conn)
        if conn.remote_bitfield is not None:
            self.on_have(None)
        self._send_requests()
        return True

    # ------------------------------------------------------------------ the connection's side
    def on_open(self, conn) -> None:
        self.backoff_s = config.BT_RECONNECT_MIN_S
        self.remote_peer_id = conn.remote_peer_id  # its next connection to us is known by it (service.is_from)
        conn.set_interested(True)

    def on_ext_handshake(self) -> None:
        pass

    def on_have(self, pieces) -> None:
        bits = self.conn.remote_bitfield if self.conn else None
        if bits is None:
            return
        for i in (bits.indexes() if pieces is None else pieces):
            if i not in self.have_seen:
                self.have_seen.add(i)
                self.have_log.append(i)
        self._answer_watch()

    def on_unchoke(self) -> None:
        self._send_requests()

    def on_choke(self, fast: bool) -> None:
        if not fast:                               # BEP 3: a choke drops every request in flight
            self._requeue_sent()

    def on_reject(self, piece: int, begin: int, length: int) -> None:
        entry = self.sent.pop((piece, begin), None)
        if entry is None:
            return
        get, _ = entry
        if self.conn is not None and self.conn.remote_choked:
            self.queue.appendleft((get, (piece, begin, length)))    # asked again once unchoked
        else:
            self._fail(get, ZorrentError(f"{self.endpoint} rejected piece {piece}"))

    def on_block(self, piece: int, begin: int, data) -> None:
        entry = self.sent.pop((piece, begin), None)
        if entry is None or len(data) != entry[1]:
            self.dropped += 1
            return
        get = entry[0]
        at = begin - get.msg.block_offset
        get.buffer[at:at + len(data)] = data
        get.remaining -= len(data)
        if get.remaining == 0 and self.gets.pop(get.msg_id, None) is not None:
            msg = get.msg
            get.callback(Envelope(get.msg_id, m.Block(info_hash=msg.info_hash, piece_index=msg.piece_index,
                                                      block_offset=msg.block_offset), get.buffer), None)
        self._send_requests()

    def on_closed(self, why: str) -> None:
        """Its connection closed. What was asked over it is asked again over the next one if
        that opens within BT_CLOSE_GRACE_S: the remote's own connection to us (two clients that
        dial each other at once keep one of the two connections, and libtorrent may close
        ours), adopted now or once its handshake says who it is. Only then do the requests
        fail (each failure counts against the remote: two at once rest it for SNUB_S)."""
        self.conn = None
        self._requeue_sent()
        if self.closed:
            return
        if self.redial is None:
            self.redial = self.service.reactor.call_later(self.backoff_s, self._on_redial)
            self.backoff_s = min(config.BT_RECONNECT_MAX_S, 2 * self.backoff_s)
        incoming = self.service.incoming(self)
        if incoming is not None and self.adopt(incoming):
            return
        if self.gets and self.grace is None:
            self.grace = self.service.reactor.call_later(config.BT_CLOSE_GRACE_S, lambda: self._on_grace(why))

    def _on_grace(self, why: str) -> None:
        self.grace = None
        if self.conn is not None and self.conn.state == "open":
            return
        self.queue.clear()                         # before the callbacks: what they ask again is kept
        self.sent.clear()
        err = TransportError(f"{self.endpoint}: {why}")
        for get in list(self.gets.values()):
            self._fail(get, err)

    # ------------------------------------------------------------------ internals
    def _on_redial(self) -> None:
        self.redial = None
        holding = self.service.holding(bytes.fromhex(self.info_hash))
        if holding is None or holding.bitfield.complete:
            return                                 # nothing left to fetch (the engine may not tell us)
        if self.conn is None and (self.gets or self.watch is not None):   # the engine still wants it
            self._connect()

    def _connect(self) -> None:
        now = time.monotonic()
        if self.closed or self.redial is not None or now - self.last_connect < config.BT_RECONNECT_MIN_S:
            return
        incoming = self.service.incoming(self)
        if incoming is not None and self.adopt(incoming):
            return
        self.last_connect = now
        self.conn = self.service.connect(self.host, self.port, bytes.fromhex(self.info_hash), self)

    def _send_requests(self) -> None:
        conn = self.conn
        if conn is None or conn.state != "open" or conn.remote_choked:
            return
        limit = min(config.BT_REQUESTS_PER_REMOTE, conn.remote_reqq)
        while self.queue and len(self.sent) < limit:
            get, part = self.queue.popleft()
            if get.msg_id not in self.gets:
                continue
            self.sent[(part[0], part[1])] = (get, part[2])
            conn.send(triple(REQUEST, *part))

    def _requeue_sent(self) -> None:
        for (piece, begin), (get, length) in reversed(list(self.sent.items())):
            self.queue.appendleft((get, (piece, begin, length)))
        self.sent.clear()

    def _fail(self, get: _Get, err: ZorrentError) -> None:
        if self.gets.pop(get.msg_id, None) is None:
            return
        for piece, begin, _ in get.parts:
            self.sent.pop((piece, begin), None)
        get.callback(None, err)

    def _answer_watch(self) -> None:
        if self.watch is None:
            return
        since = self.watch[1]
        if since < 0 or since > len(self.have_log):
            if self.have_log or since > len(self.have_log):
                self._reply_watch(self.have_log)
        elif since < len(self.have_log):
            self._reply_watch(self.have_log[since:])

    def _reply_watch(self, pieces: list[int]) -> None:
        msg_id, since, callback, _ = self.watch
        self.watch = None
        seq = len(self.have_log) if pieces or since < 0 else since
        callback(Envelope(msg_id, m.Haves(info_hash=self.info_hash, seq=seq, pieces=list(pieces))), None)
