"""A download job's view of the swarm: who is in it and what each holds.

- The tracker's peer list (GET_PEERS): whole the first time, then only what changed after
  the job's cursor (peers gone, peers new, pieces announced), refreshed every
  PEER_REFRESH_S (sooner while the job is young); each listed peer gets a channel to its
  data port, or to its BEP 3 port for a standard client.
- The first list is asked before the torrent is registered with the tracker (FirstPeers).
- Each remote is watched (a long-polled WATCH, from the connection's first flight): what
  it verifies arrives within one WATCH batch (node/peer/watch.py), and a piece only it
  has is asked first.

``PeerListing`` is the part of node/peer/engine.py's DownloadJob that keeps this view
(its base class): it reads and writes the job's ``remotes``, ``cursor``, ``warning`` and
``sources`` and calls the job's ``schedule``, ``_rebuild_order``, ``_first`` and ``_abandon``.
"""
from __future__ import annotations

import logging

from node import config
from node.peer.links import LinkRefused
from node.peer.remote import Host, RemotePeer
from protocol import messages as m
from protocol.codec import Envelope
from protocol.errors import ZorrentError
from protocol.pieces import Bitfield

log = logging.getLogger("zorrent.engine")


def ask_peers(node: Host, meta, since: int, callback) -> None:
    bt = getattr(node, "bt", None)      # with a BEP 3 wire, standard clients are sources too
    node.tracker.request(m.GetPeers(info_hash=meta.info_hash, since=since, standard_clients=bt is not None),
                         callback, timeout_s=config.REQUEST_TIMEOUT_S, tries=1)


class FirstPeers:
    """A job's first GET_PEERS, sent before the node registers the torrent with the tracker
    (node/peer/jobs.py): on the same connection the registration carries the whole
    metainfo (20 bytes a piece), which after an idle spell TCP sends in slow start, two
    round trips for a 1,024-piece torrent; the peer list asked first comes back in one."""

    def __init__(self, node: Host, meta) -> None:
        self.asked = node.clock()
        self.reply: tuple | None = None
        self.callback = None
        ask_peers(node, meta, -1, self._on_reply)

    def _on_reply(self, env, err) -> None:
        if self.callback is None:
            self.reply = (env, err)
        else:
            self.callback(env, err)

    def then(self, callback) -> None:
        if self.reply is not None:
            callback(*self.reply)
        else:
            self.callback = callback


