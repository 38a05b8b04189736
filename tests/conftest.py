"""Fixtures that run real processes: tracker, peers, the CLI, a MongoDB-protocol server.

Children bind port 0 and write their endpoint to a ready file; tests poll with a
deadline, never a fixed sleep. Every process a test starts is terminated (then
killed) at teardown, its whole tree, and its log is printed if the test failed.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.procs import PY, REPO, Swarm, free_port, kill_tree, wait_for, write_random  # noqa: F401


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
    binary = shutil.which("secantusd-py", path=str(Path(PY).parent)) or shutil.which("secantusd-py")
    assert binary, "secantusd-py is missing: run `make test`, which installs SecantusDB"
    port = free_port()
    data = tmp_path_factory.mktemp("secantus")
    log = open(data / "server.log", "ab")
    proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port), "--storage-path",
                             str(data / "db")], stdout=log, stderr=subprocess.STDOUT)
    base = f"mongodb://127.0.0.1:{port}"

    def up():
        import pymongo

        assert proc.poll() is None, (data / "server.log").read_text()
        try:
            pymongo.MongoClient(base, serverSelectionTimeoutMS=300).admin.command("ping")
            return True
        except Exception:
            return False

    wait_for(up, timeout_s=60, what="SecantusDB to accept connections")
    yield base
    kill_tree(proc)
