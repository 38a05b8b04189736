"""What every command shares: settings from the root callback, exit codes, and the
wrapper that turns a ZorrentError into one line on stderr. Command modules import
this, never ``ctl.app``; ``ctl.app`` composes them (no import circle)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import typer

from ctl import render
from node import config
from protocol.errors import RemoteError, TransportError, ZorrentError

EXIT_OK, EXIT_TRANSPORT, EXIT_USAGE, EXIT_REMOTE = 0, 1, 2, 3


@dataclass
class Settings:
    json: bool = False
    timeout_s: float = config.REQUEST_TIMEOUT_S


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


def commands(**kw) -> typer.Typer:
    """A command module's own Typer; ``ctl.app`` merges it into the root with add_typer."""
    return typer.Typer(add_completion=False, pretty_exceptions_show_locals=False, **kw)


def command(app: typer.Typer, name: str, **kw) -> Callable:
    """Register a command on ``app``, with handle_errors."""

    def wrap(fn: Callable) -> Callable:
        return app.command(name, **kw)(handle_errors(fn))

    return wrap
