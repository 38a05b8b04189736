"""A private swarm (ZeroMQ CURVE, node/curve.py): the README flow works with keys, and a
process without an admitted key is refused at the handshake by the tracker and by every
peer's data port, so it learns nothing, not even the torrent list."""
import filecmp
import json
import socket
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fastbencode
import pytest
import zmq
import zmq.auth
import zmq.utils.monitor

from ctl import client
from node import curve
from protocol import messages as m
from protocol.codec import encode
from protocol.errors import TransportError
from tests.procs import free_port, wait_for, write_random

REFUSED = "at the CURVE handshake"


def make_keys(swarm, name: str) -> Path:
    """What `zorrent keys new --dir NAME` writes (the README test runs the command itself)."""
    return curve.make_swarm(swarm.workdir / name).folder


def stranger_keys(folder: Path, swarm_keys: Path, server_secret: bool = False) -> Path:
    """Knows the swarm's server public key (with ``server_secret``, the stolen secret too, so it
    can listen), but its own client key is on no list."""
    folder.mkdir()
    for name in ("server.key", "server.key_secret") if server_secret else ("server.key",):
        (folder / name).write_bytes((swarm_keys / name).read_bytes())
    public, _ = zmq.auth.create_certificates(folder, "client")
    if server_secret:                       # it admits itself
        (folder / "allowed").mkdir()
        (folder / "allowed" / "client.key").write_bytes(Path(public).read_bytes())
    return folder


