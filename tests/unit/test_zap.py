"""node/zap.py: a bad key file in allowed/ is skipped, and never ends the ZAP thread."""
import os

import zmq
import zmq.auth

from node import zap

DOMAIN = "zorrent-test"


def _pair(folder, name):
    public, secret = zmq.auth.create_certificates(folder, name)
    return zmq.auth.load_certificate(secret)


def test_an_empty_key_file_during_a_handshake_refuses_nothing_else(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    keys = tmp_path / "keys"
    keys.mkdir()
    server_pub, server_sec = _pair(keys, "server")
    client_pub, client_sec = _pair(keys, "client")
    (allowed / "client.key").write_bytes((keys / "client.key").read_bytes())
    (allowed / "half-copied.key").write_bytes(b"")       # what `cp` leaves before it writes
    zctx = zmq.Context()
    gate = zap.start_gate(zctx, allowed, DOMAIN)
    server = zctx.socket(zmq.ROUTER)
    client = zctx.socket(zmq.DEALER)
    try:
        server.curve_server, server.curve_secretkey, server.curve_publickey = True, server_sec, server_pub
        server.zap_domain = DOMAIN.encode()
        port = server.bind_to_random_port("tcp://127.0.0.1")
        client.curve_serverkey, client.curve_publickey, client.curve_secretkey = server_pub, client_pub, client_sec
        client.linger = 0
        client.connect(f"tcp://127.0.0.1:{port}")
        client.send(b"ping")
        assert server.poll(10_000), "the admitted key got no answer"
        assert server.recv_multipart()[-1] == b"ping"
        assert gate.thread.is_alive()
    finally:
        client.close(0)
        server.close(0)
        gate.stop()
        zctx.term()


def test_the_callback_never_raises_and_rereads_a_key_overwritten_in_place(tmp_path, monkeypatch):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    a_pub, _ = _pair(tmp_path, "a")
    b_pub, _ = _pair(tmp_path, "b")
    (allowed / "x.key").write_bytes((tmp_path / "a.key").read_bytes())
    (allowed / "empty.key").write_bytes(b"")
    cb = zap.Allowed(allowed)
    assert cb.callback(DOMAIN, a_pub) and not cb.callback(DOMAIN, b_pub)
    st = os.stat(allowed)
    (allowed / "x.key").write_bytes((tmp_path / "b.key").read_bytes())   # cp b.key allowed/x.key
    os.utime(allowed, ns=(st.st_atime_ns, st.st_mtime_ns))                # the folder looks unchanged
    os.utime(allowed / "x.key", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert cb.callback(DOMAIN, b_pub) and not cb.callback(DOMAIN, a_pub)

    def broken(folder):
        raise RuntimeError("boom")
    monkeypatch.setattr(zap.zmq.auth, "load_certificate", broken)
    (allowed / "y.key").write_bytes(b"")
    assert cb.callback(DOMAIN, b_pub) is False          # refused, not raised
