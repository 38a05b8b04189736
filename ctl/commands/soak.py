"""zorrent soak: a long-running local swarm that is killed at random and must lose nothing."""
import signal
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ctl.cli import command, commands
from ctl.commands.inputs import parse_size
from node import config
from protocol.errors import ZorrentError


def _stop(*_) -> None:
    raise KeyboardInterrupt


app = commands()


def _most_first(counts: dict) -> list[list]:
    return [[name, n] for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


@command(app, "soak")
def soak(
    ctx: typer.Context,
    peers: Annotated[int, typer.Option(min=2, help="Peers in the swarm.")] = 20,
    files: Annotated[int, typer.Option(min=1, help="Files seeded.")] = 10,
    minutes: Annotated[float, typer.Option(min=0.1, help="How long to keep downloading.")] = 30,
    kill_every: Annotated[float, typer.Option(min=0, help="SIGKILL a random node every this many seconds (0: never).")] = 30,
    min_size: Annotated[str, typer.Option(help="Smallest file.")] = "4M",
    max_size: Annotated[str, typer.Option(help="Largest file.")] = "24M",
    upload_rate: Annotated[str, typer.Option(help="Upload limit of every peer, so kills land mid-download (0: none).")] = "4M",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workdir: Annotated[Optional[str], typer.Option(help="Work directory (default output/soak-TIME).")] = None,
    netns: Annotated[bool, typer.Option("--netns", help="Each node a host of its own: network namespaces on a "
                                        "bridge, 198.18.0.0/15 (needs root).")] = False,
    up_mbit: Annotated[float, typer.Option(min=0.1, help="With --netns: every peer's upload cap, Mbit/s.")] = 32.0,
    seed_up_mbit: Annotated[Optional[float], typer.Option(min=0.1, help="With --netns: the seeders' cap (default --up-mbit).")] = None,
    loss: Annotated[float, typer.Option(min=0, max=50, help="With --netns: percent of packets every host drops.")] = 0.0,
    partition_every: Annotated[float, typer.Option(min=0, help="With --netns: cut a random host off every this many seconds (0: never).")] = 0.0,
    partition_s: Annotated[float, typer.Option(min=0.5, help="With --netns: how long a partition lasts.")] = 10.0,
    rtt_ms: Annotated[float, typer.Option(min=0, max=2000, help="With --netns: RTT between any two hosts, ms "
                                          "(a delay line on each host).")] = 0.0,
    jitter_ms: Annotated[float, typer.Option(min=0, help="With --netns: jitter of each host's one-way delay, ms.")] = 0.0,
    trackers: Annotated[int, typer.Option(min=1, help="Trackers on one store (more than 1 needs --store mongodb://...).")] = 1,
    store: Annotated[Optional[str], typer.Option(help="Tracker store URI (default: SQLite in the work directory).")] = None,
) -> None:
    """Run a soak swarm under supervisord, kill nodes at random, then report.

    Exits 1 if any downloaded file is wrong or any download never finished.
    """
    from ctl import render
    from ctl.soak import Links, Soak

    where = Path(workdir or config.output_dir() / f"soak-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    where.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _stop)   # a clean stop: the swarm always goes down
    links = Links(up_mbit, seed_up_mbit or up_mbit, loss, partition_every, partition_s, rtt_ms, jitter_ms) if netns else None
    rate = 0 if netns or upload_rate == "0" else parse_size(upload_rate)    # in a lab the links are the limit
    run = Soak(where, peers, files, minutes, kill_every, parse_size(min_size), parse_size(max_size), seed, rate,
               say=lambda s: render.err.print(s, markup=False, highlight=False), links=links,
               trackers=trackers, store_uri=store)
    try:
        run.up()
        run.seed()
        report = run.run()
    finally:
        run.down()
    if ctx.obj.json:
        render.emit_json({**report.__dict__, "ok": report.ok})
    else:
        rows = [[k.replace("_", " "), v] for k, v in report.__dict__.items() if k not in ("rss_mib", "kills_by_node", "partitions_by_host", "links")]
        render.out.print(render.table(f"Soak report ({where})", ["", ""], rows))
        rss = sorted(report.rss_mib.items(), key=lambda kv: (kv[1][0] - kv[1][1], kv[0]))   # most grown first
        render.out.print(render.table("RSS (MiB)", ["Process", "Start", "End", "Growth"],
                                      [[n, a, b, f"{b - a:+.1f}"] for n, (a, b) in rss]))
        render.out.print(render.table("Kills by node", ["Node", "Kills"], _most_first(report.kills_by_node)))
        if netns:
            render.out.print(render.table("Partitions by host", ["Host", "Partitions"],
                                          _most_first(report.partitions_by_host)))
            render.out.print(render.table("Links", ["", ""], [[k.replace("_", " "), v] for k, v in report.links.items()]))
    if not report.ok:
        raise ZorrentError(f"soak failed: {report.downloads_corrupt} corrupt, "
                           f"{report.downloads_unfinished} unfinished downloads")
