"""The CLI's entry point (``zorrent``, ``python main.py``, ``python -m ctl``).

The commands are defined once, with Typer, in ctl/root.py and ctl/commands/. One command
line is answered before any of that is imported: exactly ``[--json] status --peer-id ID``,
the command users and scripts run most (a watch loop, the tests' polls). It runs the same
function as the Typer command (ctl/output/status.py) with the same defaults, keys and errors,
without importing typer and building the CLI (about 40 ms of its start-up). So is the
plainest ``[--json] download`` (``fast_download``), whose start-up and exit are part of the
1 GiB download's time as a user sees it. Any other command line, another option or a
spelling of these, ``--help``, a typo, goes to Typer.

A fast path ends with ``os._exit`` once its output is flushed: the interpreter's teardown of
the modules it loaded (zmq, rich) took ~30 ms after the command was done. Nothing of
theirs is left to finish then: every request has had its reply.
"""
import os
import sys


def fast_status(argv: list[str]) -> tuple[str, bool] | None:
    """(peer id, --json) if ``argv`` is exactly ``[--json] status --peer-id ID``, else None."""
    json_out = argv[:1] == ["--json"]
    rest = argv[1:] if json_out else argv
    if len(rest) == 3 and rest[:2] == ["status", "--peer-id"] and not rest[2].startswith("-"):
        return rest[2], json_out
    return None


DOWNLOAD_OPTIONS = {"--torrent", "--output", "--peer-id", "--peer-port"}


def fast_download(argv: list[str]) -> tuple[dict[str, str], bool] | None:
    """({option: value}, --json) if ``argv`` is ``[--json] download`` and then only
    ``--torrent T``, ``--peer-id P`` and ``--peer-port N`` (and perhaps ``--output O``), each
    once, in any order, no value starting with "-", N digits; else None (Typer's)."""
    json_out = argv[:1] == ["--json"]
    rest = argv[1:] if json_out else argv
    if rest[:1] != ["download"] or len(rest) % 2 != 1:
        return None
    options: dict[str, str] = {}
    for name, value in zip(rest[1::2], rest[2::2]):
        if name not in DOWNLOAD_OPTIONS or name in options or not value or value.startswith("-"):
            return None
        options[name] = value
    if not {"--torrent", "--peer-id", "--peer-port"} <= options.keys():
        return None
    port = options["--peer-port"]
    if not (port.isascii() and port.isdigit() and len(port) <= 5):   # longer: Typer's "not a valid int"
        return None
    return options, json_out


def leave(code: int) -> None:
    """Exit with ``code`` now that the output is out, skipping the interpreter's teardown."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):         # a closed pipe: nothing more can be said on it
        pass
    os._exit(code)


def main() -> None:
    fast = fast_status(sys.argv[1:])
    if fast is not None:
        from ctl.output.status import run

        leave(run(*fast))
    download = fast_download(sys.argv[1:])
    if download is not None:
        from ctl.output import download as run_download

        leave(run_download.run(*download))
    from ctl.root import app

    app()


def __getattr__(name: str):
    """``ctl.app.app`` (the Typer root) and the rest of ctl/root.py, imported when asked for."""
    if name.startswith("__"):
        raise AttributeError(name)
    from ctl import root

    return getattr(root, name)
