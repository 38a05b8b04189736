"""Peer request handlers. ``data`` serves the tcp port (pieces only); ``control`` serves
the local-only ipc socket (upload, download, status, shutdown)."""
from __future__ import annotations

import os
from pathlib import Path

from node.dispatch import Dispatcher
from node.peer.api import PeerApi
from node.peer.block_rules import check_block, send_once
from node.peer.storage import PendingRead
from node.peer.watch import Park, answer
from protocol import messages as m
from protocol import metainfo
from protocol.errors import ErrorCode, ZorrentError

MAX_EXTRA_PEERS = 50     # x.pe addresses one download takes (a magnet may list any number)
data = Dispatcher("peer data port")
control = Dispatcher("peer control")


@data.handles(m.MsgType.PING)
@control.handles(m.MsgType.PING)
def ping(node: PeerApi, msg: m.Ping) -> m.Pong:
    return m.Pong(node="peer", peer_id=node.peer_id, pid=os.getpid(), bt_port=node.bt_port)


@data.handles(m.MsgType.GET_BLOCK)
def get_block(node: PeerApi, msg: m.GetBlock) -> tuple[m.Block, PendingRead] | m.Elsewhere:
    holding = node.holdings.get(msg.info_hash)
    if holding is None:
        raise ZorrentError(f"torrent {msg.info_hash[:40]} is not held here", ErrorCode.UNKNOWN_TORRENT)
    check_block(holding, msg.piece_index, msg.block_offset, msg.length, m.MAX_BLOCK_BYTES)
    meta = holding.meta
    # the connection, not the claimed ``requester``: a routing id libzmq gives one connection only
    suggest = send_once(holding, msg.piece_index, node.source.identity, host=node)
    if suggest is not None:
        return m.Elsewhere(info_hash=meta.info_hash, piece_index=msg.piece_index, suggest=suggest)
    block = m.Block(info_hash=meta.info_hash, piece_index=msg.piece_index, block_offset=msg.block_offset)
    # read only once the budget admits it (node/peer/serving.py); the file is checked before and after
    return block, holding.file.read_later(msg.piece_index, msg.block_offset, msg.length)


@data.handles(m.MsgType.GET_METAINFO)
def get_metainfo(node: PeerApi, msg: m.GetMetainfo) -> m.MetainfoReply:
    """A magnet link's metainfo, for a torrent held here (the asker checks its hash)."""
    holding = node.holdings.get(msg.info_hash)
    if holding is None:
        raise ZorrentError(f"torrent {msg.info_hash[:40]} is not held here", ErrorCode.UNKNOWN_TORRENT)
    return m.MetainfoReply(info_hash=holding.meta.info_hash, metainfo=holding.meta.raw)


@data.handles(m.MsgType.WATCH)
def watch(node: PeerApi, msg: m.Watch) -> m.Haves | tuple[m.Haves, Park]:
    holding = node.holdings.get(msg.info_hash)
    if holding is None:
        raise ZorrentError(f"torrent {msg.info_hash[:40]} is not held here", ErrorCode.UNKNOWN_TORRENT)
    reply = answer(msg.info_hash, holding.have_log, msg.since)
    if reply is not None:
        return reply
    return m.Haves(info_hash=msg.info_hash, seq=msg.since, pieces=[]), Park(msg.info_hash, msg.since)


def _absolute(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_absolute() or "\x00" in path:
        raise ZorrentError(f"{what} must be an absolute path, not {path[:200]!r}", ErrorCode.BAD_INPUT)
    return p


@control.handles(m.MsgType.UPLOAD)
def upload(node: PeerApi, msg: m.Upload) -> m.Uploaded:
    meta = metainfo.parse(msg.metainfo)
    node.add_seed(meta, _absolute(msg.path, "upload path"))
    return m.Uploaded(info_hash=meta.info_hash, num_pieces=meta.num_pieces)


def _status(node: PeerApi, info_hash: str) -> m.StatusReply:
    if info_hash and info_hash not in node.holdings:
        raise ZorrentError(f"torrent {info_hash[:40]} is not held by {node.peer_id}",
                           ErrorCode.UNKNOWN_TORRENT)
    holdings = [node.holdings.get(info_hash)] if info_hash else list(node.holdings.values())
    return m.StatusReply(peer_id=node.peer_id, registered=node.registered,
                         jobs=[node.job_status(h, alone=bool(info_hash)) for h in holdings],
                         held_bytes=node.budget.total_bytes, held_peak_bytes=node.budget.peak_bytes)


@control.handles(m.MsgType.DOWNLOAD)
def download(node: PeerApi, msg: m.Download) -> m.StatusReply:
    meta = metainfo.parse(msg.metainfo)
    holding = node.add_download(meta, _absolute(msg.output, "download output"))
    if msg.peers and holding.job is not None:
        holding.job.add_sources(msg.peers[:MAX_EXTRA_PEERS])
    return _status(node, meta.info_hash)


@control.handles(m.MsgType.STATUS)
def status(node: PeerApi, msg: m.Status) -> m.StatusReply:
    return _status(node, msg.info_hash)


@control.handles(m.MsgType.REMOVE)
def remove(node: PeerApi, msg: m.Remove) -> m.Ok:
    node.remove(msg.info_hash, msg.delete_data)
    return m.Ok()


@control.handles(m.MsgType.SHUTDOWN)
def shutdown(node: PeerApi, msg: m.Shutdown) -> m.Ok:
    node.stop_soon()   # after this reply has gone out
    return m.Ok()
