"""What every node process does the same way: logging, the ready file, a lock file."""
from __future__ import annotations

import fcntl
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



def hold_lock(path: Path) -> int | None:
    """An exclusive flock on ``path``, held until the descriptor is closed (or the process
    dies, so a crash never leaves it stale); None if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


_libc = None


def trim_heap() -> None:
    """Hand the C heap's free pages back to the kernel (glibc ``malloc_trim``, every arena).
    A finished download freed its piece buffers, but glibc keeps freed memory for reuse, so a
    long-lived peer's RSS would stay at the peak of every download it ran; a few ms, once a
    download. A no-op without glibc."""
    global _libc
    if _libc is None:
        try:
            import ctypes

            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)
