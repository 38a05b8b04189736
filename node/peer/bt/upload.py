"""The serving half of a BEP 3 connection: requests in, pieces out (a mixin of
connection.BtConnection). What may be served is node/peer/serving.py's, as on the
ZeroMQ port; how much is queued is bounded by BT_MAX_REQUEST_QUEUE requests and
BT_SEND_BUFFER_BYTES of replies per connection, and BT_READS_IN_FLIGHT disk reads."""
from __future__ import annotations

import logging

from node import config
from node.peer.bt import framing as f
from node.peer.block_rules import check_block, read_block, send_once
from node.peer.storage import PendingRead
from protocol.errors import ZorrentError

HANDSHAKE, OPEN, CLOSED = "handshake", "open", "closed"
MAX_BAD_REQUESTS = 64           # requests outside any piece (each rejected) before we hang up


class Uploads:
    # ------------------------------------------------------------------ serving
    def _reject(self, piece: int, begin: int, length: int) -> None:
        if self.fast:
            self.send(f.triple(f.REJECT, piece, begin, length))

    def _on_request(self, piece: int, begin: int, length: int) -> None:
        if self.choked or self.holding is None:
            self._reject(piece, begin, length)
            return
        if len(self.requests) >= config.BT_MAX_REQUEST_QUEUE:
            self.service.once(self, "request queue full", f"over {config.BT_MAX_REQUEST_QUEUE} requests queued: rejecting")
            self._reject(piece, begin, length)
            return
        self.requests.append((piece, begin, length))
        self.pump()

    def pump(self) -> None:
        """Serve queued requests while the send buffer and the read threads have room."""
        corked, self.corked = self.corked, True
        try:
            self._serve_queued()
        finally:
            self.corked = corked
        if not corked:
            self.flush()

    def _serve_queued(self) -> None:
        while (self.requests and not self.choked and self.state == OPEN
               and self.out_bytes < config.BT_SEND_BUFFER_BYTES and self.reads < config.BT_READS_IN_FLIGHT):
            piece, begin, length = self.requests.popleft()
            holding = self.holding
            try:
                check_block(holding, piece, begin, length, f.BLOCK_BYTES)
                if not self.service.serving(holding):
                    raise ZorrentError("torrent is not served")
            except ZorrentError as exc:
                self.bad_requests += 1
                self.service.once(self, "bad request", f"request {piece}:{begin}+{length} refused: {exc.message}")
                self._reject(piece, begin, length)
                if self.bad_requests > MAX_BAD_REQUESTS:
                    self.close(f"{self.bad_requests} bad requests", logging.WARNING)
                continue
            if self.fast and send_once(holding, piece, self.requester) is not None:
                self._reject(piece, begin, length)  # sent to another peer first: it will relay it
                continue
            try:
                data = read_block(self.service.read_failed, holding, piece, begin, length)
            except ZorrentError:
                self._reject(piece, begin, length)
                continue
            if isinstance(data, PendingRead):
                self.reads += 1
                self.service.disk.read(data, lambda d, err, p=piece, b=begin, n=length: self._read_done(p, b, n, d, err))
            else:
                self._send_piece(piece, begin, data)

    def _read_done(self, piece: int, begin: int, length: int, data, err) -> None:
        self.reads -= 1
        if self.state == CLOSED:
            return
        if err is not None:
            if self.holding is not None:
                self.service.read_failed(self.holding.file, err)
            self._reject(piece, begin, length)
        else:
            self._send_piece(piece, begin, data)
        self.pump()

    def _send_piece(self, piece: int, begin: int, data) -> None:
        self.uploaded += len(data)
        self.round_up += len(data)
        self.out.append(f.piece_header(piece, begin, len(data)))
        self.send(data)