def mechanism(port: int) -> bytes:
    """The security mechanism the socket at ``port`` demands in its ZMTP 3 greeting."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03")   # signature, version 3: it answers with its greeting
        greeting = b""
        while len(greeting) < 64:
            chunk = s.recv(64 - len(greeting))
            if not chunk:
                break
            greeting += chunk
    return greeting[12:32].rstrip(b"\0")


def tracker_up(endpoint: str) -> bool:
    try:
        return isinstance(client.tracker(endpoint, m.Ping(), timeout_s=0.3, tries=1), m.Pong)
    except TransportError:
        return False


def test_readme_flow_in_a_private_swarm(swarm, tmp_path, monkeypatch):
    swarm.cli("keys", "new", "--dir", "keys")
    keys = tmp_path / "keys"
    tport = free_port()
    ports = {"peer1": free_port(), "peer2": free_port()}
    peers = {"keys": "keys", **{p: {"ip": "127.0.0.1", "port": n} for p, n in ports.items()}}
    (tmp_path / "peers.json").write_text(json.dumps(peers))
    swarm.tracker_endpoint = f"tcp://127.0.0.1:{tport}"

    # every command finds the keys through peers.json's "keys" (the tracker too: it runs here)
    swarm.spawn("tracker", "tracker", "--host", "127.0.0.1", "--port", str(tport))
    monkeypatch.setenv("ZORRENT_KEYS", str(keys))
    wait_for(lambda: tracker_up(swarm.tracker_endpoint), what="the tracker, with keys")
    monkeypatch.delenv("ZORRENT_KEYS")
    swarm.cli("start-peer", "--config", "peers.json")      # supervisord passes the keys on
    for peer_id in ports:
        wait_for(lambda: swarm.status(peer_id)["registered"], what=f"{peer_id} registered")
    src = write_random(tmp_path / "input_files" / "file_001.bin", 3 * 1024 * 1024 + 7, seed=27)
    swarm.cli("create", "--input", "input_files/file_001.bin")
    swarm.cli("upload", "--input", "input_files/file_001.bin", "--peer-id", "peer1", "--peer-port", str(ports["peer1"]))
    swarm.cli("download", "--torrent", "output/torrents/file_001.bin.torrent",
              "--output", "output/downloads/file_001.bin", "--peer-id", "peer2", "--peer-port", str(ports["peer2"]))
    assert filecmp.cmp(src, tmp_path / "output/downloads/file_001.bin", shallow=False)
    got = swarm.cli("get", "--torrent", "output/torrents/file_001.bin.torrent").stdout
    assert "peer1" in got and "peer2" in got

    # the tracker and each data port speak CURVE (encrypted), not plain ZMTP
    assert mechanism(tport) == b"CURVE"
    assert {mechanism(port) for port in ports.values()} == {b"CURVE"}
    assert "a private swarm" in (tmp_path / "output/logs/peer1.log").read_text()
    # without the keys (another folder, no peers.json), the same `get` learns nothing
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = subprocess.run(swarm.argv("--timeout", "0.3", "get", "--torrent",
                                    str(tmp_path / "output/torrents/file_001.bin.torrent")),
                         cwd=elsewhere, env=swarm.env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "peer1" not in res.stdout, res


@pytest.fixture
def keyed(swarm, tmp_path, monkeypatch):
    """A tracker and two peers in a private swarm; peer1 seeds, peer2 downloaded from it."""
    keys = make_keys(swarm, "keys")
    monkeypatch.setenv("ZORRENT_KEYS", str(keys))       # spawned nodes and in-process calls alike
    src, up = swarm.seeded("peer1", ["peer2"], "secret.bin", 1024 * 1024 + 3, seed=17)
    swarm.cli("download", "--torrent", up["torrent"], "--output", str(tmp_path / "secret.out"),
              "--peer-id", "peer2", "--peer-port", str(swarm.peer_ports["peer2"]))
    assert filecmp.cmp(src, tmp_path / "secret.out", shallow=False)
    return keys, up["info_hash"]


def asks(swarm, info_hash: str) -> list:
    """Everything a stranger would ask: (where, endpoint, message)."""
    peer1 = f"tcp://127.0.0.1:{swarm.peer_ports['peer1']}"
    peer2 = f"tcp://127.0.0.1:{swarm.peer_ports['peer2']}"
    return [
        ("tracker", swarm.tracker_endpoint, m.GetSwarm()),
        ("tracker", swarm.tracker_endpoint, m.GetPeers(info_hash=info_hash)),
        ("tracker", swarm.tracker_endpoint, m.GetMetainfo(info_hash=info_hash)),
        ("tracker", swarm.tracker_endpoint, m.RegisterPeer(peer_id="intruder", host="127.0.0.1", port=9, token="")),
        ("peer1", peer1, m.GetBlock(info_hash=info_hash, piece_index=0, block_offset=0, length=16384)),
        ("peer1", peer1, m.GetMetainfo(info_hash=info_hash)),
        ("peer2", peer2, m.GetBlock(info_hash=info_hash, piece_index=0, block_offset=0, length=16384)),
        ("peer2", peer2, m.Ping()),
    ]


HANDSHAKE_FAILED = ("EVENT_HANDSHAKE_FAILED_AUTH", "EVENT_HANDSHAKE_FAILED_PROTOCOL",
                    "EVENT_HANDSHAKE_FAILED_NO_DETAIL")


def refused(where: str, endpoint: str, msg) -> bool:
    """The handshake fails: a socket monitor reports a handshake failure (the ZAP refusal, or
    keys/mechanism that do not match) before any success, and no reply comes back."""
    zctx = zmq.Context.instance()
    sock = zctx.socket(zmq.DEALER)
    sock.linger = 0
    monitor = sock.get_monitor_socket()
    failed = {getattr(zmq, name) for name in HANDSHAKE_FAILED}
    try:
        curve.secure_client(sock, endpoint)
        sock.connect(endpoint)
        sock.send_multipart(encode(msg, 1, None))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if sock.poll(0):
                return False                            # it answered
            if monitor.poll(100):
                event = zmq.utils.monitor.recv_monitor_message(monitor)["event"]
                if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    return False
                if event in failed:
                    return not sock.poll(0)
        return False                                    # no refusal seen: not proof of one
    finally:
        sock.disable_monitor()
        monitor.close(0)
        sock.close(0)


def test_strangers_are_refused_by_the_tracker_and_every_data_port(swarm, keyed, tmp_path, monkeypatch):
    keys, info_hash = keyed
    other = make_keys(swarm, "other")                          # another swarm's keys
    stranger = stranger_keys(tmp_path / "stranger", keys)      # the right server key, an unlisted own key
    intruder = None
    for who in (other, stranger, None):
        if who is None:
            monkeypatch.delenv("ZORRENT_KEYS")                 # no CURVE at all
        else:
            monkeypatch.setenv("ZORRENT_KEYS", str(who))
        with ThreadPoolExecutor(8) as pool:     # every ask at once: one deadline, not one each
            answers = list(pool.map(lambda ask: refused(*ask), asks(swarm, info_hash)))
        assert all(answers), [a for a, ok in zip(asks(swarm, info_hash), answers) if not ok]
        if who is stranger:     # a whole peer process with such a key (and the stolen server secret)
            monkeypatch.setenv("ZORRENT_KEYS", str(stranger_keys(tmp_path / "intruder", keys, server_secret=True)))
            intruder = swarm.peer_start_unregistered("intruder")

    monkeypatch.setenv("ZORRENT_KEYS", str(keys))
    assert not refused("tracker", swarm.tracker_endpoint, m.Ping())              # the check tells them apart
    listed = client.tracker(swarm.tracker_endpoint, m.GetSwarm(), timeout_s=2, tries=2)
    assert sorted(p.peer_id for p in listed.peers) == ["peer1", "peer2"]       # alive, and no intruder
    assert not swarm.status("intruder")["registered"] and intruder
    # refused at the ZAP handshake, logged once per source (here every stranger is 127.0.0.1)
    for name in ("tracker", "peer1", "peer2"):
        log = swarm.log(name)
        assert log.count(REFUSED) == 1, log
    assert "peer2" in client.request(f"tcp://127.0.0.1:{swarm.peer_ports['peer2']}", m.Ping(), "peer2").peer_id


def web_view(swarm, cwd: Path, name: str):
    """``zorrent web`` run in ``cwd`` (its output/run/ has no control sockets unless it is the
    swarm's own folder): (process, url)."""
    ready = cwd / f"{name}.ready"
    log = swarm.workdir / "logs" / f"{name}.log"
    with open(log, "ab") as out:                               # the child has its own copy of the fd
        proc = subprocess.Popen(swarm.argv("web", "--port", "0", "--tracker", swarm.tracker_endpoint,
                                           "--ready-file", str(ready)),
                                cwd=cwd, env=swarm.env(), stdout=out, stderr=subprocess.STDOUT)
    swarm.procs.append((name, proc, log))                      # killed at teardown
    return proc, swarm._ready(name, proc, ready)


def api_swarm(url: str) -> dict:
    with urllib.request.urlopen(url + "api/swarm", timeout=5) as r:
        return json.loads(r.read())


def test_a_wrong_key_learns_not_even_the_torrent_list(swarm, keyed, tmp_path, monkeypatch):
    """The web view is a client too: with the swarm's keys it lists the torrent; with another
    swarm's keys (on another host, so without the local control sockets) it shows nothing."""
    keys, info_hash = keyed
    other = make_keys(swarm, "other")
    _, url = web_view(swarm, tmp_path, "web-good")
    good = wait_for(lambda: (lambda d: d if d.get("torrents") else None)(api_swarm(url)), what="the keyed web view")
    assert good["tracker"]["up"] and good["torrents"][0]["info_hash"] == info_hash

    monkeypatch.setenv("ZORRENT_KEYS", str(other))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _, url = web_view(swarm, elsewhere, "web-bad")
    bad = wait_for(lambda: (lambda d: d if d.get("tracker", {}).get("error") else None)(api_swarm(url)),
                   what="the wrong-key web view to give up on the tracker")
    text = json.dumps(bad)
    assert not bad["tracker"]["up"] and not bad["torrents"] and not bad["peers"]
    assert info_hash not in text and "secret.bin" not in text


def http_announce(url: str, info_hash: str) -> dict:
    query = "&".join([f"info_hash={''.join(f'%{b:02x}' for b in bytes.fromhex(info_hash))}",
                      "peer_id=-LT2110-abcdefghijkl", "port=6881", "uploaded=0", "downloaded=0",
                      "left=100", "event=started", "compact=1"])
    with urllib.request.urlopen(f"{url}?{query}", timeout=5) as r:
        return fastbencode.bdecode(r.read())


def test_private_torrents_are_refused_by_the_http_door(swarm, tmp_path):
    """BEP 27: `create --private` sets private=1 in the info dict; the HTTP door never hands
    such a torrent to standard clients, while a public one beside it is served as before."""
    swarm.tracker()
    door = (tmp_path / "tracker.ready.http").read_text()
    swarm.peer("z1")
    src = write_random(tmp_path / "in" / "private.bin", 600_000, seed=5)
    public = write_random(tmp_path / "in" / "public.bin", 600_000, seed=6)
    made = swarm.cli_json("create", "--input", str(src), "--private")[0]
    assert made["private"] is True
    top = fastbencode.bdecode((tmp_path / made["torrent"]).read_bytes())
    assert top[b"info"][b"private"] == 1 and b"announce-list" not in top   # no HTTP door named in it
    up = swarm.upload(src, "z1")
    assert up["info_hash"] == made["info_hash"]
    swarm.upload(public, "z1")
    pub = next(t for t in swarm.cli_json("create", "--input", str(public)) if t["name"] == "public.bin")

    refused = http_announce(door, made["info_hash"])
    assert b"private" in refused[b"failure reason"] and b"peers" not in refused
    assert b"failure reason" not in http_announce(door, pub["info_hash"])
    # zorrent peers (and `get`) still see the private torrent's swarm
    assert "z1" in swarm.cli("get", "--torrent", made["torrent"]).stdout
