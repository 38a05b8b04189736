"""The BEP 3 port of a peer process: a listening socket on the peer's reactor, every
BEP 3 connection (accepted, or opened by a download), the choker, the have broadcast.

Its hook into the peer is narrow (``BtHost``): the holdings it serves, the reactor it
runs on, the read threads, the integrity watch, and the peer's one Budget (node/budget.py),
which the ZeroMQ data port (node/peer/serving.py) shares, so what strangers make this
process hold is bounded over both wires together. What it may serve is decided by
node/peer/block_rules.py, the same rules as the ZeroMQ data port.
"""
from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import time
from typing import Any, Protocol


from node import config
from node.budget import Budget
from node.peer.bt import framing as f
from node.peer.bt.choker import Choker
from node.peer.bt.connection import OPEN, BtConnection
from node.peer.bt.metadata import Metadata
from node.peer.integrity import SUSPENDED
from node.reactor import Reactor
from protocol.errors import ErrorCode, ZorrentError

log = logging.getLogger("zorrent.bt")
TICK_S = 1.0
RETRY_S = 0.01                  # a connection waiting for budget bytes is retried this often (besides on_free)
REFUSAL_LOG_S = 60.0            # a refused address is named in the log at most this often


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BtHost(Protocol):
    """What the BEP 3 port needs of the peer node."""

    peer_id: str
    reactor: Reactor
    holdings: dict              # info-hash hex -> Holding
    disk: Any                   # node.peer.disk.DiskWorker: read threads
    budget: Budget              # shared with the ZeroMQ data port (node/peer/serving.py)

    def reap_sent(self) -> None: ...   # the data port releases the blocks libzmq has written

    def read_failed(self, piece_file: Any, err: BaseException) -> None: ...   # integrity.py: changed?