class PeerListing:
    def refresh(self) -> None:
        if self.refreshing or self.finished is not None:
            return
        self.refreshing = True
        self.last_refresh = self.clock()
        ask_peers(self.node, self.meta, self.cursor, self._on_peers)

    def add_sources(self, addresses: list[str]) -> None:
        """Standard peers to download from besides those the tracker lists ("HOST:PORT")."""
        for address in addresses:
            host, _, port = address.rpartition(":")
            if host and port.isdigit() and 0 < int(port) < 65536:
                self.sources.append(m.PeerInfo(peer_id=f"bt:{host}:{port}", host=host.strip("[]"), port=int(port),
                                               bitfield=b"", have=0, kind="bittorrent"))

    def _on_peers(self, env: Envelope | None, err: ZorrentError | None) -> None:
        """The tracker's list: whole the first time (and whenever it cannot say what changed),
        then only the peers that changed after our cursor."""
        self.refreshing = False
        if self.finished is not None:   # a reply after the job ended: a link taken now would never be let go
            return
        log.debug("%s: peer list at +%.3f s", self.meta.name, self.clock() - self.started)
        if err is not None:
            log.warning("%s: peer list unavailable: %s", self.meta.name, err.message)
            if not self.sources:
                return
            reply = None
        else:
            reply = env.msg
            if not isinstance(reply, m.PeerList) or reply.info_hash != self.meta.info_hash:
                return
        whole = reply is not None and not reply.delta
        if reply is not None and reply.delta:
            for peer_id in reply.gone:          # it left (or came back): what it held is void
                remote = self.remotes.get(peer_id)
                if remote is not None:
                    remote.listed = False
                    remote.bitfield = Bitfield(self.meta.num_pieces)
        listed, refused, fresh = set(), [], []
        for info in (reply.peers if reply is not None else []) + self.sources:
            if info.peer_id == self.node.peer_id:
                continue
            standard = info.kind == "bittorrent"
            if standard and getattr(self.node, "bt", None) is None:
                continue
            try:   # a standard client's pieces are learnt from its bitfield and haves (remote.py)
                bits = Bitfield(self.meta.num_pieces, None if standard or not (info.bitfield or whole)
                                else info.bitfield)
                for i in info.pieces:
                    bits.add(i)
            except (ValueError, IndexError):
                continue
            listed.add(info.peer_id)
            endpoint = f"{config.BT_SCHEME}{info.host}:{info.port}" if standard else config.endpoint(info.host, info.port)
            remote = self.remotes.get(info.peer_id)
            if remote is None or remote.endpoint != endpoint:
                try:
                    channel = self._channel(info, endpoint)
                except LinkRefused as exc:
                    refused.append(exc)
                    continue
                if remote is not None:
                    self._drop_remote(remote)
                remote = RemotePeer(info.peer_id, endpoint, channel, bits)
                self.remotes[info.peer_id] = remote
                fresh.append(remote)
            else:
                bits = bits | remote.bitfield   # what it told us itself (WATCH) may be newer
            remote.bitfield = bits
            remote.listed = True
        if whole:
            for remote in self.remotes.values():
                remote.listed = remote.peer_id in listed
        if reply is not None:
            self.cursor = -1 if refused else reply.version   # a peer we could not link to: ask again in full
        self.warning = ""
        if refused:
            self.warning = f"{len(refused)} peers not contacted: {refused[0]}"
            log.warning("%s: %s", self.meta.name, self.warning)
        if reply is None or reply.peers or reply.gone or whole:
            self._rebuild_order()
            self.schedule()
        for remote in fresh:                # watched now, in the connection's first flight, not at the next tick
            if remote.listed and not remote.watching:
                self._watch(remote)

    def _channel(self, info: m.PeerInfo, endpoint: str):
        if info.kind == "bittorrent":
            from node.peer.bt.remote import BtRemoteChannel
            return BtRemoteChannel(self.node.bt, info.host, info.port, self.meta.info_hash, self.meta.num_pieces)
        return self.node.connect(endpoint)

    def _drop_remote(self, remote: RemotePeer) -> None:
        for fetch in list(remote.fetches):
            self._abandon(fetch, count=False)
        self._release(remote)

    def _release(self, remote: RemotePeer) -> None:
        """This job is done with ``remote``'s channel: a data-port link is shared by the jobs
        (node/peer/links.py); a standard peer's channel is this job's own, and closing it stops
        its redial and tells the client we are no longer interested (node/peer/bt/remote.py)."""
        if remote.endpoint.startswith(config.BT_SCHEME):
            remote.channel.close()
        else:
            self.node.disconnect(remote.endpoint)

    def _watch(self, remote: RemotePeer) -> None:
        if remote.bitfield.complete or remote.banned or self.finished is not None:
            return
        remote.watching = True
        remote.channel.request(m.Watch(info_hash=self.meta.info_hash, since=remote.seen),
                               lambda env, err, r=remote: self._on_haves(r, env, err),
                               timeout_s=config.WATCH_S + config.REQUEST_TIMEOUT_S, tries=1)

    def _on_haves(self, remote: RemotePeer, env: Envelope | None, err: ZorrentError | None) -> None:
        remote.watching = False
        if self.finished is not None or self.remotes.get(remote.peer_id) is not remote:
            return
        msg = env.msg if err is None else None
        if not isinstance(msg, m.Haves) or msg.info_hash != self.meta.info_hash:
            remote.watch_after = self.clock() + config.PEER_REFRESH_S   # not yet (or never): the tracker tells
            return
        remote.seen = msg.seq
        news = False
        for i in msg.pieces:
            if 0 <= i < self.meta.num_pieces and i not in remote.bitfield:
                remote.bitfield.add(i)
                if i in self.pending and i not in remote.refused:
                    news = True
                    if not any(i in r.bitfield for r in self.remotes.values() if r is not remote):
                        self._first(i)               # the rarest: only this peer has it
        self._watch(remote)
        if news:
            self.schedule()
