"""Fixtures that run real processes: tracker, peers, the CLI, a MongoDB-protocol server.

Children bind port 0 and write their endpoint to a ready file; tests poll with a
deadline, never a fixed sleep. Every process a test starts is terminated (then
killed) at teardown, its whole tree, and its log is printed if the test failed.
"""
from __future__ import annotations


import pytest

from tests.procs import PY, REPO, Swarm, free_port, kill_tree, start_secantus, wait_for, write_random  # noqa: F401


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
