"""Running nodes: tracker, one peer, and the peers of peers.json.

The tracker and each peer are started as ``python -m ctl tracker|peer``, so this module
imports nothing at the top that those processes do not run (supervisor, rich, psutil).
"""
import enum
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ctl.cli import command, commands, handle_errors
from node import config
from protocol.errors import ErrorCode, TransportError, ZorrentError

if TYPE_CHECKING:
    from ctl import nodes, supervisor

app = commands()

DiskIo = enum.Enum("DiskIo", {mode: mode for mode in config.DISK_IO_MODES}, type=str)


@command(app, "tracker")
def tracker(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = config.DEFAULT_TRACKER_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = config.DEFAULT_TRACKER_PORT,
    store: Annotated[Optional[str], typer.Option(
        help=f"Store URI: sqlite:///PATH (default output/tracker.db) or {config.MONGO_EXAMPLE_URI}.")] = None,
    http_port: Annotated[Optional[int], typer.Option(
        help=f"Port of the HTTP tracker for standard BitTorrent clients (default: --port + "
             f"{config.HTTP_PORT_OFFSET}, so {config.DEFAULT_HTTP_PORT}, or a free one when --port is 0; "
             "0 turns it off).")] = None,
    http_host: Annotated[Optional[str], typer.Option(
        help="Address of the HTTP tracker (default: --host), e.g. ::1 or 0.0.0.0.")] = None,
    trust_advertise: Annotated[str, typer.Option(
        help="Networks (comma-separated, or 'none') whose peers may advertise another address than "
             "they connect from: the bind/ip case of peers.json. Others are listed only at their "
             "connection's address.")] = config.TRUST_ADVERTISE_DEFAULT,
    ready_file: Annotated[Optional[str], typer.Option(hidden=True)] = None,
) -> None:
    """Run the tracker in the foreground. Start it before anything else."""
    from node.tracker.main import run

    if http_port is not None and not 0 <= http_port < 65536:
        raise ZorrentError(f"--http-port {http_port} is out of range", ErrorCode.BAD_INPUT)
    strict = http_port is not None
    if http_port is None:
        http_port = config.http_port_for(port)
    elif http_port == 0:
        http_port = None
    run(host, port, store, ready_file, http_port, strict, http_host, trust_advertise)


@command(app, "peer")
def peer(
    peer_id: Annotated[str, typer.Option(help="This peer's unique id.")],
    host: Annotated[str, typer.Option(help="Address to serve pieces on (0.0.0.0: every interface).")] =
        config.DEFAULT_PEER_HOST,
    advertise: Annotated[Optional[str], typer.Option(
        help="Address the tracker gives other peers for this one (default: --host).")] = None,
    port: Annotated[int, typer.Option(help="Port to serve pieces on (0 picks a free one).")] = 6881,
    tracker: Annotated[Optional[list[str]], typer.Option(
        help="Tracker endpoint; repeat it or comma-separate several, preferred first "
             "(default: $ZORRENT_TRACKER or tcp://127.0.0.1:6969).")] = None,
    upload_rate: Annotated[int, typer.Option(help="Upload limit in bytes/s (0: none).")] = 0,
    disk_io: Annotated[DiskIo, typer.Option(
        help="direct: write verified pieces with O_DIRECT, bypassing the page cache (buffered where the "
             "filesystem refuses it); buffered: through the page cache.")] = DiskIo(config.DISK_IO),
    bt_port: Annotated[Optional[int], typer.Option(
        help=f"BEP 3 port for standard BitTorrent clients (default: --port + {config.BT_PORT_OFFSET}; "
             f"0 picks a free one; {config.BT_PORT_OFF} runs none).")] = None,
    ready_file: Annotated[Optional[str], typer.Option(hidden=True)] = None,
) -> None:
    """Run one peer in the foreground (what start-peer runs for each peer)."""
    from node.peer.main import run

    if bt_port is not None and not config.BT_PORT_OFF <= bt_port < 65536:
        raise ZorrentError(f"--bt-port {bt_port} is out of range", ErrorCode.BAD_INPUT)
    run(peer_id, host, port, config.tracker_endpoints(tracker), upload_rate, ready_file, disk_io.value, advertise,
        bt_port)


PeersConfig = Annotated[str, typer.Option("--config", help="peers.json")]
TrackerHost = Annotated[Optional[str], typer.Option(help=
    "The tracker's address (with --tracker-port: one tracker; default: the first of $ZORRENT_TRACKER).")]
TrackerPort = Annotated[Optional[int], typer.Option(help=
    "The tracker's port (with --tracker-host: one tracker; default: the first of $ZORRENT_TRACKER).")]
StoreUri = Annotated[Optional[str], typer.Option(help="Store URI for the supervised tracker.")]
TrackerEndpoint = Annotated[Optional[list[str]], typer.Option(
    "--tracker", help="The tracker as tcp://HOST:PORT, e.g. on another host (overrides --tracker-host/--tracker-port); "
                      "several, comma-separated or repeated: the peers fail over between them "
                      "(default: $ZORRENT_TRACKER, the whole list, else tcp://127.0.0.1:6969).")]


