"""Tracker request handlers: ``(ctx, msg) -> reply``, no sockets.

Two doors, one set of handlers over one store:
- ``tracker``: the ZeroMQ ROUTER, for zorrent peers and the CLI;
- ``standard``: the HTTP door (``node.tracker.http``), for standard BitTorrent clients. It
  reaches the reactor over an inproc socket, so every store access stays on one thread and
  in the same group commit.

Standard clients are stored as peers of kind BITTORRENT under ids ``bt:<hex peer id>``,
which no zorrent peer id can spell, so an HTTP announce never touches a zorrent peer's
record; zorrent peers are never handed to standard clients, nor standard clients to
zorrent peers (unless the CLI asks, flagged by kind).
"""
from __future__ import annotations

import ipaddress
import os
import random
import secrets

from node import config
from node.dispatch import Dispatcher
from node.peer.bt.framing import bt_peer_id
from node.tracker.context import TrackerContext
from node.tracker.store import BITTORRENT, ZORRENT, ClientEntry, PeerRecord, TorrentRecord
from protocol import messages as m
from protocol import metainfo
from protocol.errors import ErrorCode, ZorrentError

tracker = Dispatcher("tracker")
standard = Dispatcher("tracker http door")
CLIENT_ID_PREFIX = "bt:"     # ':' is never in a zorrent peer id


def _ip(text: str):
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _honest_host(ctx: TrackerContext, claimed: str) -> str:
    """The address to list a peer at: the one its connection comes from, unless that
    source is trusted to advertise another (``--trust-advertise``: the bind/ip case)."""
    source = ctx.source.address
    if not source:                       # not over tcp (the handler tests, inproc): nothing to check
        return claimed
    real = _ip(source)
    if real is not None and real.version == 6 and real.ipv4_mapped:
        real = real.ipv4_mapped
    said = _ip(claimed)
    if said == real or (claimed == "localhost" and real is not None and real.is_loopback):
        return claimed
    if real is not None and any(real in net for net in ctx.trusted if net.version == real.version):
        return claimed
    raise ZorrentError(
        f"advertised address {claimed[:80]!r} is not the address this connection comes from ({source}); "
        f"the tracker accepts that only from --trust-advertise networks", ErrorCode.NOT_AUTHORISED)


def _authorised(ctx: TrackerContext, peer_id: str, token: str) -> PeerRecord:
    peer = ctx.store.get_peer(peer_id)
    if peer is None:
        raise ZorrentError(f"unknown peer {peer_id!r}; register first", ErrorCode.UNKNOWN_PEER)
    if peer.kind != ZORRENT or not peer.token or not secrets.compare_digest(peer.token, token):
        raise ZorrentError(f"only {peer_id} may change its own record", ErrorCode.NOT_AUTHORISED)
    return peer


def _torrent(ctx: TrackerContext, info_hash: str) -> TorrentRecord:
    torrent = ctx.store.get_torrent(info_hash)
    if torrent is None:
        raise ZorrentError(f"unknown torrent {info_hash[:40]}", ErrorCode.UNKNOWN_TORRENT)
    return torrent


def _alive(ctx: TrackerContext, peer: PeerRecord, now: float | None = None) -> bool:
    return peer.expires > (ctx.clock() if now is None else now)


def _live_clients(ctx: TrackerContext, info_hash: str) -> list[ClientEntry]:
    return [c for c in ctx.store.clients(info_hash) if c.peer.kind == BITTORRENT and _alive(ctx, c.peer)]


@tracker.handles(m.MsgType.PING)
@standard.handles(m.MsgType.PING)
def ping(ctx: TrackerContext, msg: m.Ping) -> m.Pong:
    return m.Pong(node="tracker", peer_id="", pid=os.getpid())


