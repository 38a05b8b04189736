"""The web view's model, piece map and metrics, fed plain observations (no sockets)."""
import dataclasses
import json
import random
import time

from prometheus_client.parser import text_string_to_metric_families

from node import config
from node.web import availability
from node.web.metrics import exposition, registry_for
from node.web.swarm import Observation, SwarmView
from protocol import messages as m
from protocol.pieces import Bitfield

IH = "ab" * 20


def bitfield(n, held):
    bits = Bitfield(n)
    for i in held:
        bits.add(i)
    return bits.to_bytes()


def test_availability_counts_match_a_plain_sum():
    rng = random.Random(3)
    n = 10_000
    held = [{i for i in range(n) if rng.random() < 0.5} for _ in range(300)]   # more than one 255-group
    got = availability.counts([bitfield(n, h) for h in held], n)
    assert got == [sum(i in h for h in held) for i in range(n)]
    assert availability.counts([], 5) == [0] * 5


def test_buckets_keep_at_most_the_limit_and_show_the_rarest():
    size, cols = availability.buckets([3, 3, 0, 3, 2, 2, 2], 3)
    assert (size, cols) == (3, [0, 2, 2])
    size, cols = availability.buckets([1] * 10_000, config.WEB_PIECE_BUCKETS)
    assert size == 10 and len(cols) == 1000


def job(state, have, peers=(), fetched=0, name="<b>x</b>.bin"):
    return m.JobStatus(info_hash=IH, name=name, path="/x", state=state, num_pieces=8, have=have, announced=have,
                       resumed=0, fetched=fetched, length=8 * 16384, bytes_done=have * 16384, failed_attempts=0,
                       ignored=0, elapsed_s=1.0, error="", peers=list(peers))


def stat(peer_id, nbytes, hash_failures=0, banned=False):
    return m.PeerStat(peer_id=peer_id, pieces=nbytes // 16384, bytes=nbytes, failures=hash_failures, score=1.5,
                      banned=banned, hash_failures=hash_failures)


def tracker(peers=("seed", "leech")):
    return m.Swarm(peers=[m.SwarmPeer(peer_id=p, host="127.0.0.1", port=7000 + i, seen_s_ago=0.1)
                          for i, p in enumerate(peers)],
                   torrents=[m.SwarmTorrent(info_hash=IH, name="<b>x</b>.bin", num_pieces=8, length=8 * 16384,
                                            piece_length=16384)],
                   stats=m.TrackerStats(started_s_ago=5.0, requests=10, announces=4, pieces_announced=8,
                                        latency_buckets_s=[0.001, 0.01], latency_counts=[7, 2, 1], latency_sum_s=0.05))


def holders(*have):
    return {IH: m.PeerList(info_hash=IH, name="x", num_pieces=8, length=8 * 16384, peers=[
        m.PeerInfo(peer_id=p, host="127.0.0.1", port=1, bitfield=bitfield(8, range(k)), have=k) for p, k in have])}