def tracker_list(tracker: list[str] | str | None, host: str | None, port: int | None) -> list[str]:
    """The trackers a command uses, preferred first: ``--tracker``, else ``--tracker-host``/
    ``--tracker-port`` (one tracker; what is not given comes from the default's first), else
    the whole of ``$ZORRENT_TRACKER`` (or the default)."""
    if tracker:
        return config.tracker_endpoints(tracker)
    defaults = config.tracker_endpoints()
    if host is None and port is None:
        return defaults
    first_host, first_port = config.parse_endpoint(defaults[0])
    return [config.endpoint(first_host if host is None else host, first_port if port is None else port)]


def _tracker_spec(tracker: list[str] | None, host: str | None, port: int | None, store: str | None,
                  count: int = 1) -> "supervisor.TrackerSpec":
    """The first tracker of the list is the one run here (with ``count``, the first ``count``
    ports from it); the rest are run elsewhere, and the peers use them all."""
    from ctl import supervisor

    first, *rest = tracker_list(tracker, host, port)
    host, port = config.parse_endpoint(first)
    return supervisor.TrackerSpec(host, port, store, count, tuple(rest))


@command(app, "start-peer")
def start_peer(
    ctx: typer.Context,
    config_path: PeersConfig = config.DEFAULT_PEERS_CONFIG,
    tracker_host: TrackerHost = None,
    tracker_port: TrackerPort = None,
    store: StoreUri = None,
    tracker_endpoint: TrackerEndpoint = None,
    foreground: Annotated[bool, typer.Option(
        "--foreground", help="Run the peers as children of this command instead of under supervisord.")] = False,
) -> None:
    """Start the peers of peers.json on this host (whose "ip" is one of its addresses), each
    its own process, and return once all answer. The others are named and skipped.

    By default supervisord keeps them alive: the config is written to
    supervisor_conf/supervisord.conf and supervisord is started (or told to reread and
    update). Manage them with: supervisorctl -c supervisor_conf/supervisord.conf status
    """
    specs = _local_peers(config_path)
    tracker = _tracker_spec(tracker_endpoint, tracker_host, tracker_port, store)
    if foreground:
        _run_foreground(ctx, specs, ",".join(tracker.endpoints))
        return
    _supervise(ctx, specs, tracker, start_tracker=False)


def _local_peers(config_path: str) -> "list[nodes.PeerSpec]":
    """The peers of ``config_path`` on this host, for a command that starts them: with the
    file's keys (a private swarm's), which the peers it starts inherit."""
    from ctl import nodes

    peers = nodes.read_peers(config_path)
    peers.use_keys()
    return nodes.split_local(peers.specs, config_path)


def _supervise(ctx: typer.Context, specs: "list[nodes.PeerSpec]", tracker: "supervisor.TrackerSpec",
               start_tracker: bool, web: "supervisor.WebSpec | None" = None) -> None:
    """Write the config, start or update supervisord, and return once supervisord says
    RUNNING for every node and every node answers. Peers that did not start (FATAL) are
    shown in the table with the others, then named in one line (exit 1)."""
    from ctl import nodes, render, supervisor

    web = web or supervisor.WebSpec()
    conf = supervisor.write(supervisor.render(specs, tracker, tracker_autostart=False, web=web))
    what = supervisor.start_or_update(conf)
    if start_tracker:
        supervisor.start_trackers(tracker)
    failure = None
    try:
        supervisor.start_peers(specs)
    except nodes.PeersNotStarted as exc:
        failure = exc
    if start_tracker:
        nodes.wait_web(web.url)
    _show_swarm(ctx, specs, tracker, f"supervisord {what}: {conf}", web.url)
    if start_tracker and not ctx.obj.json:
        render.out.print(f"web view: {web.url}  (also {web.url}api/swarm and {web.url}metrics)")
    if failure is not None:
        raise failure


def _show_swarm(ctx: typer.Context, specs: "list[nodes.PeerSpec]", tracker: "supervisor.TrackerSpec", title: str,
                web_url: str) -> None:
    from ctl import render, supervisor

    info = {p["name"]: p for p in supervisor.process_info()}
    rows = []
    for name, address in [*zip(tracker.names, (e.removeprefix("tcp://") for e in tracker.endpoints)),
                          ("web", web_url), *((s.peer_id, f"{s.ip}:{s.port}") for s in specs)]:
        p = info.get(name, {})
        rows.append([name, address, p.get("statename", "-"), p.get("pid") or "-", p.get("description", "")])
    if ctx.obj.json:
        render.emit_json([dict(zip(["name", "address", "state", "pid", "description"], r)) for r in rows])
    else:
        render.out.print(render.table(title, ["Program", "Address", "State", "PID", "Info"], rows))


