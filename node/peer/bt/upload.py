"""The serving half of a BEP 3 connection: requests in, pieces out (a mixin of
connection.BtConnection). What may be served is node/peer/block_rules.py's, as on the
ZeroMQ port; how much is held is the peer's ONE Budget (node/budget.py), shared with the
ZeroMQ data port (node/peer/serving.py), so REMOTES_TOTAL_BYTES bounds both wires together:

- a request is queued (three ints), up to BT_MAX_QUEUED_REQUESTS, the `reqq` we
  advertise; beyond, it is refused at once (BEP 6 reject_request; without the Fast
  extension it is dropped, as BEP 3 allows a busy peer to); a connection refused
  REMOTE_MAX_REFUSALS times in a row is cut off;
- the head of the queue is admitted by the budget (at most REMOTE_MAX_REQUESTS being
  served per remote) and its bytes are claimed before it is read or queued for sendfile;
  one that cannot be admitted or claim waits at the head until bytes are freed on either
  wire;
- its ticket is released once the piece message has been written to the kernel (sendmsg
  or sendfile took its last byte), or when it fails;
- the connection's counts are forgotten when it closes."""
from __future__ import annotations

import logging
import time

from node import config
from node.peer.bt import framing as f
from node.peer.block_rules import check_block, read_block, send_once
from node.peer.bt.spans import span_of
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
        if len(self.requests) >= config.BT_MAX_QUEUED_REQUESTS:
            self.refused_in_a_row += 1
            self.service.once(self, "over budget", f"over {config.BT_MAX_QUEUED_REQUESTS} requests queued "
                                                   f"here: rejecting")
            self._reject(piece, begin, length)
            if self.refused_in_a_row >= config.REMOTE_MAX_REFUSALS:
                self.close(f"refused {config.REMOTE_MAX_REFUSALS} requests in a row: cut off", logging.WARNING)
            return
        self.refused_in_a_row = 0
        self.requests.append((piece, begin, length))
        if not self.corked:
            self.pump()                             # else the flush at the end of the read serves it

    def _sent_elsewhere(self, holding, piece: int) -> bool:
        """Send-once seeding (block_rules.send_once) for one block. A piece is asked for a
        16 KiB block at a time: its first block refused, the others of the same burst are
        too, without asking again (each ask would hand this remote more unsent pieces to
        take, which it never hears of, and a seed out of unsent pieces serves anything).
        The unsent pieces offered instead are suggested to it (BEP 6 suggest), and held for it
        (seeding.py) until it asks or SEND_ONCE_OFFER_S lapses. A standard client may leave a
        suggest unasked (libtorrent asks for some), so it gets new offers only while fewer than
        BT_LIVE_OFFERS of its last ones are waiting: pieces held for a client that ignores
        them are first copies nobody gets, and a seed whose unsent pieces all wait so serves
        second copies instead (seen at RTT 50: 90-173 unasked offers per connection)."""
        now = time.monotonic()
        if now - self.redirected.get(piece, float("-inf")) < config.BT_REDIRECT_MEMO_S:
            return True
        offer = send_once(holding, piece, self.requester, offer=max(0, config.BT_LIVE_OFFERS - self._live_offers(now)))
        if offer is None:
            return False
        if len(self.redirected) >= holding.meta.num_pieces:
            self.redirected.clear()
        self.redirected[piece] = now
        bits = self.remote_bitfield
        for other in offer:
            if bits is None or other not in bits:
                self.send(f.suggest(other))
                self.suggested[other] = now         # bounded: pieces of the torrent
        return True

    def _live_offers(self, now: float) -> int:
        """Pieces offered to this remote within SEND_ONCE_OFFER_S that it has not asked for."""
        since = now - config.SEND_ONCE_OFFER_S
        return sum(1 for when in self.suggested.values() if when > since)

    def _cancel(self, piece: int, begin: int, length: int) -> None:
        try:
            self.requests.remove((piece, begin, length))
        except ValueError:
            pass                                    # served already, or never asked

    def _drop_requests(self) -> None:
        """Choked: BEP 6 wants every dropped request rejected."""
        while self.requests:
            self._reject(*self.requests.popleft())

    def pump(self) -> None:
        """Serve queued requests while the budget lets their bytes be held."""
        corked, self.corked = self.corked, True
        try:
            self._serve_queued()
        finally:
            self.corked = corked
        if not corked:
            self.flush()

    def _current_holding(self):
        """The peer's record of the torrent now. A change on disk replaces the record
        (integrity.py: no piece verified until re-hashed, then a new file), so the one this
        connection started with may be stale (the service's tick closes a connection whose
        torrent was removed)."""
        holding = self.service.holding(self.info_hash)
        if holding is not None and holding is not self.holding:
            self.holding = holding
        return self.holding

    def _serve_queued(self) -> None:
        budget = self.service.budget
        requests = self.requests
        holding = self._current_holding() if requests else self.holding
        if holding is None:
            return
        serving = self.service.serving(holding)
        max_requests = budget.limits.max_requests
        while requests and not self.choked and self.state == OPEN:
            piece, begin, length = requests[0]
            try:
                check_block(holding, piece, begin, length, f.BLOCK_BYTES)
                if not serving:
                    raise ZorrentError("torrent is not served")
            except ZorrentError as exc:
                requests.popleft()
                self.bad_requests += 1
                self.service.once(self, "bad request", f"request {piece}:{begin}+{length} refused: {exc.message}")
                self._reject(piece, begin, length)
                if self.bad_requests > MAX_BAD_REQUESTS:
                    self.close(f"{self.bad_requests} bad requests", logging.WARNING)
                continue
            if self.fast and self._sent_elsewhere(holding, piece):
                requests.popleft()
                self._reject(piece, begin, length)  # sent to another peer first: it will relay it
                continue
            ticket = budget.admit(self) if budget.usage(self)[0] < max_requests else None
            if ticket is None or not budget.claim(ticket, length):
                if ticket is not None:
                    budget.release(ticket)          # holds no bytes: nothing to free, no wake-up
                self.service.starved(self)          # retried when bytes are freed, on either wire
                return
            requests.popleft()
            span = span_of(holding.file, piece, begin, length)
            if span is not None:                    # sent by sendfile, checked in flush (spans.py)
                self._send_piece(piece, begin, span, ticket)
                continue
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
        if self.suggested:
            self.suggested.pop(piece, None)
        self.uploaded += len(data)
        self.round_up += len(data)
        header = f.piece_header(piece, begin, len(data))
        self.out.append(header)                     # sent by the caller's flush (pump), with the rest
        self.out.append(data)
        n = len(header) + len(data)
        self.out_bytes += n
        self.out_total += n
        self.held.append((self.out_total, ticket))  # released when sendmsg has taken its last byte
