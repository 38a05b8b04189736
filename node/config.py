"""Every default, port, path and timing constant, defined once.

Paths hang off the output root (``output/`` under the working directory, or
``$ZORRENT_OUTPUT``), read when called so child processes inherit the same root.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from protocol.errors import ErrorCode, ZorrentError

# ---------------------------------------------------------------- endpoints
DEFAULT_TRACKER_HOST = "127.0.0.1"
DEFAULT_TRACKER_PORT = 6969
HTTP_PORT_OFFSET = 1000           # a tracker's HTTP door (BEP 3, for standard clients) is on its port + this,
                                  # so trackers on consecutive ports never take each other's (MongoDB's HTTP
                                  # console sat at its port + 1000 the same way)
DEFAULT_PEER_HOST = "127.0.0.1"
DEFAULT_PEERS_CONFIG = "peers.json"
BT_PORT_OFFSET = 1000             # a peer's BEP 3 port defaults to its data port + this (6881 -> 7881):
                                  # clear of 6881-6889 (data ports), 6969 and its HTTP door 7969 (tracker), 8080 (web)
BT_PORT_OFF = -1                  # `--bt-port -1` / "bt_port": -1 runs no BEP 3 listener


def default_bt_port(data_port: int) -> int:
    """A peer's BEP 3 port when none is given: data port + BT_PORT_OFFSET (0, any free port, for port 0)."""
    return data_port + BT_PORT_OFFSET if 0 < data_port <= 65535 - BT_PORT_OFFSET else 0
MONGO_EXAMPLE_URI = "mongodb://localhost:27017/bittorrent"


def default_store_uri() -> str:
    return os.environ.get("ZORRENT_STORE", f"sqlite:///{output_dir() / 'tracker.db'}")


def endpoint(host: str, port: int) -> str:
    return f"tcp://{host}:{port}"


def _default_trackers() -> str:
    """``$ZORRENT_TRACKER`` as given (it may list several endpoints), or the default one.
    Read through ``tracker_endpoints()`` only, at run time (never as an option's default at
    import), so every command sees the whole list."""
    return os.environ.get("ZORRENT_TRACKER") or endpoint(DEFAULT_TRACKER_HOST, DEFAULT_TRACKER_PORT)


def http_port_for(tracker_port: int) -> int:
    """The default port of the HTTP door of the tracker on ``tracker_port``: that port +
    HTTP_PORT_OFFSET (0, any free port, for a tracker on any free port or near the top)."""
    port = tracker_port + HTTP_PORT_OFFSET
    return port if tracker_port and port < 65536 else 0


DEFAULT_HTTP_PORT = http_port_for(DEFAULT_TRACKER_PORT)     # 7969


def http_announce_url(tracker_endpoint: str, port: int | None = None) -> str:
    """The HTTP announce URL of the tracker at ``tcp://HOST:PORT``: its HTTP door, on ``port``
    or by default on ``http_port_for(PORT)``."""
    host, _, tracker_port = tracker_endpoint.removeprefix("tcp://").rpartition(":")
    if port is None:
        port = http_port_for(int(tracker_port)) if tracker_port.isdigit() else DEFAULT_HTTP_PORT
    return f"http://{host or DEFAULT_TRACKER_HOST}:{port}/announce"


def parse_endpoint(text: str, what: str = "tracker endpoint") -> tuple[str, int]:
    """(host, port) of ``tcp://HOST:PORT``."""
    host, _, port = text.removeprefix("tcp://").rpartition(":")
    try:
        if host and 0 < int(port) < 65536:
            return host, int(port)
    except ValueError:
        pass
    raise ZorrentError(f"{what} {text!r} is not tcp://HOST:PORT", ErrorCode.BAD_INPUT)


def tracker_endpoints(value: str | list[str] | None = None) -> list[str]:
    """The tracker endpoints, preferred first: ``tcp://a:6969,tcp://b:6969`` (or a list of
    such strings, e.g. a repeated ``--tracker``); None reads ``$ZORRENT_TRACKER``.

    The one parser of tracker lists: peers, the CLI and the supervisor config all use it.
    ``HOST:PORT`` without a scheme means tcp. Duplicates are dropped, order is kept.
    """
    if value is None or value == []:
        value = _default_trackers()
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            ep = part if "://" in part else f"tcp://{part}"
            if not ep.startswith("tcp://"):
                raise ZorrentError(f"tracker endpoint {part[:80]!r} is not tcp://HOST:PORT", ErrorCode.BAD_INPUT)
            host, port = parse_endpoint(ep)
            if endpoint(host, port) not in out:
                out.append(endpoint(host, port))
    if not out:
        raise ZorrentError("no tracker endpoint given (tcp://HOST:PORT, comma-separated)", ErrorCode.BAD_INPUT)
    return out