def test_rates_totals_and_events_from_successive_observations():
    view = SwarmView("tcp://t:1")
    t0 = 1000.0
    seed = m.StatusReply(peer_id="seed", registered=True, jobs=[job("seeding", 8)])
    view.apply(Observation(at=t0, tracker=tracker(), holders=holders(("seed", 8)),
                           statuses={"seed": seed, "leech": m.StatusReply(peer_id="leech", registered=True, jobs=[
                               job("downloading", 2, [stat("seed", 32768)], fetched=2)])}))
    view.apply(Observation(at=t0 + 1, tracker=tracker(), holders=holders(("seed", 8), ("leech", 4)),
                           statuses={"seed": seed, "leech": m.StatusReply(peer_id="leech", registered=True, jobs=[
                               job("downloading", 4, [stat("seed", 65536, hash_failures=1)], fetched=4)])}))
    snap = view.snapshot()
    peers = {p["peer_id"]: p for p in snap["peers"]}
    assert peers["leech"]["down_bps"] > 0 and peers["seed"]["up_bps"] == peers["leech"]["down_bps"]
    assert peers["seed"]["score"] == 1.5 and peers["leech"]["state"] == "live"
    assert view.totals[("downloaded_bytes", "leech", IH)] == 32768      # growth since the first sighting
    assert view.totals[("hash_failures", "seed", IH)] == 1
    (t,) = snap["torrents"]
    assert (t["seeders"], t["leechers"], t["buckets"], t["max_holders"]) == (1, 1, [2, 2, 2, 2, 1, 1, 1, 1], 2)
    kinds = [e["kind"] for e in snap["events"]]
    assert kinds == ["joined", "joined", "hash failure"]

    # the leecher restarts (its own counters start again), is banned by nobody, finishes;
    # the seeder expires at the tracker; a soak's kill arrives through the events file
    view.apply(Observation(at=t0 + 2, tracker=tracker(peers=("leech",)), holders=holders(("leech", 8)),
                           statuses={"leech": m.StatusReply(peer_id="leech", registered=True, jobs=[
                               job("seeding", 8, [stat("seed", 16384, banned=True)], fetched=8)])},
                           external=[{"t": t0 + 2, "kind": "kill", "node": "seed", "text": "soak SIGKILLed seed"}]))
    assert view.totals[("downloaded_bytes", "leech", IH)] == 32768 + 16384
    assert view.totals[("bans", "seed", IH)] == 1
    snap = view.snapshot()
    assert [e["kind"] for e in snap["events"]][3:] == ["expired", "finished", "ban", "kill"]
    assert snap["summary"] == {"peers_live": 1, "peers_expired": 1, "torrents": 1,
                               "down_bps": snap["summary"]["down_bps"], "up_bps": snap["summary"]["up_bps"]}
    assert json.loads(json.dumps(snap))["torrents"][0]["name"] == "<b>x</b>.bin"   # data, escaped by the page

    # the tracker goes away: the last peers and torrents stay, the event says so
    view.apply(Observation(at=t0 + 3, tracker=None, tracker_error="no answer", statuses={}))
    assert view.snapshot()["tracker"]["up"]              # one late reply is a busy tracker, not a dead one
    view.apply(Observation(at=t0 + 4, tracker=None, tracker_error="no answer", statuses={}))
    assert not view.snapshot()["tracker"]["up"] and view.snapshot()["summary"]["torrents"] == 1
    assert view.snapshot()["events"][-1]["kind"] == "tracker"


