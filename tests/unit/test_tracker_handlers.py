"""Tracker handlers and the dispatcher, against a real in-memory SQLite store."""
import msgpack
import pytest

from node import config
from node.dispatch import Dispatcher
from node.tracker.handlers import TrackerContext, standard, tracker
from node.tracker.store import open_store
from protocol import messages as m
from protocol.codec import decode, encode
from protocol.errors import ErrorCode
from protocol.metainfo import create
from tests.conftest import write_random


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def ctx():
    clock = Clock()
    c = TrackerContext(store=open_store("sqlite://:memory:"), clock=clock, started=0.0)
    c.clock_obj = clock
    return c


def ask(ctx, msg):
    reply = decode(tracker.dispatch(ctx, encode(msg, 5)))
    ctx.commit()
    assert reply.id == 5
    return reply.msg


def expect_error(ctx, msg, code):
    reply = ask(ctx, msg)
    assert isinstance(reply, m.Error), reply
    assert reply.code == code
    return reply.message


@pytest.fixture
def meta(tmp_path):
    return create(write_random(tmp_path / "f.bin", 100_000, 1), "tcp://t:1", 16384)


def register(ctx, peer_id="p1", port=6881):
    return ask(ctx, m.RegisterPeer(peer_id=peer_id, host="127.0.0.1", port=port, token="")).token


def register_torrent(ctx, meta, peer_id="p1"):
    """RegisterTorrent needs a registered peer's token."""
    peer = ctx.store.get_peer(peer_id)
    token = peer.token if peer else register(ctx, peer_id)
    return ask(ctx, m.RegisterTorrent(peer_id=peer_id, token=token, metainfo=meta.raw))


def test_register_announce_get_peers(ctx, meta):
    token = register(ctx)
    assert register_torrent(ctx, meta).info_hash == meta.info_hash
    assert isinstance(ask(ctx, m.Announce(peer_id="p1", token=token, info_hash=meta.info_hash,
                                          pieces=[0, 2])), m.Ok)
    peers = ask(ctx, m.GetPeers(info_hash=meta.info_hash)).peers
    assert [(p.peer_id, p.have, p.bitfield) for p in peers] == [("p1", 2, b"\xa0")]


def test_duplicate_live_peer_id_from_another_address_is_refused(ctx):
    register(ctx, "p1", 6881)
    text = expect_error(ctx, m.RegisterPeer(peer_id="p1", host="127.0.0.1", port=7000, token=""), ErrorCode.PEER_ID_TAKEN)
    assert text == "peer id 'p1' is already in use by 127.0.0.1:6881"
    ctx.clock_obj.now += config.PEER_EXPIRY_S + 1     # once the first one is silent, the id is free
    register(ctx, "p1", 7000)


def test_only_the_peer_itself_may_change_its_record(ctx, meta):
    register(ctx, "p1")
    register_torrent(ctx, meta)
    expect_error(ctx, m.Announce(peer_id="p1", token="forged", info_hash=meta.info_hash, pieces=[0]),
                 ErrorCode.NOT_AUTHORISED)
    expect_error(ctx, m.Deregister(peer_id="p1", token="forged"), ErrorCode.NOT_AUTHORISED)
    expect_error(ctx, m.Heartbeat(peer_id="ghost", token="x"), ErrorCode.UNKNOWN_PEER)


def test_announce_validates_before_writing(ctx, meta):
    token = register(ctx)
    expect_error(ctx, m.Announce(peer_id="p1", token=token, info_hash="0" * 40, pieces=[0]),
                 ErrorCode.UNKNOWN_TORRENT)
    register_torrent(ctx, meta)
    text = expect_error(ctx, m.Announce(peer_id="p1", token=token, info_hash=meta.info_hash,
                                        pieces=[1, meta.num_pieces]), ErrorCode.BAD_FIELD)
    assert "out of range" in text
    assert ask(ctx, m.GetPeers(info_hash=meta.info_hash)).peers == []


