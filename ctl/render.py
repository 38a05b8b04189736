"""Everything the CLI shows: rich tables, progress, JSON, one-line errors."""
from __future__ import annotations

import dataclasses
import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from rich.progress import Progress

    from protocol import messages as m

WIDE_COLUMNS = 200   # pipes and logs get whole info-hashes, not ellipses
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
for _c in (out, err):
    if not _c.is_terminal:
        _c.width = WIDE_COLUMNS


def error(text: str) -> None:
    """One line on stderr; the text is never read as markup (a path may hold "[/]")."""
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(' '.join(str(text).splitlines()))}", markup=True, soft_wrap=True)


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
                    console=err, transient=False)


def download_statistics(job: m.JobStatus) -> None:
    """The README's Download Statistics block."""
    out.print("Download Statistics:")
    out.print(table(None, ["Peer ID", "Pieces Downloaded", "Final Score"],
                    [[p.peer_id + (" (banned)" if p.banned else ""), p.pieces, f"{p.score:.2f}"]
                     for p in job.peers]))
    out.print(f"Total pieces downloaded: {sum(p.pieces for p in job.peers)}")
    out.print(f"Failed attempts: {job.failed_attempts}")
    rate = job.length / 1048576 / job.elapsed_s if job.elapsed_s else 0.0
    out.print(f"{job.name}: {mib(job.length)} in {job.elapsed_s:.2f} s ({rate:.1f} MiB/s), "
              f"all {job.num_pieces} pieces SHA-1 verified -> {job.path}")
