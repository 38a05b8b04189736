"""``$ZORRENT_TRACKER`` with several trackers is honoured as a whole list: the peers that
``start-peer`` starts (no --tracker) know every tracker and fail over when the first dies."""
import filecmp
import json

import pytest

from tests.conftest import free_port, wait_for, write_random
from tests.integration.test_trackers import holders, kill, start_tracker, two_trackers  # noqa: F401

MIB = 1024 * 1024


@pytest.mark.mongo
def test_start_peer_takes_every_tracker_of_the_environment(swarm, two_trackers, tmp_path):
    a, b, _ = two_trackers                      # swarm.env(): ZORRENT_TRACKER=a,b
    ports = {"peer1": free_port(), "peer2": free_port()}
    (tmp_path / "peers.json").write_text(json.dumps({p: {"ip": "127.0.0.1", "port": n} for p, n in ports.items()}))
    swarm.spawn("start-peer", "start-peer", "--config", "peers.json", "--foreground")
    swarm.peer_ports.update(ports)
    for peer_id in ports:
        wait_for(lambda: swarm.cli("--json", "status", "--peer-id", peer_id, check=False).returncode == 0
                 and swarm.status(peer_id)["registered"], what=f"{peer_id} registered")
    log = lambda p: (tmp_path / "output" / "logs" / f"{p}.log").read_text(errors="replace")   # noqa: E731
    src = write_random(tmp_path / "in" / "f.bin", 2 * MIB, seed=21)
    info = swarm.upload(src, "peer1")
    kill(swarm, "tracker_a")                    # the first of the list: the peers must move to B
    for peer_id in ports:
        wait_for(lambda: f"failing over to {b}" in log(peer_id), timeout_s=30, what=f"{peer_id} on tracker B")
    swarm.cli("download", "--torrent", info["torrent"], "--output", "out.bin", "--peer-id", "peer2",
              "--peer-port", str(ports["peer2"]))
    assert filecmp.cmp(src, tmp_path / "out.bin", shallow=False)
    n = info["num_pieces"]
    wait_for(lambda: holders(swarm, info["torrent"], b) == {"peer1": n, "peer2": n}, what="tracker B lists both")


def test_every_command_resolves_the_whole_list(monkeypatch):
    """The one rule for commands with --tracker-host/--tracker-port (start-peer, swarm up)."""
    from ctl.commands.swarm import _tracker_spec, tracker_list

    monkeypatch.setenv("ZORRENT_TRACKER", "tcp://127.0.0.1:6969,tcp://127.0.0.1:6979")
    assert tracker_list(None, None, None) == ["tcp://127.0.0.1:6969", "tcp://127.0.0.1:6979"]
    assert tracker_list(["tcp://h:1,tcp://h:2"], None, None) == ["tcp://h:1", "tcp://h:2"]
    assert tracker_list(None, None, 7000) == ["tcp://127.0.0.1:7000"]        # one named tracker
    assert tracker_list(None, "10.0.0.5", None) == ["tcp://10.0.0.5:6969"]
    spec = _tracker_spec(None, None, None, None)
    assert (spec.endpoint, spec.endpoints) == ("tcp://127.0.0.1:6969", ["tcp://127.0.0.1:6969", "tcp://127.0.0.1:6979"])
    assert spec.endpoints_for(1) == "tcp://127.0.0.1:6979,tcp://127.0.0.1:6969"
    monkeypatch.delenv("ZORRENT_TRACKER")
    assert tracker_list(None, None, None) == ["tcp://127.0.0.1:6969"]


def test_web_create_and_magnets_read_the_list_at_run_time(monkeypatch, tmp_path):
    """Defaults are read when the command runs, not when the module is imported."""
    from typer.testing import CliRunner

    from ctl import magnets
    from ctl.app import app
    from protocol import metainfo

    monkeypatch.setenv("ZORRENT_TRACKER", "tcp://127.0.0.1:6969,tcp://127.0.0.1:6979")
    monkeypatch.setenv("ZORRENT_OUTPUT", str(tmp_path / "out"))
    src = write_random(tmp_path / "f.bin", 40000, seed=1)
    res = CliRunner().invoke(app, ["create", "--input", str(src)])
    assert res.exit_code == 0, res.output
    meta = metainfo.read(tmp_path / "out" / "torrents" / "f.bin.torrent")
    assert [u for u in metainfo.tracker_urls(meta) if u.startswith("tcp://")] == \
        ["tcp://127.0.0.1:6969", "tcp://127.0.0.1:6979"]
    mag = magnets.magnets.parse("magnet:?xt=urn:btih:" + "ab" * 20)
    assert magnets.trackers(mag, None) == ["tcp://127.0.0.1:6969", "tcp://127.0.0.1:6979"]