class BtService:
    def __init__(self, node: BtHost, host: str, port: int) -> None:
        self.node = node
        self.reactor = node.reactor
        self.disk, self.read_failed = node.disk, node.read_failed
        self.budget: Budget = node.budget
        self.budget.on_free = self._on_free         # the data port polls (serving.REAP_S); we are woken
        self.starving: set[BtConnection] = set()    # connections whose next request waits for bytes
        self.wake = None                            # the timer that retries them
        self.peer_id_bytes = f.bt_peer_id(node.peer_id)
        self.conns: dict[int, BtConnection] = {}
        self.channels: dict[tuple[bytes, str, int], Any] = {}   # (info-hash, host, port) -> remote.BtRemoteChannel
        self.choker = Choker()
        self.metadata = Metadata(self)
        self.refused: dict[str, float] = {}
        self.last_rechoke = time.monotonic()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind((host, port))
        except OSError as exc:
            self.listener.close()
            code = ErrorCode.BAD_INPUT if exc.errno == errno.EADDRINUSE else ErrorCode.TRANSPORT
            raise ZorrentError(f"BEP 3 port {host}:{port}: {exc.strerror or exc}", code) from None
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.reactor.add_fd(self.listener.fileno(), self._on_accept)
        # with no connection nothing is due: an idle peer sleeps (its loop waits for the earliest deadline)
        self.next_tick_at = self.next_haves_at = 0.0
        self.reactor.add_deadline(lambda: self.next_tick_at if self.conns else None, self._on_tick)
        self.reactor.add_deadline(lambda: self.next_haves_at if self.conns else None, self._on_haves)

    # ------------------------------------------------------------------ holdings (the narrow hook)
    def holding(self, info_hash: bytes):
        return self.node.holdings.get(info_hash.hex())

    def info_hashes(self) -> list[bytes]:
        """Every torrent held here (an MSE handshake names one only by a hash of it)."""
        return [bytes.fromhex(h.meta.info_hash) for h in self.node.holdings.values()]

    @staticmethod
    def serving(holding) -> bool:
        return holding.state not in SUSPENDED

    def metadata_size(self, info_hash: bytes) -> int:
        info = self.metadata.info_of(info_hash)
        return len(info) if info else 0

    # ------------------------------------------------------------------ connections
    def open_connections(self) -> list[BtConnection]:
        return [c for c in self.conns.values() if c.state == OPEN]

    def _refuse(self, addr: tuple, why: str) -> None:
        now = time.monotonic()
        key = f"{addr[0]}:{why}"
        if now - self.refused.get(key, float("-inf")) >= REFUSAL_LOG_S:
            if len(self.refused) > 1024:
                self.refused.clear()
            self.refused[key] = now
            log.warning("bt %s: %s", addr[0], why)

    def _on_accept(self, events: int) -> None:
        for _ in range(64):
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("bt accept failed: %s", exc.strerror or exc)
                return
            if len(self.conns) >= config.BT_MAX_CONNECTIONS:
                sock.close()
                self._refuse(addr, f"refused: {config.BT_MAX_CONNECTIONS} connections already")
                continue
            self._add(BtConnection(self, sock, addr, outgoing=False))

    def connect(self, host: str, port: int, info_hash: bytes, downloader) -> BtConnection | None:
        if len(self.conns) >= config.BT_MAX_CONNECTIONS:
            self._refuse((host, port), f"not connecting: {config.BT_MAX_CONNECTIONS} connections already")
            return None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect((host, port))
        except BlockingIOError:
            pass
        except OSError as exc:
            sock.close()
            downloader.on_closed(f"cannot connect: {exc.strerror or exc}")
            return None
        conn = BtConnection(self, sock, (host, port), outgoing=True, info_hash=info_hash, downloader=downloader)
        self._add(conn)
        conn.start_outgoing()
        return conn

    def _add(self, conn: BtConnection) -> None:
        self.conns[conn.fd] = conn
        self.reactor.add_fd(conn.fd, conn.on_events, conn.polling)

    def forget(self, conn: BtConnection) -> None:
        self.starving.discard(conn)
        self.budget.forget(conn)
        if self.conns.get(conn.fd) is conn:
            del self.conns[conn.fd]
            self.reactor.remove_fd(conn.fd)
        if not conn.choked:
            conn.choked = True
            self.choker.refill(self.open_connections())

    def joined(self, conn: BtConnection) -> None:
        log.info("bt %s (%s): %s handshake for %s", conn.name, conn.client,
                 "outgoing" if conn.outgoing else "incoming", conn.info_hash.hex()[:12])
        if not conn.extended:                       # no BEP 10 listen port will come: match it now
            self.adopt(conn)                        # (an extended one is matched on its ext handshake)

    # ------------------------------------------------------------------ one connection per remote
    def register(self, channel) -> None:
        """A download's channel to a standard peer (remote.py), found by the address it listens on."""
        self.channels[(bytes.fromhex(channel.info_hash), channel.host, channel.port)] = channel

    def unregister(self, channel) -> None:
        key = (bytes.fromhex(channel.info_hash), channel.host, channel.port)
        if self.channels.get(key) is channel:
            del self.channels[key]

    def _wanted_at(self, info_hash: bytes, host: str) -> list:
        return [c for (ih, h, _), c in self.channels.items() if ih == info_hash and h == host and not c.closed]

    def is_from(self, conn: BtConnection, channel) -> bool:
        """Is ``conn``, opened by a remote, the standard peer ``channel`` downloads from?
        - by its BEP 10 listen port ``p``, if it said one;
        - else by its peer id, if the channel has met that peer before (an earlier connection);
          another id goes on to the address rule (libtorrent 1.2+ picks one per connection);
        - else by address alone: only when the channel is the one wanting that address, and the
          address is not a loopback one (every client on this host shares that), and only once
          an extended connection's ext handshake has come without ``p`` (not before: it may say one).
        """
        if (conn.outgoing or conn.downloader is not None or conn.state != OPEN
                or conn.info_hash != bytes.fromhex(channel.info_hash) or conn.addr[0] != channel.host):
            return False
        if conn.listen_port:
            return conn.listen_port == channel.port
        if channel.remote_peer_id and conn.remote_peer_id == channel.remote_peer_id:
            return True                 # else the address rule: clients pick a new id per connection or restart
        if conn.extended and not conn.ext_seen:
            return False
        return not _loopback(channel.host) and self._wanted_at(conn.info_hash, channel.host) == [channel]

    def adopt(self, conn: BtConnection) -> None:
        """An incoming connection from a peer a download of ours wants: the download uses it
        (``is_from`` says which one)."""
        if conn.outgoing or conn.downloader is not None or conn.state != OPEN:
            return
        for channel in self._wanted_at(conn.info_hash, conn.addr[0]):
            if self.is_from(conn, channel):
                if channel.adopt(conn):
                    log.info("bt %s (%s): downloading over its connection to us", conn.name, conn.client)
                return

    def incoming(self, channel) -> BtConnection | None:
        """An open connection that ``channel``'s peer made to us, not yet a download's."""
        for conn in self.conns.values():
            if self.is_from(conn, channel):
                return conn
        return None

    def once(self, conn: BtConnection, key: str, text: str) -> None:
        """One log line per connection and kind of misbehaviour."""
        seen = getattr(conn, "logged", None)
        if seen is None:
            seen = conn.logged = set()
        if key not in seen:
            seen.add(key)
            log.warning("bt %s (%s): %s", conn.name, conn.client, text)

    # ------------------------------------------------------------------ the shared budget
    def starved(self, conn: BtConnection) -> None:
        """``conn``'s next request cannot claim its bytes yet: retry when some are freed."""
        self.starving.add(conn)
        self._arm(RETRY_S)

    def _on_free(self) -> None:
        if self.starving:
            self._arm(0.0)                          # not from inside a send: on the next turn

    def _arm(self, delay_s: float) -> None:
        if self.wake is not None:
            if self.wake.when <= time.monotonic() + delay_s:
                return
            self.wake.cancel()
        self.wake = self.reactor.call_later(delay_s, self._retry)

    def _retry(self) -> None:
        self.wake = None
        self.node.reap_sent()                       # blocks the data port sent meanwhile free their bytes
        waiting, self.starving = self.starving, set()
        for conn in waiting:
            if conn.state == OPEN:
                conn.pump()
        if self.starving:
            self._arm(RETRY_S)

    # ------------------------------------------------------------------ timers
    def _on_tick(self, now: float) -> None:
        self.next_tick_at = now + TICK_S
        self._tick()

    def _on_haves(self, now: float) -> None:
        self.next_haves_at = now + config.ANNOUNCE_BATCH_S
        self._send_haves()

    def _send_haves(self) -> None:
        for conn in self.open_connections():
            h = conn.holding
            if h is None or not hasattr(conn, "have_sent"):
                continue
            log_ = h.have_log
            if len(log_) > conn.have_sent:
                for piece in log_[conn.have_sent:]:
                    conn.send_have(piece)
                conn.have_sent = len(log_)

    def _tick(self) -> None:
        now = time.monotonic()
        for conn in list(self.conns.values()):
            if conn.holding is not None and conn.holding.meta.info_hash not in self.node.holdings:
                conn.close("torrent removed")
                continue
            conn.tick(now)
        if now - self.last_rechoke >= config.BT_RECHOKE_S:
            self.last_rechoke = now
            self.choker.rechoke(self.open_connections(), now)

    def close(self) -> None:
        for conn in list(self.conns.values()):
            conn.close()
        self.reactor.remove_fd(self.listener.fileno())
        self.listener.close()

    def stats(self) -> dict:
        conns = self.open_connections()
        return {"connections": len(conns), "unchoked": sum(1 for c in conns if not c.choked),
                "budget_bytes": self.budget.total_bytes, "budget_refusals": self.budget.refusals}
