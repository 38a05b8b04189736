"""Errors stay one line (issue 17 item 4): an OSError or a supervisord fault in a command
ends with one line on stderr and a non-zero exit, never a traceback; the supervisord
config survives a `%` or a quote in a path."""
import configparser
import resource
import signal
import subprocess
import xmlrpc.client

import pytest
import typer
from typer.testing import CliRunner

from ctl import supervisor
from ctl.cli import EXIT_REMOTE, command, commands
from ctl.nodes import PeerSpec
from tests.conftest import PY, REPO, write_random


def run_cli(cwd, *args, preexec=None):
    return subprocess.run([PY, str(REPO / "main.py"), *args], cwd=cwd, capture_output=True, text=True,
                          preexec_fn=preexec, timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                               # a child under a file-size limit would leave truncated .pyc files
                               # behind (importlib renames a short write into place), which break
                               # every later import of those modules
                               "PYTHONDONTWRITEBYTECODE": "1"})


def one_line(res) -> str:
    """The error: one line, the last on stderr (a progress bar may come before it)."""
    err = res.stderr.strip()
    lines = err.splitlines()
    assert res.returncode != 0 and "Traceback" not in err, err
    assert lines and lines[-1].startswith("error:") and sum(x.startswith("error:") for x in lines) == 1, err
    return lines[-1]


def test_an_unwritable_output_folder_is_one_line(tmp_path):
    write_random(tmp_path / "f.bin", 10_000, 1)
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "torrents").write_text("a file where the folder should be")
    res = run_cli(tmp_path, "create", "--input", "f.bin")
    assert res.returncode == 2 and "output/torrents" in one_line(res)


def test_a_full_disk_is_one_line(tmp_path):
    write_random(tmp_path / "f.bin", 4_000_000, 2)

    def small_disk():                     # writes past 100 bytes fail with EFBIG, as a full disk fails
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))

    res = run_cli(tmp_path, "create", "--input", "f.bin", preexec=small_disk)
    line = one_line(res)
    assert res.returncode == 2 and "f.bin.torrent" in line and "too large" in line
    assert not list((tmp_path / "output" / "torrents").glob(".*.tmp"))     # no half-written file left


def test_a_supervisord_fault_is_one_line():
    app = commands()

    @command(app, "boom")
    def boom() -> None:
        raise xmlrpc.client.Fault(10, "BAD_NAME: swarm:nope")

    @command(app, "other")
    def other() -> None:
        pass

    res = CliRunner().invoke(app, ["boom"])
    assert res.exit_code == EXIT_REMOTE and "Traceback" not in res.output
    assert res.output.strip().splitlines() == ["error: supervisord refused: BAD_NAME: swarm:nope"]


@pytest.mark.parametrize("odd", ['per%cent', 'quo"te', "it's", "[/]bracket"])
def test_the_supervisord_config_survives_odd_paths(tmp_path, monkeypatch, odd):
    """Written with configparser and read back by supervisord's own parser, exactly."""
    from supervisor.options import ServerOptions

    work = tmp_path / odd
    (work / "output" / "logs").mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("ZORRENT_OUTPUT", str(work / "output"))
    monkeypatch.setenv("ZORRENT_SUPERVISOR_CONF", str(work / "conf"))
    spec = PeerSpec(peer_id="p1", ip="127.0.0.1", port=6881)
    text = supervisor.render([spec], supervisor.TrackerSpec("127.0.0.1", 6969), tracker_autostart=False)
    configparser.ConfigParser(interpolation=None).read_string(text)      # well-formed
    conf = supervisor.write(text)
    opts = ServerOptions()
    opts.realize(args=["-c", str(conf)])
    programs = {g.name: g.process_configs for g in opts.process_group_configs}
    p1 = next(pc for pcs in programs.values() for pc in pcs if pc.name == "p1")
    assert p1.directory == str(work)
    assert p1.environment["ZORRENT_OUTPUT"] == str(work / "output")
    assert p1.stdout_logfile == str(work / "output" / "logs" / "p1.log")
    import shlex

    assert shlex.split(p1.command)[-8:-6] == ["--peer-id", "p1"]
    assert opts.pidfile == str(work / "output" / "run" / "supervisord.pid")