WILDCARD_HOSTS = ("0.0.0.0", "*", "::", "[::]")


def advertised_host(bind: str, advertise: str | None) -> str:
    """The address other peers are told to reach a peer at: its bind address, unless it
    binds every interface, which needs an explicit one."""
    if advertise:
        return advertise
    if bind in WILDCARD_HOSTS:
        raise ZorrentError(f"a peer that binds {bind} needs --advertise IP (\"ip\" in peers.json): "
                           f"the address other peers reach it at", ErrorCode.BAD_INPUT)
    return bind


# ---------------------------------------------------------------- paths
def output_dir() -> Path:
    return Path(os.environ.get("ZORRENT_OUTPUT", "output"))


def torrents_dir() -> Path:
    return output_dir() / "torrents"


def downloads_dir() -> Path:
    return output_dir() / "downloads"


def logs_dir() -> Path:
    return output_dir() / "logs"


def run_dir() -> Path:
    """Control sockets live here; the directory is 0700 so only this user reaches them."""
    return output_dir() / "run"


def state_dir() -> Path:
    return output_dir() / "state"


def supervisor_conf_dir() -> Path:
    return Path(os.environ.get("ZORRENT_SUPERVISOR_CONF", "supervisor_conf"))


def supervisor_conf_path() -> Path:
    return supervisor_conf_dir() / "supervisord.conf"


def supervisor_socket() -> Path:
    return run_dir() / "supervisor.sock"


def events_path() -> Path:
    """Swarm events from outside the nodes (a soak's kills and restarts), one JSON object a line."""
    return output_dir() / "events.jsonl"


def peer_state_path(peer_id: str) -> Path:
    return state_dir() / f"{check_peer_id(peer_id)}.json"


IPC_PATH_MAX_BYTES = 107   # a unix socket's path: sockaddr_un.sun_path is 108 bytes with its NUL (Linux)


def control_endpoint(peer_id: str) -> str:
    return f"ipc://{(run_dir() / f'{check_peer_id(peer_id)}.sock').resolve()}"


def keys_dir() -> str | None:
    """A private swarm's key folder (``zorrent keys new``): ``$ZORRENT_KEYS``, set by
    ``--keys DIR`` or peers.json's ``"keys"``; None for an open swarm."""
    return os.environ.get(KEYS_ENV) or None


def default_keys_dir() -> Path:
    return output_dir() / "keys"


def ensure_dir(path: Path, mode: int = 0o755) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    return path


KEYS_ENV = "ZORRENT_KEYS"
KEYS_ENTRY = "keys"        # peers.json's top-level entry naming the key folder (never a peer id)

# ---------------------------------------------------------------- identities
PEER_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def heartbeat_interval(handed_s: float) -> float:
    """The heartbeat interval a peer uses: the tracker's, within HEARTBEAT_BOUNDS_S."""
    low, high = HEARTBEAT_BOUNDS_S
    try:
        return min(high, max(low, float(handed_s)))
    except (TypeError, ValueError):
        return HEARTBEAT_INTERVAL_S


def heartbeat_for_swarm(live_peers: int) -> float:
    """The interval the tracker hands out with ``live_peers`` zorrent peers alive: long enough
    that they send it about TRACKER_HEARTBEATS_PER_S heartbeats a second, within
    [HEARTBEAT_INTERVAL_S, HEARTBEAT_MAX_S], in steps of 0.1 s (a peer re-arms its timer
    only when the figure changes). Read at call time, so tests may patch the constants."""
    interval = max(HEARTBEAT_INTERVAL_S, min(HEARTBEAT_MAX_S, live_peers / tracker_heartbeats_per_s()))
    return round(interval, 1) or HEARTBEAT_INTERVAL_S


def tracker_heartbeats_per_s() -> float:
    """$ZORRENT_HEARTBEATS_PER_S (a tracker on a faster or slower machine), else TRACKER_HEARTBEATS_PER_S."""
    try:
        return max(0.01, float(os.environ.get("ZORRENT_HEARTBEATS_PER_S", TRACKER_HEARTBEATS_PER_S)))
    except ValueError:
        return TRACKER_HEARTBEATS_PER_S


