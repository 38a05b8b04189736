"""The ctl reaches a peer at the address peers.json gives it, not always at 127.0.0.1."""
import json

from tests.conftest import write_random

MIB = 1024 * 1024


def test_upload_and_download_use_the_peers_json_address(swarm, tmp_path):
    swarm.tracker()
    ports = {}
    for peer_id, ip in (("peer1", "127.0.0.2"), ("peer2", "127.0.0.3")):
        ports[peer_id] = swarm.peer(peer_id, "--host", ip)
    (tmp_path / "peers.json").write_text(json.dumps(
        {"peer1": {"ip": "127.0.0.2", "port": ports["peer1"]}, "peer2": {"ip": "127.0.0.3", "port": ports["peer2"]}}))
    src = write_random(tmp_path / "in" / "a.bin", 2 * MIB + 3, seed=41)
    # no --peer-host: the addresses come from peers.json
    info = swarm.cli_json("upload", "--input", str(src), "--peer-id", "peer1", "--peer-port", str(ports["peer1"]))[0]
    swarm.cli("download", "--torrent", info["torrent"], "--output", "out/a.bin", "--peer-id", "peer2",
              "--peer-port", str(ports["peer2"]))
    assert (tmp_path / "out" / "a.bin").read_bytes() == src.read_bytes()
    peers = {p["peer_id"]: p["host"] for p in swarm.cli_json("get", "--torrent", info["torrent"])["peers"]}
    assert peers == {"peer1": "127.0.0.2", "peer2": "127.0.0.3"}
    # an explicit --peer-host still wins, and a wrong one fails with one line naming the address
    res = swarm.cli("--timeout", "0.3", "upload", "--input", str(src), "--peer-id", "peer1",
                    "--peer-port", str(ports["peer1"]), "--peer-host", "127.0.0.9", check=False)
    assert res.returncode == 1 and "tcp://127.0.0.9:" in res.stderr and "Traceback" not in res.stderr


def test_start_peer_starts_only_this_hosts_entries(swarm, tmp_path):
    swarm.tracker()
    # 198.18.255.77 (RFC 2544's range) is no address of this host; nothing is sent to it
    (tmp_path / "peers.json").write_text(json.dumps({"far": {"ip": "198.18.255.77", "port": 6881}}))
    res = swarm.cli("start-peer", "--config", "peers.json", "--foreground", check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "skipping far: 198.18.255.77 is not an address of this host" in res.stderr
    assert "none of the peers in peers.json is on this host" in res.stderr


def test_a_peer_binds_every_interface_and_advertises_its_ip(swarm, tmp_path):
    swarm.tracker()
    port = swarm.peer("p1", "--host", "0.0.0.0", "--advertise", "127.0.0.2")
    (tmp_path / "peers.json").write_text(json.dumps({"p1": {"ip": "127.0.0.2", "port": port, "bind": "0.0.0.0"}}))
    src = write_random(tmp_path / "in" / "b.bin", MIB, seed=42)
    info = swarm.cli_json("upload", "--input", str(src), "--peer-id", "p1", "--peer-port", str(port))[0]
    peers = swarm.cli_json("get", "--torrent", info["torrent"])["peers"]
    assert [(p["peer_id"], p["host"], p["port"]) for p in peers] == [("p1", "127.0.0.2", port)]
    res = swarm.cli("peer", "--peer-id", "p9", "--host", "0.0.0.0", "--port", "0", check=False)
    assert res.returncode == 2 and "needs --advertise IP" in res.stderr and "Traceback" not in res.stderr
