"""Running nodes: tracker, one peer, and the peers of peers.json."""
from __future__ import annotations

import signal
import subprocess
import time
from typing import Annotated, Optional

import typer

from ctl import nodes, render
from ctl.app import command
from node import config
from protocol.errors import ZorrentError


@command("tracker")
def tracker(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = config.DEFAULT_TRACKER_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = config.DEFAULT_TRACKER_PORT,
    store: Annotated[Optional[str], typer.Option(
        help=f"Store URI: sqlite:///PATH (default output/tracker.db) or {config.MONGO_EXAMPLE_URI}.")] = None,
    ready_file: Annotated[Optional[str], typer.Option(hidden=True)] = None,
) -> None:
    """Run the tracker in the foreground. Start it before anything else."""
    from node.tracker.main import run

    run(host, port, store, ready_file)


@command("peer")
def peer(
    peer_id: Annotated[str, typer.Option(help="This peer's unique id.")],
    host: Annotated[str, typer.Option(help="Address to serve pieces on.")] = config.DEFAULT_PEER_HOST,
    port: Annotated[int, typer.Option(help="Port to serve pieces on (0 picks a free one).")] = 6881,
    tracker: Annotated[str, typer.Option(help="Tracker endpoint.")] = config.default_tracker_endpoint(),
    upload_rate: Annotated[int, typer.Option(help="Upload limit in bytes/s (0: none).")] = 0,
    ready_file: Annotated[Optional[str], typer.Option(hidden=True)] = None,
) -> None:
    """Run one peer in the foreground (what start-peer runs for each peer)."""
    from node.peer.main import run

    run(peer_id, host, port, tracker, upload_rate, ready_file)


@command("start-peer")
def start_peer(
    ctx: typer.Context,
    config_path: Annotated[str, typer.Option("--config", help="peers.json")] = config.DEFAULT_PEERS_CONFIG,
    tracker: Annotated[str, typer.Option(help="Tracker endpoint.")] = config.default_tracker_endpoint(),
) -> None:
    """Start every peer of peers.json, each as its own process, and wait for them.

    Runs in the foreground until interrupted; logs go to output/logs/PEER.log.
    """
    specs = nodes.load_peers(config_path)
    logs = config.ensure_dir(config.logs_dir())
    procs: dict[str, subprocess.Popen] = {}

    def stop_all(*_):
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 10
        for p in procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()

    try:
        for spec in specs:
            log = open(logs / f"{spec.peer_id}.log", "ab")
            procs[spec.peer_id] = subprocess.Popen(nodes.peer_argv(spec, tracker), stdout=log,
                                                   stderr=subprocess.STDOUT, env=nodes.node_env())
        for spec in specs:
            nodes.wait_peer(spec, procs[spec.peer_id])
    except (ZorrentError, KeyboardInterrupt):
        stop_all()
        raise
    rows = [[s.peer_id, f"{s.ip}:{s.port}", procs[s.peer_id].pid, "running"] for s in specs]
    if ctx.obj.json:
        render.emit_json([dict(zip(["peer_id", "address", "pid", "state"], r)) for r in rows])
    else:
        render.out.print(render.table("Peers", ["Peer ID", "Address", "PID", "State"], rows))
        render.err.print("Peers running; Ctrl-C stops them.")
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(1))
    try:
        while not stopping and all(p.poll() is None for p in procs.values()):
            time.sleep(0.2)
    finally:
        stop_all()
    dead = [pid for pid, p in procs.items() if p.returncode not in (0, -signal.SIGTERM)]
    if dead and not stopping:
        raise ZorrentError(f"peer {dead[0]} exited (see {logs / (dead[0] + '.log')})")
