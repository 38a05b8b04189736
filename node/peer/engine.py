"""The download engine of one torrent on one peer.

- Peers come from the tracker's list (refreshed every PEER_REFRESH_S) with bitfields, and
  each remote's WATCH tells what it verifies (node/peer/peerlist.py: the job's view of the swarm).
- Pieces are picked rarest-first (ties broken at random) from what each peer has.
- Credit-based pipelining (zguide ch. 7): each remote peer gets at most its credit in
  block bytes in flight; every verified or failed piece returns its credit. Credit is
  CREDIT_WINDOW_S of the peer's measured rate (RemotePeer.rate, counted from its first
  reply, so it doubles each round trip at the start), between two pieces and
  PIPELINE_BYTES: enough to keep its link busy, and no deep queue of requests at a slow
  link that others could have served sooner.
- An origin seed that already sent a piece to another peer answers ``Elsewhere`` with
  pieces nobody has (node/peer/seeding.py): the piece waits for the swarm, and the
  offered pieces are asked for first.
- A piece comes from one peer, block by block in order, hashed as the blocks arrive;
  only a verified piece is written (pwritev straight from the received frames) and
  announced. A piece that fails its hash or times out counts as a failed attempt,
  goes back to the pool and is preferably fetched from another peer.
- A peer that sent MAX_HASH_FAILURES bad pieces is banned for the rest of the job.
- Endgame: with nothing left unassigned, idle peers duplicate pieces that have been in
  flight elsewhere for over ENDGAME_AFTER_S (a stalled or slow peer); first copy wins.

Final score of a remote peer (shown in Download Statistics):

    score = (MiB received from it / seconds since the first request to it) * 0.5 ** failures

where failures counts its timeouts, bad hashes and refused requests; banned peers score 0.
"""
from __future__ import annotations

import itertools
import logging
import random
from collections import deque

from node import config
from node.peer.peerlist import FirstPeers, PeerListing
from node.peer.remote import MIB, Fetch, Holding, Host, RemotePeer
from node.peer.storage import sha1_of
from protocol import messages as m
from protocol.codec import Envelope
from protocol.errors import ErrorCode, RemoteError, TransportError, ZorrentError
from protocol.pieces import all_pieces_mask, count_pieces, mask_indexes, piece_bit

log = logging.getLogger("zorrent.engine")

_RETRY_RANK = -(1 << 62)    # ranks of retried pieces: before every piece of the order


