"""Tracker request handlers: ``(ctx, msg) -> reply``, no sockets."""
from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable

from node import config
from node.dispatch import Context, Dispatcher
from node.tracker.store import PeerRecord, TorrentRecord, TrackerStore
from protocol import messages as m
from protocol import metainfo
from protocol.errors import ErrorCode, ZorrentError

tracker = Dispatcher("tracker")


@dataclass
class TrackerContext(Context):
    store: TrackerStore
    clock: Callable[[], float] = time.time
    started: float = field(default_factory=time.time)

    def scope(self):
        return self.store.savepoint()

    def commit(self) -> None:
        self.store.commit()

    def expire_peers(self) -> list[str]:
        """Forget peers silent longer than PEER_EXPIRY_S (not before that long after start).

        Expiry reads only the store: a peer's last heartbeat is its stored ``last_seen``,
        whichever tracker took it, and each delete re-checks it atomically, so every
        tracker on a shared store may run this. ``started`` (process memory) only holds
        expiry back after a start, which can keep a peer a little longer, never shorter.
        """
        now = self.clock()
        if now - self.started < config.PEER_EXPIRY_S:
            return []
        cutoff = now - config.PEER_EXPIRY_S
        gone = [pid for pid in self.store.peers_seen_before(cutoff) if self.store.expire_peer(pid, cutoff)]
        self.store.commit()
        return gone


def _authorised(ctx: TrackerContext, peer_id: str, token: str) -> PeerRecord:
    peer = ctx.store.get_peer(peer_id)
    if peer is None:
        raise ZorrentError(f"unknown peer {peer_id!r}; register first", ErrorCode.UNKNOWN_PEER)
    if not secrets.compare_digest(peer.token, token):
        raise ZorrentError(f"only {peer_id} may change its own record", ErrorCode.NOT_AUTHORISED)
    return peer


def _torrent(ctx: TrackerContext, info_hash: str) -> TorrentRecord:
    torrent = ctx.store.get_torrent(info_hash)
    if torrent is None:
        raise ZorrentError(f"unknown torrent {info_hash[:40]}", ErrorCode.UNKNOWN_TORRENT)
    return torrent


@tracker.handles(m.MsgType.PING)
def ping(ctx: TrackerContext, msg: m.Ping) -> m.Pong:
    return m.Pong(node="tracker", peer_id="", pid=os.getpid())


@tracker.handles(m.MsgType.REGISTER_PEER)
def register_peer(ctx: TrackerContext, msg: m.RegisterPeer) -> m.Registered:
    config.check_peer_id(msg.peer_id)
    if not 0 < msg.port < 65536:
        raise ZorrentError(f"port {msg.port} is out of range", ErrorCode.BAD_FIELD)
    now = ctx.clock()
    old = ctx.store.get_peer(msg.peer_id)
    if old is not None:
        alive = old.last_seen > now - config.PEER_EXPIRY_S
        same_session = (old.host, old.port) == (msg.host, msg.port) and bool(msg.token) and (
            secrets.compare_digest(old.token, msg.token)
            # a register replayed on another tracker after the first copy was taken: the
            # peer still presents the token it had before, which the record remembers
            or secrets.compare_digest(old.prev_token, msg.token))
        if alive and not same_session:   # only the live peer itself (it has the token) may take it over
            raise ZorrentError(
                f"peer id {msg.peer_id!r} is already in use by {old.host}:{old.port}",
                ErrorCode.PEER_ID_TAKEN)
    token = secrets.token_hex(16)
    if not ctx.store.swap_peer(PeerRecord(msg.peer_id, msg.host, msg.port, token, now, msg.token), old):
        raise ZorrentError(f"peer id {msg.peer_id!r} was registered through another tracker at the same "
                           f"moment; retry", ErrorCode.PEER_ID_TAKEN)
    if old is not None:
        ctx.store.drop_pieces(msg.peer_id)  # a restart: the peer re-announces what it holds
    return m.Registered(token=token, heartbeat_interval_s=config.HEARTBEAT_INTERVAL_S)


@tracker.handles(m.MsgType.HEARTBEAT)
def heartbeat(ctx: TrackerContext, msg: m.Heartbeat) -> m.Ok:
    _authorised(ctx, msg.peer_id, msg.token)
    ctx.store.touch_peer(msg.peer_id, ctx.clock())
    return m.Ok()


@tracker.handles(m.MsgType.DEREGISTER)
def deregister(ctx: TrackerContext, msg: m.Deregister) -> m.Ok:
    _authorised(ctx, msg.peer_id, msg.token)
    ctx.store.delete_peer(msg.peer_id)
    return m.Ok()


@tracker.handles(m.MsgType.REGISTER_TORRENT)
def register_torrent(ctx: TrackerContext, msg: m.RegisterTorrent) -> m.TorrentRegistered:
    meta = metainfo.parse(msg.metainfo)
    ctx.store.put_torrent(TorrentRecord(meta.info_hash, meta.name, meta.length,
                                        meta.piece_length, meta.num_pieces, meta.raw))
    return m.TorrentRegistered(info_hash=meta.info_hash, num_pieces=meta.num_pieces)


@tracker.handles(m.MsgType.ANNOUNCE)
def announce(ctx: TrackerContext, msg: m.Announce) -> m.Ok:
    _authorised(ctx, msg.peer_id, msg.token)
    size = ctx.store.num_pieces(msg.info_hash)
    if size is None:
        raise ZorrentError(f"unknown torrent {msg.info_hash[:40]}", ErrorCode.UNKNOWN_TORRENT)
    bad = next((i for i in msg.pieces if not 0 <= i < size), None)
    if bad is not None:
        raise ZorrentError(f"piece {bad} is out of range 0..{size - 1}", ErrorCode.BAD_FIELD)
    ctx.store.add_pieces(msg.info_hash, msg.peer_id, msg.pieces)   # liveness is the heartbeat's job
    return m.Ok()


@tracker.handles(m.MsgType.FORGET)
def forget(ctx: TrackerContext, msg: m.Forget) -> m.Ok:
    _authorised(ctx, msg.peer_id, msg.token)
    ctx.store.remove_pieces(msg.info_hash, msg.peer_id)
    return m.Ok()


@tracker.handles(m.MsgType.GET_PEERS)
def get_peers(ctx: TrackerContext, msg: m.GetPeers) -> m.PeerList:
    torrent = _torrent(ctx, msg.info_hash)
    live_after = ctx.clock() - config.PEER_EXPIRY_S
    peers = []
    for peer_id, bits in ctx.store.holders(msg.info_hash).items():
        peer = ctx.store.get_peer(peer_id)
        if peer is not None and peer.last_seen > live_after:
            peers.append(m.PeerInfo(peer_id=peer_id, host=peer.host, port=peer.port,
                                    bitfield=bits.to_bytes(), have=len(bits)))
    return m.PeerList(info_hash=torrent.info_hash, name=torrent.name,
                      num_pieces=torrent.num_pieces, length=torrent.length, peers=peers)
