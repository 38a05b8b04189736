"""Hostile input on a peer's BEP 3 port, one misbehaviour per test (libtorrent's
test_fast_extension style, a scripted raw-socket peer against a real zorrent seed).
Each is refused with one log line; the seed stays up, its memory bounded, and an honest
client still downloads from it."""
from __future__ import annotations

import socket
import struct
import threading

import fastbencode
import psutil
import pytest

from node import config
from node.peer.bt import framing as f
from protocol import metainfo
from tests.hostile.btwire import RawPeer, length_prefixed, request
from tests.integration.bt_clients import bt_port, lt_add, lt_session, lt_wait_done, wrote
from tests.procs import Swarm, wait_for

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    s = Swarm(tmp_path_factory.mktemp("bt-hostile"))
    ok = False
    try:
        src, up = s.seeded("z1", [], "f.bin", 3 * MIB + 40 * 1024 + 5, seed=41)
        meta = metainfo.read(s.workdir / up["torrent"])
        assert meta.num_pieces % 8, "the spare-bits test needs a bitfield with spare bits"
        s.src, s.meta, s.port = src, meta, bt_port(s, "z1")
        s.ih = bytes.fromhex(meta.info_hash)
        s.pid = next(p.pid for n, p, _ in s.procs if n == "z1")
        yield s
        ok = True
    finally:
        s.close(failed=not ok)


def open_peer(seed) -> RawPeer:
    peer = RawPeer(seed.port)
    reply = peer.handshake(seed.ih)
    assert reply[28:48] == seed.ih
    return peer


def full_log(seed) -> str:
    return (seed.workdir / "logs" / "z1.log").read_text(errors="replace")


def logged(seed, text: str) -> int:
    return full_log(seed).count(text)


def still_serves(seed, tmp_path) -> None:
    ses = lt_session()
    handle = lt_add(ses, seed.workdir / "output" / "torrents" / "f.bin.torrent", tmp_path)
    handle.connect_peer(("127.0.0.1", seed.port))
    lt_wait_done(handle, timeout_s=30)
    wrote(tmp_path / "f.bin", seed.src)


def test_a_bad_handshake_is_closed_with_one_line(seed):
    peer = RawPeer(seed.port)
    peer.send(b"\x13BitTorrent protocoX" + bytes(48))
    assert peer.closed_by_remote()
    wait_for(lambda: logged(seed, "not a BitTorrent handshake") == 1, what="one log line")
    peer = RawPeer(seed.port)            # taken for an encrypted (MSE) handshake, which never syncs
    peer.send(b"GET / HTTP/1.1\r\n\r\n" + bytes(700))
    assert peer.closed_by_remote()
    wait_for(lambda: logged(seed, "nor an encrypted one (MSE: no sync)") == 1, what="one log line")


def test_a_torrent_not_held_is_closed(seed):
    peer = RawPeer(seed.port)
    peer.send(f.handshake(bytes(20), b"-XX0001-hostile00000"))
    assert peer.closed_by_remote()
    wait_for(lambda: logged(seed, f"torrent {bytes(20).hex()} is not held here") == 1, what="one log line")


def test_an_oversize_length_is_closed(seed):
    peer = open_peer(seed)
    peer.send(struct.pack(">IB", 0x7FFFFFF0, f.PIECE))
    assert peer.closed_by_remote()
    wait_for(lambda: logged(seed, f"message of {0x7FFFFFF0} bytes") == 1, what="one log line")


def test_a_malformed_fixed_size_message_is_closed(seed):
    peer = open_peer(seed)
    peer.send(length_prefixed(f.REQUEST, b"\0" * 11))
    assert peer.closed_by_remote()
    wait_for(lambda: logged(seed, "request message with 11 bytes of payload") == 1, what="one log line")


def test_a_bitfield_with_spare_bits_set_is_closed(seed):
    peer = open_peer(seed)
    nbytes = (seed.meta.num_pieces + 7) // 8
    peer.send(f.bitfield(b"\0" * (nbytes - 1) + b"\x01"))
    assert peer.closed_by_remote()
    wait_for(lambda: logged(seed, "bad bitfield: bitfield has bits set past the last piece") == 1,
             what="one log line")


def test_requests_beyond_the_piece_or_over_16k_are_rejected(seed):
    peer = open_peer(seed)
    peer.send(f.simple(f.INTERESTED))
    peer.until(f.UNCHOKE)
    last = seed.meta.num_pieces - 1
    bad = [(0, 0, 16 * 1024 + 1),                                    # longer than a block
           (0, seed.meta.piece_length - 8, 16),                      # runs past the piece
           (last, seed.meta.piece_size(last), 1),                    # starts past the last piece
           (seed.meta.num_pieces, 0, 16 * 1024),                     # no such piece
           (0, 0, 0)]                                                # empty
    for piece, begin, length in bad:
        peer.send(request(piece, begin, length))
        assert peer.until(f.REJECT) == struct.pack(">III", piece, begin, length)
    peer.send(request(0, 0, 16 * 1024))                              # and a good one is still served
    assert peer.until(f.PIECE)[:8] == struct.pack(">II", 0, 0)
    assert logged(seed, "refused: block") + logged(seed, "refused: piece") == 1   # one line per connection


def rss(seed) -> int:
    return psutil.Process(seed.pid).memory_info().rss