def test_silent_peers_expire(ctx, meta):
    token = register(ctx)
    register_torrent(ctx, meta)
    ask(ctx, m.Announce(peer_id="p1", token=token, info_hash=meta.info_hash, pieces=[0]))
    ctx.clock_obj.now += config.PEER_EXPIRY_S + 1
    assert ctx.expire_peers() == ["p1"]
    assert ask(ctx, m.GetPeers(info_hash=meta.info_hash)).peers == []


def test_bad_metainfo_is_an_error_reply(ctx):
    text = expect_error(ctx, m.RegisterTorrent(peer_id="p1", token=register(ctx), metainfo=b"d4:infoi3ee"),
                        ErrorCode.BAD_METAINFO)
    assert text == "['info'] must be dict, not int"


def test_dispatcher_replies_to_everything(ctx):
    unknown = [msgpack.packb({"v": 1, "id": 9, "type": "get_block", "body": {
        "info_hash": "h", "piece_index": 0, "block_offset": 0, "length": 1}})]
    reply = decode(tracker.dispatch(ctx, unknown))
    assert reply.id == 9 and reply.msg.code == ErrorCode.UNKNOWN_TYPE
    assert decode(tracker.dispatch(ctx, [b"\xc1"])).msg.code == ErrorCode.BAD_FRAME
    assert decode(tracker.dispatch(ctx, encode(m.Ping(), 3, b"payload"))).msg.code == ErrorCode.BAD_FRAME


def test_a_crashing_handler_becomes_an_error_reply(ctx):
    d = Dispatcher("test")

    @d.handles(m.MsgType.PING)
    def boom(ctx, msg):
        raise KeyError("x")

    reply = decode(d.dispatch(ctx, encode(m.Ping(), 4)))
    assert reply.id == 4 and reply.msg.code == ErrorCode.INTERNAL and "KeyError" in reply.msg.message


def test_a_live_record_is_taken_over_only_with_its_token(ctx):
    token = register(ctx, "p1", 6881)
    # a stranger claiming p1's own address, without p1's token, is refused
    expect_error(ctx, m.RegisterPeer(peer_id="p1", host="127.0.0.1", port=6881, token=""), ErrorCode.PEER_ID_TAKEN)
    expect_error(ctx, m.RegisterPeer(peer_id="p1", host="127.0.0.1", port=6881, token="guess"),
                 ErrorCode.PEER_ID_TAKEN)
    # p1 restarted with its saved token takes its record back
    again = ask(ctx, m.RegisterPeer(peer_id="p1", host="127.0.0.1", port=6881, token=token))
    assert isinstance(again, m.Registered) and again.token != token


def test_a_register_replayed_on_another_tracker_is_taken(ctx):
    """A peer's register timed out on tracker A (which had taken it) and was replayed on B:
    it still presents its previous token, so it gets its record back, and nobody else does."""
    first = register(ctx, "p1", 6881)
    taken = ask(ctx, m.RegisterPeer(peer_id="p1", host="127.0.0.1", port=6881, token=first))   # tracker A
    replay = ask(ctx, m.RegisterPeer(peer_id="p1", host="127.0.0.1", port=6881, token=first))  # the same, on B
    assert isinstance(replay, m.Registered) and replay.token not in (first, taken.token)
    expect_error(ctx, m.Heartbeat(peer_id="p1", token=taken.token), ErrorCode.NOT_AUTHORISED)
    assert isinstance(ask(ctx, m.Heartbeat(peer_id="p1", token=replay.token)), m.HeartbeatOk)
    expect_error(ctx, m.RegisterPeer(peer_id="p1", host="127.0.0.1", port=6881, token=""), ErrorCode.PEER_ID_TAKEN)


# ---------------------------------------------------------------- standard clients (the HTTP door)
def ask_door(ctx, msg):
    reply = decode(standard.dispatch(ctx, encode(msg, 6)))
    ctx.commit()
    return reply.msg


