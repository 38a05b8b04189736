"""One look at the swarm through its existing interfaces, as an ``Observation``.

- the tracker: GET_SWARM (live peers, torrents, its counters), then GET_PEERS for each
  torrent (who holds which piece): whole the first time, then what changed since;
- each peer whose control socket is in this machine's run directory: STATUS over that
  socket (the only way in, by design; peers elsewhere show what the tracker knows);
- the events file (``output/events.jsonl``): lines others appended since the last look.

Every request of a look is in flight at once, each on a Lazy Pirate channel with one
try and a short deadline, so a dead peer costs one timeout, not one per peer. It is
blocking code: the server runs it on one worker thread that owns every socket.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import zmq

from node import config
from node.channel import Channel
from node.failover import FailoverChannel
from node.web.swarm import Observation
from protocol import messages as m
from protocol.errors import ZorrentError
from protocol.pieces import Bitfield

CONTROL_SUFFIX = ".sock"
MAX_EVENT_LINES = 100        # events read from the file per look
MAX_SWARM_PAGES = 200        # GET_SWARM pages per look (x SWARM_PAGE_MAX each): a runaway tracker cannot loop us


class Poller:
    def __init__(self, tracker_endpoint: str, events_path: Path | None = None,
                 timeout_s: float = config.WEB_STATUS_TIMEOUT_S,
                 tracker_timeout_s: float = config.WEB_TRACKER_TIMEOUT_S) -> None:
        self.zctx = zmq.Context()
        self.tracker_endpoint = tracker_endpoint
        self.tracker = FailoverChannel(self.zctx, config.tracker_endpoints(tracker_endpoint))   # several: fail over
        self.peers: dict[str, Channel] = {}
        self.timeout_s, self.tracker_timeout_s = timeout_s, tracker_timeout_s
        self.events_path = events_path
        self._events_offset = 0
        self._torrents: list[str] = []
        self._lists: dict[str, m.PeerList] = {}    # info_hash -> the whole list as of its version

    def close(self) -> None:
        for chan in [self.tracker, *self.peers.values()]:
            chan.close()
        self.zctx.term()

    # ------------------------------------------------------------------ one look
    def observe(self) -> Observation:
        at = time.time()
        results: dict[tuple, object] = {}
        ids = set(local_peer_ids())
        for peer_id in ids:
            self._ask(self._peer(peer_id), ("status", peer_id), m.Status(info_hash=""), results)
        self._ask(self.tracker, ("swarm",), m.GetSwarm(), results, self.tracker_timeout_s)
        for ih in self._torrents:          # last look's torrents; new ones are asked next time
            last = self._lists.get(ih)       # then only what changed since that list's version
            self._ask(self.tracker, ("peers", ih), m.GetPeers(info_hash=ih, since=last.version if last else -1),
                      results, self.tracker_timeout_s)
        self._wait(results)
        swarm = results.get(("swarm",))
        if isinstance(swarm, m.Swarm):
            swarm = self._rest_of(swarm)
        obs = Observation(at=at, tracker=swarm if isinstance(swarm, m.Swarm) else None,
                          tracker_error="" if isinstance(swarm, m.Swarm) else str(swarm))
        if obs.tracker is not None:
            self._torrents = [t.info_hash for t in obs.tracker.torrents]
        for key, value in results.items():
            if key[0] == "status":
                obs.statuses[key[1]] = value if isinstance(value, m.StatusReply) else None
            elif key[0] == "peers" and isinstance(value, m.PeerList) and value.info_hash == key[1]:
                last = self._lists.get(key[1])
                whole = merged(last, value) if value.delta and last is not None else value
                if not whole.delta:
                    self._lists[key[1]] = obs.holders[key[1]] = whole
        for ih in [ih for ih in self._lists if ih not in self._torrents]:
            del self._lists[ih]
        obs.external = self._read_events()
        self._forget_gone(ids)
        return obs

    def _rest_of(self, swarm: m.Swarm) -> m.Swarm | str:
        """The tracker answers GET_SWARM a page at a time: ask for the rest, page by page."""
        done = chr(0x10FFFF)               # sorts after every id: that list is complete
        for _ in range(MAX_SWARM_PAGES):
            if not (swarm.peers_more or swarm.torrents_more):
                return swarm
            ask = m.GetSwarm(
                peers_after=swarm.peers[-1].peer_id if swarm.peers_more and swarm.peers else done,
                torrents_after=swarm.torrents[-1].info_hash if swarm.torrents_more and swarm.torrents else done)
            results: dict[tuple, object] = {}
            self._ask(self.tracker, ("swarm",), ask, results, self.tracker_timeout_s)
            self._wait(results)
            page = results[("swarm",)]
            if not isinstance(page, m.Swarm):
                return str(page)
            swarm = m.Swarm(peers=swarm.peers + page.peers, torrents=swarm.torrents + page.torrents,
                            stats=page.stats, peers_more=page.peers_more, torrents_more=page.torrents_more)
        return swarm

    def _peer(self, peer_id: str) -> Channel:
        if peer_id not in self.peers:
            self.peers[peer_id] = Channel(self.zctx, config.control_endpoint(peer_id))
        return self.peers[peer_id]

    def _forget_gone(self, ids: set[str]) -> None:
        for peer_id in [p for p in self.peers if p not in ids]:
            self.peers.pop(peer_id).close()

    def _ask(self, chan: Channel, key: tuple, msg: m.Message, results: dict, timeout_s: float = 0.0) -> None:
        results[key] = None

        def done(env, err) -> None:
            results[key] = err.message if err is not None else env.msg

        chan.request(msg, done, timeout_s=timeout_s or self.timeout_s, tries=1)

    def _wait(self, results: dict) -> None:
        chans = [self.tracker, *self.peers.values()]
        while any(chan.pending for chan in chans):
            poller = zmq.Poller()
            for chan in chans:
                if chan.pending:
                    poller.register(chan.socket, zmq.POLLIN)
            deadline = min(chan.next_deadline() for chan in chans if chan.pending)
            ready = dict(poller.poll(max(0, int((deadline - time.monotonic()) * 1000))))
            for chan in chans:
                if chan.socket in ready:
                    chan.on_readable()
                chan.expire()
        for key, value in results.items():
            if value is None:
                results[key] = "no answer"

    def _read_events(self) -> list[dict]:
        """New complete lines of the events file (a truncated file is read from the start)."""
        path = self.events_path
        if path is None or not path.exists():
            return []
        try:
            with open(path, "rb") as f:
                size = f.seek(0, 2)
                if size < self._events_offset:
                    self._events_offset = 0
                f.seek(self._events_offset)
                data = f.read(size - self._events_offset)
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self._events_offset += end
        out = []
        for line in data[:end].splitlines()[-MAX_EVENT_LINES:]:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                out.append(event)
        return out


def merged(whole: m.PeerList, delta: m.PeerList) -> m.PeerList:
    """A whole peer list brought up to a delta's version: peers in ``gone`` dropped, the
    others' pieces added (a whole bitfield in the delta replaces what was known)."""
    peers = {p.peer_id: p for p in whole.peers if p.peer_id not in set(delta.gone)}
    for info in delta.peers:
        old = peers.get(info.peer_id)
        try:
            if info.bitfield:
                bits = Bitfield(whole.num_pieces, info.bitfield)
            else:
                bits = Bitfield(whole.num_pieces, old.bitfield if old is not None else None)
            for i in info.pieces:
                bits.add(i)
        except (ValueError, IndexError):
            continue
        peers[info.peer_id] = m.PeerInfo(peer_id=info.peer_id, host=info.host, port=info.port,
                                         bitfield=bits.to_bytes(), have=len(bits), kind=info.kind)
    return m.PeerList(info_hash=whole.info_hash, name=whole.name, num_pieces=whole.num_pieces, length=whole.length,
                      peers=[peers[pid] for pid in sorted(peers)], version=delta.version)


def local_peer_ids() -> list[str]:
    """Peers with a control socket in this machine's run directory."""
    ids = []
    try:
        entries = list(config.run_dir().iterdir())
    except OSError:
        return []
    for path in entries:
        if path.suffix == CONTROL_SUFFIX and path.stem != "supervisor":
            try:
                ids.append(config.check_peer_id(path.stem))
            except ZorrentError:
                continue
    return sorted(ids)


def append_event(kind: str, node: str, text: str, path: Path | None = None) -> None:
    """For others (the soak): one event line the web view shows."""
    path = path or config.events_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps({"t": time.time(), "kind": kind, "node": node, "text": text}) + "\n")
