"""``python main.py ...`` with stamps on the system-wide monotonic clock, written as JSON to
$ZORRENT_STAMPS at exit (bench/cli_timeline.py reads them). Nothing else changes: the same
entry point runs, and the stamps wrap the functions it calls."""
import time

_T = [("interpreter up", time.monotonic(), {})]

import atexit  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def stamp(name: str, **extra) -> None:
    _T.append((name, time.monotonic(), extra))


@atexit.register
def _dump(how: str = "atexit") -> None:
    stamp(how)
    Path(os.environ["ZORRENT_STAMPS"]).write_text(json.dumps(_T))


_WATCH = {"typer", "zmq", "rich.console", "rich.progress", "ctl.root", "ctl.client", "ctl.commands.torrents",
          "ctl.nodes", "ctl.magnets", "protocol.metainfo", "protocol.pieces", "protocol.messages"}


def _imports(event, args):
    if event == "import" and args[0] in _WATCH:
        _WATCH.discard(args[0])
        stamp(f"import {args[0]}")


sys.addaudithook(_imports)
from ctl import app, client, follow, render  # noqa: E402
from protocol import messages as m  # noqa: E402

stamp("wrapper's imports done")
_control = client.peer_control


def peer_control(peer_id, msg, *a, **k):
    stamp(f"{type(msg).__name__} sent")
    reply = _control(peer_id, msg, *a, **k)
    if isinstance(msg, m.Status) and getattr(reply, "jobs", None):
        j = reply.jobs[0]
        stamp("poll", state=j.state, mb=round(j.bytes_done / 1e6), elapsed_s=j.elapsed_s)
    else:
        stamp(f"{type(msg).__name__} answered")
    return reply


client.peer_control = peer_control
_check = client.check_peer


def check_peer(*a, **k):
    stamp("Ping sent")
    _check(*a, **k)
    stamp("Ping answered")


client.check_peer = check_peer
_stats = render.download_statistics


def download_statistics(*a, **k):
    _stats(*a, **k)
    stamp("statistics printed")


render.download_statistics = download_statistics
_leave = getattr(app, "leave", None)
if _leave is not None:             # a fast path's exit skips atexit: stamp it on the way out
    def leave(code):
        _dump("os._exit")
        _leave(code)

    app.leave = leave
sys.argv[0] = str(Path(__file__).resolve().parents[1] / "main.py")
app.main()