def client_announce(info_hash, peer_id="aa" * 20, host="127.0.0.1", port=51413, left=0, event="started",
                    numwant=50):
    return m.ClientAnnounce(info_hash=info_hash, peer_id=peer_id, host=host, port=port, left=left,
                            event=event, numwant=numwant)


def test_standard_clients_meet_each_other_not_zorrent_peers(ctx, meta):
    token = register(ctx)
    register_torrent(ctx, meta)
    ask(ctx, m.Announce(peer_id="p1", token=token, info_hash=meta.info_hash, pieces=[0, 1]))
    seed = ask_door(ctx, client_announce(meta.info_hash, "aa" * 20, left=0))
    assert (seed.complete, seed.incomplete, seed.peers) == (1, 0, [])     # p1 is not handed out
    leech = ask_door(ctx, client_announce(meta.info_hash, "bb" * 20, host="::1", port=6000, left=50_000))
    assert leech.peers == [m.ClientPeer("aa" * 20, "127.0.0.1", 51413)]
    assert ask_door(ctx, client_announce(meta.info_hash, "aa" * 20)).peers == [m.ClientPeer("bb" * 20, "::1", 6000)]
    # zorrent peers (the download engine) see p1 only; the CLI asks for the clients too, flagged
    assert [p.peer_id for p in ask(ctx, m.GetPeers(info_hash=meta.info_hash)).peers] == ["p1"]
    every = ask(ctx, m.GetPeers(info_hash=meta.info_hash, standard_clients=True)).peers
    assert [(p.peer_id, p.kind, p.have, p.bitfield) for p in every] == [
        ("p1", "zorrent", 2, b"\xc0"), ("bt:" + "aa" * 20, "bittorrent", 7, b""),
        ("bt:" + "bb" * 20, "bittorrent", 3, b"")]   # 50,000 bytes left of 100,000: 4 pieces to go


def test_standard_clients_expire_on_their_own_clock(ctx, meta):
    ask_door(ctx, client_announce(meta.info_hash))
    ctx.clock_obj.now += config.PEER_EXPIRY_S + 1
    assert ctx.expire_peers() == []                       # zorrent peers' expiry is not theirs
    ctx.clock_obj.now += config.HTTP_PEER_EXPIRY_S
    assert ctx.expire_peers() == ["bt:" + "aa" * 20]
    assert ask_door(ctx, m.Scrape(info_hashes=[meta.info_hash])).files == [m.ScrapeEntry(meta.info_hash, 0, 0, 0)]


def test_the_http_door_cannot_reach_zorrent_handlers(ctx, meta):
    reply = ask_door(ctx, m.RegisterPeer(peer_id="p9", host="127.0.0.1", port=1, token=""))
    assert reply.code == ErrorCode.UNKNOWN_TYPE
    reply = decode(tracker.dispatch(ctx, encode(client_announce(meta.info_hash), 7))).msg
    assert reply.code == ErrorCode.UNKNOWN_TYPE          # nor can ZeroMQ forge an HTTP client's address


def test_get_swarm_lists_live_peers_torrents_and_counters(ctx, meta):
    token = register(ctx, "p1", 6881)
    register(ctx, "p2", 6882)
    register_torrent(ctx, meta)
    ask(ctx, m.Announce(peer_id="p1", token=token, info_hash=meta.info_hash, pieces=[0, 1, 2]))
    ctx.observe(4, 0.002)
    swarm = ask(ctx, m.GetSwarm())
    assert [(p.peer_id, p.port, p.seen_s_ago) for p in swarm.peers] == [("p1", 6881, 0.0), ("p2", 6882, 0.0)]
    assert [(t.info_hash, t.name, t.num_pieces) for t in swarm.torrents] == [(meta.info_hash, "f.bin", 7)]
    stats = swarm.stats
    assert (stats.requests, stats.announces, stats.pieces_announced, stats.latency_sum_s) == (4, 1, 3, 0.008)
    assert len(stats.latency_counts) == len(stats.latency_buckets_s) + 1 and sum(stats.latency_counts) == 4
    ctx.clock_obj.now += config.PEER_EXPIRY_S + 1          # silent peers drop out before expiry runs
    assert ask(ctx, m.GetSwarm()).peers == []


