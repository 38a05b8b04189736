"""Several stateless trackers on one MongoDB store (SecantusDB), and peers and the CLI that
fail over between them: SIGKILL one mid-download, the download finishes; restart it, the
peers come back to it."""
import filecmp
import itertools
import json
import os
import signal
import subprocess

import pytest

from tests.conftest import PY, REPO, wait_for, write_random

MIB = 1024 * 1024
_dbs = itertools.count()


def start_tracker(swarm, name: str, store: str, port: int = 0) -> str:
    ready = swarm.workdir / f"{name}.ready"
    ready.unlink(missing_ok=True)
    proc = swarm.spawn(name, "tracker", "--port", str(port), "--store", store, "--ready-file", str(ready))
    return swarm._ready(name, proc, ready)


def kill(swarm, name: str) -> None:
    for n, proc, _ in swarm.procs:
        if n == name and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def two_trackers(swarm, mongo_uri):
    store = f"{mongo_uri}/trackers{next(_dbs)}?retryWrites=false"
    a = start_tracker(swarm, "tracker_a", store)
    b = start_tracker(swarm, "tracker_b", store)
    swarm.tracker_endpoint = f"{a},{b}"          # $ZORRENT_TRACKER and every peer's --tracker
    return a, b, store


def holders(swarm, torrent, tracker: str) -> dict:
    got = swarm.cli_json("get", "--torrent", str(torrent), "--tracker", tracker)
    return {p["peer_id"]: p["have"] for p in got["peers"]}


@pytest.mark.mongo
def test_get_agrees_through_either_tracker(swarm, two_trackers, tmp_path):
    a, b, _ = two_trackers
    swarm.peer("seeder")
    swarm.peer("leecher")
    src = write_random(tmp_path / "in" / "f.bin", 3 * MIB, seed=13)
    info = swarm.upload(src, "seeder")
    raw = (swarm.workdir / info["torrent"]).read_bytes()    # an absolute path stays as it is
    assert a.encode() in raw and b.encode() in raw and b"announce-list" in raw
    swarm.cli("download", "--torrent", info["torrent"], "--output", "out.bin", "--peer-id", "leecher",
              "--peer-port", str(swarm.peer_ports["leecher"]))
    assert filecmp.cmp(src, swarm.workdir / "out.bin", shallow=False)
    n = info["num_pieces"]
    wait_for(lambda: holders(swarm, info["torrent"], a) == {"seeder": n, "leecher": n}, what="tracker A's view")
    assert holders(swarm, info["torrent"], b) == holders(swarm, info["torrent"], a)


@pytest.mark.mongo
def test_tracker_killed_mid_download_then_back(swarm, two_trackers, tmp_path):
    a, b, store = two_trackers
    swarm.peer("seeder", "--upload-rate", str(2 * MIB))     # the download lasts a few seconds
    swarm.peer("leecher")
    src = write_random(tmp_path / "in" / "slow.bin", 8 * MIB, seed=14)
    info = swarm.upload(src, "seeder")
    dl = swarm.spawn("download", "download", "--torrent", info["torrent"], "--output", "out.bin",
                     "--peer-id", "leecher", "--peer-port", str(swarm.peer_ports["leecher"]))
    wait_for(lambda: (j := swarm.job("leecher", info["info_hash"])) and j["have"] >= 2, what="download under way")
    kill(swarm, "tracker_a")                                  # every peer's preferred tracker
    assert swarm.job("leecher", info["info_hash"])["state"] == "downloading"
    assert dl.wait(timeout=90) == 0, swarm.log("download")
    assert filecmp.cmp(src, swarm.workdir / "out.bin", shallow=False)
    n = info["num_pieces"]
    wait_for(lambda: holders(swarm, info["torrent"], b).get("leecher") == n, what="tracker B lists the leecher complete")
    assert "failing over to " + b in swarm.log("leecher")
    default = swarm.cli_json("get", "--torrent", info["torrent"])   # the torrent's trackers: A times out, B answers
    assert {p["peer_id"]: p["have"] for p in default["peers"]} == {"seeder": n, "leecher": n}

    port = int(a.rsplit(":", 1)[1])
    assert start_tracker(swarm, "tracker_a2", store, port) == a
    for peer_id in ("seeder", "leecher"):
        wait_for(lambda: "moving back to it" in swarm.log(peer_id), timeout_s=30, what=f"{peer_id} back on tracker A")
    kill(swarm, "tracker_b")
    src2 = write_random(tmp_path / "in" / "second.bin", 1 * MIB, seed=15)
    info2 = swarm.upload(src2, "seeder")                     # returns once tracker A has every piece
    assert holders(swarm, info2["torrent"], a) == {"seeder": info2["num_pieces"]}
    assert holders(swarm, info["torrent"], a) == {"seeder": n, "leecher": n}


@pytest.mark.mongo
@pytest.mark.xdist_group("heavy")     # with the lab tests, on one worker, one at a time
@pytest.mark.timeout(300)
def test_soak_with_two_trackers_and_kills(tmp_path, mongo_uri):
    store = f"{mongo_uri}/soak{next(_dbs)}?retryWrites=false"
    res = subprocess.run([PY, str(REPO / "main.py"), "--json", "soak", "--peers", "5", "--files", "3",
                          "--minutes", "0.75", "--kill-every", "5", "--min-size", "3M", "--max-size", "6M",
                          "--upload-rate", "3M", "--trackers", "2", "--store", store, "--seed", "3",
                          "--workdir", str(tmp_path / "soak")],
                         capture_output=True, text=True, timeout=280, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    print("\nsoak, 2 trackers:", {k: report[k] for k in ("downloads_started", "downloads_verified",
                                                         "downloads_corrupt", "kills", "kills_by_node")})
    assert report["ok"] and report["downloads_corrupt"] == 0 and report["downloads_unfinished"] == 0
    assert report["downloads_verified"] == report["downloads_completed"] >= 1
    assert {"tracker", "tracker2"} & set(report["kills_by_node"]), report["kills_by_node"]


def test_one_tracker_per_sqlite_file(swarm):
    swarm.tracker()                                           # the default store: output/tracker.db
    res = swarm.cli("tracker", "--port", "0", check=False, timeout_s=30)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "another tracker already uses" in lines[0] and "mongodb://" in lines[0], lines


def test_several_trackers_need_a_shared_store(swarm, tmp_path):
    (tmp_path / "peers.json").write_text('{"p1": {"ip": "127.0.0.1", "port": 1}}')
    res = swarm.cli("swarm", "up", "--config", str(tmp_path / "peers.json"), "--trackers", "2", check=False)
    assert res.returncode == 2 and "need one shared store" in res.stderr, res.stderr
    assert swarm.supervisor_pid() is None


def test_tracker_lists_are_parsed_once():
    from node import config
    from protocol.errors import ZorrentError

    assert config.tracker_endpoints("tcp://a:1, b:2,tcp://a:1") == ["tcp://a:1", "tcp://b:2"]
    assert config.tracker_endpoints(["tcp://a:1", "c:3,b:2"]) == ["tcp://a:1", "tcp://c:3", "tcp://b:2"]
    for bad in ("http://a:1", "a", "tcp://a:0", "tcp://:5", ","):
        with pytest.raises(ZorrentError):
            config.tracker_endpoints(bad)
