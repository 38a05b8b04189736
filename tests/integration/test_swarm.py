"""Many peers at once: pieces from every seeder, leechers serving leechers, foreign torrents,
and the tracker on the MongoDB backend."""
import filecmp

import pymongo
import pytest

from node.tracker.store.mongo import bitfield_from_words
from tests.conftest import write_random, wait_for
from tests.integration.test_readme_flow import stats_rows

MIB = 1024 * 1024


def download(swarm, torrent, out, peer_id, *, json_out=False):
    args = ["download", "--torrent", str(torrent), "--output", str(out), "--peer-id", peer_id,
            "--peer-port", str(swarm.peer_ports[peer_id])]
    return swarm.cli_json(*args) if json_out else swarm.cli(*args)


def test_three_seeders_one_leecher(swarm, tmp_path):
    swarm.tracker()
    seeds = ["seed1", "seed2", "seed3"]
    for peer_id in seeds + ["leecher"]:
        swarm.peer(peer_id)
    src = write_random(tmp_path / "in" / "big.bin", 24 * MIB + 12345, seed=3)
    for peer_id in seeds:
        info = swarm.upload(src, peer_id)
    res = download(swarm, info["torrent"], tmp_path / "out" / "big.bin", "leecher")
    assert filecmp.cmp(src, tmp_path / "out" / "big.bin", shallow=False)
    rows = stats_rows(res.stdout)
    assert set(rows) == set(seeds)
    assert all(rows[s] > 0 for s in seeds), rows
    assert sum(rows.values()) == info["num_pieces"]


def test_second_leecher_gets_pieces_from_the_first(swarm, tmp_path):
    swarm.tracker()
    swarm.peer("seeder", "--upload-rate", str(4 * MIB))    # slow seeder: A is still busy when B starts
    swarm.peer("leech_a", "--disk-io", "buffered")    # A writes through the page cache, B direct
    swarm.peer("leech_b")
    src = write_random(tmp_path / "in" / "movie.bin", 16 * MIB, seed=4)
    info = swarm.upload(src, "seeder")
    a = swarm.spawn("download_a", "download", "--torrent", info["torrent"], "--output", "out/a.bin",
                    "--peer-id", "leech_a", "--peer-port", str(swarm.peer_ports["leech_a"]))
    wait_for(lambda: (j := swarm.job("leech_a", info["info_hash"])) and j["have"] >= j["num_pieces"] // 2,
             what="leecher A at half")
    job_b = download(swarm, info["torrent"], tmp_path / "out" / "b.bin", "leech_b", json_out=True)
    assert a.wait(timeout=60) == 0, swarm.log("download_a")
    got = {p["peer_id"]: p["pieces"] for p in job_b["peers"]}
    assert got.get("leech_a", 0) > 0, got
    assert sum(got.values()) == info["num_pieces"]
    for name in ("a.bin", "b.bin"):
        assert filecmp.cmp(src, tmp_path / "out" / name, shallow=False)


def test_torrent_made_by_libtorrent_uploads_and_downloads(swarm, tmp_path):
    import libtorrent as lt

    swarm.tracker()
    swarm.peer("p1")
    swarm.peer("p2")
    src = write_random(tmp_path / "in" / "lt.bin", 5 * MIB + 7, seed=5)
    fs = lt.file_storage()
    lt.add_files(fs, str(src))
    ct = lt.create_torrent(fs, 64 * 1024, flags=lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, str(src.parent))
    torrent = tmp_path / "output" / "torrents" / "lt.bin.torrent"
    torrent.parent.mkdir(parents=True)
    torrent.write_bytes(lt.bencode(ct.generate()))
    info = swarm.upload(src, "p1")
    assert info["info_hash"] == str(lt.torrent_info(str(torrent)).info_hashes().v1)
    download(swarm, torrent, tmp_path / "out" / "lt.bin", "p2")
    assert filecmp.cmp(src, tmp_path / "out" / "lt.bin", shallow=False)


@pytest.mark.mongo
def test_tracker_on_mongodb(swarm, tmp_path, mongo_uri):
    uri = f"{mongo_uri}/bittorrent_e2e?retryWrites=false"
    swarm.tracker("--store", uri)
    swarm.peer("p1")
    swarm.peer("p2")
    src = write_random(tmp_path / "in" / "m.bin", 3 * MIB, seed=6)
    info = swarm.upload(src, "p1")
    download(swarm, info["torrent"], tmp_path / "out" / "m.bin", "p2")
    assert filecmp.cmp(src, tmp_path / "out" / "m.bin", shallow=False)
    db = pymongo.MongoClient(uri).get_default_database()
    assert {d["_id"] for d in db.peers.find()} == {"p1", "p2"}
    assert db.torrents.find_one({"_id": info["info_hash"]})["num_pieces"] == info["num_pieces"]
    n = info["num_pieces"]

    def held(peer_id: str) -> list[int]:       # one files document per (torrent, peer), a word bitfield
        d = db.files.find_one({"_id": f"{info['info_hash']}/{peer_id}"}) or {}
        return bitfield_from_words(n, d.get("w", {})).indexes()

    wait_for(lambda: held("p2") == list(range(n)), what="p2's pieces in the files collection")
    assert held("p1") == list(range(n))
    assert db.files.find_one({"_id": info["info_hash"]})["v"] >= 2      # the torrent's change counter


def test_remove_stops_serving_and_tells_the_tracker(swarm, tmp_path):
    src, info = swarm.seeded("p1", ["p2"], "r.bin", 2 * MIB, seed=12)
    download(swarm, info["torrent"], tmp_path / "out" / "r.bin", "p2")
    swarm.cli("remove", "--torrent", info["torrent"], "--peer-id", "p2", "--delete")
    assert not (tmp_path / "out" / "r.bin").exists() and src.exists()
    wait_for(lambda: {p["peer_id"] for p in swarm.cli_json("get", "--torrent", info["torrent"])["peers"]} == {"p1"},
             what="the tracker to forget p2's pieces")
    swarm.cli("remove", "--torrent", info["torrent"], "--peer-id", "p1", "--delete")
    assert src.exists()                      # an uploaded file is never deleted
    assert swarm.status("p1")["jobs"] == []
