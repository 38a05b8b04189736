"""A command imports only what it runs (issue 20): `--help` loads none of the heavy
modules, `status` none beyond the request and the table, and a peer's or tracker's
start-up none of the CLI's. Checked on sys.modules in a fresh interpreter, not by timing."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Modules that cost tens of milliseconds (or megabytes) each to import on this machine.
HEAVY = ["rich", "zmq", "msgpack", "supervisor", "psutil", "aiohttp", "pymongo", "pydantic", "xmlrpc.client",
         "http.client", "asyncio", "protocol.messages", "protocol.metainfo", "ctl.soak", "ctl.lab",
         "ctl.supervisor", "ctl.client", "node.peer.main", "node.tracker.main", "node.web.server"]

PROBE = """
import json, os, runpy, sys
os._exit = sys.exit        # a fast path's exit (ctl.app.leave) skips teardown: here it must not skip the print
sys.argv = ["zorrent", *json.loads(sys.argv[1])]
try:
    runpy.run_path({main!r}, run_name="__main__")
except SystemExit:
    pass
sys.stdout = sys.__stdout__
print("\\nMODULES " + json.dumps(sorted(sys.modules)))
"""


def loaded_by(tmp_path: Path, *argv: str) -> set[str]:
    """The modules a real `python main.py ARGV` has loaded by the time it exits."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "ZORRENT_OUTPUT": str(tmp_path / "output")}
    res = subprocess.run([sys.executable, "-c", PROBE.format(main=str(REPO / "main.py")), json.dumps(argv)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    line = next(l for l in res.stdout.splitlines() if l.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def heavy_in(modules: set[str], heavy: list[str]) -> list[str]:
    return [h for h in heavy if h in modules]


@pytest.mark.parametrize("argv", [["--help"], ["peer", "--help"], ["download", "--help"], ["soak", "--help"],
                                  ["swarm", "up", "--help"]])
def test_help_imports_nothing_heavy(tmp_path, argv):
    modules = loaded_by(tmp_path, *argv)
    assert "ctl.app" in modules      # the probe ran the real CLI
    assert heavy_in(modules, HEAVY) == []


def test_status_imports_only_the_request(tmp_path):
    """No peer runs here, so status fails fast, after importing what it runs: its own command
    module (not the other commands'), the client, the control messages (not the tracker's)."""
    modules = loaded_by(tmp_path, "status", "--peer-id=peer2")     # this spelling goes through Typer
    assert {"ctl.client", "ctl.commands.status", "protocol.messages.control"} <= modules
    assert heavy_in(modules, ["supervisor", "psutil", "aiohttp", "pymongo", "pydantic", "xmlrpc.client", "ctl.soak",
                              "ctl.lab", "ctl.supervisor", "rich.progress", "rich.table", "protocol.metainfo",
                              "protocol.messages.tracker", "protocol.messages.data", "zmq.auth",
                              "ctl.commands.torrents", "ctl.commands.swarm", "ctl.commands.soak",
                              "node.peer.main", "node.tracker.main"]) == []


def test_a_node_process_loads_none_of_the_cli(tmp_path):
    """What `python -m ctl peer` and `python -m ctl tracker` import before they run: the
    CLI root and their own node, never the CLI's output, supervisor or soak machinery."""
    code = ("import json, sys, ctl.app, node.peer.main, node.tracker.main; "
            "print(json.dumps(sorted(sys.modules)))")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=60, check=True)
    modules = set(json.loads(res.stdout))
    assert heavy_in(modules, ["rich", "supervisor", "psutil", "pydantic", "xmlrpc.client", "ctl.soak", "ctl.lab",
                              "ctl.supervisor", "ctl.client", "ctl.render"]) == []


def test_the_lazy_root_knows_every_command_and_where_it_lives():
    """ctl.app loads a command's module only when it is invoked: its COMMANDS map must name,
    for every module, exactly the commands that module registers, in help order."""
    import typer.main
    from typer.core import TyperGroup

    from ctl import root as app

    found = {}
    for module in dict.fromkeys(app.COMMANDS.values()):
        built = typer.main.get_command(app.command_module(module).app)
        names = list(built.commands) if isinstance(built, TyperGroup) else [built.name]
        found.update({name: module for name in names})
    assert found == app.COMMANDS
    assert list(found) == list(app.COMMANDS)


def test_every_message_is_reachable_through_the_package_and_the_registry():
    """One source of truth, split by role: each message class is registered once, reached as
    ``messages.Name`` and, decoding, through REGISTRY (which imports its role module)."""
    code = ("import json, sys; from protocol import messages as m; from protocol.codec import decode, encode; "
            "reply = decode(encode(m.StatusReply(peer_id='p', registered=True, jobs=[]))); "
            "loaded = sorted(k for k in sys.modules if k.startswith('protocol.messages.')); "
            "m.load_all(); names = {t.value: (c.__module__, c.__name__) for t, c in m.REGISTRY.items()}; "
            "print(json.dumps([loaded, names, all(getattr(m, c) is m.REGISTRY[m.MsgType(t)] "
            "for t, (_, c) in names.items())]))")
    res = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=60, check=True)
    loaded, names, reachable = json.loads(res.stdout)
    assert loaded == ["protocol.messages.base", "protocol.messages.control", "protocol.messages.generic",
                      "protocol.messages.names"]                 # a status reply needs no tracker messages
    from protocol import messages as m

    assert set(names) == {t.value for t in m.MsgType} and reachable
    assert {mod for mod, _ in names.values()} == {f"protocol.messages.{r}" for r in m.ROLES}


def test_the_plainest_status_line_is_answered_without_typer(tmp_path):
    """`[--json] status --peer-id ID` runs ctl/output/status.py straight from the entry point;
    every other spelling goes through Typer, with the same output and exit code."""
    from ctl.app import fast_status

    assert fast_status(["status", "--peer-id", "p1"]) == ("p1", False)
    assert fast_status(["--json", "status", "--peer-id", "p1"]) == ("p1", True)
    for other in (["status", "--peer-id=p1"], ["status", "--peer-id", "--help"], ["status", "--help"],
                  ["--timeout", "3", "status", "--peer-id", "p1"], ["status", "--peer-id", "p1", "x"],
                  ["status"], ["--help"], ["status", "--json", "--peer-id", "p1"]):
        assert fast_status(other) is None, other
    modules = loaded_by(tmp_path, "--json", "status", "--peer-id", "peer2")
    assert "ctl.output.status" in modules
    assert heavy_in(modules, ["typer", "click", "ctl.root", "rich.table", "node.curve", "zmq.auth"]) == []
    env = {**os.environ, "PYTHONPATH": str(REPO), "ZORRENT_OUTPUT": str(tmp_path / "output")}
    runs = [subprocess.run([sys.executable, str(REPO / "main.py"), *argv], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
            for argv in (["status", "--peer-id", "nobody"], ["status", "--peer-id=nobody"],
                         ["status", "--peer-id", "../x"], ["status", "--peer-id=../x"])]
    fast, typer_, fast_bad, typer_bad = [(r.returncode, r.stdout, r.stderr) for r in runs]
    assert fast == typer_ and fast[0] == 1 and "nobody is not running here" in fast[2]
    assert fast_bad == typer_bad and fast_bad[0] == 2


def test_the_plainest_download_line_is_answered_without_typer(tmp_path):
    """`[--json] download --torrent T [--output O] --peer-id P --peer-port N`, in any order, runs
    ctl/output/download.py straight from the entry point; every other spelling goes through
    Typer, with the same output and exit code."""
    from ctl.app import fast_download

    base = ["--torrent", "t.torrent", "--peer-id", "p1", "--peer-port", "6881"]
    want = {"--torrent": "t.torrent", "--peer-id": "p1", "--peer-port": "6881"}
    assert fast_download(["download", *base]) == (want, False)
    assert fast_download(["--json", "download", "--peer-port", "6881", "--output", "o", "--peer-id", "p1",
                          "--torrent", "t.torrent"]) == ({**want, "--output": "o"}, True)
    for other in (["download", "--torrent=t.torrent", "--peer-id", "p1", "--peer-port", "6881"],
                  ["download", *base, "--peer-host", "h"], ["download", *base, "--torrent", "u.torrent"],
                  ["download", "--torrent", "t.torrent", "--peer-id", "p1"], ["download", *base[:-1], "x1"],
                  ["download", *base[:-1], "--help"], ["download", *base, "--help"], ["download", "--help"],
                  ["--timeout", "3", "download", *base], ["download", *base, "--json"], ["download"],
                  ["download", "--magnet", "magnet:?xt=urn:btih:00", "--peer-id", "p1", "--peer-port", "1"],
                  ["download", *base[:-1], "６８８１"], ["download", *base[:-1], "9" * 5000],
                  ["status", "--peer-id", "p1"]):
        assert fast_download(other) is None, other
    modules = loaded_by(tmp_path, "--json", "download", "--torrent", "none.torrent", "--peer-id", "p1",
                        "--peer-port", "6881")
    assert "ctl.output.download" in modules
    assert heavy_in(modules, ["typer", "click", "ctl.root", "ctl.commands.torrents", "rich.progress"]) == []
    env = {**os.environ, "PYTHONPATH": str(REPO), "ZORRENT_OUTPUT": str(tmp_path / "output")}
    (tmp_path / "bad.torrent").write_bytes(b"not bencode")
    runs = [subprocess.run([sys.executable, str(REPO / "main.py"), *argv], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
            for torrent in ("none.torrent", "bad.torrent")
            for argv in (["download", "--torrent", torrent, "--peer-id", "p1", "--peer-port", "1"],
                         ["download", f"--torrent={torrent}", "--peer-id", "p1", "--peer-port", "1"])]
    (fast, typer_, fast_bad, typer_bad) = [(r.returncode, r.stdout, r.stderr) for r in runs]
    assert fast == typer_ and fast[0] == 2 and len(fast[2].strip().splitlines()) == 1, fast
    assert fast_bad == typer_bad and fast_bad[0] == 2 and "Traceback" not in fast_bad[2], fast_bad
