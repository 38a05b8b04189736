"""One BEP 3 connection, either direction, on the peer's reactor (non-blocking socket).

libtorrent's split: this module is bt_peer_connection (framing, reserved bits, message
ids, what a message means for the flags); what to serve is node/peer/serving.py (the
same rules as the ZeroMQ port), who is unchoked is choker.py, and what to request is
the download engine's, through node/peer/bt/remote.py.

Memory per connection is bounded: a preallocated receive buffer (it grows only to the
torrent's bitfield size); requests queued are BT_MAX_QUEUED_REQUESTS; requests being
served and their bytes are the peer's one Budget's (node/budget.py, shared with the ZeroMQ
data port: REMOTE_MAX_REQUESTS requests and REMOTE_MAX_BYTES of blocks per connection,
REMOTES_TOTAL_BYTES over both wires; see upload.py). Blocks go out by sendfile where they
can (spans.py). While the queued replies are over REMOTE_MAX_BYTES (blocks, rejects, metadata),
nothing more is read from the socket, so a remote that never reads fills only its own TCP
window, and the kernel's.
"""
from __future__ import annotations

import errno
import logging
import socket
import time
from collections import deque

import zmq

from node import config
from node.peer.bt import framing as f
from node.peer.bt.framing import WireError
from node.peer.bt.mse import MseError, MseResponder
from node.peer.bt.outbox import Outbox
from node.peer.bt.spans import Span
from node.peer.bt.upload import CLOSED, HANDSHAKE, OPEN, Uploads
from protocol.pieces import Bitfield

log = logging.getLogger("zorrent.bt")
BT_DEFAULT_REQQ = 250                           # BEP 10: libtorrent's figure when a remote gives no reqq