def test_register_torrent_needs_a_registered_peers_token_and_is_capped(ctx, meta, tmp_path, monkeypatch):
    expect_error(ctx, m.RegisterTorrent(peer_id="nobody", token="", metainfo=meta.raw), ErrorCode.UNKNOWN_PEER)
    token = register(ctx)
    expect_error(ctx, m.RegisterTorrent(peer_id="p1", token="guess", metainfo=meta.raw), ErrorCode.NOT_AUTHORISED)
    monkeypatch.setattr(config, "TRACKER_MAX_TORRENTS_PER_PEER", 1)
    ask(ctx, m.RegisterTorrent(peer_id="p1", token=token, metainfo=meta.raw))
    ask(ctx, m.RegisterTorrent(peer_id="p1", token=token, metainfo=meta.raw))     # the same again: fine
    other = create(write_random(tmp_path / "g.bin", 1000, 2), "tcp://t:1", 16384)
    expect_error(ctx, m.RegisterTorrent(peer_id="p1", token=token, metainfo=other.raw), ErrorCode.LIMIT)
    assert [t.info_hash for t in ctx.store.list_torrents()] == [meta.info_hash]


def test_get_swarm_answers_in_pages(ctx, monkeypatch):
    monkeypatch.setattr(config, "SWARM_PAGE_MAX", 2)
    for i in range(5):
        register(ctx, f"p{i}", 7000 + i)
    seen, after, pages = [], "", 0
    while True:
        page = ask(ctx, m.GetSwarm(peers_after=after))
        pages += 1
        assert len(page.peers) <= 2
        seen += [p.peer_id for p in page.peers]
        if not page.peers_more:
            break
        after = page.peers[-1].peer_id
    assert seen == [f"p{i}" for i in range(5)] and pages == 3


def test_an_advertised_address_must_be_the_connections_own_unless_trusted(ctx):
    from node.dispatch import Source
    from node.tracker.context import parse_networks

    ctx.trusted = parse_networks("none")
    ctx.source = Source(b"x", "127.0.0.1")
    text = expect_error(ctx, m.RegisterPeer(peer_id="p1", host="198.18.0.9", port=6881, token=""),
                        ErrorCode.NOT_AUTHORISED)
    assert "198.18.0.9" in text and "127.0.0.1" in text and "--trust-advertise" in text
    assert ctx.store.get_peer("p1") is None
    ask(ctx, m.RegisterPeer(peer_id="p1", host="127.0.0.1", port=6881, token=""))
    ctx.trusted = parse_networks("127.0.0.0/8")
    ask(ctx, m.RegisterPeer(peer_id="p2", host="198.18.0.9", port=6882, token=""))
    assert ctx.store.get_peer("p2").host == "198.18.0.9"


