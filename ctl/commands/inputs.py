"""Random test input files."""
import random
from pathlib import Path
from typing import Annotated

import typer

from ctl.cli import command, commands
from protocol.errors import ErrorCode, ZorrentError

UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
WRITE_CHUNK_BYTES = 4 * 1024 * 1024


def parse_size(text: str) -> int:
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1] if t and t[-1] in UNITS else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise ZorrentError(f"size {text!r} is not a number with an optional K/M/G", ErrorCode.BAD_INPUT) from None
    return int(value * UNITS[unit])


def write_random_file(path: Path, size: int, rng: random.Random) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, WRITE_CHUNK_BYTES)
            f.write(rng.randbytes(n))
            left -= n


app = commands()

@command(app, "make-inputs")
def make_inputs(
    ctx: typer.Context,
    num_files: Annotated[int, typer.Option("--num-files", "--num_files", min=1, help="How many files.")] = 10,
    path: Annotated[str, typer.Option(help="Folder to write them to.")] = "input_files",
    min_size: Annotated[str, typer.Option(help="Smallest file, e.g. 512K, 4M.")] = "4M",
    max_size: Annotated[str, typer.Option(help="Largest file.")] = "16M",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 0,
) -> None:
    """Generate random input files for testing."""
    from ctl import render

    lo, hi = parse_size(min_size), parse_size(max_size)
    if not 0 < lo <= hi:
        raise ZorrentError(f"need 0 < --min-size <= --max-size, got {lo} and {hi}", ErrorCode.BAD_INPUT)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    made = []
    for i in range(1, num_files + 1):
        size = rng.randint(lo, hi)
        dest = folder / f"file_{i:03d}.bin"
        write_random_file(dest, size, rng)
        made.append((dest, size))
    if ctx.obj.json:
        render.emit_json([{"path": str(p), "length": n} for p, n in made])
        return
    render.out.print(render.table(f"{num_files} files in {folder}", ["File", "Size"],
                                  [[p.name, render.mib(n)] for p, n in made]))
