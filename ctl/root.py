"""The Typer root (ctl/app.py runs it): global options in the callback; the commands live in ctl/commands/,
each module with its own Typer. The root loads a command's module only when that command
is invoked (click's lazy group pattern: ``LazyCommands``), so `zorrent status` neither
imports nor builds the options of the other commands; `--help` and a mistyped command
load them all. Each command imports what it runs when it runs (see ctl/cli.py)."""
from importlib import import_module
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from ctl.cli import Settings, commands, default_keys, use_keys
from node import config

# command -> the module that defines it, in help order. tests/unit/test_lazy_imports.py checks that
# every module registers exactly the commands listed for it here.
COMMANDS = {
    "create": "torrents", "upload": "torrents", "download": "torrents", "get": "torrents", "remove": "torrents",
    "status": "status",
    "tracker": "swarm", "peer": "swarm", "start-peer": "swarm", "swarm": "swarm",
    "make-inputs": "inputs",
    "soak": "soak",
    "web": "web",
    "keys": "keys",
}


def command_module(name: str):
    return import_module(f"ctl.commands.{name}")


class LazyCommands(TyperGroup):
    """The root group: each command's module is imported, and its click command built, on
    first use."""

    def _load(self, module: str) -> None:
        built = typer.main.get_command(command_module(module).app)
        for name, cmd in (built.commands.items() if isinstance(built, TyperGroup) else [(built.name, built)]):
            self.commands.setdefault(name, cmd)

    def _load_all(self) -> None:
        for module in dict.fromkeys(COMMANDS.values()):
            self._load(module)

    def list_commands(self, ctx) -> list[str]:
        self._load_all()
        return [name for name in COMMANDS if name in self.commands]

    def get_command(self, ctx, cmd_name: str):
        if cmd_name not in self.commands:
            if cmd_name in COMMANDS:
                self._load(COMMANDS[cmd_name])
            else:
                self._load_all()     # a typo: "No such command", with suggestions from them all
        return self.commands.get(cmd_name)


app = commands(
    name="zorrent", no_args_is_help=True, cls=LazyCommands,
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
