"""`status` answered by the entry point's fast path and by Typer shows the same, for a real peer."""
import json

from tests.conftest import wait_for, write_random


def test_status_fast_and_through_typer_agree(swarm, tmp_path):
    swarm.tracker()
    swarm.peer("p1")
    info = swarm.upload(write_random(tmp_path / "in" / "f.bin", 300_000, 3), "p1")
    wait_for(lambda: swarm.job("p1", info["info_hash"])["announced"] == info["num_pieces"], what="announced")
    fast = swarm.cli("status", "--peer-id", "p1")
    typer_ = swarm.cli("status", "--peer-id=p1")
    assert fast.stdout == typer_.stdout and "f.bin" in fast.stdout and "seeding" in fast.stdout
    def without_clock(text: str) -> dict:
        reply = json.loads(text)
        for job in reply["jobs"]:
            job.pop("elapsed_s")
        return reply

    fast_json = swarm.cli("--json", "status", "--peer-id", "p1").stdout
    assert without_clock(fast_json) == without_clock(
        swarm.cli("--json", "--timeout", "2", "status", "--peer-id", "p1").stdout)