@tracker.handles(m.MsgType.REGISTER_PEER)
def register_peer(ctx: TrackerContext, msg: m.RegisterPeer) -> m.Registered:
    config.check_peer_id(msg.peer_id)
    if not 0 < msg.port < 65536:
        raise ZorrentError(f"port {msg.port} is out of range", ErrorCode.BAD_FIELD)
    if not 0 <= msg.bt_port < 65536:
        raise ZorrentError(f"bt_port {msg.bt_port} is out of range", ErrorCode.BAD_FIELD)
    host = _honest_host(ctx, msg.host)
    now = ctx.clock()
    old = ctx.store.get_peer(msg.peer_id)
    if old is None or old.host != host:
        same_host = sum(1 for p in ctx.store.list_peers()
                        if p.host == host and p.kind == ZORRENT and _alive(ctx, p, now))
        if same_host >= config.TRACKER_MAX_PEERS_PER_HOST:
            raise ZorrentError(f"{host} already has {same_host} live peers here "
                               f"(at most {config.TRACKER_MAX_PEERS_PER_HOST})", ErrorCode.LIMIT)
    if old is not None:
        alive = _alive(ctx, old, now)
        same_session = (old.host, old.port) == (host, msg.port) and bool(msg.token) and (
            secrets.compare_digest(old.token, msg.token)
            # a register replayed on another tracker after the first copy was taken: the
            # peer still presents the token it had before, which the record remembers
            or secrets.compare_digest(old.prev_token, msg.token))
        if alive and not same_session:   # only the live peer itself (it has the token) may take it over
            raise ZorrentError(
                f"peer id {msg.peer_id!r} is already in use by {old.host}:{old.port}",
                ErrorCode.PEER_ID_TAKEN, retry_after_s=max(0.0, (old.expires or 0.0) - now))
    token = secrets.token_hex(16)
    interval = ctx.heartbeat_s()
    if not ctx.store.swap_peer(PeerRecord(msg.peer_id, host, msg.port, token, now, prev_token=msg.token,
                                          bt_port=msg.bt_port, interval_s=interval,
                                          expires=now + config.peer_expiry_s(interval)), old):
        raise ZorrentError(f"peer id {msg.peer_id!r} was registered through another tracker at the same "
                           f"moment; retry", ErrorCode.PEER_ID_TAKEN)
    if old is not None:
        ctx.store.drop_pieces(msg.peer_id)  # a restart: the peer re-announces what it holds
    return m.Registered(token=token, heartbeat_interval_s=interval)


@tracker.handles(m.MsgType.HEARTBEAT)
def heartbeat(ctx: TrackerContext, msg: m.Heartbeat) -> m.HeartbeatOk:
    """The reply hands out the interval for the swarm as it is now. Until the peer hears it,
    it beats at the one it had, so the new deadline allows for the longer of the two (and a
    deadline never moves back: a peer told a long interval outlives a shrinking swarm)."""
    peer = _authorised(ctx, msg.peer_id, msg.token)
    now, interval = ctx.clock(), ctx.heartbeat_s()
    ctx.store.touch_peer(msg.peer_id, now, interval, now + config.peer_expiry_s(max(interval, peer.interval_s)))
    return m.HeartbeatOk(heartbeat_interval_s=interval)


@tracker.handles(m.MsgType.DEREGISTER)
def deregister(ctx: TrackerContext, msg: m.Deregister) -> m.Ok:
    _authorised(ctx, msg.peer_id, msg.token)
    ctx.store.delete_peer(msg.peer_id)
    ctx.registered.pop(msg.peer_id, None)
    return m.Ok()


@tracker.handles(m.MsgType.REGISTER_TORRENT)
def register_torrent(ctx: TrackerContext, msg: m.RegisterTorrent) -> m.TorrentRegistered:
    _authorised(ctx, msg.peer_id, msg.token)
    meta = metainfo.parse(msg.metainfo)
    mine = ctx.registered.setdefault(msg.peer_id, set())
    if meta.info_hash not in mine:
        if len(mine) >= config.TRACKER_MAX_TORRENTS_PER_PEER:
            raise ZorrentError(f"{msg.peer_id} has registered {len(mine)} torrents "
                               f"(at most {config.TRACKER_MAX_TORRENTS_PER_PEER})", ErrorCode.LIMIT)
        mine.add(meta.info_hash)
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
    ctx.counters.announced(len(msg.pieces))
    return m.Ok()


@tracker.handles(m.MsgType.FORGET)
def forget(ctx: TrackerContext, msg: m.Forget) -> m.Ok:
    _authorised(ctx, msg.peer_id, msg.token)
    ctx.store.remove_pieces(msg.info_hash, msg.peer_id)
    return m.Ok()


@tracker.handles(m.MsgType.GET_PEERS)
def get_peers(ctx: TrackerContext, msg: m.GetPeers) -> m.PeerList:
    torrent = _torrent(ctx, msg.info_hash)
    version, changes = ctx.store.changes(msg.info_hash, msg.since)
    if changes is not None:
        reply = _peers_since(ctx, torrent, version, changes)
        if msg.standard_clients:        # few, and without bitfields: listed whole every time
            reply.peers.extend(_standard_peers(ctx, torrent))
        return reply
    peers = []
    spread = ctx.store.holders(msg.info_hash)      # read after the version: nothing before it is missed
    records = ctx.store.peer_records(list(spread))
    for peer_id, bits in spread.items():
        peer = records.get(peer_id)
        if peer is not None and peer.kind == ZORRENT and _alive(ctx, peer):
            peers.append(m.PeerInfo(peer_id=peer_id, host=peer.host, port=peer.port,
                                    bitfield=bits.to_bytes(), have=len(bits), bt_port=peer.bt_port))
    if msg.standard_clients:   # `get`, and a download engine that also speaks BEP 3 (node/peer/bt/remote.py)
        peers.extend(_standard_peers(ctx, torrent))
    return m.PeerList(info_hash=torrent.info_hash, name=torrent.name,
                      num_pieces=torrent.num_pieces, length=torrent.length, peers=peers, version=version)


