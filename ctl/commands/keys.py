"""A private swarm's keys (ZeroMQ CURVE, node/curve.py): make them, add a member."""
from typing import Annotated, Optional

import typer

from ctl.cli import command, commands
from node import config

app = commands()
keys = commands(help="A private swarm's CURVE keys: only holders of an admitted key can join.",
                no_args_is_help=True)


def _show(ctx: typer.Context, folder, made, what: str) -> None:
    from ctl import render

    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    if ctx.obj.json:
        render.emit_json({"dir": str(folder), "files": files, "client_public": made.client_public.decode()})
        return
    render.out.print(f"{what} in {folder}:", markup=False)
    for name in files:
        render.out.print(f"  {name}", markup=False)


@command(keys, "new")
def new(
    ctx: typer.Context,
    folder: Annotated[Optional[str], typer.Option("--dir", help="Where to write them (default output/keys).")] = None,
) -> None:
    """Make a swarm's keys: the server keypair (tracker and peers listen with it), a client
    keypair, and allowed/ admitting it. Point every node at the folder with "keys" in
    peers.json, --keys DIR or $ZORRENT_KEYS; copy it whole to the swarm's other hosts."""
    from node import curve

    made = curve.make_swarm(folder or config.default_keys_dir())
    _show(ctx, made.folder, made, "swarm keys")


@command(keys, "add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The member's name (its key is allowed/NAME.key).")],
    out: Annotated[str, typer.Option("--out", help="The member's own key folder, to copy to its host.")],
    folder: Annotated[Optional[str], typer.Option("--dir", help="The swarm's key folder (default output/keys).")] = None,
    listen: Annotated[bool, typer.Option(
        "--listen/--client-only", help="Give it the server secret too (it runs a tracker or peers).")] = False,
) -> None:
    """One more member with a key of its own: written to --out, admitted in the swarm's
    allowed/. Copy the new allowed/ to every host that runs a tracker or peers (they
    re-read it; deleting a key there refuses that member from its next handshake on)."""
    from node import curve

    made = curve.add_member(folder or config.default_keys_dir(), out, name, listen)
    _show(ctx, made.folder, made, f"keys of {name}")


app.add_typer(keys, name="keys")
