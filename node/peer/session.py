"""The peer's session with its trackers: registration and its token, heartbeats, announces
in batches, FORGET of a torrent it no longer vouches for, and deregistration.

It owns what the tracker knows of each holding (``Announcing``): whether the tracker took
the torrent, which verified pieces are not yet announced, how many are. The holdings tell
it of every change (it is their ``Listener``, node/peer/holdings.py); it never changes them.

The channel fails over between the trackers of the list (node/failover.py).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from node import config
from node.channel import call
from node.failover import FailoverChannel
from node.peer.holdings import Holding, Holdings
from node.peer.integrity import SUSPENDED
from node.reactor import Reactor
from protocol import messages as m
from protocol.errors import ErrorCode, RemoteError, ZorrentError

log = logging.getLogger("zorrent.peer")


@dataclass(eq=False)
class Announcing:
    """What the tracker knows of one holding."""

    tracker_known: bool = False        # REGISTER_TORRENT acknowledged
    announced: int = 0
    unannounced: set = field(default_factory=set)
    announcing: bool = False           # a REGISTER_TORRENT or ANNOUNCE is outstanding
    joined: bool = False               # an announce (even of no pieces) acknowledged: the tracker lists us


class TrackerSession:
    def __init__(self, zctx, endpoints: list[str], reactor: Reactor, holdings: Holdings, *, peer_id: str,
                 host: str, port: int, last_token: str = "",
                 on_token: Callable[[], None] = lambda: None,
                 on_fatal: Callable[[str], None] = lambda why: None) -> None:
        self.peer_id, self.host, self.port = peer_id, host, port
        self.bt_port = 0               # the peer's BEP 3 port, registered for standard clients (0: none)
        self.reactor, self.holdings = reactor, holdings
        self.channel = FailoverChannel(zctx, endpoints, reactor)
        self.on_token, self.on_fatal = on_token, on_fatal    # token changed (save it) / give up (stop)
        self.token: str | None = None
        self.last_token = last_token   # the previous session's, to take back our own live record
        self.refused_since: float | None = None
        self.give_up_after_s = 0.0            # set at the first PEER_ID_TAKEN of a registration
        self.registering = False
        self.heartbeat_s = config.HEARTBEAT_INTERVAL_S   # until the tracker says otherwise (Registered, HeartbeatOk)
        self._heartbeat_timer = None
        self.due = False                      # something to send at the next batch (flush)
        self.last_flush = 0.0
        self.records: dict[str, Announcing] = {}
        self.forgotten: set[str] = set()      # torrents whose pieces the tracker must drop (FORGET to send)
        self.forgetting: set[str] = set()     # FORGET sent, not yet acknowledged: announce none of them

    @property
    def endpoint(self) -> str:
        return self.channel.endpoint

    def start(self) -> None:
        """Heartbeats on their own timer; announces and request timeouts when due (never a tick)."""
        self._beat_later()
        self.reactor.add_deadline(self.channel.next_deadline, self.channel.expire)
        self.reactor.add_deadline(lambda: self.last_flush + config.ANNOUNCE_BATCH_S if self.due else None,
                                  lambda now: self.flush())
        self.register()

    def _beat_later(self) -> None:
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
        self._heartbeat_timer = self.reactor.call_later(self.heartbeat_s, self._beat)

    def _beat(self) -> None:
        self._heartbeat_timer = None
        self._beat_later()
        self.heartbeat()

    def announced(self, info_hash: str) -> int:
        rec = self.records.get(info_hash)
        return rec.announced if rec else 0

    def _record(self, info_hash: str) -> Announcing:
        rec = self.records.get(info_hash)
        if rec is None:
            rec = self.records[info_hash] = Announcing()
        return rec

    # ------------------------------------------------------------------ registration
    def register(self) -> None:
        if self.registering:
            return
        self.registering = True
        self.token = None
        self.channel.request(m.RegisterPeer(peer_id=self.peer_id, host=self.host, port=self.port,
                                            token=self.last_token, bt_port=self.bt_port),
                             self._on_registered, timeout_s=config.REQUEST_TIMEOUT_S, tries=1)

    def _on_registered(self, env, err) -> None:
        self.registering = False
        if err is not None:
            if isinstance(err, RemoteError) and err.code == ErrorCode.PEER_ID_TAKEN:
                # our own record from a run that lost its state expires; a live twin does not
                # (it expires when the tracker says: 3 of the interval it was given, up to 3 min
                # in a big swarm); a record that outlives that is a live twin's
                now = time.monotonic()
                if self.refused_since is None:
                    self.refused_since = now
                    self.give_up_after_s = max(config.PEER_EXPIRY_S, err.retry_after_s) + config.HEARTBEAT_INTERVAL_S
                if now - self.refused_since > self.give_up_after_s:
                    self.on_fatal(err.message)
                    return
                log.warning("%s; retrying until the old record expires", err.message)
                self.reactor.call_later(1.0, self.register)
                return
            log.warning("tracker %s: %s; retrying", self.channel.endpoint, err.message)
            self.reactor.call_later(1.0, self.register)
            return
        self.token = self.last_token = env.msg.token
        self.refused_since = None
        self._follow(env.msg.heartbeat_interval_s)
        self.on_token()
        log.info("registered with tracker %s", self.channel.endpoint)
        for h in self.holdings:   # the tracker forgot us (or never knew): tell it all
            rec = self._record(h.meta.info_hash)
            rec.tracker_known = rec.joined = False
            rec.announced = 0
            rec.unannounced = set(h.bitfield.indexes())
        self.flush()

    def _follow(self, handed_s: float) -> None:
        """Heartbeat at the tracker's interval (BEP 3's ``interval``; it grows with the swarm),
        from now on: the tracker's expiry of our record follows the interval it handed us."""
        interval = config.heartbeat_interval(handed_s)
        if interval != self.heartbeat_s:
            log.info("heartbeat every %.1f s (the tracker's interval, was %.1f s)", interval, self.heartbeat_s)
            self.heartbeat_s = interval
            self._beat_later()

    def heartbeat(self) -> None:
        if self.token is None:
            return

        def on_reply(env, err):
            if isinstance(err, RemoteError) and err.code in (ErrorCode.UNKNOWN_PEER, ErrorCode.NOT_AUTHORISED):
                self.register()
            elif err is None and isinstance(env.msg, m.HeartbeatOk):
                self._follow(env.msg.heartbeat_interval_s)

        self.channel.request(m.Heartbeat(peer_id=self.peer_id, token=self.token), on_reply,
                             timeout_s=config.REQUEST_TIMEOUT_S, tries=1)

    def deregister(self, zctx) -> None:
        """At shutdown, best effort: the tracker drops us now rather than at expiry."""
        if not self.token:
            return
        try:
            call(zctx, self.channel.endpoint, m.Deregister(peer_id=self.peer_id, token=self.token),
                 timeout_s=0.5, tries=1)
        except ZorrentError:
            pass

    # ------------------------------------------------------------------ what the holdings tell
    def held(self, h: Holding) -> None:
        self.records[h.meta.info_hash] = Announcing(unannounced=set(h.bitfield.indexes()))
        self.flush()

    def verified(self, info_hash: str, piece: int) -> None:
        self._record(info_hash).unannounced.add(piece)      # sent with the next batch
        self.due = True

    def withdrawn(self, info_hash: str) -> None:
        old = self._record(info_hash)
        self.records[info_hash] = Announcing(tracker_known=old.tracker_known, joined=old.joined)
        self.forgotten.add(info_hash)     # the tracker drops every piece it listed for us
        self.flush()

    def reverified(self, h: Holding) -> None:
        rec = self._record(h.meta.info_hash)
        rec.unannounced, rec.announced = set(h.bitfield.indexes()), 0
        self.flush()

    def dropped(self, info_hash: str) -> None:
        self.records.pop(info_hash, None)
        self.forgotten.add(info_hash)
        self.flush()

    # ------------------------------------------------------------------ announces
    def flush(self) -> None:
        """Send what is due: FORGETs first, then each holding's REGISTER_TORRENT or its batch of pieces."""
        self.due = False
        self.last_flush = time.monotonic()
        if self.token is None:
            return                            # registering flushes once it has a token
        for info_hash in list(self.forgotten):
            self.forgotten.discard(info_hash)
            self.forgetting.add(info_hash)
            self.channel.request(m.Forget(peer_id=self.peer_id, token=self.token, info_hash=info_hash),
                                 lambda env, err, ih=info_hash: self._on_forgot(ih, err),
                                 timeout_s=config.REQUEST_TIMEOUT_S, tries=1)
        for h in self.holdings:
            info_hash = h.meta.info_hash
            rec = self._record(info_hash)
            if rec.announcing or h.state in SUSPENDED or info_hash in self.forgetting:
                continue
            if not rec.tracker_known:
                rec.announcing = True
                self.channel.request(m.RegisterTorrent(peer_id=self.peer_id, token=self.token, metainfo=h.meta.raw),
                                     lambda env, err, h=h, rec=rec: self._on_torrent_registered(h, rec, err),
                                     timeout_s=config.REQUEST_TIMEOUT_S, tries=1)
            elif rec.unannounced or not rec.joined:
                batch, rec.unannounced = sorted(rec.unannounced), set()
                rec.announcing = True
                self.channel.request(
                    m.Announce(peer_id=self.peer_id, token=self.token, info_hash=info_hash, pieces=batch),
                    lambda env, err, rec=rec, b=batch: self._on_announced(rec, b, err),
                    timeout_s=config.REQUEST_TIMEOUT_S, tries=1)

    def _on_forgot(self, info_hash: str, err) -> None:
        self.forgetting.discard(info_hash)
        if err is not None and not isinstance(err, RemoteError):
            self.forgotten.add(info_hash)     # no answer: say it again (announces wait for it)
            self.due = True
        else:
            self.flush()

    def _on_torrent_registered(self, h: Holding, rec: Announcing, err) -> None:
        rec.announcing = False
        if err is None:
            rec.tracker_known = True
            self.flush()
        else:
            self.due = True                   # tried again with the next batch
            log.warning("%s: tracker did not take the torrent: %s", h.meta.name, err.message)

    def _on_announced(self, rec: Announcing, batch: list[int], err) -> None:
        rec.announcing = False
        if err is None:
            rec.announced += len(batch)
            rec.joined = True
            self.due = self.due or bool(rec.unannounced)   # what was verified meanwhile goes next
            return
        rec.unannounced.update(batch)
        self.due = True                       # this batch again, with the next
        if isinstance(err, RemoteError):
            if err.code in (ErrorCode.UNKNOWN_PEER, ErrorCode.NOT_AUTHORISED):
                self.register()
            elif err.code == ErrorCode.UNKNOWN_TORRENT:
                rec.tracker_known = False