def _standard_peers(ctx: TrackerContext, torrent: TorrentRecord) -> list[m.PeerInfo]:
    """The torrent's live standard clients (HTTP-door announcers), with what they still miss."""
    peers = []
    for c in _live_clients(ctx, torrent.info_hash):
        missing = -(-c.left // torrent.piece_length)
        peers.append(m.PeerInfo(peer_id=c.peer.peer_id, host=c.peer.host, port=c.peer.port, bitfield=b"",
                                have=max(0, torrent.num_pieces - missing), kind=BITTORRENT))
    return peers


def _peers_since(ctx: TrackerContext, torrent: TorrentRecord, version: int, changes: list) -> m.PeerList:
    """A delta: the peers whose pieces changed after the asker's cursor, and those that left.

    Liveness is not re-checked here: a silent peer leaves the list when it expires (a
    change), and the asker's own requests and watches tell it sooner."""
    peers, gone = [], []
    records = ctx.store.peer_records([c.peer_id for c in changes if not c.gone])
    for c in changes:
        peer = None if c.gone else records.get(c.peer_id)
        if peer is None or peer.kind != ZORRENT:
            gone.append(c.peer_id)
            continue
        if c.reset:
            gone.append(c.peer_id)
        if c.pieces is not None:
            peers.append(m.PeerInfo(peer_id=c.peer_id, host=peer.host, port=peer.port, bitfield=b"",
                                    have=len(c.pieces), pieces=c.pieces))
            continue
        bits = ctx.store.bitfield_of(torrent.info_hash, c.peer_id)
        if bits is None:
            gone.append(c.peer_id)
        else:
            peers.append(m.PeerInfo(peer_id=c.peer_id, host=peer.host, port=peer.port,
                                    bitfield=bits.to_bytes(), have=len(bits)))
    return m.PeerList(info_hash=torrent.info_hash, name=torrent.name, num_pieces=torrent.num_pieces,
                      length=torrent.length, peers=peers, version=version, delta=True, gone=gone)


@tracker.handles(m.MsgType.GET_METAINFO)
def get_metainfo(ctx: TrackerContext, msg: m.GetMetainfo) -> m.MetainfoReply:
    torrent = _torrent(ctx, msg.info_hash)
    return m.MetainfoReply(info_hash=torrent.info_hash, metainfo=torrent.metainfo)


@standard.handles(m.MsgType.CLIENT_ANNOUNCE)
def client_announce(ctx: TrackerContext, msg: m.ClientAnnounce) -> m.ClientSwarm:
    """BEP 3: record the client in the torrent's swarm and hand it other standard clients.
    A private torrent (BEP 27) is never served here: its swarm is the zorrent peers'."""
    torrent = ctx.store.get_torrent(msg.info_hash)
    if torrent is not None and metainfo.is_private(torrent.metainfo):
        raise ZorrentError("this torrent is private (BEP 27): its tracker does not serve it to standard clients",
                           ErrorCode.NOT_AUTHORISED)
    peer_id = CLIENT_ID_PREFIX + msg.peer_id
    old = ctx.store.get_peer(peer_id)
    if old is not None and _alive(ctx, old) and old.host != msg.host:
        raise ZorrentError(f"peer_id {msg.peer_id} is in use from another address", ErrorCode.PEER_ID_TAKEN)
    now = ctx.clock()
    entries = ctx.store.clients(msg.info_hash)             # one read; the swarm after this announce follows
    was = next((c.left for c in entries if c.peer.peer_id == peer_id), None)
    if msg.left == 0 and was != 0 and (msg.event == "completed" or was is not None):
        ctx.store.add_completed(msg.info_hash)   # said so, or seen leeching and now done (aria2 skips "completed")
    swarm = [c for c in entries if c.peer.peer_id != peer_id and c.peer.kind == BITTORRENT and _alive(ctx, c.peer)]
    zorrent = _bt_listeners(ctx, msg.info_hash)
    if msg.event == "stopped":
        ctx.store.remove_pieces(msg.info_hash, peer_id)
        if old is not None and not ctx.store.held_by(peer_id):
            ctx.store.delete_peer(peer_id)
        others = []
    else:
        me = PeerRecord(peer_id, msg.host, msg.port, "", now, BITTORRENT, interval_s=config.HTTP_ANNOUNCE_INTERVAL_S,
                        expires=now + config.HTTP_PEER_EXPIRY_S)
        ctx.store.put_peer(me)
        ctx.store.put_client(msg.info_hash, peer_id, msg.left)
        others = [c for c in swarm if c.left] if msg.left == 0 else swarm   # a seeder needs only leechers
        if msg.left:                                 # zorrent peers on their BEP 3 port serve leechers
            others = others + [c for c in zorrent if c.peer.host != msg.host or c.peer.bt_port != msg.port]
        swarm = [*swarm, ClientEntry(me, msg.left)]
    chosen = random.sample(others, min(len(others), msg.numwant, config.HTTP_MAX_NUMWANT))
    seeders = sum(1 for c in swarm if c.left == 0) + sum(1 for c in zorrent if c.left == 0)
    swarm = [*swarm, *zorrent]
    return m.ClientSwarm(
        interval_s=config.HTTP_ANNOUNCE_INTERVAL_S, min_interval_s=config.HTTP_MIN_INTERVAL_S,
        complete=seeders, incomplete=len(swarm) - seeders,
        peers=[_client_peer(c) for c in chosen])


def _client_peer(c: ClientEntry) -> m.ClientPeer:
    if c.peer.kind == ZORRENT:      # its BEP 3 address, and the peer id its BEP 3 port gives
        return m.ClientPeer(bt_peer_id(c.peer.peer_id).hex(), c.peer.host, c.peer.bt_port)
    return m.ClientPeer(c.peer.peer_id.removeprefix(CLIENT_ID_PREFIX), c.peer.host, c.peer.port)


def _bt_listeners(ctx: TrackerContext, info_hash: str) -> list[ClientEntry]:
    """Live zorrent peers with a BEP 3 port that hold pieces of the torrent, as swarm entries
    (``left`` 0 for a complete holder, else 1: counted as a seeder or a leecher)."""
    if ctx.store.num_pieces(info_hash) is None:
        return []
    out = []
    for peer_id, bits in ctx.store.holders(info_hash).items():
        peer = ctx.store.get_peer(peer_id)
        if peer is not None and peer.kind == ZORRENT and peer.bt_port and _alive(ctx, peer):
            out.append(ClientEntry(peer, 0 if bits.complete else 1))
    return out


@tracker.handles(m.MsgType.SCRAPE)
@standard.handles(m.MsgType.SCRAPE)
def scrape(ctx: TrackerContext, msg: m.Scrape) -> m.ScrapeReply:
    """BEP 48: seeders, leechers and completions among standard clients, per info-hash."""
    files = []
    for info_hash in dict.fromkeys(msg.info_hashes[:config.HTTP_MAX_SCRAPE]):
        swarm = _live_clients(ctx, info_hash)
        seeders = sum(1 for c in swarm if c.left == 0)
        files.append(m.ScrapeEntry(info_hash, seeders, len(swarm) - seeders, ctx.store.completed(info_hash)))
    return m.ScrapeReply(files=files)


@tracker.handles(m.MsgType.GET_SWARM)
def get_swarm(ctx: TrackerContext, msg: m.GetSwarm) -> m.Swarm:
    """Read-only, for the web view: peers not yet expired, the torrents, the counters, a
    page of at most SWARM_PAGE_MAX of each (sorted by id, after the ones asked from)."""
    now = ctx.clock()
    page = config.SWARM_PAGE_MAX
    live = sorted((p for p in ctx.store.list_peers()
                   if _alive(ctx, p, now) and p.peer_id > msg.peers_after),
                  key=lambda p: p.peer_id)
    known = sorted((t for t in ctx.store.list_torrents() if t.info_hash > msg.torrents_after),
                   key=lambda t: t.info_hash)
    peers = [m.SwarmPeer(peer_id=p.peer_id, host=p.host, port=p.port, seen_s_ago=round(max(0.0, now - p.last_seen), 3))
             for p in live[:page]]
    torrents = [m.SwarmTorrent(info_hash=t.info_hash, name=t.name, num_pieces=t.num_pieces, length=t.length,
                               piece_length=t.piece_length) for t in known[:page]]
    return m.Swarm(peers=peers, torrents=torrents, stats=ctx.counters.snapshot(),
                   peers_more=len(live) > page, torrents_more=len(known) > page)
