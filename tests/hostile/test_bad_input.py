"""Bad input at the command line and on disk: one line, a non-zero exit, nothing lost."""
import filecmp
import json
import os
import socket
import subprocess

import fastbencode
import pytest

from tests.conftest import write_random
from tests.torrents import HOSTILE

MIB = 1024 * 1024


def one_line_error(res, code, text):
    """Exactly one error line, the last thing said (download may show its progress first)."""
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1] and text in errors[0], res.stderr
    assert "Traceback" not in res.stderr + res.stdout


@pytest.fixture
def pair(swarm):
    return swarm.seeded("p1", ["p2"], "f.bin", 3 * MIB, seed=21)


def test_missing_input(swarm):
    one_line_error(swarm.cli("create", "--input", "nope.bin", check=False), 2, "input not found: nope.bin")
    one_line_error(swarm.cli("upload", "--input", "nope.bin", "--peer-id", "p1", "--peer-port", "1", check=False),
                   2, "input not found: nope.bin")


def test_unreadable_and_hostile_torrents(swarm, tmp_path):
    (tmp_path / "dir.torrent").mkdir()
    one_line_error(swarm.cli("get", "--torrent", "dir.torrent", check=False), 2, "cannot read torrent dir.torrent")
    one_line_error(swarm.cli("get", "--torrent", "missing.torrent", check=False), 2, "torrent file not found")
    evil = {b"announce": b"tcp://127.0.0.1:1", b"info": {b"length": 10, b"name": b"../../etc/cron.d/x",
                                                         b"piece length": 16384, b"pieces": b"\x00" * 20}}
    (tmp_path / "evil.torrent").write_bytes(fastbencode.bencode(evil))
    res = swarm.cli("download", "--torrent", "evil.torrent", "--peer-id", "p2", "--peer-port", "1", check=False)
    one_line_error(res, 2, "contains a path separator")
    (tmp_path / "cut.torrent").write_bytes(fastbencode.bencode(evil)[:-9])
    one_line_error(swarm.cli("get", "--torrent", "cut.torrent", check=False), 2, "not valid bencode")


def test_tracker_down(swarm, tmp_path, mute_endpoint):
    (tmp_path / "f.bin").write_bytes(b"z" * 40000)
    dead = mute_endpoint
    swarm.cli("create", "--input", "f.bin", "--announce", dead)
    res = swarm.cli("--timeout", "0.3", "get", "--torrent", "output/torrents/f.bin.torrent", check=False)
    one_line_error(res, 1, f"no answer from the tracker at {dead}")
    # a peer whose tracker is down: upload says so instead of waiting forever
    swarm.tracker_endpoint = dead
    port = swarm.peer_start_unregistered("lonely")
    res = swarm.cli("upload", "--input", "f.bin", "--peer-id", "lonely", "--peer-port", str(port), check=False)
    one_line_error(res, 1, "lonely cannot reach the tracker")


def test_peer_id_not_in_peers_json(swarm, tmp_path, pair):
    src, info = pair
    (tmp_path / "peers.json").write_text(json.dumps({"p1": {"ip": "127.0.0.1", "port": 1}}))
    res = swarm.cli("download", "--torrent", info["torrent"], "--peer-id", "p2",
                    "--peer-port", str(swarm.peer_ports["p2"]), check=False)
    one_line_error(res, 2, "peer 'p2' is not in peers.json (it lists p1)")


def test_wrong_peer_at_that_port(swarm, pair):
    src, info = pair
    res = swarm.cli("download", "--torrent", info["torrent"], "--peer-id", "p2",
                    "--peer-port", str(swarm.peer_ports["p1"]), check=False)
    one_line_error(res, 2, f"the peer at 127.0.0.1:{swarm.peer_ports['p1']} is 'p1', not 'p2'")


