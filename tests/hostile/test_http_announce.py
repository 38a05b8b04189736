"""Hostile requests to the HTTP tracker: each gets a bencoded `failure reason` (or a capped
answer), never a traceback or a hang, and none can touch a zorrent peer's record."""
import http.client
import socket
import time
from urllib.parse import quote_from_bytes, urlsplit

import fastbencode
import pytest

from ctl import client
from node import config
from protocol import messages as m
from protocol.errors import ErrorCode, RemoteError
from tests.procs import Swarm, free_port, wait_for

INFO_HASH = bytes(range(1, 21))


def q(**params) -> str:
    return "&".join(f"{k}={quote_from_bytes(v) if isinstance(v, bytes) else v}" for k, v in params.items())


def announce_query(**changes) -> str:
    params = {"info_hash": INFO_HASH, "peer_id": b"-LT2110-abcdefghijkl", "port": 6881, "uploaded": 0,
              "downloaded": 0, "left": 100, "event": "started", "compact": 1}
    params.update(changes)
    return q(**{k: v for k, v in params.items() if v is not None})


class Http:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port

    def get(self, target: str, method: str = "GET", source: str = "127.0.0.1") -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10, source_address=(source, 0))
        try:
            conn.request(method, target)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def announce(self, query: str, source: str = "127.0.0.1") -> dict:
        status, body = self.get(f"/announce?{query}", source=source)
        assert status == 200, body
        return fastbencode.bdecode(body)


@pytest.fixture
def door(swarm):
    swarm.tracker()
    yield Http((swarm.workdir / "tracker.ready.http").read_text())
    assert "Traceback" not in swarm.log("tracker")


@pytest.fixture(scope="module")
def shared_door(tmp_path_factory):
    """One tracker for the many one-request cases."""
    swarm = Swarm(tmp_path_factory.mktemp("door"))
    failed = True
    try:
        swarm.tracker()
        yield Http((swarm.workdir / "tracker.ready.http").read_text())
        assert "Traceback" not in swarm.log("tracker")
        failed = False
    finally:
        swarm.close(failed)


BAD = [
    ("no-info-hash", announce_query(info_hash=None), "info_hash is missing"),
    ("short-info-hash", announce_query(info_hash=b"abc"), "info_hash must be 20 bytes, not 3"),
    ("long-info-hash", announce_query(info_hash=b"a" * 21), "info_hash must be 20 bytes, not 21"),
    ("short-peer-id", announce_query(peer_id=b"x"), "peer_id must be 20 bytes, not 1"),
    ("no-port", announce_query(port=None), "port is missing"),
    ("port-0", announce_query(port=0), "port must be a number from 1 to 65535, not b'0'"),
    ("port-big", announce_query(port=70000), "port must be a number from 1 to 65535, not b'70000'"),
    ("port-text", announce_query(port="http"), "port must be a number from 1 to 65535, not b'http'"),
    ("left-negative", announce_query(left=-1), "left must be a number from 0 to"),
    ("left-plus", announce_query(left="%2B5"), "left must be a number from 0 to"),
    ("left-float", announce_query(left="1e3"), "left must be a number from 0 to"),
    ("left-empty", announce_query(left=""), "left must be a number from 0 to"),
    ("uploaded-arabic-digit", announce_query(uploaded="%D9%A3"), "uploaded must be a number from 0 to"),
    ("numwant-20-digits", announce_query(numwant="9" * 20), "numwant must be a number from 0 to"),
    ("event-bogus", announce_query(event="exploded"), "event must be one of started, completed, stopped"),
    ("compact-2", announce_query(compact=2), "compact must be 0 or 1, not b'2'"),
    ("port-twice", announce_query() + "&port=7000", "port is given 2 times"),
    ("many-fields", announce_query() + "&x=1" * 60, "query has 68 fields, limit 64"),
    ("oversized", announce_query() + "&pad=" + "a" * 5000, "limit 4096"),
]


