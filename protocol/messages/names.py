"""Every message type's wire name, defined once, and the protocol's size limits. Grouped by
the role module that defines each type's dataclass (protocol/messages/ROLE.py)."""
from enum import Enum

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
    # tracker: the swarm view (web)
    GET_SWARM = "get_swarm"
    SWARM = "swarm"
    # data: a peer's data port
    GET_BLOCK = "get_block"
    BLOCK = "block"
    ELSEWHERE = "elsewhere"
    WATCH = "watch"
    HAVES = "haves"
    # control: a peer's control socket
    UPLOAD = "upload"
    UPLOADED = "uploaded"
    DOWNLOAD = "download"
    STATUS = "status"
    REMOVE = "remove"
    STATUS_REPLY = "status_reply"
    SHUTDOWN = "shutdown"
