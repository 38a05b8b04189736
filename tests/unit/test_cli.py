"""The CLI through Typer's CliRunner: help everywhere, one-line errors, exit codes."""
import pytest
from typer.testing import CliRunner

from ctl.app import EXIT_TRANSPORT, EXIT_USAGE, app

runner = CliRunner()
COMMANDS = ["tracker", "peer", "start-peer", "create", "upload", "download", "get", "status", "make-inputs"]


@pytest.fixture(autouse=True, scope="module")
def commands():
    from ctl.commands import inputs, swarm, torrents  # noqa: F401


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZORRENT_TRACKER", "tcp://127.0.0.1:1")


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command):
    res = runner.invoke(app, [command, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def one_line_error(res, code, text):
    assert res.exit_code == code, res.output
    lines = [l for l in res.output.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], res.output
    assert "Traceback" not in res.output


def test_create_missing_input():
    one_line_error(runner.invoke(app, ["create", "--input", "nope.bin"]), EXIT_USAGE, "input not found: nope.bin")


def test_download_corrupt_torrent(tmp_path):
    (tmp_path / "bad.torrent").write_bytes(b"d4:info")
    res = runner.invoke(app, ["download", "--torrent", "bad.torrent", "--peer-id", "p2", "--peer-port", "6882"])
    one_line_error(res, EXIT_USAGE, "bad.torrent: not valid bencode")


def test_get_with_no_tracker_running(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"x" * 50000)
    assert runner.invoke(app, ["create", "--input", "f.bin", "--announce", "tcp://127.0.0.1:1"]).exit_code == 0
    res = runner.invoke(app, ["--timeout", "0.2", "get", "--torrent", "output/torrents/f.bin.torrent"])
    one_line_error(res, EXIT_TRANSPORT, "no answer from the tracker at tcp://127.0.0.1:1")


def test_upload_to_a_peer_that_is_not_running(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"x" * 50000)
    res = runner.invoke(app, ["upload", "--input", "f.bin", "--peer-id", "peer9", "--peer-port", "1"])
    one_line_error(res, EXIT_TRANSPORT, "no answer from peer peer9 at tcp://127.0.0.1:1")


def test_bad_peer_id():
    res = runner.invoke(app, ["status", "--peer-id", "../etc"])
    one_line_error(res, EXIT_USAGE, "peer id '../etc' must be 1-64 letters")


def test_make_inputs_accepts_both_spellings(tmp_path):
    for flag in ("--num_files", "--num-files"):
        res = runner.invoke(app, ["make-inputs", flag, "2", "--path", f"in{flag}", "--min-size", "1K",
                                  "--max-size", "2K"])
        assert res.exit_code == 0, res.output
        assert len(list((tmp_path / f"in{flag}").iterdir())) == 2
