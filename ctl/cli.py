"""What every command shares: settings from the root callback, exit codes, and the
wrapper that turns a ZorrentError into one line on stderr. Command modules import
this, never ``ctl.app``; ``ctl.app`` composes them (no import circle).

A command imports only what it runs: command modules import typer, this module,
``node.config`` and ``protocol.errors`` at the top, and everything heavier (rich, zmq,
the protocol messages, supervisor, psutil, the soak, the nodes) inside the command
function, so ``zorrent --help`` and a peer's start-up pay for none of it.
tests/unit/test_lazy_imports.py keeps it so."""
from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from node import config
from protocol.errors import ErrorCode, RemoteError, TransportError, ZorrentError

if TYPE_CHECKING:
    import typer

EXIT_OK, EXIT_TRANSPORT, EXIT_USAGE, EXIT_REMOTE = 0, 1, 2, 3


@dataclass
class Settings:
    json: bool = False
    timeout_s: float = config.REQUEST_TIMEOUT_S


_KEYS_RANK = {"cwd": 0, "config": 1, "env": 2, "flag": 3}
_keys_source: str | None = None     # where this process's $ZORRENT_KEYS came from, once chosen


def use_keys(folder: str | os.PathLike | None, base: Path = Path("."), source: str = "config") -> None:
    """A private swarm's key folder for this command and every process it starts (through
    ``$ZORRENT_KEYS``); the one setter of it. The stronger source wins, whatever the order:
    ``--keys`` (flag), then ``$ZORRENT_KEYS`` as the command was started (env), then the
    "keys" of an explicit ``--config`` file (config), then ./peers.json's (cwd)."""
    global _keys_source
    if not folder:
        return
    if _keys_source is None and config.keys_dir():
        _keys_source = "env"            # set before this process chose anything
    if _keys_source is not None and _KEYS_RANK[_keys_source] >= _KEYS_RANK[source]:
        return
    os.environ[config.KEYS_ENV] = str((base / folder).resolve())
    _keys_source = source


def keys_entry(raw: dict, path: str | os.PathLike) -> str | None:
    """peers.json's top-level ``"keys": "DIR"`` (relative to the file's folder), or None."""
    folder = raw.get(config.KEYS_ENTRY)
    if folder is None:
        return None
    if not isinstance(folder, str) or not folder:
        raise ZorrentError(f"{path}: \"{config.KEYS_ENTRY}\" must name the swarm's key folder (zorrent keys new)",
                           ErrorCode.BAD_INPUT)
    return str(Path(path).parent / folder)


def default_keys(peers_config: str = config.DEFAULT_PEERS_CONFIG) -> None:
    """With no ``--keys`` and no ``$ZORRENT_KEYS``, the ``"keys"`` of peers.json in the working
    folder, if it names one: so every command of the README runs in a private swarm as it is.
    A file that cannot be read is left to the commands that read it (they say why)."""
    if config.keys_dir():
        return
    try:
        raw = json.loads(Path(peers_config).read_text())
    except (OSError, ValueError):
        return
    if isinstance(raw, dict):
        try:
            use_keys(keys_entry(raw, peers_config), source="cwd")
        except ZorrentError:
            pass


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


def _one_line(exc: Exception) -> tuple[str | None, int]:
    """(line, exit code) for an OSError or a supervisord XML-RPC fault; (None, 0) otherwise.
    xmlrpc.client is looked up, not imported: a fault can only come from a command that loaded it."""
    xmlrpc = sys.modules.get("xmlrpc.client")
    if xmlrpc is not None and isinstance(exc, xmlrpc.Fault):
        return f"supervisord refused: {exc.faultString}", EXIT_REMOTE
    if xmlrpc is not None and isinstance(exc, xmlrpc.ProtocolError):
        return f"supervisord answered {exc.errcode} {exc.errmsg}", EXIT_TRANSPORT
    if isinstance(exc, OSError):
        return os_error_line(exc), EXIT_TRANSPORT if isinstance(exc, (ConnectionError, TimeoutError)) else EXIT_USAGE
    return None, 0


def exit_for(exc: BaseException) -> int | None:
    """The one place a command's errors become exits: a ZorrentError, an OSError (an
    unwritable folder, a full disk) or a supervisord XML-RPC fault is one line on stderr
    (printed here) and its exit code is returned, never a traceback; None for anything else
    (a bug: let it raise)."""
    if isinstance(exc, ZorrentError):
        line, code = exc.message, exit_code(exc)
    elif isinstance(exc, KeyboardInterrupt):
        line, code = "interrupted", 130
    elif isinstance(exc, Exception):
        line, code = _one_line(exc)
        if line is None:
            return None
    else:
        return None
    from ctl import render

    render.error(line)
    return code


def run_plain(show: Callable[[], None]) -> int:
    """A command run without Typer (ctl/app.py's fast paths): the root's key choice first (no
    --keys: $ZORRENT_KEYS, else peers.json's), then ``show``; its errors as one line, as
    ``handle_errors`` gives them; the exit code."""
    try:
        default_keys()
        show()
    except (Exception, KeyboardInterrupt) as exc:
        code = exit_for(exc)
        if code is None:
            raise
        return code
    return 0


def handle_errors(fn: Callable) -> Callable:
    """``fn`` with its errors turned into exits (``exit_for``)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (Exception, KeyboardInterrupt) as exc:
            code = exit_for(exc)
            if code is None:
                raise
            import typer

            raise typer.Exit(code) from None

    return run


# Plain (click) help, not typer's rich panels: rendering those imports rich's markdown and
# traceback modules, about 100 ms of every `--help` on this machine.
MARKUP_MODE = None


def commands(**kw) -> typer.Typer:
    """A command module's own Typer; ``ctl.app`` loads it when one of its commands runs."""
    import typer

    return typer.Typer(add_completion=False, pretty_exceptions_show_locals=False, rich_markup_mode=MARKUP_MODE,
                       **kw)


def command(app: typer.Typer, name: str, **kw) -> Callable:
    """Register a command on ``app``, with handle_errors."""

    def wrap(fn: Callable) -> Callable:
        return app.command(name, **kw)(handle_errors(fn))

    return wrap