def _run_foreground(ctx: typer.Context, specs: "list[nodes.PeerSpec]", tracker: str) -> None:
    from ctl import nodes, render

    logs = config.ensure_dir(config.logs_dir())
    procs: dict[str, subprocess.Popen] = {}

    def stop(which: list[subprocess.Popen]) -> None:
        for p in which:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + config.SUPERVISOR_STOPWAITSECS
        for p in which:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all() -> None:
        stop(list(procs.values()))

    def spawn(spec: "nodes.PeerSpec") -> None:
        with open(logs / f"{spec.peer_id}.log", "ab") as log:
            procs[spec.peer_id] = subprocess.Popen(nodes.peer_argv(spec, tracker), stdout=log,
                                                   stderr=subprocess.STDOUT, env=nodes.node_env())

    failure = None
    try:
        nodes.start_paced(specs, spawn, lambda spec: nodes.wait_peer(spec, procs[spec.peer_id]))
    except nodes.PeersNotStarted as exc:
        failure = exc
    except (ZorrentError, KeyboardInterrupt):
        stop_all()
        raise
    if failure is not None:
        if len(failure.failed) == len(specs):
            stop_all()
            raise failure
        render.error(failure.message)       # the others run on; the exit code says it at the end
        stop([procs.pop(peer_id) for peer_id in failure.failed if peer_id in procs])   # one that hangs, too
    rows = [[s.peer_id, f"{s.ip}:{s.port}", procs[s.peer_id].pid, "running"] for s in specs if s.peer_id in procs]
    if ctx.obj.json:
        render.emit_json([dict(zip(["peer_id", "address", "pid", "state"], r)) for r in rows])
    else:
        render.out.print(render.table("Peers", ["Peer ID", "Address", "PID", "State"], rows))
        render.err.print("Peers running in the foreground; Ctrl-C stops them.")
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
    if failure is not None:
        raise failure


swarm = commands(help="The whole swarm (tracker and peers) under supervisord.", no_args_is_help=True)
app.add_typer(swarm, name="swarm")


@swarm.command("up")
@handle_errors
def swarm_up(
    ctx: typer.Context,
    config_path: PeersConfig = config.DEFAULT_PEERS_CONFIG,
    tracker_host: TrackerHost = None,
    tracker_port: TrackerPort = None,
    store: StoreUri = None,
    tracker_endpoint: TrackerEndpoint = None,
    trackers: Annotated[int, typer.Option(
        help="Trackers to run on one mongodb:// store (ports --tracker-port, +1, ...); peers fail over "
             "between them.")] = 1,
    web_host: Annotated[str, typer.Option(help="Address of the web view.")] = config.DEFAULT_WEB_HOST,
    web_port: Annotated[int, typer.Option(help="Port of the web view.")] = config.DEFAULT_WEB_PORT,
) -> None:
    """Bring up the tracker(s), the web view and every peer of peers.json (those on this host) under supervisord."""
    from ctl import supervisor

    _supervise(ctx, _local_peers(config_path),
               _tracker_spec(tracker_endpoint, tracker_host, tracker_port, store, trackers), start_tracker=True,
               web=supervisor.WebSpec(web_host, web_port))


@swarm.command("status")
@handle_errors
def swarm_status(
    ctx: typer.Context,
    config_path: PeersConfig = config.DEFAULT_PEERS_CONFIG,
) -> None:
    """supervisord's view of every node, merged with each peer's own (torrents, pieces, rates)."""
    from ctl import client, nodes, render, supervisor
    from protocol import messages as m

    specs = {s.peer_id: s for s in nodes.load_peers(config_path)}
    info = supervisor.process_info()
    if not info:
        raise TransportError(f"supervisord is not running (no answer on {config.supervisor_socket()})")
    rows = []
    for p in info:
        torrents = pieces = rate = "-"
        if p["name"] in specs and p["statename"] == "RUNNING":
            try:
                reply = client.peer_control(p["name"], m.Status(info_hash=""), timeout_s=1.0, tries=1)
                torrents = str(len(reply.jobs))
                pieces = str(sum(j.have for j in reply.jobs))
                rate = " ".join(f"{j.bytes_done / 1048576 / j.elapsed_s:.0f}MiB/s"
                                for j in reply.jobs if j.state == "downloading" and j.elapsed_s) or "-"
            except ZorrentError:
                torrents = "no answer"
        rows.append({"name": p["name"], "state": p["statename"], "pid": p["pid"] or None,
                     "uptime": p["description"], "torrents": torrents, "pieces": pieces, "downloading": rate})
    if ctx.obj.json:
        render.emit_json(rows)
        return
    render.out.print(render.table("swarm", ["Program", "State", "PID", "Info", "Torrents", "Pieces", "Downloading"],
                                  [list(r.values()) for r in rows]))


@swarm.command("down")
@handle_errors
def swarm_down(ctx: typer.Context) -> None:
    """Stop every node cleanly (SIGTERM, then SIGKILL after stopwaitsecs) and supervisord."""
    from ctl import render, supervisor

    was = supervisor.running()
    supervisor.shutdown()
    render.out.print("swarm stopped" if was else "swarm was not running")
