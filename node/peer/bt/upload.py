"""The serving half of a BEP 3 connection: requests in, pieces out (a mixin of
connection.BtConnection). What may be served is node/peer/block_rules.py's, as on the
ZeroMQ port; how much is held is the peer's ONE Budget (node/budget.py), shared with the
ZeroMQ data port (node/peer/serving.py), so REMOTES_TOTAL_BYTES bounds both wires together:

- a request is admitted, or refused at once (BEP 6 reject_request; without the Fast
  extension it is dropped, as BEP 3 allows a choked or busy peer to); a connection
  refused REMOTE_MAX_REFUSALS times in a row is cut off;
- its bytes are claimed before the disk read; a request that cannot claim waits at the
  head of the connection's queue (at most REMOTE_MAX_REQUESTS, admitted ones) until bytes
  are freed on either wire;
- its ticket is released once the piece message has been written to the kernel (sendmsg
  took its last byte), or when it is cancelled, choked away or fails;
- the connection's counts are forgotten when it closes."""
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
        budget = self.service.budget
        ticket = budget.admit(self)
        if ticket is None:
            requests, held = budget.usage(self)
            self.service.once(self, "over budget", f"over the budget ({requests} requests, {held} bytes "
                                                   f"in flight here): rejecting")
            self._reject(piece, begin, length)
            if budget.abusive(self):
                self.close(f"refused {config.REMOTE_MAX_REFUSALS} requests in a row: cut off", logging.WARNING)
            return
        self.requests.append((piece, begin, length, ticket))
        self.pump()

    def _cancel(self, piece: int, begin: int, length: int) -> None:
        for item in self.requests:
            if item[0] == piece and item[1] == begin and item[2] == length:
                self.requests.remove(item)
                self.service.budget.release(item[3])
                return

    def _drop_requests(self) -> None:
        """Choked: BEP 6 wants every dropped request rejected; their tickets end."""
        release = self.service.budget.release
        while self.requests:
            piece, begin, length, ticket = self.requests.popleft()
            release(ticket)
            self._reject(piece, begin, length)

    def pump(self) -> None:
        """Serve queued requests while the budget lets their bytes be held."""
        corked, self.corked = self.corked, True
        try:
            self._serve_queued()
        finally:
            self.corked = corked
        if not corked:
            self.flush()

    def _serve_queued(self) -> None:
        budget = self.service.budget
        requests = self.requests
        while requests and not self.choked and self.state == OPEN:
            piece, begin, length, ticket = requests[0]
            holding = self.holding
            try:
                check_block(holding, piece, begin, length, f.BLOCK_BYTES)
                if not self.service.serving(holding):
                    raise ZorrentError("torrent is not served")
            except ZorrentError as exc:
                requests.popleft()
                budget.release(ticket)
                self.bad_requests += 1
                self.service.once(self, "bad request", f"request {piece}:{begin}+{length} refused: {exc.message}")
                self._reject(piece, begin, length)
                if self.bad_requests > MAX_BAD_REQUESTS:
                    self.close(f"{self.bad_requests} bad requests", logging.WARNING)
                continue
            if self.fast and send_once(holding, piece, self.requester) is not None:
                requests.popleft()
                budget.release(ticket)
                self._reject(piece, begin, length)  # sent to another peer first: it will relay it
                continue
            if not budget.claim(ticket, length):
                self.service.starved(self)          # retried when bytes are freed, on either wire
                return
            requests.popleft()
            try:
                data = read_block(self.service.read_failed, holding, piece, begin, length)
            except ZorrentError:
                budget.release(ticket)
                self._reject(piece, begin, length)
                continue
            if isinstance(data, PendingRead):
                self.reads += 1
                self.service.disk.read(data, lambda d, err, p=piece, b=begin, n=length, t=ticket:
                                       self._read_done(p, b, n, t, d, err))
            else:
                self._send_piece(piece, begin, data, ticket)

    def _read_done(self, piece: int, begin: int, length: int, ticket, data, err) -> None:
        self.reads -= 1
        if self.state == CLOSED:
            self.service.budget.release(ticket)     # a no-op once forgotten
            return
        if err is not None:
            self.service.budget.release(ticket)
            if self.holding is not None:
                self.service.read_failed(self.holding.file, err)
            self._reject(piece, begin, length)
        else:
            self._send_piece(piece, begin, data, ticket)
        self.pump()

    def _send_piece(self, piece: int, begin: int, data, ticket) -> None:
        self.uploaded += len(data)
        self.round_up += len(data)
        header = f.piece_header(piece, begin, len(data))
        self.out.append(header)                     # sent by the caller's flush (pump), with the rest
        self.out.append(data)
        n = len(header) + len(data)
        self.out_bytes += n
        self.out_total += n
        self.held.append((self.out_total, ticket))  # released when sendmsg has taken its last byte
