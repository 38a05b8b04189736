"""A request channel to several equivalent trackers: Lazy Pirate with failover.

The trackers share one store, so any of them answers any request the same way
(zguide's Freelance pattern, model one; Binary Star's client side). The channel talks
to one endpoint at a time, preferring the first:

- A request whose deadline passes is sent again on the next endpoint, and the
  channel stays there. Each request gets at least one try per endpoint.
- While away from the first endpoint, it pings the first every ``TRACKER_PROBE_S``;
  once that answers, the channel moves back at the next moment nothing is in flight,
  so no reply is lost to the move.

Requests that are replayed on another tracker must be safe to run twice: heartbeats,
announces (a set union), get_peers and forget are; a replayed register may meet its
own first copy and be refused as a live twin until the record expires.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import zmq

from node import config
from node.channel import Callback, Channel, wait_reply
from protocol import messages as m
from protocol.codec import Envelope
from protocol.errors import TransportError
from protocol.messages import Message

log = logging.getLogger(__name__)


class FailoverChannel(Channel):
    def __init__(self, zctx: zmq.Context, endpoints: list[str], reactor=None,
                 probe_s: float = config.TRACKER_PROBE_S) -> None:
        if not endpoints:
            raise ValueError("FailoverChannel needs at least one endpoint")
        self.endpoints = list(endpoints)
        self.index = 0
        self.failovers = 0              # moves to another endpoint after a missed deadline
        self._probe: Channel | None = None
        self._home_answered = False
        super().__init__(zctx, self.endpoints[0], reactor)
        if reactor is not None and len(self.endpoints) > 1:
            reactor.call_every(probe_s, self._probe_home)

    def request(self, msg: Message, callback: Callback, *, payload: Any = None,
                timeout_s: float, tries: int = 1) -> int:
        return super().request(msg, callback, payload=payload, timeout_s=timeout_s,
                               tries=max(tries, len(self.endpoints)))

    def _move(self, index: int) -> None:
        self.index = index
        self.endpoint = self.endpoints[index]
        super()._reconnect()

    def _reconnect(self) -> None:
        """A deadline passed on this endpoint: go on with the next one."""
        if len(self.endpoints) > 1:
            self.failovers += 1
            nxt = (self.index + 1) % len(self.endpoints)
            log.warning("tracker %s did not answer in time; failing over to %s",
                        self.endpoint, self.endpoints[nxt])
            self._move(nxt)
        else:
            super()._reconnect()

    def expire(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        late = [p for p in self.pending.values() if p.deadline <= now]
        retried = any(p.tries_left > 0 for p in late)
        super().expire(now)             # retries move to the next endpoint (via _reconnect)
        if late and not retried and len(self.endpoints) > 1:
            self._reconnect()           # only last tries failed: still, this endpoint is not answering
        if self._probe is not None:
            self._probe.expire(now)
        if self._home_answered and self.index != 0 and not self.pending:
            log.info("tracker %s answers again; moving back to it", self.endpoints[0])
            self._home_answered = False
            self._move(0)

    def next_deadline(self) -> float | None:
        """When ``expire`` must run: a request's (or the probe's) deadline, or now to move back home."""
        if self._home_answered and self.index != 0 and not self.pending:
            return 0.0                  # due already
        due = [d for d in (super().next_deadline(), self._probe.next_deadline() if self._probe else None)
               if d is not None]
        return min(due, default=None)

    def _probe_home(self) -> None:
        if self.index == 0 or self._probe is not None:
            return

        def on_reply(env: Envelope | None, err) -> None:
            self._home_answered = err is None and isinstance(env.msg, m.Pong)
            probe, self._probe = self._probe, None
            if probe is not None:
                probe.close()

        self._probe = Channel(self.zctx, self.endpoints[0], self.reactor)
        self._probe.request(m.Ping(), on_reply, timeout_s=config.REQUEST_TIMEOUT_S, tries=1)

    def describe(self) -> str:
        return ", ".join(self.endpoints)

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None
        super().close()


def call_any(zctx: zmq.Context, endpoints: list[str], msg: Message, *, payload: Any = None,
             timeout_s: float, tries: int) -> Envelope:
    """Blocking request to the first endpoint that answers (each gets at least one try)."""
    chan = FailoverChannel(zctx, endpoints)
    try:
        return wait_reply(chan, msg, payload=payload, timeout_s=timeout_s, tries=tries)
    except TransportError:
        raise TransportError(f"no reply from {chan.describe()}") from None
