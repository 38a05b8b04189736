"""One contract, two backends: SQLite (embedded default) and MongoDB (SecantusDB server)."""
import itertools

import pytest

from node import config
from node.tracker.store import BITTORRENT, ClientEntry, PeerRecord, StoreError, TorrentRecord, open_store
from node.tracker.store.sqlite import filesystem_type, refuse_network_fs

_db_names = itertools.count()


@pytest.fixture(params=["sqlite", pytest.param("mongo", marks=pytest.mark.mongo)])
def store_uri(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tracker.db'}"
    base = request.getfixturevalue("mongo_uri")
    return f"{base}/contract{next(_db_names)}?retryWrites=false"


@pytest.fixture
def store(store_uri):
    s = open_store(store_uri)
    yield s
    s.close()


TORRENT = TorrentRecord("ab" * 20, "f.bin", 100_000, 16384, 7, b"d4:infode")


def test_peers(store):
    store.put_peer(PeerRecord("p1", "127.0.0.1", 6881, "tok", 10.0, interval_s=2.0, expires=16.0))
    store.commit()
    assert store.get_peer("p1") == PeerRecord("p1", "127.0.0.1", 6881, "tok", 10.0, interval_s=2.0, expires=16.0)
    store.touch_peer("p1", 20.0, 2.0, 26.0)
    store.put_peer(PeerRecord("p2", "127.0.0.1", 6882, "t2", 5.0, interval_s=2.0, expires=11.0))
    store.commit()
    assert store.get_peer("p1").last_seen == 20.0
    assert [p.peer_id for p in store.peers_due(15.0)] == ["p2"]
    assert (store.count_live(15.0), store.count_live(10.0), store.count_live(30.0)) == (1, 2, 0)
    assert store.get_peer("nobody") is None


def test_torrents(store):
    store.put_torrent(TORRENT)
    store.put_torrent(TORRENT)   # idempotent
    store.commit()
    assert store.get_torrent(TORRENT.info_hash) == TORRENT
    assert store.get_torrent("00" * 20) is None


def test_files_spread_and_peer_holdings(store):
    store.put_torrent(TORRENT)
    for pid in ("p1", "p2"):
        store.put_peer(PeerRecord(pid, "127.0.0.1", 6881, "t", 1.0))
    store.add_pieces(TORRENT.info_hash, "p1", [0, 1, 2, 3, 4, 5, 6])
    store.add_pieces(TORRENT.info_hash, "p2", [6, 1])
    store.add_pieces(TORRENT.info_hash, "p2", [1, 3])
    store.commit()
    spread = store.holders(TORRENT.info_hash)
    assert {pid: bits.indexes() for pid, bits in spread.items()} == {"p1": list(range(7)), "p2": [1, 3, 6]}
    assert store.held_by("p2") == {TORRENT.info_hash: 3}


def test_delete_peer_removes_what_it_held(store):
    store.put_torrent(TORRENT)
    store.put_peer(PeerRecord("p1", "127.0.0.1", 6881, "t", 1.0))
    store.add_pieces(TORRENT.info_hash, "p1", [0])
    store.commit()
    store.delete_peer("p1")
    store.commit()
    assert store.get_peer("p1") is None
    assert store.holders(TORRENT.info_hash) == {}
    assert store.held_by("p1") == {}


def test_committed_state_survives_reopen(store_uri):
    s = open_store(store_uri)
    s.put_torrent(TORRENT)
    s.put_peer(PeerRecord("p1", "127.0.0.1", 6881, "t", 1.0))
    s.add_pieces(TORRENT.info_hash, "p1", [2, 4])
    s.commit()
    s.close()
    again = open_store(store_uri)
    try:
        assert again.holders(TORRENT.info_hash)["p1"].indexes() == [2, 4]
        assert again.get_peer("p1").token == "t"
    finally:
        again.close()


def test_savepoint_rolls_back_one_handler(store):
    store.put_torrent(TORRENT)
    store.put_peer(PeerRecord("p1", "127.0.0.1", 6881, "t", 1.0))
    store.commit()
    with pytest.raises(RuntimeError):
        with store.savepoint():
            store.add_pieces(TORRENT.info_hash, "p1", [0])
            raise RuntimeError("handler failed")
    with store.savepoint():
        store.add_pieces(TORRENT.info_hash, "p1", [1])
    store.commit()
    held = store.holders(TORRENT.info_hash)["p1"].indexes()
    if store.uri.startswith("sqlite"):
        assert held == [1]        # SQLite savepoints undo the failed handler's writes
    else:
        assert 1 in held          # MongoDB writes are acknowledged one by one


def test_remove_pieces_of_one_torrent(store):
    other = TorrentRecord("cd" * 20, "g.bin", 50_000, 16384, 4, b"d4:infode")
    store.put_torrent(TORRENT)
    store.put_torrent(other)
    store.put_peer(PeerRecord("p1", "127.0.0.1", 6881, "t", 1.0))
    store.add_pieces(TORRENT.info_hash, "p1", [0, 1])
    store.add_pieces(other.info_hash, "p1", [2])
    store.commit()
    store.remove_pieces(TORRENT.info_hash, "p1")
    store.commit()
    assert store.holders(TORRENT.info_hash) == {}
    assert store.held_by("p1") == {other.info_hash: 1}


def test_heartbeats_never_move_last_seen_or_the_deadline_back(store):
    """Heartbeats may land on trackers whose clocks differ a little: the latest one wins. A
    shorter interval handed out as the swarm shrinks never pulls the deadline in either."""
    store.put_peer(PeerRecord("p1", "127.0.0.1", 6881, "t", 10.0, interval_s=60.0, expires=190.0))
    store.touch_peer("p1", 30.0, 60.0, 210.0)
    store.touch_peer("p1", 20.0, 2.0, 26.0)
    store.commit()
    p1 = store.get_peer("p1")
    assert (p1.last_seen, p1.interval_s, p1.expires) == (30.0, 2.0, 210.0)


def test_expiry_rechecks_the_stored_deadline(store):
    """A tracker lists p1 as due, another takes its heartbeat: the expiry must not delete it."""
    store.put_torrent(TORRENT)
    store.put_peer(PeerRecord("p1", "127.0.0.1", 6881, "t", 1.0, interval_s=1.0, expires=4.0))
    store.add_pieces(TORRENT.info_hash, "p1", [0])
    store.commit()
    assert [p.peer_id for p in store.peers_due(5.0)] == ["p1"]
    store.touch_peer("p1", 3.0, 2.0, 9.0)            # the heartbeat through the other tracker
    store.commit()
    assert store.expire_peer("p1", 5.0) is False
    assert store.holders(TORRENT.info_hash)["p1"].indexes() == [0]
    assert store.expire_peer("p1", 10.0) is True
    store.commit()
    assert store.get_peer("p1") is None and store.holders(TORRENT.info_hash) == {}


def test_each_peer_expires_on_its_own_deadline(store):
    """Peers handed different intervals (the swarm grew or shrank between them) expire on their own."""
    store.put_peer(PeerRecord("short", "127.0.0.1", 6881, "t", 100.0, interval_s=2.0, expires=106.0))
    store.put_peer(PeerRecord("long", "127.0.0.1", 6882, "t", 100.0, interval_s=60.0, expires=280.0))
    store.commit()
    assert [p.peer_id for p in store.peers_due(200.0)] == ["short"]
    assert store.expire_peer("long", 200.0) is False and store.expire_peer("short", 200.0) is True
    store.commit()
    assert [p.peer_id for p in store.list_peers()] == ["long"] and store.count_live(200.0) == 1


def test_sqlite_file_takes_one_tracker(tmp_path):
    uri = f"sqlite:///{tmp_path / 'tracker.db'}"
    first = open_store(uri)
    try:
        with pytest.raises(StoreError, match="another tracker already uses .*tracker.db"):
            open_store(uri)
    finally:
        first.close()
    open_store(uri).close()                 # released on close


def test_sqlite_on_a_network_filesystem_is_refused(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nserver:/export {tmp_path / 'nfs'} nfs4 rw 0 0\n")
    assert filesystem_type(str(tmp_path / "nfs" / "tracker.db"), str(mounts)) == "nfs4"
    assert filesystem_type(str(tmp_path / "local" / "tracker.db"), str(mounts)) == "ext4"
    with pytest.raises(StoreError, match=r"network filesystem \(nfs4\)"):
        refuse_network_fs(str(tmp_path / "nfs" / "tracker.db"), str(mounts))


def test_reads_see_this_batchs_writes_before_commit(store):
    """MongoDB queues a batch's piece updates for one bulk write at commit: reads must not miss them."""
    store.put_torrent(TORRENT)
    store.put_peer(PeerRecord("p1", "127.0.0.1", 6881, "t", 1.0))
    store.add_pieces(TORRENT.info_hash, "p1", [0, 5])
    assert store.holders(TORRENT.info_hash)["p1"].indexes() == [0, 5]
    store.add_pieces(TORRENT.info_hash, "p1", [6])
    assert store.held_by("p1") == {TORRENT.info_hash: 3}
    store.commit()


def test_swap_peer_is_a_compare_and_swap(store):
    """Two trackers registering one peer id at once: only the first write wins."""
    assert store.swap_peer(PeerRecord("p1", "h", 1, "tA", 1.0), None)
    assert not store.swap_peer(PeerRecord("p1", "h", 1, "tB", 1.0), None)          # it read "absent" too
    old = store.get_peer("p1")
    assert store.swap_peer(PeerRecord("p1", "h", 1, "tC", 2.0, prev_token="tA"), old)
    assert not store.swap_peer(PeerRecord("p1", "h", 1, "tD", 2.0, prev_token="tA"), old)      # old is stale now
    store.commit()
    assert store.get_peer("p1") == PeerRecord("p1", "h", 1, "tC", 2.0, prev_token="tA")


def test_standard_clients_share_the_collections_but_not_the_bitfields(store):
    store.put_torrent(TORRENT)
    store.put_peer(PeerRecord("p1", "127.0.0.1", 6881, "t", 1.0))
    store.add_pieces(TORRENT.info_hash, "p1", [0])
    seeder = PeerRecord("bt:" + "aa" * 20, "127.0.0.2", 51413, "", 1.0, BITTORRENT)
    leecher = PeerRecord("bt:" + "bb" * 20, "::1", 6000, "", 2.0, BITTORRENT)
    for client, left in ((seeder, 0), (leecher, 500)):
        store.put_peer(client)
        store.put_client(TORRENT.info_hash, client.peer_id, left)
    store.put_client("ee" * 20, leecher.peer_id, 7)         # a torrent nobody registered
    store.put_client(TORRENT.info_hash, leecher.peer_id, 0)  # the leecher finished
    store.add_completed(TORRENT.info_hash)
    store.commit()
    assert store.get_peer(seeder.peer_id) == seeder
    assert store.clients(TORRENT.info_hash) == [ClientEntry(seeder, 0), ClientEntry(leecher, 0)]
    assert [c.left for c in store.clients("ee" * 20)] == [7]
    assert list(store.holders(TORRENT.info_hash)) == ["p1"]  # zorrent peers' bitfields only
    assert (store.completed(TORRENT.info_hash), store.completed("ee" * 20)) == (1, 0)
    assert [p.peer_id for p in store.peers_due(5.0)] == ["p1"]
    assert sorted(p.peer_id for p in store.peers_due(5.0, BITTORRENT)) == [seeder.peer_id, leecher.peer_id]
    assert store.held_by(leecher.peer_id) == {TORRENT.info_hash: 0, "ee" * 20: 0}
    store.remove_pieces(TORRENT.info_hash, leecher.peer_id)  # event=stopped
    store.delete_peer(seeder.peer_id)                        # expired
    store.commit()
    assert store.clients(TORRENT.info_hash) == []
    assert store.held_by(leecher.peer_id) == {"ee" * 20: 0}


def test_old_sqlite_store_gains_the_new_columns(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE peers (peer_id TEXT PRIMARY KEY, host TEXT NOT NULL, port INTEGER NOT NULL,"
                     " token TEXT NOT NULL, last_seen REAL NOT NULL);"
                     "CREATE TABLE files (info_hash TEXT NOT NULL, peer_id TEXT NOT NULL, bitfield BLOB NOT NULL,"
                     " have INTEGER NOT NULL, PRIMARY KEY (info_hash, peer_id));"
                     "INSERT INTO peers VALUES ('p1', '127.0.0.1', 6881, 't', 1.0);")
    db.close()
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.get_peer("p1") == PeerRecord("p1", "127.0.0.1", 6881, "t", 1.0,
                                                  expires=1.0 + config.PEER_EXPIRY_S)  # the old rule's deadline
        store.put_client(TORRENT.info_hash, "p1", 3)
        store.commit()
    finally:
        store.close()


def test_listings_for_the_swarm_view(store):
    assert store.list_peers() == [] and store.list_torrents() == []
    other = TorrentRecord("cd" * 20, "<b>g</b>.bin", 5, 16384, 1, b"d4:infodee")
    store.put_torrent(other)
    store.put_torrent(TORRENT)
    store.put_peer(PeerRecord("p2", "127.0.0.1", 6882, "t2", 5.0))
    store.put_peer(PeerRecord("p1", "127.0.0.1", 6881, "t1", 7.0))
    store.commit()
    assert store.list_torrents() == [TORRENT, other]
    assert store.list_peers() == [PeerRecord("p1", "127.0.0.1", 6881, "t1", 7.0),
                                  PeerRecord("p2", "127.0.0.1", 6882, "t2", 5.0)]


def test_changes_since_a_version(store):
    """A job reads the whole spread once, then only what changed after its cursor."""
    store.put_torrent(TORRENT)
    for pid in ("p1", "p2"):
        store.put_peer(PeerRecord(pid, "127.0.0.1", 6881, "t", 1.0))
    store.commit()
    start, none = store.changes(TORRENT.info_hash, -1)
    assert none is None                                     # no cursor yet: read holders()
    store.add_pieces(TORRENT.info_hash, "p1", [0, 1])
    store.add_pieces(TORRENT.info_hash, "p2", [])           # a member with no pieces yet
    store.commit()
    v1, changes = store.changes(TORRENT.info_hash, start)
    assert v1 > start
    assert [(c.peer_id, c.pieces, c.gone) for c in changes] == [("p1", [0, 1], False), ("p2", [], False)]
    assert store.changes(TORRENT.info_hash, v1) == (v1, [])   # nothing new
    store.add_pieces(TORRENT.info_hash, "p2", [5])
    store.remove_pieces(TORRENT.info_hash, "p1")
    store.commit()
    v2, changes = store.changes(TORRENT.info_hash, v1)
    assert [(c.peer_id, c.pieces, c.gone) for c in changes] == [("p1", None, True), ("p2", [5], False)]
    store.add_pieces(TORRENT.info_hash, "p1", [3])            # p1 came back: what it held before is void
    store.commit()
    v3, changes = store.changes(TORRENT.info_hash, v1)
    assert [(c.peer_id, c.gone, c.reset) for c in changes] == [("p1", False, True), ("p2", False, False)]
    assert store.bitfield_of(TORRENT.info_hash, "p1").indexes() == [3]
    assert store.changes(TORRENT.info_hash, v3 + 5)[1] is None      # a cursor from another store
    store.delete_peer("p2")
    store.commit()
    _, changes = store.changes(TORRENT.info_hash, v3)
    assert [(c.peer_id, c.gone) for c in changes] == [("p2", True)]
    assert store.bitfield_of(TORRENT.info_hash, "p2") is None


def test_a_big_announce_says_read_the_bitfield(store):
    big = TorrentRecord("ef" * 20, "big.bin", 100_000 * 16384, 16384, 100_000, b"d4:infode")
    store.put_torrent(big)
    store.put_peer(PeerRecord("p1", "127.0.0.1", 6881, "t", 1.0))
    store.commit()
    v0, _ = store.changes(big.info_hash, -1)
    store.add_pieces(big.info_hash, "p1", list(range(0, 100_000, 3)))
    store.commit()
    _, changes = store.changes(big.info_hash, v0)
    assert [(c.peer_id, c.pieces) for c in changes] == [("p1", None)]
    assert store.bitfield_of(big.info_hash, "p1").indexes() == list(range(0, 100_000, 3))
    assert store.held_by("p1") == {big.info_hash: len(range(0, 100_000, 3))}
    assert store.holders(big.info_hash)["p1"].indexes()[-1] == 99_999


@pytest.mark.mongo
def test_a_mongodb_store_from_before_one_document_per_peer_is_converted(mongo_uri):
    import pymongo

    uri = f"{mongo_uri}/contract_old{next(_db_names)}?retryWrites=false"
    db = pymongo.MongoClient(uri).get_default_database()
    db.torrents.insert_one({"_id": TORRENT.info_hash, "name": TORRENT.name, "length": TORRENT.length,
                            "piece_length": TORRENT.piece_length, "num_pieces": TORRENT.num_pieces,
                            "metainfo": TORRENT.metainfo})
    db.files.insert_one({"_id": TORRENT.info_hash, "name": TORRENT.name, "num_pieces": TORRENT.num_pieces,
                         "peers": {"p1": [0, 6, 3]}, "clients": {"bt:" + "aa" * 20: 9}})
    store = open_store(uri)
    try:
        assert store.holders(TORRENT.info_hash)["p1"].indexes() == [0, 3, 6]
        assert store.held_by("bt:" + "aa" * 20) == {TORRENT.info_hash: 0}
        assert "peers" not in db.files.find_one({"_id": TORRENT.info_hash})
    finally:
        store.close()


def test_peer_records_reads_several_at_once(store):
    store.put_peer(PeerRecord("p1", "127.0.0.1", 6881, "t1", 1.0))
    store.put_peer(PeerRecord("p2", "127.0.0.1", 6882, "t2", 2.0))
    store.commit()
    assert store.peer_records(["p2", "nobody", "p1"]) == {"p1": store.get_peer("p1"), "p2": store.get_peer("p2")}


def test_mongodb_peers_written_by_an_older_tracker_expire_on_their_last_heartbeat(mongo_uri):
    """A tracker from before per-peer deadlines, sharing the store, replaces peer documents
    without ``expires`` (review2 finding 9). They are live for the span the older tracker
    gave (PEER_EXPIRY_S, HTTP_PEER_EXPIRY_S for a standard client) after ``last_seen``, and
    then due and expired like any other: never invisible yet kept for good."""
    import pymongo

    uri = f"{mongo_uri}/contract_mixed{next(_db_names)}?retryWrites=false"
    store = open_store(uri)                               # its start-up migration has run already
    db = pymongo.MongoClient(uri).get_default_database()
    now = 1000.0

    def old_tracker_writes(peer_id: str, last_seen: float, kind: str = "zorrent") -> None:
        db.peers.replace_one({"_id": peer_id}, {"host": "127.0.0.1", "port": 6881, "token": "t",
                                                "last_seen": last_seen, "kind": kind, "prev_token": "",
                                                "bt_port": 0}, upsert=True)
    try:
        store.put_torrent(TORRENT)
        store.add_pieces(TORRENT.info_hash, "dead", [1])
        store.commit()
        old_tracker_writes("dead", now - config.PEER_EXPIRY_S - 1)
        old_tracker_writes("live", now - config.PEER_EXPIRY_S / 2)
        old_tracker_writes("bt:" + "cc" * 20, now - config.PEER_EXPIRY_S - 1, BITTORRENT)   # a client's span is longer
        assert [p.peer_id for p in store.peers_due(now)] == ["dead"]
        assert store.peers_due(now, BITTORRENT) == []
        assert store.count_live(now) == 1 and store.count_live(now, BITTORRENT) == 1
        assert store.get_peer("live").expires == now - config.PEER_EXPIRY_S / 2 + config.PEER_EXPIRY_S
        assert store.expire_peer("live", now) is False
        assert store.expire_peer("dead", now) is True
        store.commit()
        assert store.get_peer("dead") is None and store.holders(TORRENT.info_hash) == {}
        later = now + config.HTTP_PEER_EXPIRY_S
        assert [p.peer_id for p in store.peers_due(later, BITTORRENT)] == ["bt:" + "cc" * 20]
        assert store.expire_peer("bt:" + "cc" * 20, later) is True
    finally:
        store.close()