def test_port_already_in_use(swarm, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = swarm.cli("tracker", "--port", str(port), check=False, timeout_s=30)
        one_line_error(res, 2, f"cannot listen on tcp://127.0.0.1:{port}: Address already in use")
        res = swarm.cli("peer", "--peer-id", "px", "--port", str(port), check=False, timeout_s=30)
        one_line_error(res, 2, f"cannot listen on tcp://127.0.0.1:{port}: Address already in use")


def test_duplicate_peer_id(swarm, tmp_path, pair):
    # the same id in the same output dir: refused before it touches anything
    res = swarm.cli("peer", "--peer-id", "p1", "--port", "0", "--tracker", swarm.tracker_endpoint,
                    check=False, timeout_s=30)
    one_line_error(res, 2, "peer p1 is already running (pid")
    # the same id from elsewhere: the tracker refuses it while the first one lives
    other = tmp_path / "elsewhere"
    other.mkdir()
    env = dict(swarm.env(), ZORRENT_OUTPUT=str(other / "output"))
    res = subprocess.run(swarm.argv("peer", "--peer-id", "p1", "--port", "0", "--tracker", swarm.tracker_endpoint),
                         cwd=other, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "error: peer id 'p1' is already in use by 127.0.0.1:" in res.stderr.splitlines()[-1]
    assert "Traceback" not in res.stderr
    assert swarm.status("p1")["registered"]


def test_output_never_follows_a_planted_symlink(swarm, tmp_path, pair):
    src, info = pair
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious" * 1000)
    (tmp_path / "out").mkdir()
    os.symlink(victim, tmp_path / "out" / "f.bin")
    res = swarm.cli("download", "--torrent", info["torrent"], "--output", "out/f.bin", "--peer-id", "p2",
                    "--peer-port", str(swarm.peer_ports["p2"]), check=False)
    one_line_error(res, 3, "refusing to write through the symlink")   # 3: the peer refused
    assert victim.read_bytes() == b"precious" * 1000
    # a folder as --output: the file goes inside it, under the torrent's (checked) name
    (tmp_path / "into").mkdir()
    swarm.cli("download", "--torrent", info["torrent"], "--output", "into", "--peer-id", "p2",
              "--peer-port", str(swarm.peer_ports["p2"]))
    assert filecmp.cmp(src, tmp_path / "into" / "f.bin", shallow=False)


def test_an_existing_unrelated_file_is_not_overwritten(swarm, tmp_path, pair):
    src, info = pair
    keep = tmp_path / "keep.bin"
    keep.write_bytes(b"mine" * 100)
    res = swarm.cli("download", "--torrent", info["torrent"], "--output", "keep.bin", "--peer-id", "p2",
                    "--peer-port", str(swarm.peer_ports["p2"]), check=False)
    one_line_error(res, 3, "already exists with 400 bytes")
    assert keep.read_bytes() == b"mine" * 100


def test_disk_full_stops_the_download_and_keeps_verified_pieces(swarm, tmp_path):
    if os.geteuid() != 0:
        pytest.fail("this test mounts a small tmpfs and needs root (CI runs as root)")
    swarm.tracker()
    swarm.peer("seeder")
    swarm.peer("leecher")
    src = write_random(tmp_path / "in" / "big.bin", 12 * MIB, seed=22)
    info = swarm.upload(src, "seeder")
    disk = tmp_path / "small"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    try:
        args = ["download", "--torrent", info["torrent"], "--output", str(disk / "big.bin"), "--peer-id", "leecher",
                "--peer-port", str(swarm.peer_ports["leecher"])]
        one_line_error(swarm.cli(*args, check=False), 2, "No space left on device")
        job = swarm.job("leecher", info["info_hash"])
        assert job["state"] == "failed" and 0 < job["have"] < info["num_pieces"]
        subprocess.run(["mount", "-o", "remount,size=32m", str(disk)], check=True)   # space freed
        done = swarm.cli_json(*args)
        assert done["state"] == "seeding" and done["resumed"] == job["have"]
        assert filecmp.cmp(src, disk / "big.bin", shallow=False)
        print(f"\ndisk full at {job['have']}/{info['num_pieces']} pieces; all {job['have']} kept and resumed")
    finally:
        swarm.stop("leecher")
        subprocess.run(["umount", "-l", str(disk)])


@pytest.mark.parametrize("raw, text", [(raw, text) for _, raw, text in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_every_hostile_torrent_class_is_one_line(swarm, tmp_path, raw, text):
    (tmp_path / "bad.torrent").write_bytes(raw)
    res = swarm.cli("download", "--torrent", "bad.torrent", "--peer-id", "p2", "--peer-port", "1", check=False)
    one_line_error(res, 2, text)
