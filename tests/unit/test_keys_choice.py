"""Which key folder a command uses: --keys, then $ZORRENT_KEYS, then an explicit --config
file's "keys", then ./peers.json's, whatever order they are applied in."""
import json

import pytest

from ctl import cli
from ctl.nodes import read_peers
from node import config


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    # set, then deleted: monkeypatch then restores the variable as it was, even after
    # cli.use_keys wrote it (a delenv of an absent variable records nothing to undo)
    monkeypatch.setenv(config.KEYS_ENV, "")
    monkeypatch.delenv(config.KEYS_ENV)
    monkeypatch.setattr(cli, "_keys_source", None)
    monkeypatch.chdir(tmp_path)
    peers = {"peer1": {"ip": "127.0.0.1", "port": 6881}}
    (tmp_path / "peers.json").write_text(json.dumps({"keys": "cwd-keys", **peers}))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "other.json").write_text(json.dumps({"keys": "its-keys", **peers}))
    return tmp_path


def chosen():
    return config.keys_dir() and str(config.keys_dir()).rsplit("/", 1)[-1]


def test_an_explicit_config_beats_the_working_folders_peers_json(fresh):
    cli.default_keys()                                      # what ctl/app.py does before any command
    assert chosen() == "cwd-keys"
    read_peers(fresh / "other" / "other.json").use_keys()              # start-peer --config other/other.json
    assert chosen() == "its-keys"


def test_the_flag_and_the_environment_beat_any_file(fresh, monkeypatch):
    cli.use_keys("flag-keys", source="flag")
    cli.default_keys()
    read_peers(fresh / "other" / "other.json").use_keys()
    assert chosen() == "flag-keys"
    monkeypatch.setattr(cli, "_keys_source", None)
    monkeypatch.setenv(config.KEYS_ENV, str(fresh / "env-keys"))
    cli.default_keys()
    read_peers(fresh / "other" / "other.json").use_keys()
    assert chosen() == "env-keys"
