"""Fixed-seed fuzzing of the decoder and of real nodes' request loops (the 100,000-frame
run is bench/fuzz.py). Zero crashes, zero hangs, and every node answers a ping after."""
from __future__ import annotations

import zmq
from hypothesis import HealthCheck, given, settings

from protocol import messages as m
from protocol.codec import decode
from protocol.errors import ProtocolError
from protocol.messages import MAX_FRAME_BYTES
from tests.hostile.frames import frame_lists

DECODER_EXAMPLES = 3000
NODE_EXAMPLES = 600
REPLY_TIMEOUT_MS = 3000
FUZZ = settings(derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


class Prober:
    """Sends frame lists to one node over DEALER and requires a reply to each."""

    def __init__(self, endpoint: str) -> None:
        self.zctx = zmq.Context()
        self.endpoint = endpoint
        self.sock = self._open()
        self.sent = 0

    def _open(self):
        sock = self.zctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        return sock

    def probe(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)
        self.sent += 1
        if not self.sock.poll(REPLY_TIMEOUT_MS):
            raise AssertionError(f"no reply within {REPLY_TIMEOUT_MS} ms to frame #{self.sent}: {frames!r:.300}")
        reply = self.sock.recv_multipart()
        decode(reply)   # every reply is itself well-formed

    def ping(self) -> m.Pong:
        fresh = self._open()
        try:
            from protocol.codec import encode

            fresh.send_multipart(encode(m.Ping(), 1))
            assert fresh.poll(REPLY_TIMEOUT_MS), "the node does not answer a ping"
            return decode(fresh.recv_multipart()).msg
        finally:
            fresh.close(0)

    def close(self) -> None:
        self.sock.close(0)
        self.zctx.term()


def fuzz_node(endpoint: str, examples: int, exclude: frozenset = frozenset()) -> int:
    prober = Prober(endpoint)

    @settings(FUZZ, max_examples=examples)
    @given(frames=frame_lists(exclude))
    def run(frames):
        prober.probe(frames)

    try:
        run()
        assert isinstance(prober.ping(), m.Pong)
        return prober.sent
    finally:
        prober.close()


@settings(FUZZ, max_examples=DECODER_EXAMPLES)
@given(frames=frame_lists())
def test_decoder_only_ever_raises_protocol_errors(frames):
    try:
        decode(frames)
    except ProtocolError as exc:
        assert "\n" not in exc.message


def test_tracker_request_loop(swarm):
    endpoint = swarm.tracker()
    sent = fuzz_node(endpoint, NODE_EXAMPLES)
    print(f"\ntracker: {sent} fuzz frames, every one answered, ping ok")


def test_peer_data_and_control_loops(swarm, tmp_path):
    swarm.tracker()
    port = swarm.peer("p1")
    sent = fuzz_node(f"tcp://127.0.0.1:{port}", NODE_EXAMPLES)
    control = f"ipc://{tmp_path}/output/run/p1.sock"
    sent += fuzz_node(control, NODE_EXAMPLES, exclude=frozenset({m.MsgType.SHUTDOWN}))
    print(f"\npeer: {sent} fuzz frames on the data port and the control socket, ping ok")
    assert swarm.status("p1")["registered"]


def test_oversized_frames_cost_the_sender_its_connection_only(swarm):
    endpoint = swarm.tracker()
    prober = Prober(endpoint)
    try:
        prober.sock.send_multipart([b"\x00" * (MAX_FRAME_BYTES + 1)])
        assert not prober.sock.poll(500)            # dropped by ZeroMQ before any allocation by us
        assert isinstance(prober.ping(), m.Pong)    # everyone else is still served
    finally:
        prober.close()