def file_check_s(heartbeat_s: float) -> float:
    """How often a peer heartbeating every ``heartbeat_s`` sweeps the files it holds: it grows
    with the interval the tracker hands out (300 peers on one machine: 3 s, not 1 s each)."""
    return max(FILE_CHECK_S, heartbeat_s / FILE_CHECKS_PER_HEARTBEAT)


def peer_expiry_s(interval_s: float) -> float:
    """How long the tracker keeps a zorrent peer heartbeating every ``interval_s`` after its
    last heartbeat: PEER_EXPIRY_BEATS of them missed."""
    return PEER_EXPIRY_BEATS * max(interval_s, HEARTBEAT_INTERVAL_S)


def check_peer_id(peer_id: str) -> str:
    """Peer ids name files, sockets and supervisor programs: keep them plain."""
    if not PEER_ID_RE.fullmatch(peer_id):
        raise ZorrentError(
            f"peer id {peer_id[:80]!r} must be 1-64 letters, digits, '-' or '_'", ErrorCode.BAD_FIELD)
    return peer_id


def check_port(port: int, what: str = "port") -> int:
    """A TCP port a command is told to reach: 1-65535 (0 or beyond would only time out)."""
    if not 0 < port <= 65535:
        raise ZorrentError(f"{what} {str(port)[:12]} must be 1-65535", ErrorCode.BAD_FIELD)
    return port


# ---------------------------------------------------------------- timing (unit in every name)
# Heartbeats: the tracker hands out an interval (Registered and every heartbeat's reply, as
# BEP 3's ``interval``) that grows with the live peers (heartbeat_for_swarm), and each peer's
# record keeps the deadline its own interval gives, so expiry follows what each peer was told.
HEARTBEAT_INTERVAL_S = 2.0                    # the shortest interval handed out (up to 100 peers): a small
                                              # swarm's silent peer is gone in PEER_EXPIRY_S = 6 s; a peer uses
                                              # it too until its tracker says otherwise
TRACKER_TYPE_LOG_S = 60.0                     # the tracker logs its requests per second by type at most this often
TRACKER_HEARTBEATS_PER_S = 50.0               # the heartbeat load a tracker aims at: one costs ~0.5 ms of tracker
                                              # CPU with its store write (bench-scale: 253 us per peer per s at
                                              # 2 s), so ~2.5% of a core, whatever the swarm (300 peers: 6 s)
HEARTBEAT_MAX_S = 60.0                        # the longest handed out (3,000 peers and more): a dead peer stays
                                              # listed at most 3 minutes (jobs rest a silent remote on their own
                                              # within BLOCK_TIMEOUT_S), and an idle peer's loop never sleeps
                                              # longer than IDLE_WAIT_MAX_S anyway
PEER_EXPIRY_BEATS = 3                         # tracker forgets a peer that missed this many heartbeats in a row
PEER_EXPIRY_S = PEER_EXPIRY_BEATS * HEARTBEAT_INTERVAL_S     # the shortest expiry (a small swarm's)
HEARTBEAT_BOUNDS_S = (0.5, 600.0)             # a peer takes an interval from a tracker only within these
IDLE_WAIT_MAX_S = 60.0                        # a peer's event loop sleeps at most this long with nothing due
                                              # (signals wake it at once)
REQUEST_TIMEOUT_S = 2.0                       # one try of a control/tracker request
REQUEST_RETRIES = 3                           # Lazy Pirate: tries before giving up
ANNOUNCE_BATCH_S = 0.05                       # verified pieces wait at most this long
PEER_REFRESH_S = 1.0                          # a downloading job re-reads the peer list
PEER_REFRESH_MIN_S = 0.05                     # ... sooner while the job is young (half its age): peers that
                                              # start together find each other at once. Not 0.2: the other
