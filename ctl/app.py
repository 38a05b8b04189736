"""The Typer root: global options in the callback; the commands live in ctl/commands/,
each module with its own Typer, merged here with add_typer. Those modules are light:
each command imports what it runs when it runs (see ctl/cli.py)."""
from typing import Annotated, Optional

import typer

from ctl.cli import Settings, commands, default_keys, use_keys
from ctl.commands import inputs, keys, soak, swarm, torrents, web
from node import config

app = commands(
    name="zorrent", no_args_is_help=True,
    help="zorrent: a BitTorrent-style swarm over ZeroMQ. Start the tracker first.",
)


@app.callback()
def _global(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each try of a request.")] = config.REQUEST_TIMEOUT_S,
    keys_dir: Annotated[Optional[str], typer.Option(
        "--keys", help="A private swarm's key folder (zorrent keys new); else $ZORRENT_KEYS, "
                       "else \"keys\" in ./peers.json.")] = None,
) -> None:
    ctx.obj = Settings(json=json_out, timeout_s=timeout)
    use_keys(keys_dir, source="flag")
    default_keys()


for module in (torrents, swarm, inputs, soak, web, keys):
    app.add_typer(module.app)


def main() -> None:
    app()
