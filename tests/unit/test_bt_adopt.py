"""One connection per standard remote (review3 finding 7): which download channel an
incoming BEP 3 connection belongs to (node/peer/bt/service.py ``adopt``), on plain objects."""
from types import SimpleNamespace

import fastbencode

from node.peer.bt.connection import OPEN
from node.peer.bt.metadata import Metadata
from node.peer.bt.service import BtService

INFO_HASH = bytes(range(20))


class FakeChannel:
    def __init__(self, host: str, port: int, peer_id: bytes = b"") -> None:
        self.info_hash, self.host, self.port = INFO_HASH.hex(), host, port
        self.closed = False
        self.remote_peer_id = peer_id
        self.adopted = []

    def adopt(self, conn) -> bool:
        self.adopted.append(conn)
        conn.downloader = self
        return True

    def on_ext_handshake(self) -> None:
        pass


def service(*channels) -> BtService:
    s = object.__new__(BtService)           # only the matching state: no socket, no reactor
    s.channels, s.conns = {}, {}
    s.metadata = Metadata(s)
    for c in channels:
        s.register(c)
    return s


def incoming(s: BtService, host: str, peer_id: bytes = b"-LT2110-000000000000", extended: bool = True):
    conn = SimpleNamespace(outgoing=False, downloader=None, state=OPEN, info_hash=INFO_HASH, addr=(host, 40000),
                           name=f"{host}:40000", client="?", remote_peer_id=peer_id, extended=extended,
                           listen_port=0, ext_seen=False, remote_ut_metadata=0, remote_metadata_size=0,
                           remote_reqq=250)
    s.conns[len(s.conns) + 100] = conn
    if not extended:
        s.adopt(conn)                       # as service.joined does for a connection without BEP 10
    return conn


def ext_handshake(s: BtService, conn, **extra) -> None:
    extra = {k.encode(): v for k, v in extra.items()}
    s.metadata.on_extended(conn, 0, fastbencode.bencode({b"m": {}, b"v": b"test", **extra}))


def test_an_extended_connection_without_p_is_adopted_by_the_one_channel_wanting_its_address():
    ch = FakeChannel("198.18.0.7", 6881)
    s = service(ch, FakeChannel("198.18.0.9", 6881))
    conn = incoming(s, "198.18.0.7")
    assert not ch.adopted                   # not before its ext handshake: it may still name a port
    ext_handshake(s, conn)
    assert ch.adopted == [conn]


def test_p_decides_when_given():
    a, b = FakeChannel("198.18.0.7", 6881), FakeChannel("198.18.0.7", 6882)
    s = service(a, b)
    conn = incoming(s, "198.18.0.7")
    ext_handshake(s, conn, p=6882)
    assert b.adopted == [conn] and not a.adopted
    stranger = incoming(s, "198.18.0.7")
    ext_handshake(s, stranger, p=7000)
    assert not a.adopted


def test_without_p_two_channels_at_one_address_adopt_neither():
    a, b = FakeChannel("198.18.0.7", 6881), FakeChannel("198.18.0.7", 6882)
    s = service(a, b)
    ext_handshake(s, incoming(s, "198.18.0.7"))
    incoming(s, "198.18.0.7", extended=False)
    assert not a.adopted and not b.adopted


def test_a_client_from_loopback_is_not_taken_for_the_one_wanted_there_by_address_alone():
    ch = FakeChannel("127.0.0.1", 6881)
    s = service(ch)
    incoming(s, "127.0.0.1", extended=False)
    ext_handshake(s, incoming(s, "127.0.0.1"))
    assert not ch.adopted


def test_a_peer_met_before_is_known_by_its_peer_id_even_on_loopback():
    ch = FakeChannel("127.0.0.1", 6881, peer_id=b"-TR3000-aaaaaaaaaaaa")
    s = service(ch)
    other = incoming(s, "127.0.0.1", peer_id=b"-TR3000-bbbbbbbbbbbb", extended=False)
    assert not ch.adopted
    same = incoming(s, "127.0.0.1", peer_id=b"-TR3000-aaaaaaaaaaaa", extended=False)
    assert ch.adopted == [same]
    assert other.downloader is None


def test_a_channel_dialling_finds_the_connection_its_peer_made_first():
    ch = FakeChannel("198.18.0.7", 6881)
    s = service(ch)
    early = incoming(s, "198.18.0.7")
    s.unregister(ch)                        # as if the channel were made after the connection came
    ext_handshake(s, early)
    s.register(ch)
    assert s.incoming(ch) is early
    assert s.incoming(FakeChannel("198.18.0.8", 6881)) is None


def test_a_new_peer_id_from_the_one_address_wanted_is_still_adopted_by_address():
    """libtorrent 1.2+ picks a new peer id per connection, every client on restart: a peer id
    met before must not switch the address rule off (review4 finding 5)."""
    ch = FakeChannel("198.18.0.7", 6881, peer_id=b"-LT2110-aaaaaaaaaaaa")
    s = service(ch)
    conn = incoming(s, "198.18.0.7", peer_id=b"-LT2110-bbbbbbbbbbbb", extended=False)
    assert ch.adopted == [conn]