#   leechers join the tracker's list a moment after a job's first ask (their registration), and at 0.2 s
#   they met after their first pieces (RTT 0), or dialed links that were ready only after the first relay
#   requests waited on them (RTT 100, bench/RESULTS.md "rtt"); one ask is out at a time, so at RTT >= 50
#   the second ask goes as the first list arrives. A few asks more per job, in its first half second.
#   Measured: no gain above the noise in 1-2 pairs a cell (bench/RESULTS.md "rtt"); kept as it costs
#   nothing seen. The mechanism to build next: a GET_PEERS parked at the tracker until the list changes.
FINISHED_PEERS_SHOWN_S = 60.0                 # a finished download's per-peer figures (Download Statistics) are in
                                              # every status this long after it ends (the download command, the
                                              # soak and the web view read them then), then its totals only (but
                                              # always in a status of that torrent alone: handlers._status): the
                                              # web view asks every peer twice a second, and a peer's answer must
                                              # not grow with its download history
PICK_FROM_MASK_MAX = 64                       # a remote with at most this many wanted pieces is picked from by rank,
                                              # one step each; one with more walks the order (a step per piece
                                              # skipped): a bit count and a short sort beat a long walk below this
BLOCK_TIMEOUT_S = 10.0                        # a block request not answered by then fails
STATUS_POLL_S = 0.2                           # ctl progress refresh
STATUS_POLL_MIN_S = 0.01                      # ... and, near a download's expected end, as often as this (a status
                                              # costs the peer ~1 ms; the user sees the end at once)
DOWNLOAD_STALL_S = 120.0                      # ctl gives up after no progress this long
TRACKER_GRACE_S = 5.0                         # ctl gives up on a peer that cannot reach the tracker
READY_TIMEOUT_S = 15.0                        # a started node must answer a ping by then
PING_PROBE_TIMEOUT_S = 0.3                    # one ping while waiting for a started node (then the next)
TWIN_PING_TIMEOUT_S = 0.5                     # a starting peer asks the holder of its id's lock who it is, once
SEED_TIMEOUT_S = 120.0                        # the soak's seeds have this long to hash their file
TRACKER_PROBE_S = 5.0                         # a peer failed over away from its first tracker pings it this often

STATE_SAVE_S = 1.0                            # a peer saves resume state this often (if changed)
FILE_CHECK_S = 1.0                            # a peer stats the files it holds this often (size, mtime, inode)
FILE_CHECKS_PER_HEARTBEAT = 2                 # ... or this many times per heartbeat interval, if that is rarer:
                                              # a change an idle seed notices reaches the tracker (FORGET)
                                              # within about one heartbeat, as fresh as the tracker's view of
                                              # that peer is anyway; each block served is checked as it is read
FILE_CHECK_BATCH = 256                        # files of one torrent checked per sweep (a big folder takes several)
RECHECK_TRIES = 3                             # a file that keeps changing while re-hashed is given up on
SNUB_AFTER_TIMEOUTS = 2                       # consecutive timeouts before a peer is rested
SNUB_S = 10.0                                 # how long a timed-out peer gets no requests

# ---------------------------------------------------------------- supervision
SUPERVISOR_GROUP = "swarm"
SUPERVISOR_STARTSECS = 2                      # up this long counts as started
SUPERVISOR_STARTRETRIES = 3                   # supervisord's default: FATAL after backoffs of 1+2+3 s (a taken
                                              # port fails in ~8 s; 10 took ~60 s, past PEER_START_TIMEOUT_S)
SUPERVISOR_STOPWAITSECS = 15                  # SIGTERM, then SIGKILL after this long
SUPERVISOR_LOG_MAXBYTES = "10MB"
SUPERVISOR_LOG_BACKUPS = 3
# Peers the CLI has starting at once (a Python process importing its modules is CPU-bound):
# a new one starts as soon as the oldest answers a ping. 300 peers forked together on 2 cores
# starved the tracker for over 15 s; this many per core keeps both cores busy with start-ups
# and the tracker answering. supervisord's own autostart is off for peers for the same reason.
PEER_START_WINDOW = max(4, 2 * (os.cpu_count() or 1))
PEER_START_TIMEOUT_S = 60.0   # a peer supervisord keeps up gets this long to answer its first ping: on a
                              # loaded machine or a cold page cache a start-up takes seconds (FATAL fails at once)

# ---------------------------------------------------------------- transfer
PIPELINE_BYTES = 8 * 1024 * 1024              # block bytes in flight to one remote peer
MIN_PIPELINE_REQUESTS = 2
MAX_PIPELINE_REQUESTS = 64                    # pieces in flight to one remote peer
ENDGAME_AFTER_S = 1.0                         # duplicate a piece only once it is this late
CREDIT_WINDOW_S = 0.5                         # credit: about this long of a peer's measured rate in flight
SEND_ONCE_RESEND_S = 30.0                     # a seed sends a piece again after this long (its first taker may be gone)
SEND_ONCE_SUGGEST = 4                         # unsent pieces a seed offers with each redirect
SEND_ONCE_OFFER_S = 5.0                       # s: an offered piece not asked for by then is fresh again (a
                                              # standard client may ignore a suggest; ours ask within a few pieces)
