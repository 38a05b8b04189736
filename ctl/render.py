"""Everything the CLI shows: rich tables, progress, JSON, one-line errors.

rich is imported when something is drawn: ``out`` and ``err`` (its consoles) are made on
first use, so `--json` output and the commands that print nothing pay for none of it."""
from __future__ import annotations

import dataclasses
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from protocol import messages as m

    out: Console
    err: Console

WIDE_COLUMNS = 200   # pipes and logs get whole info-hashes, not ellipses


_consoles: dict[str, Console] = {}


def console(stream: str = "out") -> Console:
    """The rich console on stdout ("out") or stderr ("err"), made on first use."""
    made = _consoles.get(stream)
    if made is None:
        from rich.console import Console

        made = _consoles[stream] = Console(stderr=stream == "err", highlight=False)
        if not made.is_terminal:
            made.width = WIDE_COLUMNS
    return made


def __getattr__(name: str) -> Any:
    """``render.out`` and ``render.err``: the consoles."""
    if name in ("out", "err"):
        return console(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def error(text: str) -> None:
    """One line on stderr; the text is never read as markup (a path may hold "[/]")."""
    from rich.markup import escape

    console("err").print(f"[bold red]error:[/] {escape(' '.join(str(text).splitlines()))}", markup=True, soft_wrap=True)


def emit_json(obj: Any) -> None:
    def default(o):
        if dataclasses.is_dataclass(o):
            return dataclasses.asdict(o)
        if isinstance(o, bytes):
            return o.hex()
        return str(o)

    sys.stdout.write(json.dumps(obj, default=default, indent=2) + "\n")


def mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[str(v) for v in r])
    return t


def download_progress() -> Progress:
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[pieces]}"),
                    DownloadColumn(binary_units=True), TransferSpeedColumn(), TimeRemainingColumn(),
                    console=console("err"), transient=False)


def download_statistics(job: m.JobStatus) -> None:
    """The README's Download Statistics block."""
    out = console("out")
    out.print("Download Statistics:")
    out.print(table(None, ["Peer ID", "Pieces Downloaded", "Final Score"],
                    [[p.peer_id + (" (banned)" if p.banned else ""), p.pieces, f"{p.score:.2f}"]
                     for p in job.peers]))
    out.print(f"Total pieces downloaded: {sum(p.pieces for p in job.peers)}")
    out.print(f"Failed attempts: {job.failed_attempts}")
    rate = job.length / 1048576 / job.elapsed_s if job.elapsed_s else 0.0
    out.print(f"{job.name}: {mib(job.length)} in {job.elapsed_s:.2f} s ({rate:.1f} MiB/s), "
              f"all {job.num_pieces} pieces SHA-1 verified -> {job.path}")
