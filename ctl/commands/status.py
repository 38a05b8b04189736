"""`status`: what a running peer holds. Its own module, so that the command users run most
often loads only this (ctl/root.py loads a command's module when it is invoked); what it
shows is ctl/output/status.py, which ctl/app.py also runs for the plainest command line."""
from typing import Annotated

import typer

from ctl.cli import command, commands

app = commands()


@command(app, "status")
def status(
    ctx: typer.Context,
    peer_id: Annotated[str, typer.Option(help="The running peer to ask.")],
) -> None:
    """What a running peer holds: seeds, downloads and their progress."""
    from ctl.output.status import show

    show(peer_id, ctx.obj.json, ctx.obj.timeout_s)