SEND_ONCE_VIEW_S = 0.2                        # a seed with first copies left re-reads who holds what this often
#   while another seed is listed (node/peer/seedview.py): what the other sent first drops out of its fresh
WATCH_S = 10.0                                # a parked WATCH is answered (empty) after this long
WATCH_PARKED_MAX = 256                        # parked WATCHes per torrent; more are answered at once
WATCH_BATCH_PER_WATCHER_S = 0.001             # HAVEs to watchers wait this long per parked WATCH (each costs a
WATCH_BATCH_MIN_S = 0.005                     # send), between these two and ANNOUNCE_BATCH_S: a few watchers
#   hear of a piece within 5 ms, not 50 (a 64 KiB piece is 10 ms of a 50 Mbit/s uplink, and its next
#   relay waits for the HAVE); 256 watchers still cost at most 20 flushes a second
ELSEWHERE_RETRY_S = 5.0                       # a redirected piece is not asked of that seed again for this long
MAX_HASH_FAILURES = 3                         # pieces failed as sole sender before a ban
HASH_THREADS = 2                              # per peer: SHA-1 of arrived pieces (one per core)
WRITE_THREADS = 2                             # per peer: writes of verified pieces (keeps the device's queue full)
READ_THREADS = 2                              # per peer: reads of the blocks it serves (off the event loop)
CHECK_THREADS = 2                             # per peer: whole-file hashes (upload, resume, re-hash of a changed
                                              # file), two torrents at once: a small one's hash never waits
                                              # behind a 100 GiB one; each also hashes its own pieces on
                                              # pieces.hash_workers() threads, so 2 keeps the disk and cores busy
# A whole-file hash (of a folder's files too, read as one stream) reads ahead of its hash
# threads: pieces.HASH_READ_AHEAD_BYTES (64 MiB) in
# reads of pieces.HASH_READ_BYTES (8 MiB, or one piece if bigger) in flight, O_DIRECT where not
# cached (fewer in flight left the device idle: 16 GiB cold, 4 reads 0.93x the rate of 8).
# Memory per hash, pieces.hash_read_buffers(): 2 hash threads + 8 reads + 1 = 11 chunks of 8 MiB,
# 88 MiB (16 MiB pieces: 2 + 4 + 1 = 7 of 16 MiB, 112 MiB); allocated when a hash starts, freed
# when it ends; at most CHECK_THREADS hashes at once: 176 (224) MiB.
DISK_IO_MODES = ("direct", "buffered")
DISK_IO = "direct"      # verified pieces are written O_DIRECT (no page cache) where the filesystem allows it
TRACKER_BATCH_MAX = 512                       # requests drained into one group commit
ZMQ_MAX_SOCKETS = 8192                        # per peer process: libzmq's socket cap (its default, 1,023, is
                                              # about 20 jobs x 50 remotes); a DEALER per remote peer is shared
                                              # by every job, so this is ~8,000 remote peers. $ZORRENT_MAX_SOCKETS
SPARE_FILES = 256                             # open files beyond 2 per socket (torrent files, logs, the state)


def max_sockets() -> int:
    """The socket limit of a peer's ZeroMQ context: $ZORRENT_MAX_SOCKETS, else ZMQ_MAX_SOCKETS."""
    try:
        return max(8, int(os.environ.get("ZORRENT_MAX_SOCKETS", ZMQ_MAX_SOCKETS)))
    except ValueError:
        return ZMQ_MAX_SOCKETS


CHANGE_LOG_PIECES = 32                        # pieces one change lists; a bigger announce says "re-read its
                                              # bitfield" instead (keeps a (torrent, peer) document small)
CHANGE_LOG_ENTRIES = 16                       # MongoDB: recent changes kept in each (torrent, peer) document
                                              # ($push $slice); a cursor older than them gets that peer whole
CHANGE_LOG_ROWS = 4096                        # SQLite: changes kept per torrent (one row per announce): a job
                                              # that refreshes every PEER_REFRESH_S stays within them unless
                                              # the torrent sees over 4,096 announces in that second
