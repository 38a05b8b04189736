"""Fixtures that run real processes: tracker, peers, the CLI, a MongoDB-protocol server.

Children bind port 0 and write their endpoint to a ready file; tests poll with a
deadline, never a fixed sleep. Every process a test starts is terminated (then
killed) at teardown, its whole tree, and its log is printed if the test failed.
"""
from __future__ import annotations


import shutil
import tempfile

import pytest

from tests.procs import PY, REPO, Swarm, free_port, kill_tree, start_secantus, wait_for, write_random  # noqa: F401


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """A short base for tmp_path: unix socket paths (a peer's control socket, supervisord's)
    must stay under 108 bytes, and xdist adds ``popen-gwN/`` to pytest's long default. A fresh
    directory of its own (mkdtemp), so runs side by side never share or wipe one another's."""
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = config._zorrent_basetemp = tempfile.mkdtemp(prefix=BASETEMP_PREFIX)
        _prune_old_bases()


BASETEMP_PREFIX = "zorrent-t-"     # shorter than pytest's /tmp/pytest-of-USER/pytest-N/
BASETEMP_KEPT_S = 24 * 3600        # a failed run's base is kept this long for its logs; no run lasts as long


def _prune_old_bases() -> None:
    import time
    from pathlib import Path

    for old in Path(tempfile.gettempdir()).glob(f"{BASETEMP_PREFIX}*"):
        try:
            if old.is_dir() and not old.is_symlink() and time.time() - old.stat().st_mtime > BASETEMP_KEPT_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass


def pytest_sessionfinish(session, exitstatus):
    """The base goes with a passing run; a failing one's stays for its logs."""
    made = getattr(session.config, "_zorrent_basetemp", None)
    if made and exitstatus == 0:
        shutil.rmtree(made, ignore_errors=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def swarm(tmp_path, request):
    s = Swarm(tmp_path)
    yield s
    failed = any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False) for w in ("setup", "call"))
    s.close(failed)


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory):
    """A real MongoDB wire-protocol server (SecantusDB, WiredTiger storage) for the session."""
    proc, base = start_secantus(tmp_path_factory.mktemp("secantus"))
    yield base
    kill_tree(proc)


@pytest.fixture
def mute_endpoint():
    """A tcp endpoint where nothing ever answers: a listener that never speaks ZeroMQ, held
    for the test (a merely free port could be taken meanwhile by another worker's node)."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield f"tcp://127.0.0.1:{sock.getsockname()[1]}"

