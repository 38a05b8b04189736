"""FailoverChannel on real ZeroMQ sockets: a tracker that stops answering is left for the
next one, and the first is taken back once it answers again."""
import threading
import time

import pytest
import zmq

from node.dispatch import bind_router
from node.failover import FailoverChannel, call_any
from node.reactor import Reactor
from protocol import messages as m
from protocol.codec import decode, encode
from protocol.errors import TransportError


class Router:
    """A tracker stand-in: answers PING with PONG while ``answering``."""

    def __init__(self, zctx, reactor, name):
        self.sock, self.endpoint = bind_router(zctx, "tcp://127.0.0.1:0")
        self.name, self.answering, self.seen = name, True, 0
        reactor.add(self.sock, self.on_readable)

    def on_readable(self):
        while True:
            try:
                ident, *frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.seen += 1
            if self.answering:
                env = decode(frames)
                self.sock.send_multipart([ident, *encode(m.Pong(node=self.name, peer_id="", pid=0), env.id)])


@pytest.fixture
def rig():
    zctx = zmq.Context()
    reactor = Reactor()
    a, b = Router(zctx, reactor, "a"), Router(zctx, reactor, "b")
    yield zctx, reactor, a, b
    for r in (a, b):
        r.sock.close(0)
    zctx.destroy(linger=0)


def ask(reactor, chan, timeout_s=0.3):
    box = []
    chan.request(m.Ping(), lambda env, err: box.append((env, err)), timeout_s=timeout_s, tries=1)
    deadline = time.monotonic() + 5
    while not box and time.monotonic() < deadline:
        reactor.run_once(0.02)
        chan.expire()
    assert box, "no callback"
    return box[0]


def test_fails_over_then_comes_back(rig):
    zctx, reactor, a, b = rig
    chan = FailoverChannel(zctx, [a.endpoint, b.endpoint], reactor, probe_s=0.2)
    env, err = ask(reactor, chan)
    assert err is None and env.msg.node == "a"
    a.answering = False
    env, err = ask(reactor, chan)                 # times out on a, answered by b: one call
    assert err is None and env.msg.node == "b" and chan.endpoint == b.endpoint and chan.failovers == 1
    a.answering = True
    deadline = time.monotonic() + 5
    while chan.endpoint != a.endpoint and time.monotonic() < deadline:
        reactor.run_once(0.02)
        chan.expire()
    assert chan.endpoint == a.endpoint           # the probe found a again
    env, err = ask(reactor, chan)
    assert err is None and env.msg.node == "a"
    chan.close()


def test_every_endpoint_silent_is_one_transport_error(rig):
    zctx, reactor, a, b = rig
    a.answering = b.answering = False
    chan = FailoverChannel(zctx, [a.endpoint, b.endpoint], reactor)
    env, err = ask(reactor, chan)
    assert env is None and isinstance(err, TransportError)
    assert a.seen >= 1 and b.seen >= 1           # each was tried
    chan.close()


def test_call_any_skips_a_dead_endpoint(rig):
    zctx, reactor, a, b = rig
    dead = "tcp://127.0.0.1:1"
    stop = threading.Event()

    def serve():                                  # the stand-ins answer from their own thread
        while not stop.is_set():
            reactor.run_once(0.02)

    t = threading.Thread(target=serve)
    t.start()
    try:
        env = call_any(zctx, [dead, b.endpoint], m.Ping(), timeout_s=0.3, tries=1)
        assert env.msg.node == "b"
    finally:
        stop.set()
        t.join()
