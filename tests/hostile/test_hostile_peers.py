"""Hostile peers against real nodes: the file still comes out byte-identical."""
import filecmp
import os
import re
import subprocess

import pytest

from ctl import client
from node.channel import call
from protocol import messages as m
from protocol import metainfo
from protocol.errors import ErrorCode, RemoteError
from tests.conftest import PY, REPO, wait_for, write_random
from tests.integration.test_readme_flow import stats_rows

MIB = 1024 * 1024


def start_liar(swarm, tmp_path, mode, torrent, src, *extra):
    ready = tmp_path / f"liar-{mode}.ready"
    log = tmp_path / "logs" / "liar.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([PY, str(REPO / "tests" / "hostile" / "liar.py"), "--tracker", swarm.tracker_endpoint,
                                 "--peer-id", "liar", "--torrent", str(torrent), "--file", str(src), "--mode", mode,
                                 "--ready-file", str(ready), *extra],
                                cwd=tmp_path, env=swarm.env(), stdout=out, stderr=subprocess.STDOUT)
    swarm.procs.append(("liar", proc, log))
    wait_for(lambda: ready.exists() or proc.poll() is not None, what="the liar")
    assert proc.poll() is None, log.read_text()


@pytest.fixture
def seeded(swarm):
    """A tracker, an honest seeder and a leecher, and an 8 MiB file (256 pieces)."""
    return swarm.seeded("seeder", ["leecher"], "f.bin", 8 * MIB, seed=11)


def download(swarm, info, tmp_path, json_out=False):
    args = ["download", "--torrent", info["torrent"], "--output", str(tmp_path / "out" / "f.bin"),
            "--peer-id", "leecher", "--peer-port", str(swarm.peer_ports["leecher"])]
    return swarm.cli_json(*args) if json_out else swarm.cli(*args)


def test_corrupt_blocks_fail_the_hash_and_the_liar_is_banned(swarm, tmp_path, seeded):
    src, info = seeded
    start_liar(swarm, tmp_path, "corrupt", info["torrent"], src)
    res = download(swarm, info, tmp_path)
    assert filecmp.cmp(src, tmp_path / "out" / "f.bin", shallow=False)
    print("\n" + res.stdout)
    assert "liar (banned)" in res.stdout
    rows = stats_rows(res.stdout)
    assert rows["liar"] == 0 and rows["seeder"] == info["num_pieces"]
    assert re.search(r"liar \(banned\)\s*│\s*0\s*│\s*0\.00", res.stdout)
    assert "Failed attempts: 3" in res.stdout            # banned at the third bad piece


def test_a_stalling_peer_is_worked_around_by_endgame(swarm, tmp_path, seeded):
    src, info = seeded
    start_liar(swarm, tmp_path, "stall", info["torrent"], src)
    job = download(swarm, info, tmp_path, json_out=True)
    assert filecmp.cmp(src, tmp_path / "out" / "f.bin", shallow=False)
    got = {p["peer_id"]: p["pieces"] for p in job["peers"]}
    assert got["liar"] == 0 and got["seeder"] == info["num_pieces"]
    # that endgame duplicates the stalled pieces (not waits for their timeout) is
    # tests/unit/test_engine.py's to show, without a clock on a loaded machine


def test_a_trickling_peer_does_not_hold_the_download(swarm, tmp_path, seeded):
    src, info = seeded
    start_liar(swarm, tmp_path, "trickle", info["torrent"], src, "--delay", "1.5")
    job = download(swarm, info, tmp_path, json_out=True)
    assert filecmp.cmp(src, tmp_path / "out" / "f.bin", shallow=False)
    got = {p["peer_id"]: p["pieces"] for p in job["peers"]}
    assert sum(got.values()) == info["num_pieces"]
    # credit follows the measured rate: the trickler is given a few pieces, the seeder the rest
    assert got["liar"] < info["num_pieces"] // 8 and got["seeder"] > info["num_pieces"] * 7 // 8, got


