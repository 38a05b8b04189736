"""What `status` shows: a running peer's holdings, as a table or JSON. The Typer command
(ctl/commands/status.py) and the entry point's fast path (ctl/app.py) both run ``show``."""
from node import config


def show(peer_id: str, json_out: bool, timeout_s: float) -> None:
    from ctl import client, render
    from protocol import messages as m

    reply = client.peer_control(peer_id, m.Status(info_hash=""), timeout_s=timeout_s)
    if json_out:
        render.emit_json(reply)
        return
    rows = [[j.name, f"{j.state} {100 * j.hashed_bytes // j.hash_bytes}%" if j.hash_bytes else j.state,
             f"{j.have}/{j.num_pieces}", f"{j.announced}", j.failed_attempts, j.error or j.warning, j.path]
            for j in reply.jobs]
    render.out.print(render.table(
        f"{reply.peer_id} ({'registered' if reply.registered else 'not registered'} with the tracker)",
        ["Name", "State", "Pieces", "Announced", "Failed", "Error", "Path"], rows))


def run(peer_id: str, json_out: bool, timeout_s: float = config.REQUEST_TIMEOUT_S) -> int:
    """``show`` as a whole command would run it, without Typer (ctl/cli.py ``run_plain``)."""
    from ctl.cli import run_plain

    return run_plain(lambda: show(peer_id, json_out, timeout_s))
