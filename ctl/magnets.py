"""Turning a magnet link into checked metainfo: ask the tracker's ``torrents`` collection,
then the peers that hold the torrent, and trust only metainfo whose info dict hashes to
the magnet's btih."""
from __future__ import annotations

from dataclasses import dataclass, field

from ctl import client, render
from node import config
from protocol import magnet as magnets
from protocol import messages as m
from protocol import metainfo
from protocol.errors import ErrorCode, MetainfoError, RemoteError, TransportError, ZorrentError


@dataclass
class Fetch:
    """One magnet's metainfo fetch: the sources asked and what each did."""

    magnet: magnets.Magnet
    tried: list[str] = field(default_factory=list)
    answered: bool = False
    liars: list[str] = field(default_factory=list)    # sent an info dict that is not the btih's

    def ask(self, endpoint: str, who: str) -> metainfo.Metainfo | None:
        """The metainfo ``who`` sends, if its info dict hashes to the btih; None otherwise.

        A wrong info dict is treated like a bad piece: the sender is named, never asked
        again, and the next source is tried."""
        self.tried.append(who)
        try:
            reply = client.request(endpoint, m.GetMetainfo(info_hash=self.magnet.info_hash), who,
                                   timeout_s=config.REQUEST_TIMEOUT_S, tries=1)
        except TransportError:
            return None
        except ZorrentError:              # it answered: it does not hold the torrent
            self.answered = True
            return None
        self.answered = True
        raw = getattr(reply, "metainfo", b"")
        if metainfo.info_hash_of(raw) != self.magnet.info_hash:
            self.liars.append(who)
            render.err.print(f"warning: {who} sent metainfo whose info dict does not hash to btih "
                             f"{self.magnet.info_hash}; ignored, as a bad piece is", markup=False, soft_wrap=True)
            return None
        try:
            return metainfo.parse(raw)
        except MetainfoError as exc:       # the right hash, but a torrent we refuse: say why
            raise MetainfoError(f"the metainfo of {self.magnet.info_hash}: {exc.message}") from None

    def ask_bt(self, host: str, port: int, who: str) -> metainfo.Metainfo | None:
        """The info dict from a standard peer over BEP 9 ut_metadata, trusted only if it
        hashes to the btih (a liar is named and skipped, as above)."""
        from node.peer.bt.framing import WireError
        from node.peer.bt.metadata import fetch_info, torrent_from_info

        self.tried.append(who)
        try:
            info = fetch_info(host, port, bytes.fromhex(self.magnet.info_hash), config.REQUEST_TIMEOUT_S)
        except OSError:
            return None
        except WireError as exc:
            self.answered = True
            if "hash" in str(exc):
                self.liars.append(who)
                render.err.print(f"warning: {who} sent metadata that does not hash to btih "
                                 f"{self.magnet.info_hash}; ignored, as a bad piece is", markup=False, soft_wrap=True)
            return None
        self.answered = True
        try:
            return metainfo.parse(torrent_from_info(info, [t for t in self.magnet.trackers]))
        except MetainfoError as exc:
            raise MetainfoError(f"the metainfo of {self.magnet.info_hash}: {exc.message}") from None


def trackers(mag: magnets.Magnet, tracker: str | list[str] | None) -> list[str]:
    """The tracker endpoints to ask: --tracker, else the magnet's zorrent (tcp://) trackers,
    else the default."""
    if tracker:
        return config.tracker_endpoints(tracker)
    ours = [t for t in mag.trackers if t.startswith("tcp://")]
    return ours or config.tracker_endpoints()


def fetch(uri: str, tracker: str | list[str] | None = None) -> metainfo.Metainfo:
    """Checked metainfo for a magnet link, or one line saying who was asked."""
    mag = magnets.parse(uri)
    job = Fetch(mag)
    holders: list[tuple[str, str]] = []
    standard: list[tuple[str, int, str]] = []        # BEP 3 peers: asked over ut_metadata
    for endpoint in trackers(mag, tracker):
        answered = job.answered
        job.answered = False
        meta = job.ask(endpoint, f"the tracker at {endpoint}")
        if meta is not None:
            return meta
        if not job.answered:              # not there: do not wait for it twice
            job.answered = answered
            continue
        try:
            peers = client.tracker(endpoint, m.GetPeers(info_hash=mag.info_hash, standard_clients=True),
                                   timeout_s=config.REQUEST_TIMEOUT_S, tries=1).peers
            holders += [(config.endpoint(p.host, p.port), f"peer {p.peer_id}") for p in peers
                        if p.kind != "bittorrent"]
            standard += [(p.host, p.port, f"standard client {p.host}:{p.port}") for p in peers
                         if p.kind == "bittorrent"]
        except ZorrentError:
            pass
    holders += [(config.endpoint(host, port), f"peer {host}:{port}") for host, port in mag.peers]
    for endpoint, who in holders:
        meta = job.ask(endpoint, who)
        if meta is not None:
            return meta
    # x.pe may name a standard client (BEP 9's meaning) as well as a zorrent data port
    standard += [(host, port, f"peer {host}:{port} (BEP 9)") for host, port in mag.peers]
    for host, port, who in standard:
        meta = job.ask_bt(host, port, who)
        if meta is not None:
            return meta
    bad = f"; wrong metainfo from {', '.join(job.liars)}" if job.liars else ""
    text = f"no source had the metainfo of btih {mag.info_hash} (asked {', '.join(job.tried)}){bad}"
    if not job.answered:
        raise TransportError(text + "; none answered (is the tracker running?)")
    raise RemoteError(ErrorCode.UNKNOWN_TORRENT, text)