class DownloadJob(PeerListing):
    def __init__(self, node: Host, holding: Holding, first: FirstPeers | None = None) -> None:
        self.node = node
        self.clock = node.clock
        self.holding = holding
        self.meta = holding.meta
        self.remotes: dict[str, RemotePeer] = {}
        self.fetches: dict[int, list[Fetch]] = {}    # piece -> attempts in flight
        self.pending: set[int] = set(range(self.meta.num_pieces)) - set(holding.bitfield.indexes())
        self.pending_mask = all_pieces_mask(self.meta.num_pieces) & ~holding.bitfield.mask   # the same, as a mask
        self.order: deque[int] = deque()
        self.retry: deque[int] = deque()
        self.rank: dict[int, int] = {}                # piece -> its place in retry, then order (lower first)
        self._front = 0                               # the rank of the last piece put first in the order
        self._retried = itertools.count(_RETRY_RANK)
        self.bad_from: dict[int, set[str]] = {}       # piece -> peers whose copy failed
        self.failed_attempts = 0
        self.unexpected = 0                           # blocks nobody asked for, ignored
        self.redirected = 0                           # Elsewhere replies from a send-once seed
        self.started = self.clock()
        self.finished: float | None = None
        self.refreshing = False
        self.last_refresh = 0.0
        self.cursor = -1                              # the tracker's version our view of the swarm is at
        self.warning = ""                             # why the job may be slower than it could (status)
        self.disk_at_start = node.disk.snapshot()
        self.sources: list[m.PeerInfo] = []           # BEP 3 peers named by the user (a magnet's x.pe)
        self._rebuild_order()
        if first is not None:               # the peer list is asked already (refresh() otherwise)
            self.refreshing, self.last_refresh = True, first.asked
            first.then(self._on_peers)

    def _rebuild_order(self) -> None:
        """Rarest first: the pending pieces some listed remote has, fewest holders first, ties at
        random. Counted on masks (protocol/pieces.py count_pieces), not remotes x pieces tests."""
        size = self.meta.num_pieces
        masks = []
        for remote in self.remotes.values():
            if remote.listed and not remote.banned:
                mask = remote.bitfield.mask & self.pending_mask
                for i in remote.refused:
                    if mask & (bit := piece_bit(size, i)):
                        mask ^= bit
                masks.append(mask)
        avail = count_pieces(masks, size) if masks else []
        rnd = random.random
        self.order = deque(sorted((i for i in self.pending if avail and avail[i]), key=lambda i: (avail[i], rnd())))
        self.rank = {i: n for n, i in enumerate(self.order)}
        self._front = 0
        self.retry.clear()

    def _take(self, piece: int) -> None:
        """``piece`` is no longer pending: it is being fetched (or is held)."""
        if piece in self.pending:
            self.pending.discard(piece)
            self.pending_mask ^= piece_bit(self.meta.num_pieces, piece)

    def _put_back(self, piece: int, retry: bool) -> None:
        if piece not in self.pending:
            self.pending.add(piece)
            self.pending_mask |= piece_bit(self.meta.num_pieces, piece)
        if retry:
            self.retry.append(piece)
            if self.rank.get(piece, 0) > _RETRY_RANK // 2:    # its first retry is where a walk finds it
                self.rank[piece] = next(self._retried)

    def _first(self, piece: int) -> None:
        """``piece`` goes to the front of the order (only one remote has it), behind any retry."""
        self.order.appendleft(piece)
        if self.rank.get(piece, 0) > _RETRY_RANK // 2:    # not a retried piece: those stay first
            self._front -= 1
            self.rank[piece] = self._front

    # ------------------------------------------------------------------ scheduling
    def _credit(self, remote: RemotePeer, now: float) -> int:
        """Bytes a peer may have in flight: CREDIT_WINDOW_S of its rate (RemotePeer.rate:
        MiB/s since its first reply, less failures), at least two pieces (all it gets
        before its first piece), at most PIPELINE_BYTES."""
        floor = config.MIN_PIPELINE_REQUESTS * self.meta.piece_length
        return max(floor, min(config.PIPELINE_BYTES, int(remote.rate(now) * MIB * config.CREDIT_WINDOW_S)))

    def _pick(self, remote: RemotePeer, now: float) -> int | None:
        """The first piece of retry, then order, that ``remote`` has and may be asked for.

        What it has that is pending is one mask ``&``: a remote with nothing we want costs no
        scan (in a swarm most remotes, most of the time), and one with a few such pieces is
        answered from those few by rank; only one with many (a seed) walks the order, which
        finds one near its front."""
        candidates = remote.bitfield.mask & self.pending_mask
        if not candidates:
            remote.suggested.clear()       # none of them is pending
            return None
        while remote.suggested:
            i = remote.suggested.popleft()
            if i in self.pending and i in remote.bitfield:
                self._take(i)
                return i
        if candidates.bit_count() <= config.PICK_FROM_MASK_MAX:
            best, best_rank = None, None
            for i in mask_indexes(candidates, self.meta.num_pieces):
                rank = self.rank.get(i)
                if (rank is not None and (best is None or rank < best_rank) and i not in remote.refused
                        and remote.deferred.get(i, 0.0) <= now and self._may_fetch(remote, i)):
                    best, best_rank = i, rank
            if best is not None:
                self._take(best)
            return best
        if len(self.order) > 2 * len(self.pending) + config.PICK_FROM_MASK_MAX:   # drop what was taken
            self.order = deque(i for i in self.order if i in self.pending)
        for source in (self.retry, self.order):
            while source and source[0] not in self.pending:
                source.popleft()
            for i in source:
                if (i in self.pending and i in remote.bitfield and i not in remote.refused
                        and remote.deferred.get(i, 0.0) <= now and self._may_fetch(remote, i)):
                    self._take(i)
                    return i
        return None

    def _may_fetch(self, remote: RemotePeer, piece: int) -> bool:
        """Not from a peer whose copy already failed, unless nobody else has the piece."""
        bad = self.bad_from.get(piece)
        if not bad or remote.peer_id not in bad:
            return True
        return not any(r.listed and not r.banned and r.peer_id not in bad and piece in r.bitfield
                       for r in self.remotes.values())

    def _pick_endgame(self, remote: RemotePeer, now: float) -> int | None:
        """A piece in flight elsewhere for over ENDGAME_AFTER_S, with the fewest attempts."""
        best = None
        for i, attempts in self.fetches.items():
            if any(f.writing for f in attempts):
                continue      # it arrived; it is being verified and written
            if (len(attempts) < 2 and i in remote.bitfield and i not in remote.refused
                    and all(f.remote is not remote for f in attempts)
                    and now - attempts[0].started > config.ENDGAME_AFTER_S):
                if best is None or attempts[0].started < self.fetches[best][0].started:
                    best = i
        return best

    def schedule(self) -> None:
        if self.finished is not None:
            return
        now = self.clock()
        wanted = self.pending_mask
        for remote in self.remotes.values():
            if not remote.listed or remote.banned or remote.rested_until > now:
                continue
            if wanted and not remote.bitfield.mask & wanted:
                continue          # nothing it has is pending (and with pieces pending, no endgame)
            credit = self._credit(remote, now)
            while remote.inflight_bytes < credit and len(remote.fetches) < config.MAX_PIPELINE_REQUESTS:
                piece = self._pick(remote, now)
                if piece is None and not self.pending:
                    piece = self._pick_endgame(remote, now)
                if piece is None:
                    break
                self._request(remote, piece, now)

    def _request(self, remote: RemotePeer, piece: int, now: float) -> None:
        size = self.meta.piece_size(piece)
        fetch = Fetch(piece, remote, size, now)
        remote.first_request = remote.first_request or now
        remote.inflight_bytes += size
        remote.fetches.add(fetch)
        self.fetches.setdefault(piece, []).append(fetch)
        for offset in range(0, size, m.MAX_BLOCK_BYTES):
            length = min(m.MAX_BLOCK_BYTES, size - offset)
            req = m.GetBlock(info_hash=self.meta.info_hash, piece_index=piece,
                             block_offset=offset, length=length, requester=self.node.peer_id)
            fetch.request_ids.append(remote.channel.request(
                req, lambda env, err, f=fetch, o=offset, n=length: self._on_block(f, o, n, env, err),
                timeout_s=config.BLOCK_TIMEOUT_S, tries=1))

    # ------------------------------------------------------------------ replies
    def _on_block(self, fetch: Fetch, offset: int, length: int,
                  env: Envelope | None, err: ZorrentError | None) -> None:
        if fetch.done:
            return
        if err is not None:
            self._fail(fetch, err)
            return
        msg, payload = env.msg, env.payload
        if (isinstance(msg, m.Elsewhere) and msg.piece_index == fetch.piece_index
                and msg.info_hash == self.meta.info_hash):
            self._elsewhere(fetch, msg.suggest)
            return
        if (not isinstance(msg, m.Block) or payload is None or msg.piece_index != fetch.piece_index
                or msg.block_offset != offset or msg.info_hash != self.meta.info_hash
                or len(payload) != length):
            self.unexpected += 1
            self._fail(fetch, ZorrentError("reply does not match the request"))
            return
        if offset in fetch.blocks:
            return
        fetch.blocks[offset] = payload
        fetch.received += len(payload)
        if not fetch.remote.first_reply:
            fetch.remote.first_reply = self.clock()
            log.debug("%s: a first block from %s at +%.3f s (asked at +%.3f s)", self.meta.name,
                      fetch.remote.peer_id, self.clock() - self.started, fetch.started - self.started)
        if fetch.received == fetch.size:
            self._verify_and_write(fetch)

    def _elsewhere(self, fetch: Fetch, suggest: list[int]) -> None:
        """A send-once seed sent this piece to someone else: not its fault, no failure.
        The piece waits for the swarm (not asked of this seed for ELSEWHERE_RETRY_S);
        the pieces it offered instead come first."""
        remote = fetch.remote
        self.redirected += 1
        remote.deferred[fetch.piece_index] = self.clock() + config.ELSEWHERE_RETRY_S
        remote.suggested.extend([i for i in suggest if 0 <= i < self.meta.num_pieces][:config.SEND_ONCE_SUGGEST])
        self._abandon(fetch, count=False)
        self.schedule()

    def _verify_and_write(self, fetch: Fetch) -> None:
        """SHA-1 of the received frames on a hash thread; only a match goes on to a write thread."""
        fetch.writing = True
        buffers = [fetch.blocks[o] for o in sorted(fetch.blocks)]
        expected, piece_file, piece = self.meta.piece_hash(fetch.piece_index), self.holding.file, fetch.piece_index

        def verify() -> bool:
            ok = False
            try:
                ok = sha1_of(buffers) == expected
                return ok
            finally:
                if not ok:                       # no write follows
                    piece_file.release()

        def write() -> None:
            try:
                if not piece_file.closing:       # the job was removed meanwhile: nothing to write
                    piece_file.write_piece(piece, buffers)
            finally:
                piece_file.release()

        piece_file.hold()
        self.node.disk.submit(verify, write, lambda ok, error: self._complete(fetch, ok, error))

    def _complete(self, fetch: Fetch, hash_ok: bool, error: BaseException | None) -> None:
        fetch.writing = False
        piece, remote = fetch.piece_index, fetch.remote
        if fetch.done or self.finished is not None:
            # superseded (a duplicate won, the sender was banned, the job ended); a piece the
            # disk threads verified and wrote while the job failed still counts
            if hash_ok and error is None and self.finished is not None:
                self.node.holdings.piece_verified(self.holding, piece)
            return
        if error is not None:
            why = error.strerror if isinstance(error, OSError) and error.strerror else error
            self._finish_job(error=f"cannot write {self.holding.file.path}: {why}")
            return
        if not hash_ok:
            remote.hash_failures += 1
            self.bad_from.setdefault(piece, set()).add(remote.peer_id)
            self._fail(fetch, ZorrentError(f"piece {piece} from {remote.peer_id} failed its hash"))
            if remote.hash_failures >= config.MAX_HASH_FAILURES and not remote.banned:
                remote.banned = True   # parole is over: nothing more from it in this job
                log.warning("%s: banned %s after %d bad pieces", self.meta.name,
                            remote.peer_id, remote.hash_failures)
                for other in list(remote.fetches):
                    self._abandon(other, count=False)
                self.schedule()
            return
        self._retire(fetch)
        remote.pieces += 1
        remote.bytes += fetch.size
        remote.timeouts_in_a_row = 0
        for other in self.fetches.pop(piece, []):          # endgame duplicates lose
            if other is not fetch:
                self._retire(other)
        self.node.holdings.piece_verified(self.holding, piece)
        if self.holding.bitfield.complete:
            self._finish_job()
        else:
            self.schedule()

    def _retire(self, fetch: Fetch) -> None:
        if fetch.done:
            return
        fetch.done = True
        fetch.remote.inflight_bytes -= fetch.size
        fetch.remote.fetches.discard(fetch)
        for rid in fetch.request_ids:
            fetch.remote.channel.cancel(rid)
        fetch.blocks.clear()

    def _abandon(self, fetch: Fetch, count: bool) -> None:
        """Give a piece back to the pool after a failed attempt."""
        if fetch.done:
            return
        self._retire(fetch)
        attempts = self.fetches.get(fetch.piece_index, [])
        if fetch in attempts:
            attempts.remove(fetch)
        if not attempts:
            self.fetches.pop(fetch.piece_index, None)
            if fetch.piece_index not in self.holding.bitfield:
                self._put_back(fetch.piece_index, retry=True)
        if count:
            self.failed_attempts += 1
            fetch.remote.failures += 1

    def _fail(self, fetch: Fetch, err: ZorrentError) -> None:
        log.info("%s: piece %d from %s: %s", self.meta.name, fetch.piece_index,
                 fetch.remote.peer_id, err.message)
        if isinstance(err, RemoteError) and err.code == ErrorCode.PIECE_UNAVAILABLE:
            fetch.remote.refused.add(fetch.piece_index)   # a false (or stale) claim: ask others
        elif isinstance(err, TransportError):
            fetch.remote.timeouts_in_a_row += 1
            if fetch.remote.timeouts_in_a_row >= config.SNUB_AFTER_TIMEOUTS:
                fetch.remote.rested_until = self.clock() + config.SNUB_S
        self._abandon(fetch, count=True)
        self.schedule()

    # ------------------------------------------------------------------ time
    def tick(self, now: float) -> None:
        if self.finished is not None:
            return
        for remote in list(self.remotes.values()):
            remote.channel.expire(now)
            if not remote.watching and now >= remote.watch_after and remote.listed:
                self._watch(remote)
        interval = min(config.PEER_REFRESH_S, max(config.PEER_REFRESH_MIN_S, (now - self.started) / 2))
        if now - self.last_refresh >= interval:
            self.refresh()
        self.schedule()

    def _finish_job(self, error: str = "") -> None:
        if self.finished is not None:
            return
        self.finished = self.clock()
        for fetches in list(self.fetches.values()):
            for fetch in fetches:
                self._retire(fetch)
        self.fetches.clear()
        for remote in self.remotes.values():
            self._release(remote)                   # a DEALER stays while other jobs use it
        # the resume store saves it (and fsyncs the file) off the event loop
        self.node.holdings.transition(self.meta.info_hash, m.JobState.FAILED if error else m.JobState.SEEDING,
                                      error=error, expect=self.holding)
        if not error:
            self._log_disk()
            if self.redirected:
                log.info("%s: %d requests sent elsewhere by send-once seeds", self.meta.name, self.redirected)

    def _log_disk(self) -> None:
        """Where the disk stage's time went (every job of this peer, over this job's span)."""
        d, span = self.node.disk.snapshot() - self.disk_at_start, self.finished - self.started
        log.info("%s: %d pieces hashed in %.2f s, %d written in %.2f s (thread time); a write was in "
                 "flight for %.0f%% of the %.2f s", self.meta.name, d.hashed, d.hash_s, d.written,
                 d.write_s, 100 * d.busy_s / max(span, 1e-9), span)

    def close(self) -> None:
        self._finish_job(error="stopped")

    # ------------------------------------------------------------------ report
    @property
    def ignored(self) -> int:
        return self.unexpected + sum(r.channel.dropped for r in self.remotes.values())

    def peer_stats(self) -> list[m.PeerStat]:
        end = self.finished or self.clock()
        now = self.clock()
        return [m.PeerStat(peer_id=r.peer_id, pieces=r.pieces, bytes=r.bytes, failures=r.failures,
                           score=round(r.score(end), 3), banned=r.banned, hash_failures=r.hash_failures,
                           rested=r.rested_until > now)
                for r in sorted(self.remotes.values(), key=lambda r: r.peer_id)]
