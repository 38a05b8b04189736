"""The Typer root. Global options live in the callback; commands live in ctl/commands/."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Callable

import typer

from ctl import render
from node import config
from protocol.errors import RemoteError, TransportError, ZorrentError

EXIT_OK, EXIT_TRANSPORT, EXIT_USAGE, EXIT_REMOTE = 0, 1, 2, 3

app = typer.Typer(
    name="zorrent", no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
    help="zorrent: a BitTorrent-style swarm over ZeroMQ. Start the tracker first.",
)


@dataclass
class Settings:
    json: bool = False
    timeout_s: float = config.REQUEST_TIMEOUT_S


@app.callback()
def _global(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each try of a request.")] = config.REQUEST_TIMEOUT_S,
) -> None:
    ctx.obj = Settings(json=json_out, timeout_s=timeout)


def exit_code(exc: ZorrentError) -> int:
    if isinstance(exc, TransportError):
        return EXIT_TRANSPORT
    if isinstance(exc, RemoteError):
        return EXIT_REMOTE
    return EXIT_USAGE


def handle_errors(fn: Callable) -> Callable:
    """ZorrentErrors become one line on stderr and an exit code, never a traceback."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ZorrentError as exc:
            render.error(exc.message)
            raise typer.Exit(exit_code(exc)) from None
        except KeyboardInterrupt:
            render.error("interrupted")
            raise typer.Exit(130) from None

    return run


def command(name: str, **kw) -> Callable:
    """Register a top-level command, with handle_errors."""

    def wrap(fn: Callable) -> Callable:
        return app.command(name, **kw)(handle_errors(fn))

    return wrap


def main() -> None:
    from ctl.commands import inputs, soak, swarm, torrents  # noqa: F401  (they register commands)

    app()
