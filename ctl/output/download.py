"""What `download` does: have a running peer download a torrent (or a magnet link), follow it
with a progress bar, then print the Download Statistics. The Typer command
(ctl/commands/torrents.py) and the entry point's fast path (ctl/app.py) both run ``show``;
the fast path takes the plainest spelling of the command without importing Typer (about
40 ms of a 1 GiB download's ~1.8 s here)."""
from __future__ import annotations

from node import config
from protocol.errors import ErrorCode, ZorrentError


def show(peer_id: str, peer_port: int, torrent: str | None = None, magnet_link: str | None = None,
         tracker: list[str] | None = None, output: str | None = None, peer_host: str | None = None,
         peers_config: str = config.DEFAULT_PEERS_CONFIG, json_out: bool = False,
         timeout_s: float = config.REQUEST_TIMEOUT_S) -> None:
    from ctl import client, follow, nodes, render
    from ctl.torrent_files import torrent_path
    from protocol import messages as m
    from protocol import metainfo

    if (torrent is None) == (magnet_link is None):
        raise ZorrentError("give exactly one of --torrent and --magnet", ErrorCode.BAD_INPUT)
    host = nodes.listed_host(peer_id, peers_config, peer_host)
    # the data-port ping, then the held Status, each answered while this process reads the
    # torrent and (for the Status) sends the other: the errors still come in the serial order
    pinged = client.in_background(client.check_peer, peer_id, host, peer_port)
    sources: list[str] = []
    if torrent is not None:
        meta = metainfo.read(torrent)
    else:
        from ctl import magnets         # only here: it and protocol.magnet are ~8 ms of every start-up
        from protocol import magnet

        meta = magnets.fetch(magnet_link, tracker)
        sources = [f"{h}:{p}" for h, p in magnet.parse(magnet_link).peers]   # x.pe: BEP 3 peers too
        if not torrent_path(meta.name).exists():     # for `get` and `remove --torrent` later
            metainfo.write(meta, torrent_path(meta.name))
    held = client.in_background(follow.held_path, peer_id, meta.info_hash)
    pinged()
    out_path = follow.output_path(meta, output, held())
    client.peer_control(peer_id, m.Download(metainfo=meta.raw, output=out_path, peers=sources),
                        timeout_s=timeout_s)    # a file already there is hashed meanwhile
    job = follow.download(peer_id, meta, quiet=json_out)
    if job.state != m.JobState.SEEDING.value:     # failed, or its file went missing or changed meanwhile
        raise ZorrentError(f"download of {meta.name} {job.state}: {job.error}", ErrorCode.BAD_INPUT)
    if json_out:
        render.emit_json(job)
        return
    render.download_statistics(job)


def run(options: dict[str, str], json_out: bool) -> int:
    """``show`` as the whole command would run it, without Typer (ctl/cli.py ``run_plain``);
    ``options`` are the fast path's ``--torrent``, ``--output``, ``--peer-id`` and ``--peer-port``."""
    from ctl.cli import run_plain

    return run_plain(lambda: show(options["--peer-id"], int(options["--peer-port"]), torrent=options["--torrent"],
                                  output=options.get("--output"), json_out=json_out))
