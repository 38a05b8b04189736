"""One libtorrent session in its own process: the comparison client for bench/bench.py.

Tracker-less: the harness tells each leecher every other node's port (connect_peer).
A seeder adds the torrent in seed_mode (its data is known good, like a zorrent upload).

    python bench/lt_node.py --role seeder  --torrent T --dir D --ready R
    python bench/lt_node.py --role leecher --torrent T --dir D --ready R --go G --result OUT

``--listen IP:PORT`` (default 127.0.0.1:0) is for bench/swarm.py's namespace lab, where
each node has its own address; the go file then lists "IP:PORT" strings, not ports.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import libtorrent as lt

SETTINGS = {
    "listen_interfaces": "127.0.0.1:0",
    "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
    "allow_multiple_connections_per_ip": True,     # every node is on 127.0.0.1
    "enable_outgoing_utp": False, "enable_incoming_utp": False,   # TCP, like zorrent
    "alert_mask": (lt.alert.category_t.error_notification | lt.alert.category_t.status_notification
                   | lt.alert.category_t.storage_notification),
}


TRACE_S = 0.5
REOFFER_S = 1.0
# In the lab a dial that reached a node which had not yet added the torrent (it was hung up on)
# is retried on the next re-offer (REOFFER_S), not after libtorrent's 60 s min_reconnect_time
# (libtorrent took connect_peer for such a peer as a no-op, so two libtorrent leechers whose first
# dials came too early never connected: seen in bench/swarm.py --mix, 0.00x F between them), and
# high_performance_seed's max_failcount 1 is libtorrent's default 3 again.
LAB_SETTINGS = {"min_reconnect_time": 1, "max_failcount": 3}
FLAGS = (("interesting", "I"), ("choked", "C"), ("remote_interested", "i"), ("remote_choked", "c"),
         ("snubbed", "S"), ("seed", "s"), ("outgoing_connection", "o"))


def show_peers(t: float, status, peers) -> None:
    """One line a peer: flags (I we want theirs, C we choke them, i they want ours, c they
    choke us, S snubbed, s a seed, o we dialled), payload rates kB/s, our requests in flight to it."""
    print(f"t {t:5.1f} have {status.num_pieces} up {status.upload_payload_rate // 1000} kB/s "
          f"down {status.download_payload_rate // 1000} kB/s", flush=True)
    for p in sorted(peers, key=lambda p: p.ip):
        flags = "".join(c if p.flags & getattr(lt.peer_info, name) else "." for name, c in FLAGS)
        print(f"  {p.ip[0]:>15s}:{p.ip[1]:<5d} {flags} up {p.payload_up_speed // 1000:5d} "
              f"down {p.payload_down_speed // 1000:5d} reqs {p.download_queue_length:4d} "
              f"has {p.num_pieces:5d} {p.client[:24]}", flush=True)


def show_alerts(started: float, alerts) -> None:
    for a in alerts:
        if isinstance(a, (lt.peer_disconnected_alert, lt.peer_connect_alert, lt.peer_error_alert)):
            print(f"t {time.time() - started:5.1f} {a.message()}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", choices=["seeder", "leecher"], required=True)
    ap.add_argument("--torrent", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--go")
    ap.add_argument("--result")
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--trace", action="store_true",
                    help="print its peers every TRACE_S, and why each connection closed (bench/swarm.py --mix --trace)")
    args = ap.parse_args()
    settings = {**lt.high_performance_seed(), **SETTINGS, **LAB_SETTINGS, "listen_interfaces": args.listen} \
        if args.listen != "127.0.0.1:0" else dict(SETTINGS)
    if args.trace:
        settings["alert_mask"] |= lt.alert.category_t.connect_notification | lt.alert.category_t.peer_notification
    ses = lt.session(settings)
    if args.listen != "127.0.0.1:0":
        # in the lab each node has an address of its own: it never dials that address (other
        # libtorrent nodes' peer exchange names it, and with min_reconnect_time 1 s it would
        # dial itself every second: 285 "connected to ourselves" in 8 runs)
        own = lt.ip_filter()
        own.add_rule(args.listen.rsplit(":", 1)[0], args.listen.rsplit(":", 1)[0], 1)
        ses.set_ip_filter(own)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(args.torrent)
    params.save_path = args.dir
    if args.role == "seeder":
        params.flags |= lt.torrent_flags.seed_mode
        ses.add_torrent(params)
    Path(args.ready + ".tmp").write_text(str(ses.listen_port()))
    Path(args.ready + ".tmp").rename(args.ready)
    if args.role == "seeder":
        while True:              # serve until killed
            time.sleep(1)
    go = Path(args.go)
    while not go.exists():
        time.sleep(0.005)
    host, port = args.listen.rsplit(":", 1)
    me = {(host, int(port)), (host, ses.listen_port())}
    peers = [("127.0.0.1", int(p)) if isinstance(p, int) else (p.rsplit(":", 1)[0], int(p.rsplit(":", 1)[1]))
             for p in json.loads(go.read_text())]
    peers = [peer for peer in peers if peer not in me]
    started = time.time()
    handle = ses.add_torrent(params)
    for peer in peers:
        handle.connect_peer(peer)
    # In the lab (one address a node) a peer it has no connection to is offered again after
    # REOFFER_S (0.5-1.5x, at random), as a tracker's next reply would: libtorrent drops a
    # peer whose first dial failed (max_failcount 1 in high_performance_seed), and in a swarm
    # that starts at once that dial often reaches a node that has not added the torrent yet,
    # so two libtorrent leechers could end up never connected to each other (seen in
    # bench/swarm.py --mix). At random, because two libtorrent nodes that dial each other at
    # the same moment each close the other's connection as a duplicate and lose both (every
    # time at RTT 50 ms, where the timing is symmetric): retries on a fixed beat collide again.
    reoffer = args.listen != "127.0.0.1:0"
    rng = random.Random()
    offer_at = time.time() + REOFFER_S * rng.uniform(0.5, 1.5)
    got, polled = {}, 0.0     # payload bytes by connection (ip:port), read while it is open
    traced = 0.0
    while not handle.status().is_seeding:
        alerts = ses.pop_alerts()
        if args.trace:
            show_alerts(started, alerts)
        if time.time() - polled >= 0.25:
            polled = time.time()
            peers_now = handle.get_peer_info()
            for p in peers_now:
                key = f"{p.ip[0]}:{p.ip[1]}"
                got[key] = max(got.get(key, 0), p.total_download)
            if reoffer and polled >= offer_at:
                offer_at = polled + REOFFER_S * rng.uniform(0.5, 1.5)
                connected = {p.ip[0] for p in peers_now}
                for peer in peers:
                    if peer[0] not in connected:
                        handle.connect_peer(peer)
            if args.trace and polled - traced >= TRACE_S:
                traced = polled
                show_peers(polled - started, handle.status(), peers_now)
        time.sleep(0.01)
    finished = time.time()
    for p in handle.get_peer_info():
        key = f"{p.ip[0]}:{p.ip[1]}"
        got[key] = max(got.get(key, 0), p.total_download)
    # libtorrent hashes from its store buffer and writes asynchronously: flush before the
    # harness compares the file (the finish time above does not include this, as for zorrent)
    handle.flush_cache()
    while not any(isinstance(a, lt.cache_flushed_alert) for a in ses.pop_alerts()):
        time.sleep(0.01)
    Path(args.result + ".tmp").write_text(json.dumps({"started": started, "finished": finished, "from": got}))
    Path(args.result + ".tmp").rename(args.result)
    while True:                  # keep serving the other leechers until killed
        time.sleep(1)


if __name__ == "__main__":
    main()
