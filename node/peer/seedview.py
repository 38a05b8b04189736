"""An origin seed's view of who holds what, so that two seeds split the first copies
without a round trip (node/peer/seeding.py ``observe``): the tracker's peer list, read
while first copies remain and leechers ask (the reads ride on the requests, so an idle
seed asks nothing), whole the first time and then only what changed after the cursor, as
a download job reads it (node/peer/peerlist.py). Every SEND_ONCE_VIEW_S while another
seed is listed; every PEER_REFRESH_S while none is (one may join).

Seeds (a complete bitfield when first listed) and standard clients (no bitfield) are left
out of what leechers hold. A failed read is tried again at the next request.

Once every piece is out, the view keeps each leecher's progress for the tail rule
(``ahead``, node/peer/seeding.py): read every SEND_ONCE_VIEW_S while leechers still download
and ask here.
"""
from __future__ import annotations

import logging
import time
from collections import deque

from node import config
from node.peer.seeding import SendOnce
from protocol import messages as m
from protocol.pieces import Bitfield

log = logging.getLogger("zorrent.seeding")


class SwarmView:
    def __init__(self, sender: SendOnce, info_hash: str, num_pieces: int, own_peer_id: str) -> None:
        self.sender, self.info_hash, self.num_pieces, self.own = sender, info_hash, num_pieces, own_peer_id
        self.cursor = -1
        self.asking = False
        self.last = float("-inf")
        self.seeds: set[str] = set()
        self.leechers: dict[str, Bitfield] = {}   # peer_id -> what the tracker lists it holding
        self.finished: set[str] = set()           # leechers that completed (they serve everything)
        self.asked: dict[str, float] = {}         # a listed leecher -> when it last asked here
        self.redirected: dict[str, deque] = {}    # a leecher -> when it was sent elsewhere in the tail

    def maybe_ask(self, tracker, now: float) -> None:
        if not self.sender.fresh and not self.leechers:
            return
        every = config.SEND_ONCE_VIEW_S if self.seeds or self.leechers else config.PEER_REFRESH_S
        if self.asking or now - self.last < every:
            return
        self.asking, self.last = True, now
        tracker.request(m.GetPeers(info_hash=self.info_hash, since=self.cursor), self._on_reply,
                        timeout_s=config.REQUEST_TIMEOUT_S, tries=1)

    def _on_reply(self, env, err) -> None:
        self.asking = False
        msg = env.msg if err is None and env is not None else None
        if not isinstance(msg, m.PeerList) or msg.info_hash != self.info_hash:
            self.cursor = -1
            return
        now = time.monotonic()
        self.take(msg, now)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("view: %d fresh, %d other seeds, leechers %s, %d sent elsewhere in the tail",
                      len(self.sender.fresh), len(self.seeds),
                      " ".join(f"{p}={len(b)}" for p, b in sorted(self.leechers.items())), self.sender.sent_elsewhere)

    def take(self, msg: m.PeerList, now: float) -> None:
        sender = self.sender
        # a whole list forgets the seeds it knew; pieces observed stay observed (not fresh)
        if not msg.delta:
            self.seeds.clear()
            self.leechers.clear()
        for peer_id in msg.gone:
            self.seeds.discard(peer_id)
            self.leechers.pop(peer_id, None)
            self.finished.discard(peer_id)
        for info in msg.peers:
            if info.peer_id == self.own or info.peer_id in self.seeds or info.kind == "bittorrent":
                continue
            try:
                old = self.leechers.get(info.peer_id) if msg.delta and not info.bitfield else None
                bits = old or Bitfield(self.num_pieces, info.bitfield or None)
                for i in info.pieces:
                    bits.add(i)
            except (ValueError, IndexError):
                continue
            if bits.complete and (not msg.delta or info.bitfield) and info.peer_id not in self.leechers:
                self.seeds.add(info.peer_id)    # a seed (listed whole): it holds everything
                continue
            if bits.complete:                   # a leecher that finished: it serves everything now
                self.leechers.pop(info.peer_id, None)
                self.finished.add(info.peer_id)
            else:
                self.leechers[info.peer_id] = bits
            sender.observe(info.peer_id, info.pieces if old is not None else bits.indexes(), now)
        self.cursor = msg.version

    # ------------------------------------------------------------------ the tail rule
    def note_ask(self, peer_id: str, now: float) -> None:
        """A request that names ``peer_id`` (a claim, used only to rank, never to serve)."""
        if peer_id in self.leechers:
            self.asked[peer_id] = now

    def tail_redirect(self, peer_id: str, piece: int, now: float) -> bool:
        """True: send ``peer_id`` elsewhere for ``piece`` (``ahead``), unless it was sent elsewhere
        for TAIL_REDIRECT_SHARE of what it misses within ELSEWHERE_RETRY_S: it asks this seed for
        none of those for that long, and must keep pieces it may still ask for here once the one
        behind has caught up (without this bound the seed sat idle at 16-41% in the last 2 s)."""
        if not self.ahead(peer_id, piece, now):
            return False
        times = self.redirected.setdefault(peer_id, deque())
        while times and now - times[0] > config.ELSEWHERE_RETRY_S:
            times.popleft()
        missing = self.num_pieces - len(self.leechers[peer_id])
        if len(times) >= missing * config.TAIL_REDIRECT_SHARE:
            return False
        times.append(now)
        return True

    def ahead(self, peer_id: str, piece: int, now: float) -> bool:
        """True: ``peer_id`` is a leecher more than TAIL_LEAD of the torrent ahead of the one
        furthest behind that asked here within TAIL_ACTIVE_S, and TAIL_HOLDERS other peers hold
        ``piece`` (leechers, finished leechers, other seeds), so it can get it there soon."""
        mine = self.leechers.get(peer_id)
        if mine is None:
            return False
        others = [len(bits) for pid, bits in self.leechers.items()
                  if pid != peer_id and now - self.asked.get(pid, float("-inf")) <= config.TAIL_ACTIVE_S]
        lead = max(config.TAIL_LEAD_MIN_PIECES, int(config.TAIL_LEAD * self.num_pieces))
        if not others or len(mine) - (len(mine) + sum(others)) / (1 + len(others)) <= lead:
            return False
        if piece in self.sender.fresh:          # not taken: it stays for those behind
            return True
        holders = len(self.seeds) + len(self.finished)
        for pid, bits in self.leechers.items():
            if holders >= config.TAIL_HOLDERS:
                break
            if pid != peer_id and piece in bits:
                holders += 1
        return holders >= config.TAIL_HOLDERS