def test_metrics_exposition_counters_gauges_and_tracker_histogram():
    view = SwarmView("tcp://t:1")
    view.apply(Observation(at=1.0, tracker=tracker(), statuses={}))
    view.totals[("downloaded_bytes", "leech", IH)] = 5.0
    text = exposition(registry_for(view)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["zorrent_downloaded_bytes"].type == "counter"
    assert families["zorrent_downloaded_bytes"].samples[0].labels == {"peer_id": "leech", "info_hash": IH}
    assert families["zorrent_peers_live"].type == "gauge"
    assert families["zorrent_tracker_announces"].samples[0].value == 4
    hist = {s.labels.get("le"): s.value for s in families["zorrent_tracker_request_latency_seconds"].samples
            if s.name.endswith("_bucket")}
    assert hist == {"0.001": 7, "0.01": 9, "+Inf": 10}


def test_metrics_size_and_model_time_at_100_peers_and_10000_pieces():
    """Synthetic: 100 peers, 4 torrents of 10,000 pieces, every peer on every torrent."""
    n, ids = 10_000, [f"peer{i:03d}" for i in range(100)]
    rng = random.Random(1)
    swarm = m.Swarm(peers=[m.SwarmPeer(peer_id=p, host="127.0.0.1", port=7000 + i, seen_s_ago=0.5)
                           for i, p in enumerate(ids)],
                    torrents=[m.SwarmTorrent(info_hash=f"{k:040x}", name=f"f{k}", num_pieces=n, length=n * 16384,
                                             piece_length=16384) for k in range(4)],
                    stats=tracker().stats)
    bits = {p: bitfield(n, [i for i in range(n) if rng.random() < 0.6]) for p in ids}
    hold = {t.info_hash: m.PeerList(info_hash=t.info_hash, name=t.name, num_pieces=n, length=t.length, peers=[
        m.PeerInfo(peer_id=p, host="127.0.0.1", port=1, bitfield=bits[p], have=6000) for p in ids])
        for t in swarm.torrents}

    def statuses(scale):
        return {p: m.StatusReply(peer_id=p, registered=True, jobs=[m.JobStatus(
            info_hash=t.info_hash, name=t.name, path="/x", state="downloading", num_pieces=n, have=6000,
            announced=6000, resumed=0, fetched=6000 * scale, length=t.length, bytes_done=0, failed_attempts=0,
            ignored=0, elapsed_s=1.0, error="", peers=[stat(q, 16384 * scale) for q in ids[:5] if q != p])
            for t in swarm.torrents]) for p in ids}

    view = SwarmView("tcp://t:1")
    view.apply(Observation(at=1.0, tracker=swarm, holders=hold, statuses=statuses(1)))
    started = time.perf_counter()
    view.apply(Observation(at=1.5, tracker=swarm, holders=hold, statuses=statuses(2)))
    payload = json.dumps(view.snapshot(), separators=(",", ":"))
    apply_s = time.perf_counter() - started
    size = len(exposition(registry_for(view)))
    print(f"\n100 peers x 4 torrents x 10,000 pieces: one poll applied + serialised in {apply_s * 1000:.0f} ms, "
          f"snapshot {len(payload)} bytes, /metrics {size} bytes")
    # the page gets at most WEB_PIECE_BUCKETS columns per torrent, however many pieces: the
    # snapshot is smaller than the bitfields it sums up (timing is bench/web_view.py's to measure)
    assert all(len(t["buckets"]) == config.WEB_PIECE_BUCKETS for t in view.snapshot()["torrents"])
    assert len(payload) < sum(len(p.bitfield) for held in hold.values() for p in held.peers) / 4, len(payload)


def test_a_delta_brings_the_whole_peer_list_up_to_its_version():
    from node.web.poller import merged
    from protocol.pieces import Bitfield

    def bits(*pieces):
        b = Bitfield(10)
        for i in pieces:
            b.add(i)
        return b.to_bytes()

    whole = m.PeerList(info_hash="aa", name="f", num_pieces=10, length=10, version=4, peers=[
        m.PeerInfo("p1", "h", 1, bits(0, 1), 2), m.PeerInfo("p2", "h", 2, bits(3), 1)])
    delta = m.PeerList(info_hash="aa", name="f", num_pieces=10, length=10, version=9, delta=True, gone=["p2"],
                       peers=[m.PeerInfo("p1", "h", 1, b"", 1, pieces=[7]), m.PeerInfo("p3", "h", 3, bits(9), 1)])
    out = merged(whole, delta)
    assert (out.version, out.delta) == (9, False)
    assert [(p.peer_id, Bitfield(10, p.bitfield).indexes(), p.have) for p in out.peers] == [
        ("p1", [0, 1, 7], 3), ("p3", [9], 1)]


def test_a_download_that_began_and_ended_between_two_looks_is_still_finished():
    """While nobody looks the view looks every WEB_IDLE_POLL_S: a short download is first seen
    seeding, with pieces fetched; a seed that uploaded (nothing fetched) is not 'finished'."""
    view = SwarmView("tcp://127.0.0.1:1")
    view.apply(Observation(at=1000.0, tracker=None, tracker_error="down"))

    def job(fetched):
        return m.JobStatus(info_hash="ab" * 20, name="f.bin", path="/tmp/f.bin", state=m.JobState.SEEDING.value,
                           num_pieces=4, have=4, announced=4, resumed=0, fetched=fetched, length=4 << 18,
                           bytes_done=4 << 18, failed_attempts=0, ignored=0, elapsed_s=1.0, error="", peers=[])

    later = Observation(at=1010.0, tracker=None, tracker_error="down")
    later.statuses["p1"] = m.StatusReply(peer_id="p1", registered=True, jobs=[job(4)], held_bytes=0, held_peak_bytes=0)
    later.statuses["p2"] = m.StatusReply(peer_id="p2", registered=True, jobs=[job(0)], held_bytes=0, held_peak_bytes=0)
    resumed = dataclasses.replace(job(4), resumed=4)           # a restarted peer's download, complete on disk
    later.statuses["p3"] = m.StatusReply(peer_id="p3", registered=True, jobs=[resumed], held_bytes=0, held_peak_bytes=0)
    view.apply(later)
    finished = [e for e in view.snapshot()["events"] if e["kind"] == "finished"]
    assert [e["peer_id"] for e in finished] == ["p1"]