def test_floods_of_unread_requests_stay_bounded_and_others_still_download(seed, tmp_path):
    before = rss(seed)
    flooders = []
    all_blocks = [request(p, b, min(16 * 1024, seed.meta.piece_size(p) - b))
                  for p in range(seed.meta.num_pieces) for b in range(0, seed.meta.piece_size(p), 16 * 1024)]
    for _ in range(4):
        peer = open_peer(seed)
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # and never read
        peer.send(f.simple(f.INTERESTED))
        flood = b"".join(all_blocks * 8)                                  # every block, eight times over
        t = threading.Thread(target=lambda p=peer, d=flood: _send_quietly(p, d), daemon=True)
        t.start()
        flooders.append((peer, t))
    for _, t in flooders:
        t.join(timeout=5)
    during = rss(seed)
    still_serves(seed, tmp_path)
    for peer, _ in flooders:
        peer.close()
    print(f"\nseed RSS before the floods {before / MIB:.1f} MiB, during {during / MIB:.1f} MiB")
    assert during - before < 64 * MIB, (before, during)
    assert logged(seed, f"over {config.BT_MAX_QUEUED_REQUESTS} requests queued here: rejecting") >= 1
    assert logged(seed, f"refused {config.REMOTE_MAX_REFUSALS} requests in a row: cut off") >= 1


def _send_quietly(peer: RawPeer, data: bytes) -> None:
    peer.sock.settimeout(3)
    try:
        peer.send(data)
    except OSError:
        pass            # its own send buffer filled: the seed stopped reading it


def test_a_cap_on_connections(seed):
    held = [socket.create_connection(("127.0.0.1", seed.port)) for _ in range(config.BT_MAX_CONNECTIONS + 5)]
    try:
        closed = 0
        for s in held[-5:]:
            s.settimeout(3)
            try:
                closed += s.recv(1) == b""
            except (socket.timeout, ConnectionResetError):
                closed += 1
        assert closed == 5
        wait_for(lambda: logged(seed, f"refused: {config.BT_MAX_CONNECTIONS} connections already") == 1,
                 what="one log line for the refused address")
    finally:
        for s in held:
            s.close()


def test_metadata_that_does_not_hash_to_the_info_hash_is_refused(seed, tmp_path):
    """A standard peer named in x.pe serves a wrong info dict over ut_metadata."""
    fake_info = fastbencode.bencode({b"length": 5, b"name": b"evil", b"piece length": 16384, b"pieces": bytes(20)})
    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=_lying_metadata_peer, args=(server, seed.ih, fake_info), daemon=True).start()
    link = f"magnet:?xt=urn:btih:{seed.meta.info_hash}&x.pe=127.0.0.1:{server.getsockname()[1]}"
    seed.peer("z9")
    res = seed.cli("download", "--magnet", link, "--output", str(tmp_path / "x"), "--peer-id", "z9",
                   "--peer-port", str(seed.peer_ports["z9"]), "--tracker", "tcp://127.0.0.1:1", check=False,
                   timeout_s=30)
    server.close()
    assert res.returncode != 0
    assert "sent metadata that does not hash to btih" in res.stderr


def _lying_metadata_peer(server: socket.socket, info_hash: bytes, info: bytes) -> None:
    while True:            # the CLI tries x.pe over ZeroMQ first: every connection gets the lie
        try:
            conn, _ = server.accept()
        except OSError:
            return
        threading.Thread(target=_lie, args=(conn, info_hash, info), daemon=True).start()


def _lie(conn: socket.socket, info_hash: bytes, info: bytes) -> None:
    with conn:
        conn.settimeout(5)
        try:
            conn.recv(68)
            conn.sendall(f.handshake(info_hash, b"-XX0001-liar00000000"))
            conn.sendall(f.extended(0, {b"m": {b"ut_metadata": 3}, b"metadata_size": len(info)}))
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                if b"msg_typei0e" in data:
                    conn.sendall(f.extended(f.UT_METADATA_ID, {b"msg_type": 1, b"piece": 0,
                                                               b"total_size": len(info)}, info))
        except OSError:
            return


# ---------------------------------------------------------------- fuzzing the BEP 3 port
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(derandomize=True, deadline=None, database=None, max_examples=150,
                suppress_health_check=list(HealthCheck))
FUZZ_IDS = st.sampled_from([*range(0, 10), 0x0D, 0x0E, 0x0F, 0x10, 0x11, 20, 99])


@st.composite
def bt_messages(draw):
    """A run of length-prefixed messages after a valid handshake: right ids with wrong
    sizes, wrong values, a lying length, extended messages of random bencode."""
    out = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            out.append(length_prefixed(draw(FUZZ_IDS), draw(st.binary(max_size=40))))
        elif kind == 1:
            out.append(request(draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)),
                               draw(st.integers(0, 2**32 - 1))))
        elif kind == 2:
            out.append(struct.pack(">I", draw(st.integers(0, 2**32 - 1))) + draw(st.binary(max_size=16)))
        else:
            body = draw(st.recursive(st.integers() | st.binary(max_size=8),
                                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.binary(max_size=6), c, max_size=3),
                                     max_leaves=6))
            ext = draw(st.sampled_from([0, f.UT_METADATA_ID, 7]))
            out.append(length_prefixed(f.EXTENDED, bytes([ext]) + fastbencode.bencode(body)))
    return b"".join(out)


def test_fuzzed_messages_never_take_the_port_down(seed):
    @FUZZ
    @given(bt_messages())
    def one(data):
        peer = open_peer(seed)
        try:
            peer.send(data)
        except OSError:
            pass
        peer.close()

    one()
    peer = open_peer(seed)             # still serving, and its port still speaks
    peer.send(f.simple(f.INTERESTED))
    peer.until(f.UNCHOKE)
    assert "callback" not in full_log(seed) and "Traceback" not in full_log(seed)
    assert psutil.Process(seed.pid).is_running()