def test_get_peers_since_a_version_sends_only_what_changed(ctx, meta):
    """A job's first refresh is the whole list; later ones carry only the changes, so their
    size follows what changed, not holders x pieces."""
    tokens = {pid: register(ctx, pid, 6881 + i) for i, pid in enumerate(("p1", "p2", "p3"))}
    register_torrent(ctx, meta)
    for pid in ("p1", "p2"):
        ask(ctx, m.Announce(peer_id=pid, token=tokens[pid], info_hash=meta.info_hash, pieces=[0, 1, 2]))
    whole = ask(ctx, m.GetPeers(info_hash=meta.info_hash))
    assert not whole.delta and [p.peer_id for p in whole.peers] == ["p1", "p2"]
    same = ask(ctx, m.GetPeers(info_hash=meta.info_hash, since=whole.version))
    assert (same.delta, same.peers, same.gone, same.version) == (True, [], [], whole.version)
    ask(ctx, m.Announce(peer_id="p2", token=tokens["p2"], info_hash=meta.info_hash, pieces=[2, 5]))
    ask(ctx, m.Announce(peer_id="p3", token=tokens["p3"], info_hash=meta.info_hash, pieces=[]))
    ask(ctx, m.Forget(peer_id="p1", token=tokens["p1"], info_hash=meta.info_hash))
    delta = ask(ctx, m.GetPeers(info_hash=meta.info_hash, since=whole.version))
    assert delta.delta and delta.gone == ["p1"]
    assert [(p.peer_id, p.pieces, p.bitfield, p.port) for p in delta.peers] == [("p2", [5], b"", 6882),
                                                                               ("p3", [], b"", 6883)]
    ctx.clock_obj.now += config.PEER_EXPIRY_S + 1          # p2 and p3 go silent and expire
    ask(ctx, m.Heartbeat(peer_id="p1", token=tokens["p1"]))
    ctx.expire_peers()
    after = ask(ctx, m.GetPeers(info_hash=meta.info_hash, since=delta.version))
    assert after.delta and sorted(after.gone) == ["p2", "p3"] and after.peers == []
    stale = ask(ctx, m.GetPeers(info_hash=meta.info_hash, since=after.version + 100))   # another store's cursor
    assert not stale.delta


def test_get_peers_refuses_a_bad_cursor(ctx, meta):
    register_torrent(ctx, meta)
    body = {"info_hash": meta.info_hash, "since": -7}
    frames = [msgpack.packb({"v": m.PROTOCOL_VERSION, "id": 5, "type": "get_peers", "body": body})]
    reply = decode(tracker.dispatch(ctx, frames)).msg
    assert isinstance(reply, m.Error) and "['body']['since'] must be -1 or a version" in reply.message


def test_the_interval_grows_with_the_swarm_and_heartbeat_replies_carry_it(ctx, monkeypatch):
    """A big swarm is handed a longer interval (the tracker's heartbeat load stays about
    TRACKER_HEARTBEATS_PER_S), within [HEARTBEAT_INTERVAL_S, HEARTBEAT_MAX_S]."""
    monkeypatch.setattr(config, "TRACKER_HEARTBEATS_PER_S", 2.0)
    monkeypatch.setattr(config, "TRACKER_MAX_PEERS_PER_HOST", 1000)
    first = ask(ctx, m.RegisterPeer(peer_id="p0", host="127.0.0.1", port=7000, token=""))
    assert first.heartbeat_interval_s == config.HEARTBEAT_INTERVAL_S          # a small swarm: the shortest
    for i in range(1, 40):
        register(ctx, f"p{i}", 7000 + i)
    ctx.expire_peers()                                                       # counts the live peers
    assert ctx.live_peers == 40
    beat = ask(ctx, m.Heartbeat(peer_id="p0", token=first.token))
    assert beat == m.HeartbeatOk(heartbeat_interval_s=20.0)                  # 40 peers / 2 per s
    p0 = ctx.store.get_peer("p0")
    assert (p0.interval_s, p0.expires) == (20.0, ctx.clock_obj.now + 3 * 20.0)
    assert register(ctx, "late", 7999) and ctx.store.get_peer("late").interval_s == 20.0
    monkeypatch.setattr(config, "HEARTBEAT_MAX_S", 15.0)
    assert ask(ctx, m.Heartbeat(peer_id="p0", token=first.token)).heartbeat_interval_s == 15.0


