"""node/web/server.py: the web view looks at the swarm every WEB_POLL_S only while someone is
looking (a page connected, or /api/swarm or /metrics asked lately); else every
WEB_IDLE_POLL_S, so an idle swarm's peers are not woken for nobody. The first ask after a
quiet spell gets a fresh look, not a stale one."""
import asyncio
import json
import time

from aiohttp.test_utils import TestClient, TestServer

from node import config
from node.web import server
from node.web.swarm import Observation


class CountingPoller:
    """Stands in for the poller's sockets (the server's scheduling is what is tested)."""

    def __init__(self) -> None:
        self.looks: list[float] = []

    def observe(self) -> Observation:
        self.looks.append(time.monotonic())
        return Observation(at=time.time(), tracker=None, tracker_error="no tracker here")

    def close(self) -> None:
        pass


def test_looks_seldom_while_unwatched_and_at_once_when_asked(monkeypatch):
    monkeypatch.setattr(config, "WEB_POLL_S", 0.05)
    monkeypatch.setattr(config, "WEB_IDLE_POLL_S", 60.0)
    monkeypatch.setattr(config, "WEB_WATCHED_S", 0.5)
    poller = CountingPoller()

    async def scenario() -> None:
        app = server.make_app("tcp://127.0.0.1:1", {"127.0.0.1"}, poller=poller)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            headers = {"Host": "127.0.0.1"}
            deadline = time.monotonic() + 5
            while not poller.looks:                       # the first look, at start
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.6)
            assert len(poller.looks) == 1                 # nobody looking: no look for WEB_IDLE_POLL_S
            probe = await client.get("/api/swarm?probe", headers=headers)   # swarm up's readiness probe
            assert probe.status == 200
            await asyncio.sleep(0.3)
            assert len(poller.looks) == 1                 # ... is not someone looking
            asked = time.monotonic()
            resp = await client.get("/api/swarm", headers=headers)
            assert resp.status == 200 and json.loads(await resp.text()) is not None
            assert len(poller.looks) == 2 and poller.looks[1] >= asked   # a fresh look, not the old one
            deadline = time.monotonic() + 10
            while len(poller.looks) < 6:                  # watched: a look every WEB_POLL_S
                assert time.monotonic() < deadline, poller.looks
                await client.get("/metrics", headers=headers)
                await asyncio.sleep(0.05)
            await asyncio.sleep(config.WEB_WATCHED_S + 0.5)
            settled = len(poller.looks)
            await asyncio.sleep(0.5)
            assert len(poller.looks) == settled           # unwatched again: quiet

    asyncio.run(scenario())
