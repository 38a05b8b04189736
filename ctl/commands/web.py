"""The read-only web view of the swarm: page, /api/swarm, /metrics."""
from typing import Annotated, Optional

import typer

from ctl.cli import command, commands
from node import config

app = commands()


@command(app, "web")
def web(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback unless you mean otherwise).")] = config.DEFAULT_WEB_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = config.DEFAULT_WEB_PORT,
    tracker: Annotated[Optional[list[str]], typer.Option(help=
        "Tracker endpoint; repeat it or comma-separate several, preferred first "
        "(default: $ZORRENT_TRACKER, the whole list, else tcp://127.0.0.1:6969).")] = None,
    allow_host: Annotated[Optional[list[str]], typer.Option(
        help="Another name this server may be reached by (the Host header); repeatable.")] = None,
    ready_file: Annotated[Optional[str], typer.Option(hidden=True)] = None,
) -> None:
    """Serve a live view of the swarm: http://HOST:PORT/ (also /api/swarm and /metrics).

    It reads the tracker and the peers' control sockets in output/run/, and changes nothing.
    """
    from node.web.server import run

    run(host, port, ",".join(config.tracker_endpoints(tracker)), allow_host or [], ready_file)
