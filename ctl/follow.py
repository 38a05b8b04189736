"""Following a running peer's jobs from the CLI, by polling its status: where a download
goes, the hash of an upload, the tracker's acknowledgement of its pieces, and a download
to its end, each with a progress bar (none with ``--json``).

Imported by upload and download when they run, never at `--help`."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from node import config
from protocol.errors import ErrorCode, RemoteError, TransportError, ZorrentError

if TYPE_CHECKING:
    from protocol import messages as m
    from protocol import metainfo


class NoProgress:
    """What a progress bar is used for here, showing nothing (``--json``)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass


def _progress(quiet: bool):
    from ctl import render

    return NoProgress() if quiet else render.download_progress()


def check_registered(peer_id: str, registered: bool, since: float) -> None:
    """Fail fast when the peer has not reached the tracker ``TRACKER_GRACE_S`` after ``since``."""
    if not registered and time.monotonic() - since > config.TRACKER_GRACE_S:
        raise TransportError(f"{peer_id} cannot reach the tracker (is it running? see "
                             f"{config.logs_dir() / (peer_id + '.log')})")


def job(peer_id: str, info_hash: str, since: float) -> m.JobStatus:
    """The peer's view of one torrent; fail fast when the peer cannot reach the tracker."""
    from ctl import client
    from protocol import messages as m

    reply = client.peer_control(peer_id, m.Status(info_hash=info_hash))
    check_registered(peer_id, reply.registered, since)
    return reply.jobs[0]


def held_path(peer_id: str, info_hash: str) -> str | None:
    """The path of the peer's job for this torrent (its resume state's), or None."""
    from ctl import client
    from protocol import messages as m

    try:
        reply = client.peer_control(peer_id, m.Status(info_hash=info_hash))
    except RemoteError as exc:
        if exc.code == ErrorCode.UNKNOWN_TORRENT:
            return None
        raise
    return reply.jobs[0].path if reply.jobs else None


def output_path(meta: metainfo.Metainfo, output: str | None, held: str | None = None) -> str:
    """Where a download's content goes, one rule for a file and a folder (``cp -r``'s):
    ``--output`` naming an existing folder means NAME inside it, any other path is the
    content's own path; no ``--output``, ``downloads/NAME``. A torrent the peer already holds
    (``held``, the path its resume state records) stays where it is, if ``--output`` names
    it either way: a second run of the same command finds the folder the first one made.

    abspath, not resolve(): a symlink planted at the output is refused by the peer, not followed."""
    if output is None:
        return held or os.path.abspath(config.downloads_dir() / meta.name)
    given = Path(output)
    if held is not None and held in (os.path.abspath(given), os.path.abspath(given / meta.name)):
        return held
    if given.is_dir() and not given.is_symlink():
        given = given / meta.name
    return os.path.abspath(given)


def wait_hashed(peer_id: str, metas: list[metainfo.Metainfo], quiet: bool) -> None:
    """Follow the peer's hash of each uploaded file (a progress bar with rate and ETA) until it
    seeds; a file that does not match its torrent is refused (exit 3), as the peer says."""
    from ctl import client
    from protocol import messages as m

    start = time.monotonic()
    with _progress(quiet) as bar:
        tasks = {meta.info_hash: bar.add_task(f"hashing {meta.name}", total=meta.length, pieces="")
                 for meta in metas}

        def shown(reply: m.StatusReply) -> None:
            check_registered(peer_id, reply.registered, start)
            jobs = {j.info_hash: j for j in reply.jobs}
            for info_hash, task in tasks.items():
                status = jobs.get(info_hash)
                if status is not None and status.state == m.JobState.HASHING.value:
                    bar.update(task, completed=status.hashed_bytes, total=status.hash_bytes or status.length)
                elif status is not None:
                    bar.update(task, completed=status.length, total=status.length)

        client.wait_hashed(peer_id, list(tasks), on_status=shown)


def wait_announced(peer_id: str, meta: metainfo.Metainfo) -> None:
    """Until the tracker has acknowledged every piece the peer holds."""
    start = time.monotonic()
    while True:
        status = job(peer_id, meta.info_hash, start)
        if status.announced >= status.have:
            return
        if time.monotonic() - start > config.READY_TIMEOUT_S:
            raise TransportError(f"{peer_id} seeds {meta.name}, but the tracker has acknowledged only "
                                 f"{status.announced} of {status.have} pieces")
        time.sleep(config.STATUS_POLL_S)


def download(peer_id: str, meta: metainfo.Metainfo, quiet: bool) -> m.JobStatus:
    """Poll the peer's status with a progress bar until the job ends or stalls."""
    from protocol import messages as m

    start = time.monotonic()
    last_have, last_change = None, start
    last_poll = (start, 0)               # (when, bytes done) of the poll before, for the recent rate
    active = (m.JobState.DOWNLOADING.value, m.JobState.CHECKING.value, m.JobState.HASHING.value)
    with _progress(quiet) as bar:
        task = bar.add_task(meta.name, total=meta.length, pieces="")
        while True:
            status = job(peer_id, meta.info_hash, start)
            if status.hash_bytes:         # what is on disk already is being hashed
                bar.update(task, completed=status.bytes_done,
                           pieces=f"hashing {100 * status.hashed_bytes // status.hash_bytes}%")
            else:
                bar.update(task, completed=status.bytes_done, pieces=f"{status.have}/{status.num_pieces}")
            if status.state not in active:
                return status
            now = time.monotonic()
            if (status.have, status.hashed_bytes) != last_have:
                last_have, last_change = (status.have, status.hashed_bytes), now
            elif now - last_change > config.DOWNLOAD_STALL_S:
                raise ZorrentError(f"no progress on {meta.name} for {config.DOWNLOAD_STALL_S:g}s "
                                   f"({status.have}/{status.num_pieces} pieces; are seeders running?); "
                                   f"{peer_id} keeps trying", ErrorCode.BAD_INPUT)
            recent = (status.bytes_done - last_poll[1]) / (now - last_poll[0]) if now > last_poll[0] else 0.0
            last_poll = (now, status.bytes_done)
            time.sleep(_next_poll_s(status, meta.length, now - start, recent))


def _next_poll_s(status, length: int, elapsed_s: float, recent_bps: float = 0.0) -> float:
    """The usual refresh, but no later than when the download should end: a 1 GiB download takes
    under 2 s here, and ending up to a whole refresh late was ~10% of it. The end is predicted
    from the faster of the rate so far and the rate since the last poll (``recent_bps``): the
    rate so far includes the start and runs behind, and the end was seen 2-25 ms
    late; one before it costs only another poll."""
    done = status.bytes_done
    if status.hash_bytes or done <= 0 or elapsed_s <= 0:
        return config.STATUS_POLL_S
    eta = (length - done) / max(done / elapsed_s, recent_bps)
    return min(config.STATUS_POLL_S, max(config.STATUS_POLL_MIN_S, eta))
