"""Every zorrent message, defined once.

Wire layout (see ``protocol.codec``)::

    frame 0  msgpack map {"v": PROTOCOL_VERSION, "id": int, "type": str, "body": map}
    frame 1  raw piece bytes (BLOCK replies only), sent zero-copy, never inside msgpack

Each message is a frozen dataclass registered under its ``MsgType``. The dataclass
fields are the body schema: ``from_body`` checks names and types and reports the key
path of the first problem, e.g. ``['body']['pieces'][3] must be int, not str``.
"""
import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from protocol.errors import FieldError

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 4 * 1024 * 1024      # largest frame 0 a node will decode
MAX_BLOCK_BYTES = 1024 * 1024           # largest piece block one request may ask for (why: node/config.py)
MAX_FRAME_BYTES = MAX_HEADER_BYTES + MAX_BLOCK_BYTES  # zmq MAXMSGSIZE on every socket


class MsgType(str, Enum):
    # generic
    PING = "ping"
    PONG = "pong"
    OK = "ok"
    ERROR = "error"
    # tracker
    REGISTER_PEER = "register_peer"
    REGISTERED = "registered"
    HEARTBEAT = "heartbeat"
    HEARTBEAT_OK = "heartbeat_ok"
    DEREGISTER = "deregister"
    REGISTER_TORRENT = "register_torrent"
    TORRENT_REGISTERED = "torrent_registered"
    ANNOUNCE = "announce"
    FORGET = "forget"
    GET_PEERS = "get_peers"
    PEER_LIST = "peer_list"
    GET_METAINFO = "get_metainfo"      # tracker, and a peer's data port (magnet links)
    METAINFO = "metainfo"
    # tracker: standard BitTorrent clients, through the HTTP door (BEP 3, 48)
    CLIENT_ANNOUNCE = "client_announce"
    CLIENT_SWARM = "client_swarm"
    SCRAPE = "scrape"
    SCRAPE_REPLY = "scrape_reply"

    GET_SWARM = "get_swarm"
    SWARM = "swarm"
    # peer data plane
    GET_BLOCK = "get_block"
    BLOCK = "block"
    ELSEWHERE = "elsewhere"
    WATCH = "watch"
    HAVES = "haves"
    # peer control plane
    UPLOAD = "upload"
    UPLOADED = "uploaded"
    DOWNLOAD = "download"
    STATUS = "status"
    REMOVE = "remove"
    STATUS_REPLY = "status_reply"
    SHUTDOWN = "shutdown"