@pytest.mark.parametrize("query,reason", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_announce_gets_a_failure_reason(shared_door, query, reason):
    reply = shared_door.announce(query)
    assert list(reply) == [b"failure reason"] and reason in reply[b"failure reason"].decode(), reply


def test_bad_paths_methods_and_scrapes(shared_door):
    door = shared_door
    status, body = door.get("/admin")
    assert (status, fastbencode.bdecode(body)) == (404, {b"failure reason": b"no such path '/admin'; use /announce or /scrape"})
    status, body = door.get("/announce?" + announce_query(), method="POST")
    assert status == 405 and b"POST is not offered" in fastbencode.bdecode(body)[b"failure reason"]
    for target, reason in [("/scrape", b"info_hash is missing (a full scrape is not offered)"),
                           ("/scrape?" + "&".join(["info_hash=" + quote_from_bytes(INFO_HASH)] * 33),
                            b"33 info_hashes in one scrape, limit 32"),
                           ("/scrape?info_hash=abc", b"info_hash must be 20 bytes, not 3")]:
        status, body = door.get(target)
        assert (status, fastbencode.bdecode(body)) == (200, {b"failure reason": reason})
    # past the HTTP parser's line cap the request is refused before any handler runs: a 400, no hang
    status, _ = door.get("/announce?" + "a" * (config.HTTP_MAX_LINE_BYTES + 10))
    assert status == 400


def test_huge_numwant_is_clamped(door):
    for i in range(config.HTTP_MAX_NUMWANT + 5):
        door.announce(announce_query(peer_id=b"-XX0001-%012d" % i, port=10000 + i))
    reply = door.announce(announce_query(numwant="9" * 18))
    assert len(reply[b"peers"]) == 6 * config.HTTP_MAX_NUMWANT
    assert reply[b"incomplete"] == config.HTTP_MAX_NUMWANT + 6


def test_slow_client_is_cut_off_and_others_are_served(door):
    slow = socket.create_connection((door.host, door.port))
    try:
        slow.sendall(b"GET /announce?info_hash=")      # ... and never more
        start = time.monotonic()
        assert b"interval" in door.get("/announce?" + announce_query())[1]   # others are answered meanwhile
        slow.settimeout(config.HTTP_CONNECTION_S + 5)
        assert slow.recv(1024) == b""                   # closed by the tracker
        assert time.monotonic() - start < config.HTTP_CONNECTION_S + 2
    finally:
        slow.close()


def test_http_announce_cannot_touch_a_zorrent_peer(swarm, door):
    zorrent_id = "abcdefghijklmnopqrst"             # 20 characters: also a valid BEP 3 peer_id
    token = client.tracker(swarm.tracker_endpoint, m.RegisterPeer(peer_id=zorrent_id, host="127.0.0.1",
                                                                  port=6881, token="")).token
    mine = client.tracker(swarm.tracker_endpoint, m.RegisterPeer(peer_id=zorrent_id, host="127.0.0.1",
                                                                 port=6881, token=token))
    for event in ("started", "stopped"):
        assert b"interval" in door.get("/announce?" + announce_query(peer_id=zorrent_id.encode(), port=9999,
                                                                     event=event))[1]
    # the zorrent record is still the peer's own: its token works, the HTTP client's id is namespaced
    assert isinstance(client.tracker(swarm.tracker_endpoint, m.Heartbeat(peer_id=zorrent_id, token=mine.token)),
                      m.HeartbeatOk)
    client_id = "bt:" + zorrent_id.encode().hex()
    door.announce(announce_query(peer_id=zorrent_id.encode(), port=9999))
    for msg in (m.Heartbeat(peer_id=client_id, token=""), m.Deregister(peer_id=client_id, token=""),
                m.Announce(peer_id=client_id, token="", info_hash=INFO_HASH.hex(), pieces=[0])):
        with pytest.raises(RemoteError) as err:
            client.tracker(swarm.tracker_endpoint, msg, tries=1)
        assert err.value.code == ErrorCode.NOT_AUTHORISED
    with pytest.raises(RemoteError) as err:      # nor can a zorrent peer register under a client's id
        client.tracker(swarm.tracker_endpoint, m.RegisterPeer(peer_id=client_id, host="127.0.0.1", port=1, token=""))
    assert err.value.code == ErrorCode.BAD_FIELD
    # another host cannot take over (or stop) a live client's entry
    for event in ("started", "stopped"):
        reply = door.announce(announce_query(peer_id=zorrent_id.encode(), port=9999, event=event), source="127.0.0.2")
        assert reply == {b"failure reason": f"peer_id {zorrent_id.encode().hex()} is in use from another address"
                         .encode()}


def test_stopped_leaves_the_swarm_and_scrape_counts(door):
    seeder, leecher = b"-SE0001-000000000001", b"-LE0001-000000000002"
    door.announce(announce_query(peer_id=seeder, left=0, port=7001))
    reply = door.announce(announce_query(peer_id=leecher, left=100, port=7002))
    assert (reply[b"complete"], reply[b"incomplete"], reply[b"peers"]) == (1, 1, bytes([127, 0, 0, 1, 27, 89]))
    reply = door.announce(announce_query(peer_id=leecher, left=100, port=7002, compact=0))
    assert reply[b"peers"] == [{b"ip": b"127.0.0.1", b"peer id": seeder, b"port": 7001}]
    door.announce(announce_query(peer_id=leecher, left=0, port=7002, event="completed"))
    door.announce(announce_query(peer_id=seeder, left=0, port=7001, event="stopped"))
    status, body = door.get("/scrape?info_hash=" + quote_from_bytes(INFO_HASH) + "&info_hash=" + "b" * 20)
    assert fastbencode.bdecode(body) == {b"files": {
        INFO_HASH: {b"complete": 1, b"downloaded": 1, b"incomplete": 0},
        b"b" * 20: {b"complete": 0, b"downloaded": 0, b"incomplete": 0}}}


def test_ipv6_clients_get_peers6(swarm):
    """BEP 7: the door on ::1; clients that announce over IPv6 are handed out in peers6."""
    swarm.tracker("--http-host", "::1")
    door = Http((swarm.workdir / "tracker.ready.http").read_text())
    assert door.host == "::1"
    door.announce(announce_query(peer_id=b"-SE0001-000000000006", left=0, port=7006), source="::1")
    reply = door.announce(announce_query(peer_id=b"-LE0001-000000000007", left=9, port=7007), source="::1")
    assert (reply[b"peers"], reply[b"peers6"]) == (b"", bytes(15) + b"\x01" + (7006).to_bytes(2, "big"))


def test_http_port_in_use(swarm):
    """Asked for explicitly, a busy port is one line and exit 2; the default one is skipped with a warning."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = swarm.cli("tracker", "--port", "0", "--http-port", str(port), check=False, timeout_s=60)
        assert res.returncode == 2, res.stderr
        assert res.stderr.strip() == f"error: cannot listen on http://127.0.0.1:{port}: Address already in use"
    holder = socket.socket()
    for _ in range(50):                          # a free tracker port whose default HTTP port we can take
        tracker_port = free_port()
        try:
            holder.bind(("127.0.0.1", config.http_port_for(tracker_port)))
            break
        except OSError:
            continue
    holder.listen()
    try:
        ready = swarm.workdir / "t2.ready"
        swarm.spawn("tracker", "tracker", "--port", str(tracker_port), "--ready-file", str(ready))
        wait_for(ready.exists, what="the tracker to start without its HTTP door")
        assert not (swarm.workdir / "t2.ready.http").exists()
        assert "running without the HTTP tracker" in swarm.log("tracker")
    finally:
        holder.close()