def test_a_peer_handed_a_long_interval_outlives_a_shrinking_swarm(ctx, monkeypatch):
    """Expiry follows the interval each peer was given: the swarm shrinks, new peers are handed
    the short one and expire on it, the old peer keeps the deadline its long interval gave."""
    monkeypatch.setattr(config, "TRACKER_HEARTBEATS_PER_S", 1.0)
    tokens = {f"p{i}": register(ctx, f"p{i}", 7000 + i) for i in range(10)}
    ctx.expire_peers()
    assert ask(ctx, m.Heartbeat(peer_id="p0", token=tokens["p0"])).heartbeat_interval_s == 10.0
    for i in range(1, 10):                                                   # the swarm shrinks to p0
        ask(ctx, m.Deregister(peer_id=f"p{i}", token=tokens[f"p{i}"]))
    ctx.expire_peers()
    register(ctx, "new", 7100)
    assert ctx.store.get_peer("new").interval_s == config.HEARTBEAT_INTERVAL_S
    ctx.clock_obj.now += config.PEER_EXPIRY_S + 1                            # both silent since
    assert ctx.expire_peers() == ["new"]                                     # the short one goes in seconds
    assert ctx.store.get_peer("p0") is not None                              # p0 was told 10 s: 30 s to live
    # p0 beats (at 10 s): it is told the short interval, but its deadline never moves in
    ask(ctx, m.Heartbeat(peer_id="p0", token=tokens["p0"]))
    ctx.clock_obj.now += 20.0
    assert ctx.expire_peers() == [] and ctx.store.get_peer("p0").interval_s == config.HEARTBEAT_INTERVAL_S
    ctx.clock_obj.now += 3 * 10.0
    assert ctx.expire_peers() == ["p0"]


def test_a_small_swarms_silent_peer_expires_in_seconds(ctx, meta):
    token = register(ctx)
    register_torrent(ctx, meta)
    ask(ctx, m.Announce(peer_id="p1", token=token, info_hash=meta.info_hash, pieces=[0]))
    ctx.expire_peers()
    assert ask(ctx, m.Heartbeat(peer_id="p1", token=token)).heartbeat_interval_s == config.HEARTBEAT_INTERVAL_S
    ctx.clock_obj.now += config.PEER_EXPIRY_S - 0.5
    assert ctx.expire_peers() == []
    ctx.clock_obj.now += 1.0
    assert ctx.expire_peers() == ["p1"] and config.PEER_EXPIRY_S <= 6.0


def test_a_peers_file_checks_grow_with_its_heartbeat_interval():
    assert config.file_check_s(config.HEARTBEAT_INTERVAL_S) == config.FILE_CHECK_S      # a small swarm: as before
    assert config.file_check_s(6.0) == 3.0 and config.file_check_s(60.0) == 30.0


def test_a_taken_peer_id_says_when_its_record_expires(ctx, monkeypatch):
    """A peer back without its token is refused its id while its old record lives. The
    refusal says how long that is, so the peer waits for it (3 of a long interval in a big
    swarm), not a fixed few seconds, before it gives up."""
    monkeypatch.setattr(config, "TRACKER_HEARTBEATS_PER_S", 1.0)
    for i in range(20):
        register(ctx, f"p{i}", 7000 + i)
    ctx.expire_peers()
    register(ctx, "back", 7100)                                  # handed 20 s: its record lives 60 s
    ctx.clock_obj.now += 10
    reply = ask(ctx, m.RegisterPeer(peer_id="back", host="127.0.0.1", port=7100, token=""))
    assert isinstance(reply, m.Error) and reply.code == ErrorCode.PEER_ID_TAKEN
    assert reply.retry_after_s == pytest.approx(3 * 20.0 - 10)


def test_what_a_peer_registered_is_forgotten_when_another_tracker_expires_it(ctx, meta):
    """Trackers on one store expire each other's peers. This tracker's own record of what each
    peer id registered (for TRACKER_MAX_TORRENTS_PER_PEER) is keyed by ids strangers pick, and
    was dropped only when this tracker expired or deregistered the peer: so it grew for good."""
    register_torrent(ctx, meta, "p1")
    register_torrent(ctx, meta, "p2")
    assert set(ctx.registered) == {"p1", "p2"}
    assert ctx.store.expire_peer("p1", ctx.clock() + 3600)    # the other tracker's expiry pass
    ctx.commit()
    ctx.expire_peers()
    assert set(ctx.registered) == {"p2"}
