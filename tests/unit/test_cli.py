"""The CLI through Typer's CliRunner: help everywhere, one-line errors, exit codes."""
import pytest
from typer.testing import CliRunner

from ctl.app import app
from ctl.cli import EXIT_TRANSPORT, EXIT_USAGE

runner = CliRunner()
COMMANDS = ["tracker", "peer", "start-peer", "create", "upload", "download", "get", "status", "make-inputs"]


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


@pytest.mark.parametrize("entry, text", [
    ({"ip": "127.0.0.1", "port": 6881, "disk_io": "mmap"}, 'p1 "disk_io" must be one of direct, buffered'),
    ({"ip": "127.0.0.1", "port": 6881, "upload_rate": -1}, 'p1 "upload_rate" must be bytes/s'),
    ({"ip": "127.0.0.1"}, 'p1 needs "ip" (string) and "port"'),
])
def test_start_peer_rejects_a_bad_peers_json_entry(tmp_path, entry, text):
    import json

    (tmp_path / "peers.json").write_text(json.dumps({"p1": entry}))
    res = runner.invoke(app, ["start-peer", "--config", "peers.json", "--foreground"])
    one_line_error(res, EXIT_USAGE, text)


def test_peers_json_disk_io_reaches_the_peer_command_line(tmp_path):
    import json

    from ctl import nodes

    (tmp_path / "peers.json").write_text(json.dumps({
        "p1": {"ip": "127.0.0.1", "port": 6881},
        "p2": {"ip": "127.0.0.1", "port": 6882, "disk_io": "buffered"}}))
    p1, p2 = nodes.load_peers("peers.json")
    assert "--disk-io" not in nodes.peer_args(p1, "tcp://127.0.0.1:6969")
    assert nodes.peer_args(p2, "tcp://127.0.0.1:6969")[-2:] == ["--disk-io", "buffered"]


def test_a_port_out_of_range_is_bad_input_before_any_request():
    """--peer-port 0 or 99999 would only time out as "not running" (review4 finding 2)."""
    from node import config
    from protocol.errors import ErrorCode, ZorrentError

    assert config.check_port(6881) == 6881
    for port in (0, 65536, 10 ** 30):
        with pytest.raises(ZorrentError) as err:
            config.check_port(port, "--peer-port")
        assert err.value.code == ErrorCode.BAD_FIELD and "1-65535" in err.value.message
