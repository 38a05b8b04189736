"""A peer's control socket (the CLI): upload, download, remove, status, shutdown; with the
job records a status reply nests."""
from dataclasses import dataclass, field
from enum import Enum

from protocol.messages.base import Message, message
from protocol.messages.names import MsgType


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


# ---------------------------------------------------------------- requests and replies


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
