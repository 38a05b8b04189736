"""An origin seed's view of who holds what, so that two seeds split the first copies
without a round trip (node/peer/seeding.py ``observe``): the tracker's peer list, read
while first copies remain and leechers ask (the reads ride on the requests, so an idle
seed asks nothing), whole the first time and then only what changed after the cursor, as
a download job reads it (node/peer/peerlist.py). Every SEND_ONCE_VIEW_S while another
seed is listed; every PEER_REFRESH_S while none is (one may join).

Seeds (a complete bitfield when first listed) and standard clients (no bitfield) are left
out of what leechers hold. A failed read is tried again at the next request.
"""
from __future__ import annotations

import logging
import time

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

    def maybe_ask(self, tracker, now: float) -> None:
        every = config.SEND_ONCE_VIEW_S if self.seeds else config.PEER_REFRESH_S
        if self.asking or now - self.last < every or not self.sender.fresh:
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
            log.debug("view: %d fresh, %d other seeds", len(self.sender.fresh), len(self.seeds))

    def take(self, msg: m.PeerList, now: float) -> None:
        sender = self.sender
        # a whole list forgets the seeds it knew; pieces observed stay observed (not fresh)
        if not msg.delta:
            self.seeds.clear()
        for peer_id in msg.gone:
            self.seeds.discard(peer_id)
        for info in msg.peers:
            if info.peer_id == self.own or info.peer_id in self.seeds or info.kind == "bittorrent":
                continue
            try:
                bits = Bitfield(self.num_pieces, info.bitfield or None)
                for i in info.pieces:
                    bits.add(i)
            except (ValueError, IndexError):
                continue
            if bits.complete and (not msg.delta or info.bitfield):
                self.seeds.add(info.peer_id)    # a seed (listed whole): it holds everything
                continue
            sender.observe(info.peer_id, bits.indexes(), now)
        self.cursor = msg.version
