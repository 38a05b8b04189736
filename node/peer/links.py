"""The peer's links to remote peers: one DEALER per remote data port per process, shared
by every job that downloads from it, so sockets grow with remote peers, not jobs x peers.

Replies are matched to requests by envelope id (ids are unique per process, see
node/channel.py), so jobs of different torrents share one channel without seeing each
other's replies. A channel is closed when its last job lets go.

libzmq caps the sockets of a context (``zmq.MAX_SOCKETS``, 1,023 by default) and the
kernel caps open files; ``sized_context`` raises both to what config.max_sockets() asks.
A link refused anyway (either limit) is reported by ``acquire`` as a LinkRefused, which
the job shows in ``status`` and retries at its next refresh.
"""
from __future__ import annotations

import logging
import resource

import zmq

from node import config
from node.channel import Channel
from node.reactor import Reactor

log = logging.getLogger("zorrent.links")


class LinkRefused(Exception):
    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"no socket for {endpoint}: {reason}")
        self.endpoint, self.reason = endpoint, reason


def sized_context(max_sockets: int | None = None) -> zmq.Context:
    """A ZeroMQ context whose socket limit, and this process's open-file limit, fit
    ``max_sockets`` (each socket holds a mailbox descriptor and its connections' ones)."""
    max_sockets = max_sockets or config.max_sockets()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * max_sockets + config.SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit to %d: %s", new, exc)
    zctx = zmq.Context()
    zctx.set(zmq.MAX_SOCKETS, max_sockets)
    return zctx


class Links:
    def __init__(self, zctx: zmq.Context, reactor: Reactor) -> None:
        self.zctx, self.reactor = zctx, reactor
        self._channels: dict[str, Channel] = {}
        self._users: dict[str, int] = {}
        self.refused = 0                     # links asked for and refused (a socket or file limit)

    def __len__(self) -> int:
        return len(self._channels)

    def acquire(self, endpoint: str) -> Channel:
        chan = self._channels.get(endpoint)
        if chan is None:
            try:
                chan = Channel(self.zctx, endpoint, self.reactor)
            except zmq.ZMQError as exc:
                self.refused += 1
                raise LinkRefused(endpoint, f"{exc.strerror} ({len(self._channels)} links open, "
                                            f"limit {self.zctx.get(zmq.MAX_SOCKETS)} sockets)") from None
            self._channels[endpoint] = chan
            self._users[endpoint] = 0
        self._users[endpoint] += 1
        return chan

    def release(self, endpoint: str) -> None:
        users = self._users.get(endpoint, 0) - 1
        if users > 0:
            self._users[endpoint] = users
            return
        self._users.pop(endpoint, None)
        chan = self._channels.pop(endpoint, None)
        if chan is not None:
            chan.close()

    def close(self) -> None:
        for chan in self._channels.values():
            chan.close()
        self._channels.clear()
        self._users.clear()
