"""What every node process does the same way: logging and the ready file."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def setup_logging(name: str) -> None:
    logging.basicConfig(
        level=os.environ.get("ZORRENT_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
        stream=sys.stderr,
    )


def write_ready_file(path: str | None, endpoint: str) -> None:
    """Tell whoever started us where we listen (atomic: never a half-written file)."""
    if not path:
        return
    tmp = Path(f"{path}.tmp")
    tmp.write_text(endpoint)
    os.replace(tmp, path)

