"""The tracker's messages: registration and heartbeats, torrents and announces, peer lists
(whole or deltas), metainfo for magnets, standard clients through the HTTP door (BEP 3, 48),
and the swarm view; with the records they nest."""
from dataclasses import dataclass, field

from protocol.errors import FieldError
from protocol.messages.base import Message, message
from protocol.messages.names import MsgType


# ---------------------------------------------------------------- nested records
@dataclass(frozen=True)
class PeerInfo:
    """One peer of a torrent, as the tracker reports it."""

    peer_id: str
    host: str
    port: int
    bitfield: bytes        # BEP-3 bit order: piece 0 is the high bit of byte 0; b"" in a delta that lists ``pieces``
    have: int              # number of set bits (in a delta with ``pieces``: how many it lists)
    kind: str = "zorrent"  # "bittorrent": a standard client (no bitfield; it speaks BEP 3, not ZeroMQ)
    bt_port: int = 0       # a zorrent peer's BEP 3 port (0: none)
    pieces: list[int] = field(default_factory=list)   # a delta's pieces this peer added since the cursor


@dataclass(frozen=True)
class ClientPeer:
    """A standard client, as the HTTP tracker hands it to other standard clients."""

    peer_id: str           # hex of its 20-byte BEP 3 peer id
    host: str
    port: int


@dataclass(frozen=True)
class ScrapeEntry:
    info_hash: str
    complete: int          # seeders
    incomplete: int        # leechers
    downloaded: int        # completions reported


@dataclass(frozen=True)
class SwarmPeer:
    """One peer the tracker knows, live or not yet expired."""

    peer_id: str
    host: str
    port: int
    seen_s_ago: float      # since its last heartbeat


@dataclass(frozen=True)
class SwarmTorrent:
    info_hash: str
    name: str
    num_pieces: int
    length: int
    piece_length: int


@dataclass(frozen=True)
class TrackerStats:
    """Running totals since the tracker process started (they restart at 0 with it)."""

    started_s_ago: float
    requests: int
    announces: int
    pieces_announced: int
    latency_buckets_s: list[float]   # upper bounds of the request-latency histogram
    latency_counts: list[int]        # requests per bucket (not cumulative); one more for +Inf
    latency_sum_s: float


# ---------------------------------------------------------------- requests and replies


@message(MsgType.REGISTER_PEER)
class RegisterPeer(Message):
    peer_id: str
    host: str
    port: int
    token: str             # the previous session's token ("" if none): needed to take over a live record
    bt_port: int = 0       # its BEP 3 port for standard clients (0: none)


@message(MsgType.REGISTERED)
class Registered(Message):
    token: str             # proves later changes to this record come from this peer
    heartbeat_interval_s: float    # heartbeat this often (BEP 3's ``interval``; it grows with the swarm)


@message(MsgType.HEARTBEAT)
class Heartbeat(Message):
    peer_id: str
    token: str


@message(MsgType.HEARTBEAT_OK)
class HeartbeatOk(Message):
    """Reply to HEARTBEAT: the interval to heartbeat at from now on, as the swarm grows or shrinks."""

    heartbeat_interval_s: float


@message(MsgType.DEREGISTER)
class Deregister(Message):
    peer_id: str
    token: str


@message(MsgType.REGISTER_TORRENT)
class RegisterTorrent(Message):
    peer_id: str           # a registered peer ...
    token: str             # ... and its token: strangers cannot fill the torrents collection
    metainfo: bytes        # the bencoded .torrent; the tracker validates it itself


@message(MsgType.TORRENT_REGISTERED)
class TorrentRegistered(Message):
    info_hash: str
    num_pieces: int


@message(MsgType.ANNOUNCE)
class Announce(Message):
    peer_id: str
    token: str
    info_hash: str
    pieces: list[int]      # verified piece indexes; durable before the OK


@message(MsgType.FORGET)
class Forget(Message):
    """The peer no longer holds any piece of this torrent."""

    peer_id: str
    token: str
    info_hash: str


@message(MsgType.GET_PEERS)
class GetPeers(Message):
    """The torrent's peers and pieces: all of them, or what changed after ``since`` (the
    ``version`` of an earlier PEER_LIST), so that a job's refresh costs what changed."""

    info_hash: str
    standard_clients: bool = False   # also list standard clients (kind "bittorrent"); `get` asks, peers don't
    since: int = -1                  # -1: the whole list

    def __post_init__(self) -> None:
        if self.since < -1:
            raise FieldError("['body']['since']", f"must be -1 or a version, not {self.since}")


@message(MsgType.PEER_LIST)
class PeerList(Message):
    """With ``delta`` false, every peer with its whole bitfield. With ``delta`` true, only
    the peers that changed after ``since``: those in ``gone`` hold nothing now (or came back,
    and what they held before is void); each of ``peers`` adds its ``pieces`` (or its whole
    ``bitfield``, when the tracker could not list them) to what the asker knew of it."""

    info_hash: str
    name: str
    num_pieces: int
    length: int
    peers: list[PeerInfo]
    version: int = 0                 # the cursor for the next GET_PEERS
    delta: bool = False
    gone: list[str] = field(default_factory=list)


@message(MsgType.GET_METAINFO)
class GetMetainfo(Message):
    """The .torrent of ``info_hash``, for a magnet link (BEP 9). The tracker answers from its
    ``torrents`` collection, a peer's data port for a torrent it holds."""

    info_hash: str


@message(MsgType.METAINFO)
class MetainfoReply(Message):
    info_hash: str
    metainfo: bytes        # untrusted until SHA-1 of its info dict equals the magnet's btih


@message(MsgType.CLIENT_ANNOUNCE)
class ClientAnnounce(Message):
    """A BEP 3 announce, as the HTTP door parsed it. Only the door sends it (it vouches for ``host``)."""

    info_hash: str         # hex
    peer_id: str           # hex of the client's 20-byte peer id
    host: str              # the address the request came from (the ``ip`` parameter is ignored)
    port: int
    left: int
    event: str             # "", "started", "completed" or "stopped"
    numwant: int


@message(MsgType.CLIENT_SWARM)
class ClientSwarm(Message):
    interval_s: int
    min_interval_s: int
    complete: int
    incomplete: int
    peers: list[ClientPeer]


@message(MsgType.SCRAPE)
class Scrape(Message):
    info_hashes: list[str]  # hex


@message(MsgType.SCRAPE_REPLY)
class ScrapeReply(Message):
    files: list[ScrapeEntry]


@message(MsgType.GET_SWARM)
class GetSwarm(Message):
    """Read-only: the peers and torrents the tracker knows, and its own counters, a page
    at a time: those whose id sorts after ``peers_after`` / ``torrents_after``."""

    peers_after: str = ""
    torrents_after: str = ""


@message(MsgType.SWARM)
class Swarm(Message):
    peers: list[SwarmPeer]
    torrents: list[SwarmTorrent]
    stats: TrackerStats
    peers_more: bool = False       # more peers after the last one here: ask again from it
    torrents_more: bool = False