TOMBSTONE_S = 120.0                           # MongoDB: a peer that left a torrent stays as a tombstone this
                                              # long, so jobs learn it left; older cursors get a full list
MONGO_PENDING_S = 60.0                        # MongoDB: a version taken but not yet written holds readers'
                                              # cursors below it at most this long (a write takes ms; a server
                                              # busy for 15 s was seen): a tracker that died mid-write stalls
                                              # no delta longer, and jobs meanwhile get changes twice, never none

# ---------------------------------------------------------------- bounds on what a remote can fill
# Sized from the piece size and the link (node/budget.py). A legitimate downloader keeps
# at most PIPELINE_BYTES (8 MiB) and MAX_PIPELINE_REQUESTS pieces requested from one seed;
# on loopback (1-3 GB/s) or a 1 Gbit/s link (125 MB/s) a block leaves the seeder's process
# for the kernel's socket buffer within milliseconds of its read, so a reader that keeps
# up never holds more than a few blocks here. One that never reads holds its cap, no more.
# The largest block one request may ask for is protocol.messages.MAX_BLOCK_BYTES, 1 MiB
# (it was 4 MiB): 4 of them fill the in-process send window below, so a remote holding
# its cap holds whole blocks; a bigger piece is fetched in several blocks.
REMOTE_MAX_REQUESTS = 2 * MAX_PIPELINE_REQUESTS   # requests: GetBlocks one remote may have waiting or in
                                              # flight here; a legit downloader sends <= 64 pieces' worth
                                              # (more blocks only for pieces > 1 MiB, which credit keeps few);
                                              # beyond: a BUSY error reply (cheap, no disk read)
REMOTE_MAX_BYTES = 4 * 1024 * 1024            # bytes: block payload one remote may hold in this process (read,
                                              # paced, or in the ZeroMQ pipe not yet written to the kernel);
                                              # at 125 MB/s that is 32 ms of link, far more than a reader needs
REMOTES_TOTAL_BYTES = 32 * 1024 * 1024        # bytes: the same over every remote: the seeder's RSS may grow by
                                              # this much at worst (the issue-17 goal allows 64 MiB over idle)
REMOTES_MAX = 1024                            # remotes with block requests here at once (a new one is refused)
                                              # and remotes cut off at once (expired ones make room)
REMOTE_MAX_REFUSALS = MAX_PIPELINE_REQUESTS   # refusals in a row (a legit downloader never gets one: it keeps
                                              # <= REMOTE_MAX_REQUESTS in flight) before the remote is cut off:
                                              # its requests are then dropped unread (no decode, no reply) ...
REMOTE_CUT_OFF_S = 30.0                       # ... for this long (a flood costs ~1 us a frame, not ~40 us)
DATA_SNDHWM_MSGS = 2 * REMOTE_MAX_REQUESTS    # messages: data ROUTER send queue per remote (ZMQ_SNDHWM). Blocks
                                              # hold budget tickets until written, so this only bounds the small
                                              # replies (errors, Haves, Elsewhere, metainfo); a full pipe drops
                                              # the reply (ROUTER_MANDATORY + DONTWAIT: never blocks the loop)
DATA_RCVHWM_MSGS = 2 * REMOTE_MAX_REQUESTS    # messages: requests read ahead from one remote (ZMQ_RCVHWM)
DATA_MAX_REQUEST_BYTES = 64 * 1024            # bytes: largest frame the data port accepts (ZMQ_MAXMSGSIZE); its
                                              # requests are ~100-byte GetBlock/Watch/GetMetainfo/Ping
PACER_MAX_QUEUED = REMOTES_MAX * 4            # replies: the upload pacer's queue. Paced blocks hold budget
                                              # tickets, so REMOTES_TOTAL_BYTES bounds it first; this caps small ones
READ_QUEUE_MAX = REMOTES_TOTAL_BYTES // (16 * 1024)   # block reads waiting for a read thread: every one holds a
                                              # claimed ticket, so the byte budget bounds it; this is the backstop
SERVE_POOL_IDLE_BYTES = 16 * 1024 * 1024     # bytes: block buffers the data port keeps idle for reuse
                                              # (node/peer/blockpool.py); lent ones are bounded by the budget
                                              # above. 16 x 1 MiB covers what one fast reader's credit cycles
