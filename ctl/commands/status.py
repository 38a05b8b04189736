"""`status`: what a running peer holds. Its own module, so that the command users run most
often loads only this (ctl/app.py loads a command's module when it is invoked)."""
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
    from ctl import client, render
    from protocol import messages as m

    reply = client.peer_control(peer_id, m.Status(info_hash=""), timeout_s=ctx.obj.timeout_s)
    if ctx.obj.json:
        render.emit_json(reply)
        return
    rows = [[j.name, f"{j.state} {100 * j.hashed_bytes // j.hash_bytes}%" if j.hash_bytes else j.state,
             f"{j.have}/{j.num_pieces}", f"{j.announced}", j.failed_attempts, j.error or j.warning, j.path]
            for j in reply.jobs]
    render.out.print(render.table(
        f"{reply.peer_id} ({'registered' if reply.registered else 'not registered'} with the tracker)",
        ["Name", "State", "Pieces", "Announced", "Failed", "Error", "Path"], rows))
