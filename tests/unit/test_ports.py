"""ctl/ports.py: ports below the kernel's ephemeral range, and one clear line where there is no room
(review2 finding 7: a host whose range starts low got a ValueError traceback from the soak)."""
import signal

import pytest
from typer.testing import CliRunner

from ctl import ports
from ctl.app import app
from ctl.cli import EXIT_USAGE
from node import config
from protocol.errors import ZorrentError


def test_ports_come_from_below_the_ephemeral_range_with_their_twins_free():
    low, _ = ports.ephemeral_range()
    base = ports.free_ports(3)
    assert base + 2 + config.BT_PORT_OFFSET < low
    picked = ports.distinct_free_ports(4)
    assert len(set(picked)) == 4 and all(p + config.BT_PORT_OFFSET < low for p in picked)


@pytest.mark.parametrize("low", [1001, 2024, 1])
def test_no_room_below_the_range_is_a_zorrent_error(monkeypatch, low):
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (low, 60999))
    with pytest.raises(ZorrentError, match="no room for 1 ports below the ephemeral range"):
        ports.free_ports()


def test_the_soak_on_such_a_host_says_so_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (1001, 60999))
    monkeypatch.setattr(signal, "signal", lambda *args: None)     # the soak's SIGTERM handler: not in a test worker
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["soak", "--peers", "2", "--files", "1", "--workdir", str(tmp_path / "w")])
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == EXIT_USAGE, res.output
    assert len(lines) == 1 and "no room" in lines[0] and "Traceback" not in res.output, res.output