class Message:
    """Base of every registered message; ``TYPE`` is set by ``@message``."""

    TYPE: ClassVar[MsgType]

    def to_body(self) -> dict[str, Any]:
        return {f.name: _to_wire(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_body(cls, body: Any, path: str = "['body']") -> "Message":
        return _build(cls, body, path)

    # One __eq__, __hash__ and __repr__ for every message, over its fields, rather than three
    # generated (exec'd) for each class: generating them was half of this module's import
    # time, which every command and every node start pays.
    def _values(self) -> tuple:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((self.__class__, self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"{self.__class__.__name__}({fields})"


REGISTRY: dict[MsgType, type[Message]] = {}


def message(msg_type: MsgType):
    """Register a dataclass as the one definition of ``msg_type``."""

    def wrap(cls):
        if msg_type in REGISTRY:
            raise RuntimeError(f"{msg_type} registered twice")
        cls.__doc__ = cls.__doc__ or f"The {msg_type.value!r} message."   # else dataclass builds one
        cls = dataclass(frozen=True, eq=False, repr=False)(cls)            # with inspect.signature
        cls.TYPE = msg_type
        REGISTRY[msg_type] = cls
        return cls

    return wrap


class JobState(str, Enum):
    SEEDING = "seeding"            # every piece verified (uploaded, or a finished download)
    DOWNLOADING = "downloading"
    FAILED = "failed"              # stopped with an error; verified pieces stay on disk
    CHECKING = "checking"          # the file changed on disk: re-hashing it, serving and announcing nothing
    MISSING = "missing"            # the file is gone (or is no longer a regular file): nothing is served
    CHANGED = "changed"            # re-hashed after a change: only the pieces that still verify are served
    HASHING = "hashing"            # an upload, or a resumed file, being hashed (off the event loop): nothing
                                   # served or announced until it ends (then seeding, downloading or failed)


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
class PeerStat:
    """What one downloading job got from one remote peer."""

    peer_id: str
    pieces: int
    bytes: int
    failures: int
    score: float
    banned: bool
    hash_failures: int = 0     # of ``failures``, the pieces that failed their SHA-1
    rested: bool = False       # gets no requests for now (it kept timing out)


@dataclass(frozen=True)
class JobStatus:
    """One torrent a peer holds: seeding, downloading, done or failed."""

    info_hash: str
    name: str
    path: str
    state: str             # JobState value
    num_pieces: int
    have: int              # verified pieces on disk
    announced: int         # of those, acknowledged by the tracker
    resumed: int           # pieces already verified on disk when this process took the job
    fetched: int           # pieces received from the network, over every run of the job
    length: int
    bytes_done: int
    failed_attempts: int
    ignored: int           # replies nobody asked for, or that did not match the request: never written
    elapsed_s: float
    error: str
    peers: list[PeerStat] = field(default_factory=list)
    warning: str = ""      # why a running job may be slower than it could be (e.g. a socket limit reached)
    hashed_bytes: int = 0  # while hashing or checking: bytes hashed so far, of
    hash_bytes: int = 0    # ... this many (0: no hash under way)


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


# ---------------------------------------------------------------- generic


@message(MsgType.PING)
class Ping(Message):
    pass


@message(MsgType.PONG)
class Pong(Message):
    node: str              # "tracker" or "peer"
    peer_id: str           # empty for the tracker
    pid: int
    bt_port: int = 0       # a peer's BEP 3 port (0: none)


@message(MsgType.OK)
class Ok(Message):
    pass


@message(MsgType.ERROR)
class Error(Message):
    code: int
    message: str


# ---------------------------------------------------------------- tracker


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


# ---------------------------------------------------------------- peer data plane


@message(MsgType.GET_BLOCK)
class GetBlock(Message):
    info_hash: str
    piece_index: int
    block_offset: int
    length: int
    requester: str = ""    # the asking peer's id, for logs only: a seed trusts the connection, not this


@message(MsgType.BLOCK)
class Block(Message):
    """Reply to GET_BLOCK; the bytes follow as frame 1."""

    info_hash: str
    piece_index: int
    block_offset: int


@message(MsgType.ELSEWHERE)
class Elsewhere(Message):
    """Reply to GET_BLOCK from a seed that already sent that piece to another peer while
    pieces nobody has are left: fetch it from the swarm, and take these from the seed."""

    info_hash: str
    piece_index: int
    suggest: list[int]     # pieces this seed has sent to nobody, reserved for the asker


@message(MsgType.WATCH)
class Watch(Message):
    """Long poll on a peer's data port for the pieces it verifies: answered at once when it
    has verified more than ``since`` pieces, else as soon as it does (or empty after a while)."""

    info_hash: str
    since: int             # the ``seq`` of the last HAVES from this peer; -1: just tell me seq


@message(MsgType.HAVES)
class Haves(Message):
    info_hash: str
    seq: int               # how many pieces this peer has verified in this run
    pieces: list[int]      # the ones after ``since``


# ---------------------------------------------------------------- peer control plane


@message(MsgType.UPLOAD)
class Upload(Message):
    path: str              # absolute path of the file (or a multi-file torrent's folder) to seed, on the peer's host
    metainfo: bytes


@message(MsgType.UPLOADED)
class Uploaded(Message):
    info_hash: str
    num_pieces: int


@message(MsgType.DOWNLOAD)
class Download(Message):
    metainfo: bytes
    output: str            # absolute path of the file to write (a multi-file torrent: of its folder)
    peers: list[str] = field(default_factory=list)   # "HOST:PORT" BEP 3 peers to take pieces from (x.pe)


@message(MsgType.REMOVE)
class Remove(Message):
    """Stop seeding or downloading a torrent; ``delete_data`` also deletes a downloaded file
    (never a file that was uploaded from elsewhere)."""

    info_hash: str
    delete_data: bool


@message(MsgType.STATUS)
class Status(Message):
    info_hash: str         # empty: every torrent the peer holds


@message(MsgType.STATUS_REPLY)
class StatusReply(Message):
    peer_id: str
    registered: bool       # the tracker has acknowledged this peer
    jobs: list[JobStatus]
    held_bytes: int = 0        # block bytes remotes' requests hold in this process now, both wires
    held_peak_bytes: int = 0   # ... the most they have held since start (node/budget.py bounds both)


@message(MsgType.SHUTDOWN)
class Shutdown(Message):
    pass


# ---------------------------------------------------------------- (de)serialisation


def _to_wire(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_to_wire(v) for v in value]
    return value


_PLAIN = (int, str, bytes, bool)


def _plain(value: Any, tp: type, path: str, name: str) -> Any:
    """The common case, fast: a scalar of exactly the right type."""
    if type(value) is tp:
        return value
    return _check(value, tp, f"{path}[{name!r}]")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _check(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        return _check(value, next(o for o in options if o is not type(None)), path)
    if origin is list:
        if not isinstance(value, list):
            raise FieldError(path, f"must be list, not {type(value).__name__}")
        (item_tp,) = typing.get_args(tp)
        return [_check(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise FieldError(path, f"must be {_type_name(tp)}, not {type(value).__name__}")
    return value


@functools.cache
def _schema(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, type, required) for each field: computed once per class, not per message."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name],
                  f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
                 for f in dataclasses.fields(cls))


def _build(cls: type, body: Any, path: str) -> Any:
    if not isinstance(body, dict):
        raise FieldError(path, f"must be map, not {type(body).__name__}")
    schema = _schema(cls)
    kwargs = {}
    for name, tp, required in schema:
        if name not in body:
            if not required:
                continue
            raise FieldError(f"{path}[{name!r}]", "is missing")
        value = body[name]
        if tp in _PLAIN:
            kwargs[name] = _plain(value, tp, path, name)
        else:
            kwargs[name] = _check(value, tp, f"{path}[{name!r}]")
    extra = set(body) - {name for name, _, _ in schema}
    if extra:
        raise FieldError(f"{path}[{sorted(map(str, extra))[0]!r}]", "is not a field")
    return cls(**kwargs)
