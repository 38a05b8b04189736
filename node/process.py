"""What every node process does the same way: logging and the ready file."""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from pathlib import Path

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
HEAP_BLOCK_LIMIT_BYTES = 64 * 1024 * 1024


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


def reuse_large_buffers() -> None:
    """Serve piece-sized buffers (pread results, zmq receive buffers) from the heap.

    By default glibc mmaps every allocation over 128 KiB and unmaps it on free, so each
    block costs fresh page faults and zeroing. With the threshold raised, freed blocks
    are reused. Memory stays bounded by what is in flight (the credit window).
    """
    libc_name = ctypes.util.find_library("c")
    if not libc_name or os.environ.get("ZORRENT_DEFAULT_MALLOC"):
        return
    try:
        libc = ctypes.CDLL(libc_name)
        libc.mallopt(M_MMAP_THRESHOLD, HEAP_BLOCK_LIMIT_BYTES)
        libc.mallopt(M_TRIM_THRESHOLD, 2 * HEAP_BLOCK_LIMIT_BYTES)
    except (OSError, AttributeError):
        pass  # not glibc: keep the allocator's defaults
