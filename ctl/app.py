"""The CLI's entry point (``zorrent``, ``python main.py``, ``python -m ctl``).

The commands are defined once, with Typer, in ctl/root.py and ctl/commands/. One command
line is answered before any of that is imported: exactly ``[--json] status --peer-id ID``,
the command users and scripts run most (a watch loop, the tests' polls). It runs the same
function as the Typer command (ctl/output/status.py) with the same defaults, keys and errors,
without importing typer and building the CLI (about 40 ms of its start-up). Any other
command line, another option or a spelling of these, ``--help``, a typo, goes to Typer.
"""
import sys


def fast_status(argv: list[str]) -> tuple[str, bool] | None:
    """(peer id, --json) if ``argv`` is exactly ``[--json] status --peer-id ID``, else None."""
    json_out = argv[:1] == ["--json"]
    rest = argv[1:] if json_out else argv
    if len(rest) == 3 and rest[:2] == ["status", "--peer-id"] and not rest[2].startswith("-"):
        return rest[2], json_out
    return None


def main() -> None:
    fast = fast_status(sys.argv[1:])
    if fast is not None:
        from ctl.output.status import run

        sys.exit(run(*fast))
    from ctl.root import app

    app()


def __getattr__(name: str):
    """``ctl.app.app`` (the Typer root) and the rest of ctl/root.py, imported when asked for."""
    if name.startswith("__"):
        raise AttributeError(name)
    from ctl import root

    return getattr(root, name)