SERVE_POOL_MIN_BYTES = 128 * 1024            # bytes: smaller blocks are not pooled (glibc's heap serves them
                                              # without a fresh mapping, and a remote picks the lengths)
SERVE_POOL_IDLE_S = 5.0                       # s: a pool not used this long is dropped (an idle peer holds none)
TRACKER_SNDHWM_MSGS = 2 * TRACKER_BATCH_MAX   # messages: tracker ROUTER send queue per client: one drained batch
                                              # may all be one client's (a pipelining CLI or bench), answered at
                                              # once, and libzmq learns of reads in steps of HWM/2; a client that
                                              # never reads loses what is beyond. Replies are
                                              # small (GetSwarm is paged) except metainfo (<= 4 MiB header)
TRACKER_RCVHWM_MSGS = 256                     # messages: requests read ahead from one client
TRACKER_MAX_TORRENTS_PER_PEER = 4096          # torrents one registered peer may register (in this tracker's run)
TRACKER_MAX_PEERS_PER_HOST = 1024             # live peer ids registered from one address ("hundreds of peers on
                                              # one machine" fit; one stranger cannot fill the peers collection)
TRUST_ADVERTISE_DEFAULT = "127.0.0.0/8,::1"     # tracker --trust-advertise: sources whose RegisterPeer may name
                                              # another address (a local process is the operator's own)
SWARM_PAGE_MAX = 500                          # peers or torrents in one GetSwarm reply (~60 KiB of header)
# ---------------------------------------------------------------- BEP 3 peer wire (standard clients)
# Each bound caps what one stranger on the BEP 3 port can make us hold (GUIDE: every buffer a
# remote can fill has a bound). libtorrent's figures are the model where one is named.
BT_MAX_CONNECTIONS = 200                      # per peer process, both directions; more are closed on arrival
                                              # (Transmission's peer-limit-global default is 200)
# Bytes in flight are NOT bounded here: the BEP 3 wire takes them from the peer's one Budget
# (node/budget.py), shared with the ZeroMQ data port, so a stranger on either port gets
# REMOTE_MAX_REQUESTS requests being served and REMOTE_MAX_BYTES of blocks held here, both
# wires together REMOTES_TOTAL_BYTES. A connection stops being read while its queued replies
# exceed REMOTE_MAX_BYTES. What stays below is wire-specific.
BT_MAX_QUEUED_REQUESTS = 500                  # requests one BEP 3 remote may have queued here, not yet served
                                              # (advertised as BEP 10 `reqq`; beyond: a BEP 6 reject, or a drop
                                              # without Fast; REMOTE_MAX_REFUSALS in a row cuts it off). Each is
                                              # 3 ints (~100 bytes: 50 KB per connection). libtorrent keeps up
                                              # to 500 in flight to a peer (max_out_request_queue) and sizes its
                                              # queue to ~3 s of transfer: with 128 (2 MiB) a libtorrent leecher
                                              # on loopback got 0.68x of a libtorrent seed's speed, with 512
                                              # 0.98x (bench/bt_interop.py), as every scheduling delay of our
                                              # loop then left the pipe empty.
BT_RECV_BUFFER_BYTES = 256 * 1024             # a connection's preallocated receive buffer; it grows only for
                                              # a bitfield (num_pieces / 8 bytes, fixed by the torrent)
BT_MAX_MESSAGE_BYTES = 16 * 1024 + 64 * 1024  # largest message but a bitfield: a 16 KiB piece or metadata
                                              # block plus its bencoded header; longer closes the connection
BT_HANDSHAKE_TIMEOUT_S = 10.0                 # a connection must finish its handshake by then
BT_IDLE_TIMEOUT_S = 120.0                     # nothing received this long (keep-alives count): closed
BT_KEEPALIVE_S = 60.0                         # we send a keep-alive after this long without sending
BT_UPLOAD_SLOTS = 4                           # unchoked remotes per peer process, besides the optimistic one
                                              # (libtorrent's unchoke_slots_limit is 8 for a whole session;
                                              # 4 + 1 fills a capped uplink without splitting it thin)
BT_RECHOKE_S = 10.0                           # BEP 3: re-choose the unchoked every 10 s
BT_OPTIMISTIC_S = 30.0                        # ... and the optimistic unchoke every 30 s (3 rounds)
BT_REQUESTS_PER_REMOTE = 256                  # 16 KiB requests we keep in flight to one BEP 3 remote (4 MiB;
                                              # at most its `reqq`): 64 was one 1 MiB piece at a time, so every
                                              # turn of either loop left the link idle (libtorrent keeps ~3 s)
