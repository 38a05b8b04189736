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


def os_error_line(exc: OSError) -> str:
    """``cannot write output/torrents/x.torrent: No space left on device``"""
    why = exc.strerror or str(exc) or type(exc).__name__
    path = exc.filename if exc.filename is not None else ""
    return f"{why}: {path}" if path else why


def handle_errors(fn: Callable) -> Callable:
    """The one place a command's errors become exits: a ZorrentError, an OSError (an
    unwritable folder, a full disk) or a supervisord XML-RPC fault is one line on stderr
    and an exit code, never a traceback."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        import xmlrpc.client

        try:
            return fn(*args, **kwargs)
        except ZorrentError as exc:
            render.error(exc.message)
            raise typer.Exit(exit_code(exc)) from None
        except xmlrpc.client.Fault as fault:
            render.error(f"supervisord refused: {fault.faultString}")
            raise typer.Exit(EXIT_REMOTE) from None
        except xmlrpc.client.ProtocolError as exc:
            render.error(f"supervisord answered {exc.errcode} {exc.errmsg}")
            raise typer.Exit(EXIT_TRANSPORT) from None
        except OSError as exc:
            render.error(os_error_line(exc))
            raise typer.Exit(EXIT_TRANSPORT if isinstance(exc, (ConnectionError, TimeoutError)) else EXIT_USAGE) from None
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