def test_false_claims_are_ignored_and_counted(swarm, tmp_path, seeded):
    src, info = seeded
    start_liar(swarm, tmp_path, "claim", info["torrent"], src)
    job = download(swarm, info, tmp_path, json_out=True)
    assert filecmp.cmp(src, tmp_path / "out" / "f.bin", shallow=False)
    liar = next(p for p in job["peers"] if p["peer_id"] == "liar")
    assert liar["pieces"] == 0 and liar["failures"] == job["failed_attempts"] > 0


def test_blocks_nobody_asked_for_are_never_written(swarm, tmp_path, seeded):
    src, info = seeded
    start_liar(swarm, tmp_path, "unasked", info["torrent"], src)
    job = download(swarm, info, tmp_path, json_out=True)
    assert filecmp.cmp(src, tmp_path / "out" / "f.bin", shallow=False)
    assert job["ignored"] > 0 and job["failed_attempts"] == 0


def test_the_data_port_refuses_control_requests(swarm, tmp_path):
    """A stranger on the data port asks to seed /etc/passwd: refused, and nothing of it is served."""
    swarm.tracker()
    port = swarm.peer("p1")
    endpoint = f"tcp://127.0.0.1:{port}"
    (tmp_path / "passwd.copy").write_bytes(open("/etc/passwd", "rb").read())
    meta = metainfo.create(tmp_path / "passwd.copy", swarm.tracker_endpoint)
    with pytest.raises(RemoteError) as refused:
        call(client.zctx(), endpoint, m.Upload(path="/etc/passwd", metainfo=meta.raw), timeout_s=2, tries=1)
    assert refused.value.code == ErrorCode.UNKNOWN_TYPE
    for msg in (m.Download(metainfo=meta.raw, output="/tmp/x"), m.Status(info_hash=""), m.Shutdown()):
        with pytest.raises(RemoteError):
            call(client.zctx(), endpoint, msg, timeout_s=2, tries=1)
    with pytest.raises(RemoteError) as nothing:
        call(client.zctx(), endpoint, m.GetBlock(info_hash=meta.info_hash, piece_index=0, block_offset=0,
                                                  length=100), timeout_s=2, tries=1)
    assert nothing.value.code == ErrorCode.UNKNOWN_TORRENT
    assert swarm.status("p1")["jobs"] == []
    assert swarm.cli_json("status", "--peer-id", "p1")["registered"]     # still alive and serving


def test_the_control_socket_is_closed_to_other_users(swarm, tmp_path):
    swarm.tracker()
    swarm.peer("p1")
    run = tmp_path / "output" / "run"
    assert run.stat().st_mode & 0o777 == 0o700
    if os.geteuid() != 0:
        pytest.fail("this check needs root to act as another user (CI runs as root)")
    probe = ("import socket,sys; s=socket.socket(socket.AF_UNIX)\n"
             "try:\n s.connect(sys.argv[1]); print('connected')\nexcept OSError as e: print(type(e).__name__)")
    system_python = "/usr/bin/python3"     # the venv's interpreter lives where nobody cannot read
    out = subprocess.run([system_python, "-c", probe, str(run / "p1.sock")], user="nobody",
                         capture_output=True, text=True, cwd="/")
    assert out.stdout.strip() == "PermissionError", out.stdout + out.stderr


def test_one_peer_cannot_change_another_peers_record(swarm, tmp_path, seeded):
    src, info = seeded
    ep = swarm.tracker_endpoint
    for msg in (m.Deregister(peer_id="seeder", token="stolen"),
                m.Announce(peer_id="seeder", token="stolen", info_hash=info["info_hash"], pieces=[]),
                m.Heartbeat(peer_id="seeder", token="stolen"),
                m.RegisterPeer(peer_id="seeder", host="127.0.0.1", port=swarm.peer_ports["seeder"], token="")):
        with pytest.raises(RemoteError) as err:
            call(client.zctx(), ep, msg, timeout_s=2, tries=1)
        assert err.value.code in (ErrorCode.NOT_AUTHORISED, ErrorCode.PEER_ID_TAKEN)
    peers = call(client.zctx(), ep, m.GetPeers(info_hash=info["info_hash"]), timeout_s=2, tries=1).msg.peers
    assert {p.peer_id: p.have for p in peers} == {"seeder": info["num_pieces"]}