class BtConnection(Uploads, Outbox):
    def __init__(self, service, sock: socket.socket, addr: tuple, outgoing: bool,
                 info_hash: bytes = b"", downloader=None) -> None:
        self.service, self.sock, self.addr, self.outgoing = service, sock, addr, outgoing
        self.fd = sock.fileno()
        self.name = f"{addr[0]}:{addr[1]}"
        self.state = HANDSHAKE
        self.connecting = outgoing
        self.mse = None                            # an incoming MSE handshake under way (mse.py); False: done
        self.encrypted_handshake = False
        self.info_hash = info_hash
        self.holding = None
        self.downloader = downloader               # the engine's remote (remote.py), on a download
        self.remote_peer_id = b""
        self.client = "?"
        self.fast = self.extended = False
        self.choked = True                         # we choke them
        self.remote_choked = True                  # they choke us
        self.interested = False                    # we want pieces of theirs
        self.remote_interested = False
        self.remote_bitfield: Bitfield | None = None
        self.remote_ut_metadata = 0
        self.remote_metadata_size = 0
        self.remote_reqq = BT_DEFAULT_REQQ        # BEP 10 `reqq`: requests it queues (250 if it says none)
        self.listen_port = 0                       # BEP 10 `p`: the port it listens on (0: not said)
        self.ext_seen = False                      # its BEP 10 handshake has come (with `p` or without)
        self.rbuf = bytearray(config.BT_RECV_BUFFER_BYTES)
        self.rview = memoryview(self.rbuf)
        self.rstart = self.rend = 0
        self.out: deque = deque()
        self.out_bytes = 0                         # queued, not yet written to the kernel
        self.out_total = self.out_sent = 0         # bytes ever queued / written: marks for ``held``
        self.held: deque = deque()                 # (out_total after a piece, its budget ticket)
        self.corked = False                        # while parsing or serving a batch: one send at the end
        self.requests: deque = deque()             # (piece, begin, length) the remote asked of us, not yet served
        self.refused_in_a_row = 0                  # requests refused as over BT_MAX_QUEUED_REQUESTS
        self.reads = 0                             # blocks with the read threads
        self.redirected: dict[int, float] = {}     # piece -> when send-once last refused it here (upload.py)
        self.suggested: dict[int, float] = {}      # piece -> when suggested to it (send-once), not yet sent
        self.bad_requests = 0
        self.uploaded = self.downloaded = 0        # block bytes, whole connection
        self.round_up = self.round_down = 0        # ... since the last rechoke (choker.py)
        self.optimistic = False
        now = time.monotonic()
        self.opened = self.last_recv = self.last_send = now
        self.polling = zmq.POLLOUT if outgoing else zmq.POLLIN
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    # ------------------------------------------------------------------ lifecycle
    @property
    def requester(self) -> str:
        """Who asks, for send-once: the connection's address and the peer id it gave."""
        return f"bt:{self.name}:{self.remote_peer_id.hex()}"

    def close(self, why: str = "", level: int = logging.INFO) -> None:
        if self.state == CLOSED:
            return
        self.state = CLOSED
        if why:
            log.log(level, "bt %s (%s): %s (sent %.1f MiB, got %.1f MiB%s)", self.name, self.client, why,
                    self.uploaded / 2**20, self.downloaded / 2**20,
                    f"; {len(self.suggested)} suggested pieces never asked" if self.suggested else "")
        self.service.forget(self)                  # and its budget counts (tickets become no-ops)
        try:
            self.sock.close()
        except OSError:
            pass
        for item in self.out:
            if item.__class__ is Span:
                item.drop()
        self.out.clear()
        self.requests.clear()
        self.held.clear()
        if self.downloader is not None:
            self.downloader.on_closed(why or "connection closed")

    def start_outgoing(self) -> None:
        self.send(f.handshake(self.info_hash, self.service.peer_id_bytes))

    # ------------------------------------------------------------------ events
    def on_events(self, events: int) -> None:
        if self.state == CLOSED:
            return
        if events & zmq.POLLOUT:
            if self.connecting:
                err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self.close(f"cannot connect: {errno.errorcode.get(err, err)}")
                    return
                self.connecting = False
            self.flush()
        if events & zmq.POLLIN and self.state != CLOSED:
            self.read()
        elif events & zmq.POLLERR and self.state != CLOSED:
            self.close("socket error")

    def read(self) -> None:
        for _ in range(16):                       # then let other sockets have a turn
            if self.state == CLOSED or self.out_bytes >= config.REMOTE_MAX_BYTES:
                break
            if self.rend == len(self.rbuf):
                self._compact()
            try:
                n = self.sock.recv_into(self.rview[self.rend:])
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.close(f"receive failed: {exc.strerror or exc}")
                return
            if n == 0:
                self.close("closed by remote")
                return
            self.rend += n
            self.last_recv = time.monotonic()
            self.corked = True                    # replies to everything this read brought go out together
            try:
                self._parse()
            except WireError as exc:
                self.close(str(exc), logging.WARNING)
                return
            finally:
                self.corked = False
        self.flush()

    def _compact(self) -> None:
        if self.rstart:
            n = self.rend - self.rstart
            self.rbuf[:n] = self.rbuf[self.rstart:self.rend]
            self.rstart, self.rend = 0, n

    def _limit(self) -> int:
        if self.holding is None:
            return config.BT_MAX_MESSAGE_BYTES
        return max(config.BT_MAX_MESSAGE_BYTES, 1 + (self.holding.meta.num_pieces + 7) // 8)

    def _parse(self) -> None:
        buf = self.rbuf
        while self.state != CLOSED:
            avail = self.rend - self.rstart
            if self.state == HANDSHAKE:
                if avail and buf[self.rstart] != len(f.PROTOCOL):
                    if self.outgoing or self.mse is False:
                        self.close(f"not a plain BitTorrent handshake (first byte {buf[self.rstart]})")
                        return
                    if not self._mse():
                        return
                    buf = self.rbuf
                    continue
                if avail < f.HANDSHAKE_BYTES:
                    break
                self._on_handshake(bytes(buf[self.rstart:self.rstart + f.HANDSHAKE_BYTES]))
                self.rstart += f.HANDSHAKE_BYTES
                continue
            if avail < 4:
                break
            n = f.unpack_u32(buf, self.rstart)
            if n == 0:
                self.rstart += 4
                continue
            if n > self._limit():
                raise WireError(f"message of {n} bytes (limit {self._limit()})")
            if avail < 4 + n:
                if 4 + n > len(buf):                # only a bitfield can be this long
                    self.rbuf.extend(bytes(4 + n - len(buf)))
                    self.rview = memoryview(self.rbuf)
                    buf = self.rbuf
                break
            start = self.rstart + 5
            self.rstart += 4 + n
            self._on_message(buf[start - 1], self.rview[start:start + n - 1])
        if self.rstart == self.rend:
            self.rstart = self.rend = 0
        elif len(self.rbuf) - self.rend < f.BLOCK_BYTES + 13:
            self._compact()

    # ------------------------------------------------------------------ handshake
    def _mse(self) -> bool:
        """An encrypted handshake (mse.py), negotiated to plaintext: True once done (the
        initiator's decrypted first payload then heads the receive buffer), False while
        more is needed or once closed."""
        if self.mse is None:
            self.mse = MseResponder(self.service.info_hashes)
        try:
            out, used, ia = self.mse.feed(bytes(self.rbuf[self.rstart:self.rend]))
        except MseError as exc:
            self.close(str(exc))
            return False
        if out:
            self.send(out)
        if used is None:
            return False
        data = ia + bytes(self.rbuf[self.rstart + used:self.rend])
        if len(data) > len(self.rbuf):
            self.close("MSE initial payload too long")
            return False
        self.rbuf[:len(data)] = data
        self.rstart, self.rend = 0, len(data)
        self.mse = False                           # done: what follows is a plain BitTorrent stream
        self.encrypted_handshake = True
        return True

    def _on_handshake(self, data: bytes) -> None:
        reserved, info_hash, peer_id = f.parse_handshake(data)
        if self.outgoing and info_hash != self.info_hash:
            raise WireError("handshake names another torrent")
        holding = self.service.holding(info_hash)
        if holding is None and self.downloader is None:
            raise WireError(f"torrent {info_hash.hex()} is not held here")
        if peer_id == self.service.peer_id_bytes:
            raise WireError("connected to ourselves")
        self.info_hash, self.holding, self.remote_peer_id = info_hash, holding, peer_id
        self.client = f.client_of(peer_id)
        self.fast = f.has(reserved, f.RESERVED_FAST)
        self.extended = f.has(reserved, f.RESERVED_EXTENSION)
        self.state = OPEN
        meta = holding.meta if holding is not None else None
        self.remote_bitfield = Bitfield(meta.num_pieces) if meta else None
        if not self.outgoing:
            self.send(f.handshake(info_hash, self.service.peer_id_bytes))
        if self.extended:
            size = self.service.metadata_size(info_hash)
            self.send(f.ext_handshake(size, self.service.port, config.BT_MAX_QUEUED_REQUESTS))
        self._send_have_state()
        self.service.joined(self)
        if self.downloader is not None:
            self.downloader.on_open(self)

    def _send_have_state(self) -> None:
        holding = self.holding
        if holding is None:
            if self.fast:
                self.send(f.simple(f.HAVE_NONE))
            return
        bits = holding.bitfield if self.service.serving(holding) else Bitfield(holding.meta.num_pieces)
        if self.fast and bits.complete:
            self.send(f.simple(f.HAVE_ALL))
        elif self.fast and not len(bits):
            self.send(f.simple(f.HAVE_NONE))
        else:
            self.send(f.bitfield(bits.to_bytes()))
        self.have_sent = len(holding.have_log)

    def set_holding(self, holding) -> None:
        """A download whose metadata arrived over this connection: now we know the pieces."""
        self.holding = holding
        self.remote_bitfield = self.remote_bitfield or Bitfield(holding.meta.num_pieces)

    # ------------------------------------------------------------------ messages
    def _on_message(self, msg_id: int, payload: memoryview) -> None:
        fixed = f.FIXED_PAYLOAD.get(msg_id)
        if fixed is not None and len(payload) != fixed:
            raise WireError(f"{f.NAMES[msg_id]} message with {len(payload)} bytes of payload")
        if msg_id == f.REQUEST:
            self._on_request(*f.unpack_triple(payload, 0))
        elif msg_id == f.PIECE:
            if len(payload) < 9:
                raise WireError("piece message too short")
            piece, begin = f.unpack_pair(payload)
            self.downloaded += len(payload) - 8
            self.round_down += len(payload) - 8
            if self.downloader is not None:
                self.downloader.on_block(piece, begin, payload[8:])
        elif msg_id == f.HAVE:
            self._on_have(f.unpack_u32(payload, 0))
        elif msg_id == f.BITFIELD:               # BEP 3 wants it first; aria2 sends it after other
            self._on_bitfield(bytes(payload))    # messages, so any time (its size and spare bits are checked)
        elif msg_id in (f.HAVE_ALL, f.HAVE_NONE):
            if not self.fast:
                raise WireError(f"{f.NAMES[msg_id]} without the Fast extension")
            if self.remote_bitfield is not None and msg_id == f.HAVE_ALL:
                self.remote_bitfield = Bitfield.full(self.remote_bitfield.size)
            self._remote_has_changed(None)
        elif msg_id == f.INTERESTED:
            self.remote_interested = True
            self.service.choker.interested(self)
        elif msg_id == f.NOT_INTERESTED:
            self.remote_interested = False
            self.service.choker.uninterested(self)
        elif msg_id == f.CHOKE:
            self.remote_choked = True
            if self.downloader is not None:
                self.downloader.on_choke(self.fast)
        elif msg_id == f.UNCHOKE:
            self.remote_choked = False
            if self.downloader is not None:
                self.downloader.on_unchoke()
        elif msg_id == f.CANCEL:
            self._cancel(*f.unpack_triple(payload, 0))
        elif msg_id == f.REJECT:
            if self.downloader is not None:
                self.downloader.on_reject(*f.unpack_triple(payload, 0))
        elif msg_id == f.EXTENDED:
            if len(payload) < 1:
                raise WireError("empty extended message")
            self.service.metadata.on_extended(self, payload[0], bytes(payload[1:]))
        # PORT (DHT), SUGGEST, ALLOWED_FAST and unknown ids are ignored (BEP 3: unknown ids are skipped)

    def _on_have(self, piece: int) -> None:
        bits = self.remote_bitfield
        if bits is None:
            return
        if not 0 <= piece < bits.size:
            raise WireError(f"have of piece {piece} (torrent has {bits.size})")
        bits.add(piece)
        self._remote_has_changed([piece])

    def _on_bitfield(self, data: bytes) -> None:
        if self.remote_bitfield is None:
            self.pending_bitfield = data            # metadata not known yet: the downloader reads it later
            return
        try:
            self.remote_bitfield = Bitfield(self.remote_bitfield.size, data)
        except ValueError as exc:
            raise WireError(f"bad bitfield: {exc}") from None
        self._remote_has_changed(None)

    def _remote_has_changed(self, pieces) -> None:
        if self.downloader is not None:
            self.downloader.on_have(pieces)

    def set_interested(self, yes: bool) -> None:
        if self.state == OPEN and yes != self.interested:
            self.interested = yes
            self.send(f.simple(f.INTERESTED if yes else f.NOT_INTERESTED))

    def set_choked(self, yes: bool) -> None:
        if self.state != OPEN or yes == self.choked:
            return
        self.choked = yes
        self.send(f.simple(f.CHOKE if yes else f.UNCHOKE))
        if yes:                                     # BEP 6: every dropped request gets a reject
            self._drop_requests()
        else:
            self.pump()

    def send_have(self, piece: int) -> None:
        if self.state == OPEN:
            self.send(f.have(piece))

    def tick(self, now: float) -> None:
        if self.state == HANDSHAKE and now - self.opened > config.BT_HANDSHAKE_TIMEOUT_S:
            self.close("no handshake in time", logging.WARNING)
        elif now - self.last_recv > config.BT_IDLE_TIMEOUT_S:
            self.close("idle")
        elif self.state == OPEN and now - self.last_send > config.BT_KEEPALIVE_S:
            self.send(f.KEEPALIVE)
