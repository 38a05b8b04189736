"""The `download` command's start (issue 20): its first requests overlap the work around them,
and say the same things in the same order as when they went one after another."""
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from ctl import client
from protocol.errors import ErrorCode, RemoteError

REPO = Path(__file__).resolve().parents[2]


def test_a_background_request_hands_back_its_result_or_its_error_and_runs_meanwhile():
    started, go = threading.Event(), threading.Event()

    def slow(x):
        started.set()
        assert go.wait(5)                  # held until the caller has gone on with its own work
        return x * 2

    doubled = client.in_background(slow, 21)
    assert started.wait(5)                 # it runs before anyone asks for it...
    go.set()                               # ... while the caller goes on (no clock: events only)
    assert doubled() == 42

    def refused():
        raise RemoteError(ErrorCode.UNKNOWN_TORRENT, "not held")

    failed = client.in_background(refused)
    try:
        failed()
    except RemoteError as exc:
        assert exc.code == ErrorCode.UNKNOWN_TORRENT
    else:
        raise AssertionError("the error was not handed back")


def test_with_no_peer_the_ping_is_still_what_the_download_command_reports(tmp_path):
    """The ping and the held Status are in flight together now; with neither a data port nor a
    control socket, the ping's error (as when it went first) is the one line, on both paths."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "ZORRENT_OUTPUT": str(tmp_path / "output")}
    (tmp_path / "f.bin").write_bytes(os.urandom(100_000))
    subprocess.run([sys.executable, str(REPO / "main.py"), "create", "--input", "f.bin"], cwd=tmp_path, env=env,
                   check=True, capture_output=True, timeout=60)
    torrent = str(tmp_path / "output" / "torrents" / "f.bin.torrent")
    with socket.socket() as s:      # a port nothing listens on (the kernel's pick, then closed)
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    runs = [subprocess.run([sys.executable, str(REPO / "main.py"), *argv], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
            for argv in (["download", "--torrent", torrent, "--peer-id", "p1", "--peer-port", port],
                         ["download", f"--torrent={torrent}", "--peer-id", "p1", "--peer-port", port])]
    fast, typer_ = [(r.returncode, r.stdout, r.stderr) for r in runs]
    assert fast == typer_, (fast, typer_)
    assert fast[0] == 1 and f"no answer from peer p1 at tcp://127.0.0.1:{port}" in fast[2], fast
    assert len(fast[2].strip().splitlines()) == 1 and "Traceback" not in fast[2]
