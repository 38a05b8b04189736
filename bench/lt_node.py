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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", choices=["seeder", "leecher"], required=True)
    ap.add_argument("--torrent", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--go")
    ap.add_argument("--result")
    ap.add_argument("--listen", default="127.0.0.1:0")
    args = ap.parse_args()
    settings = {**lt.high_performance_seed(), **SETTINGS, "listen_interfaces": args.listen} \
        if args.listen != "127.0.0.1:0" else SETTINGS
    ses = lt.session(settings)
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
    me = args.listen.rsplit(":", 1)[0]
    peers = [("127.0.0.1", int(p)) if isinstance(p, int) else (p.rsplit(":", 1)[0], int(p.rsplit(":", 1)[1]))
             for p in json.loads(go.read_text())]
    peers = [peer for peer in peers if peer != (me, ses.listen_port())]
    started = time.time()
    handle = ses.add_torrent(params)
    for peer in peers:
        handle.connect_peer(peer)
    got, polled = {}, 0.0     # payload bytes by connection (ip:port), read while it is open
    while not handle.status().is_seeding:
        ses.pop_alerts()
        if time.time() - polled >= 0.25:
            polled = time.time()
            for p in handle.get_peer_info():
                key = f"{p.ip[0]}:{p.ip[1]}"
                got[key] = max(got.get(key, 0), p.total_download)
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