BT_METADATA_MAX_BYTES = 16 * 1024 * 1024      # a ut_metadata size we accept (protocol/metainfo's torrent cap)
BT_CONNECT_TIMEOUT_S = 5.0                    # an outgoing BEP 3 connection must be up by then
BT_SCHEME = "bt://"                            # a standard peer's endpoint in a job (bt://HOST:PORT), not a ZeroMQ one
BT_RECONNECT_MIN_S = 1.0                      # a download's first redial to a standard peer after a failed or
                                              # closed connection (libtorrent hangs up on a torrent not yet added)
BT_RECONNECT_MAX_S = 60.0                     # ... doubling up to this, while the download still wants it
BT_REDIRECT_MEMO_S = 2.0                      # a piece send-once refused to a standard client: its other blocks
                                              # are refused this long without asking the rule again
BT_LIVE_OFFERS = SEND_ONCE_SUGGEST            # send-once offers a BEP 3 remote may have waiting unasked before it
                                              # gets new ones (bt/upload.py): pieces held for a client that
                                              # ignores suggests are first copies nobody gets for SEND_ONCE_OFFER_S
BT_CLOSE_GRACE_S = 0.5                        # requests left on a closed BEP 3 connection wait this long for
                                              # the next one (bt/remote.py on_closed) before they fail

# ---------------------------------------------------------------- private swarms (node/curve.py)
CURVE_REFUSED_SOURCES_LOGGED = 1024           # refused sources each logged once; a stranger who comes from many
                                              # addresses fills this set, not the log (or memory) without end

# ---------------------------------------------------------------- HTTP tracker (standard clients)
HTTP_ANNOUNCE_INTERVAL_S = 300                # BEP 3 `interval` (libtorrent never announces more often)
HTTP_MIN_INTERVAL_S = 60                      # `min interval`
HTTP_PEER_EXPIRY_S = 2 * HTTP_ANNOUNCE_INTERVAL_S + 60   # a client that missed two announces is gone
HTTP_DEFAULT_NUMWANT = 50
HTTP_MAX_NUMWANT = 200                        # a larger numwant is clamped to this
HTTP_MAX_QUERY_BYTES = 4096                   # a longer query string gets a failure reason
HTTP_MAX_LINE_BYTES = 16384                   # request line / header cap in the HTTP parser (400 beyond)
HTTP_MAX_SCRAPE = 32                          # info_hashes in one scrape
HTTP_CONNECTION_S = 5.0                       # a connection is closed this long after it opened (slow clients)
HTTP_MAX_CONNECTIONS = 512                    # more at once are closed on arrival
HTTP_REPLY_TIMEOUT_S = 5.0                    # the store must answer an HTTP request by then

TRACKER_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

# ---------------------------------------------------------------- web view (read-only)
DEFAULT_WEB_HOST = "127.0.0.1"                # never all interfaces unless asked
DEFAULT_WEB_PORT = 8080
WEB_POLL_S = 0.5                              # tracker + every peer's status, then a push to each page
WEB_IDLE_POLL_S = 10.0                        # ... but this seldom while no one looks: every look wakes every
                                              # local peer (300 of them: 600 statuses a second for nobody)
WEB_WATCHED_S = 30.0                          # a page, /api/swarm or /metrics asked within this long is someone
                                              # looking (longer than Prometheus' default 15 s scrape interval)
WEB_PROBE_QUERY = "probe"                     # /api/swarm?probe (swarm up's readiness check) answers as it is and
                                              # is not someone looking
WEB_FRESH_WAIT_S = 3.0                        # the first ask after a quiet spell waits this long at most for a
                                              # fresh look (one look is bounded by the timeouts below)
WEB_STATUS_TIMEOUT_S = 0.4                    # a peer that does not answer a poll by then shows "no answer"
WEB_TRACKER_TIMEOUT_S = 1.0                   # the tracker may be busy with a group commit: wait longer
WEB_PIECE_BUCKETS = 1000                      # piece map columns at most (qBittorrent's piecesbar idea)
WEB_HISTORY_POINTS = 240                      # rate-over-time samples kept (2 minutes at WEB_POLL_S)
WEB_EVENTS_KEPT = 200                         # newest swarm events kept and shown
WEB_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")   # Host names a loopback-bound view accepts
