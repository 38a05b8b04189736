"""Working with torrents: create, upload (seed), download, get, remove (status: ctl/commands/status.py).

Each function imports the modules it runs (rich, zmq, the protocol messages) itself, so
that the other commands, and `--help`, pay for none of them."""
import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ctl.cli import command, commands
from node import config
from protocol.errors import ErrorCode, RemoteError, TransportError, ZorrentError


def _inputs(path: str) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            raise ZorrentError(f"{p} has no files to share", ErrorCode.BAD_INPUT)
        return files
    raise ZorrentError(f"input not found: {p}", ErrorCode.BAD_INPUT)


def _folder(path: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise ZorrentError(f"--one-torrent needs a folder, and {p} is not one", ErrorCode.BAD_INPUT)
    return p


def torrent_path(name: str) -> Path:
    return config.torrents_dir() / f"{name}.torrent"


def _trackers(announce: str | None) -> list[str]:
    """``--announce``: ZeroMQ tracker endpoints (comma-separated, preferred first), or a URL as
    given; None: every tracker of ``$ZORRENT_TRACKER`` (or the default)."""
    if announce is None:
        return config.tracker_endpoints()
    parts = [p.strip() for p in announce.split(",") if p.strip()]
    if parts and all(p.startswith("tcp://") or "://" not in p for p in parts):
        return config.tracker_endpoints(announce)
    return parts or [announce]


def _tiers(trackers: list[str], http_announce: str | None, private: bool = False) -> list[list[str]]:
    """The torrent's trackers (BEP 12): every ZeroMQ endpoint, then the HTTP one for standard clients
    (none for a private torrent unless asked for: the HTTP door refuses it)."""
    from protocol import metainfo

    if http_announce is None and private:
        http_announce = ""
    if http_announce is None:
        http_announce = config.http_announce_url(trackers[0]) if trackers[0].startswith("tcp://") else ""
    return metainfo.announce_list(*trackers, http_announce)


def _create(path: Path, piece_size: int | None, announce: str | None, http_announce: str | None = None,
            folder: bool = False, private: bool = False, show: bool = False) -> "tuple[metainfo.Metainfo, Path]":
    """Hash ``path`` into output/torrents/NAME.torrent (``show``: with a progress bar, rate and ETA)."""
    from protocol import metainfo

    make = metainfo.create_folder if folder else metainfo.create
    trackers = _trackers(announce)
    tiers = _tiers(trackers, http_announce, private)
    if show:
        from ctl import render

        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if folder else path.stat().st_size
        with render.download_progress() as bar:
            task = bar.add_task(f"hashing {path.name} for its torrent", total=size, pieces="")
            meta = make(path, trackers[0], piece_size, tiers, private=private,
                        progress=lambda n: bar.advance(task, n))
    else:
        meta = make(path, trackers[0], piece_size, tiers, private=private)
    dest = torrent_path(meta.name)
    metainfo.write(meta, dest)
    return meta, dest


def _meta_rows(items: "list[tuple[metainfo.Metainfo, Path]]") -> list[list]:
    from ctl import render

    return [[meta.name + ("/" if meta.multi_file else ""), render.mib(meta.length), meta.num_pieces,
             f"{meta.piece_length // 1024} KiB", meta.info_hash, dest] for meta, dest in items]


def _print_made(title: str, items: "list[tuple[metainfo.Metainfo, Path]]") -> None:
    from ctl import render
    from protocol import magnet

    render.out.print(render.table(title, ["Name", "Size", "Pieces", "Piece size", "Info hash", "Torrent"],
                                  _meta_rows(items)))
    for meta, _ in items:
        render.out.print(magnet.link(meta), soft_wrap=True, highlight=False)


app = commands()
PeerHost = Annotated[Optional[str], typer.Option(
    help="That peer's address (default: its \"ip\" in peers.json, else 127.0.0.1).")]
HttpAnnounce = Annotated[Optional[str], typer.Option(
    help=f"HTTP announce URL for standard BitTorrent clients, put in the torrent's announce-list "
         f"(default: the first tracker's host, its port + {config.HTTP_PORT_OFFSET}; \"\" leaves it out).")]

@command(app, "create")
def create(
    ctx: typer.Context,
    input: Annotated[str, typer.Option("--input", help="A file, or a folder: one torrent per file.")],
    piece_size: Annotated[Optional[int], typer.Option(
        help="Piece size in bytes (power of two, 16 KiB-16 MiB). Default: chosen from the file size.")] = None,
    announce: Annotated[Optional[str], typer.Option(
        help="Tracker endpoint written into the torrent; several, comma-separated, all go in announce-list "
             "(default: $ZORRENT_TRACKER, the whole list, else tcp://127.0.0.1:6969).")] = None,
    http_announce: HttpAnnounce = None,
    one_torrent: Annotated[bool, typer.Option("--one-torrent", help=
        "A folder as ONE multi-file torrent: output/torrents/FOLDER.torrent.")] = False,
    private: Annotated[bool, typer.Option("--private", help=
        "BEP 27 private=1: peers come only from its trackers, and the HTTP door never serves it.")] = False,
) -> None:
    """Write output/torrents/NAME.torrent for a file (or each file of a folder), and print its magnet link."""
    from ctl import render
    from protocol import magnet

    if one_torrent:
        made = [_create(_folder(input), piece_size, announce, http_announce, folder=True, private=private,
                        show=not ctx.obj.json)]
    else:
        made = [_create(p, piece_size, announce, http_announce, private=private, show=not ctx.obj.json)
                for p in _inputs(input)]
    if ctx.obj.json:
        render.emit_json([{"name": mi.name, "length": mi.length, "num_pieces": mi.num_pieces,
                           "piece_length": mi.piece_length, "info_hash": mi.info_hash, "private": mi.private,
                           "files": len(mi.files), "torrent": str(d), "magnet": magnet.link(mi)}
                          for mi, d in made])
        return
    _print_made("Torrents created", made)


def _torrent_for(path: Path, announce: str | None, http_announce: str | None,
                 show: bool = False) -> "tuple[metainfo.Metainfo, Path]":
    """The existing torrent for ``path`` if it describes it, else a new one."""
    from protocol import metainfo

    dest = torrent_path(path.name)
    if dest.exists():
        meta = metainfo.read(dest)
        if not meta.multi_file and meta.length == path.stat().st_size:
            return meta, dest
    return _create(path, None, announce, http_announce, show=show)


def _folder_torrent_for(folder: Path, announce: str | None, http_announce: str | None,
                        show: bool = False) -> "tuple[metainfo.Metainfo, Path]":
    """The existing torrent for ``folder`` (ours or, say, mktorrent's) if its files are there
    with their sizes, else a new one."""
    from protocol import metainfo

    dest = torrent_path(folder.resolve().name)
    if dest.exists():
        meta = metainfo.read(dest)
        if meta.multi_file and all(f.pad or _size(folder.joinpath(*f.path)) == f.length for f in meta.files):
            return meta, dest
    return _create(folder, None, announce, http_announce, folder=True, show=show)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else -1
    except OSError:
        return -1


@command(app, "upload")
def upload(
    ctx: typer.Context,
    input: Annotated[str, typer.Option("--input", help="A file, or a folder of files, to seed.")],
    peer_id: Annotated[str, typer.Option(help="The running peer that seeds.")],
    peer_port: Annotated[int, typer.Option(help="That peer's port.")],
    peer_host: PeerHost = None,
    announce: Annotated[Optional[str], typer.Option(help=
        "Tracker endpoint(s) for torrents made here (default: $ZORRENT_TRACKER, the whole list).")] = None,
    http_announce: HttpAnnounce = None,
    peers_config: Annotated[str, typer.Option("--config", help="peers.json: the peer id must be listed there (if it exists).")] =
        config.DEFAULT_PEERS_CONFIG,
    one_torrent: Annotated[bool, typer.Option("--one-torrent", help=
        "Seed a folder as ONE multi-file torrent (output/torrents/FOLDER.torrent, made if missing).")] = False,
) -> None:
    """Have a running peer seed a file (or every file in a folder), and print the magnet links.

    Creates the torrent first if there is none; returns once the tracker has every piece.
    """
    from ctl import client, nodes, render
    from protocol import magnet
    from protocol import messages as m

    files = [_folder(input)] if one_torrent else _inputs(input)
    client.check_peer(peer_id, nodes.listed_host(peer_id, peers_config, peer_host), peer_port)
    done = []
    for path in files:
        show = not ctx.obj.json
        meta, dest = (_folder_torrent_for(path, announce, http_announce, show) if one_torrent
                      else _torrent_for(path, announce, http_announce, show))
        client.peer_control(peer_id, m.Upload(path=os.path.abspath(path), metainfo=meta.raw),
                            timeout_s=ctx.obj.timeout_s)     # answered at once: the peer hashes it meanwhile
        done.append((meta, dest))
    _wait_hashed(peer_id, [meta for meta, _ in done], quiet=ctx.obj.json)
    for meta, _ in done:
        _wait_announced(peer_id, meta)
    if ctx.obj.json:
        render.emit_json([{"name": mi.name, "info_hash": mi.info_hash, "num_pieces": mi.num_pieces,
                           "torrent": str(d), "peer_id": peer_id, "magnet": magnet.link(mi)} for mi, d in done])
        return
    _print_made(f"Seeding on {peer_id}", done)


def _job(peer_id: str, info_hash: str, since: float) -> "m.JobStatus":
    """The peer's view of one torrent; fail fast when the peer cannot reach the tracker."""
    from ctl import client
    from protocol import messages as m

    reply = client.peer_control(peer_id, m.Status(info_hash=info_hash))
    if not reply.registered and time.monotonic() - since > config.TRACKER_GRACE_S:
        raise TransportError(f"{peer_id} cannot reach the tracker (is it running? see "
                             f"{config.logs_dir() / (peer_id + '.log')})")
    return reply.jobs[0]


def _wait_hashed(peer_id: str, metas: "list[metainfo.Metainfo]", quiet: bool) -> None:
    """Follow the peer's hash of each uploaded file (a progress bar with rate and ETA) until it
    seeds; a file that does not match its torrent is refused (exit 3), as the peer says."""
    from ctl import client, render
    from protocol import messages as m

    progress = render.download_progress()
    start = time.monotonic()
    with progress if not quiet else _NoProgress() as bar:
        tasks = {meta.info_hash: bar.add_task(f"hashing {meta.name}", total=meta.length, pieces="")
                 for meta in metas}
        def shown(reply: "m.StatusReply") -> None:
            if not reply.registered and time.monotonic() - start > config.TRACKER_GRACE_S:
                raise TransportError(f"{peer_id} cannot reach the tracker (is it running? see "
                                     f"{config.logs_dir() / (peer_id + '.log')})")
            jobs = {j.info_hash: j for j in reply.jobs}
            for info_hash, task in tasks.items():
                job = jobs.get(info_hash)
                if job is not None and job.state == m.JobState.HASHING.value:
                    bar.update(task, completed=job.hashed_bytes, total=job.hash_bytes or job.length)
                elif job is not None:
                    bar.update(task, completed=job.length, total=job.length)

        client.wait_hashed(peer_id, list(tasks), on_status=shown)


def _wait_announced(peer_id: str, meta: "metainfo.Metainfo") -> None:
    start = time.monotonic()
    while True:
        job = _job(peer_id, meta.info_hash, start)
        if job.announced >= job.have:
            return
        if time.monotonic() - start > config.READY_TIMEOUT_S:
            raise TransportError(f"{peer_id} seeds {meta.name}, but the tracker has acknowledged only "
                                 f"{job.announced} of {job.have} pieces")
        time.sleep(config.STATUS_POLL_S)


@command(app, "download")
def download(
    ctx: typer.Context,
    peer_id: Annotated[str, typer.Option(help="The running peer that downloads.")],
    peer_port: Annotated[int, typer.Option(help="That peer's port.")],
    torrent: Annotated[Optional[str], typer.Option(help="The .torrent file.")] = None,
    magnet_link: Annotated[Optional[str], typer.Option("--magnet", help=
        "A magnet link (BEP 9) instead of --torrent: the metainfo comes from the tracker or a peer.")] = None,
    tracker: Annotated[Optional[list[str]], typer.Option(help=
        "Tracker(s) to ask for a magnet's metainfo, comma-separated or repeated (default: the magnet's "
        "tcp:// tr, else $ZORRENT_TRACKER, the whole list).")] = None,
    output: Annotated[Optional[str], typer.Option(help=
        "Where the torrent's content goes, as with cp -r: an existing folder gets the file (or, for a "
        "multi-file torrent, the folder) inside it under the torrent's NAME; any other path is the file's "
        "(or the folder's) own. Default: output/downloads/NAME. A job the peer already holds is "
        "re-attached where it is.")] = None,
    peer_host: PeerHost = None,
    peers_config: Annotated[str, typer.Option("--config", help="peers.json: the peer id must be listed there (if it exists).")] =
        config.DEFAULT_PEERS_CONFIG,
) -> None:
    """Have a running peer download a torrent (or a magnet link) from every peer that has pieces.

    Shows progress, then the Download Statistics. Run it again to re-attach to a job.
    """
    from ctl import client, magnets, nodes, render
    from protocol import messages as m
    from protocol import metainfo

    if (torrent is None) == (magnet_link is None):
        raise ZorrentError("give exactly one of --torrent and --magnet", ErrorCode.BAD_INPUT)
    host = nodes.listed_host(peer_id, peers_config, peer_host)
    sources: list[str] = []
    if torrent is not None:
        meta = metainfo.read(torrent)
    else:
        meta = magnets.fetch(magnet_link, tracker)
        from protocol import magnet

        sources = [f"{h}:{p}" for h, p in magnet.parse(magnet_link).peers]   # x.pe: BEP 3 peers too
        if not torrent_path(meta.name).exists():     # for `get` and `remove --torrent` later
            metainfo.write(meta, torrent_path(meta.name))
    client.check_peer(peer_id, host, peer_port)
    out_path = output_path(meta, output, _held_path(peer_id, meta.info_hash))
    client.peer_control(peer_id, m.Download(metainfo=meta.raw, output=out_path, peers=sources),
                        timeout_s=ctx.obj.timeout_s)    # a file already there is hashed meanwhile
    job = _follow(peer_id, meta, quiet=ctx.obj.json)
    if job.state != m.JobState.SEEDING.value:     # failed, or its file went missing or changed meanwhile
        raise ZorrentError(f"download of {meta.name} {job.state}: {job.error}", ErrorCode.BAD_INPUT)
    if ctx.obj.json:
        render.emit_json(job)
        return
    render.download_statistics(job)


def output_path(meta: "metainfo.Metainfo", output: str | None, held: str | None = None) -> str:
    """Where a download's content goes, one rule for a file and a folder (``cp -r``'s):
    ``--output`` naming an existing folder means NAME inside it, any other path is the
    content's own path; no ``--output``, ``downloads/NAME``. A torrent the peer already holds
    (``held``, the path its resume state records) stays where it is, if ``--output`` names
    it either way: a second run of the same command finds the folder the first one made.

    abspath, not resolve(): a symlink planted at the output is refused by the peer, not followed."""
    if output is None:
        return held or os.path.abspath(config.downloads_dir() / meta.name)
    given = Path(output)
    if held is not None and held in (os.path.abspath(given), os.path.abspath(given / meta.name)):
        return held
    if given.is_dir() and not given.is_symlink():
        given = given / meta.name
    return os.path.abspath(given)


def _held_path(peer_id: str, info_hash: str) -> str | None:
    """The path of the peer's job for this torrent (its resume state's), or None."""
    from ctl import client
    from protocol import messages as m

    try:
        reply = client.peer_control(peer_id, m.Status(info_hash=info_hash))
    except RemoteError as exc:
        if exc.code == ErrorCode.UNKNOWN_TORRENT:
            return None
        raise
    return reply.jobs[0].path if reply.jobs else None


def _follow(peer_id: str, meta: "metainfo.Metainfo", quiet: bool) -> "m.JobStatus":
    """Poll the peer's status with a progress bar until the job ends or stalls."""
    from ctl import render
    from protocol import messages as m

    progress = render.download_progress()
    start = time.monotonic()
    last_have, last_change = None, start
    with progress if not quiet else _NoProgress() as bar:
        task = bar.add_task(meta.name, total=meta.length, pieces="")
        while True:
            job = _job(peer_id, meta.info_hash, start)
            if job.hash_bytes:         # what is on disk already is being hashed
                bar.update(task, completed=job.bytes_done,
                           pieces=f"hashing {100 * job.hashed_bytes // job.hash_bytes}%")
            else:
                bar.update(task, completed=job.bytes_done, pieces=f"{job.have}/{job.num_pieces}")
            if job.state not in (m.JobState.DOWNLOADING.value, m.JobState.CHECKING.value,
                                 m.JobState.HASHING.value):
                return job
            now = time.monotonic()
            if (job.have, job.hashed_bytes) != last_have:
                last_have, last_change = (job.have, job.hashed_bytes), now
            elif now - last_change > config.DOWNLOAD_STALL_S:
                raise ZorrentError(f"no progress on {meta.name} for {config.DOWNLOAD_STALL_S:g}s "
                                   f"({job.have}/{job.num_pieces} pieces; are seeders running?); "
                                   f"{peer_id} keeps trying", ErrorCode.BAD_INPUT)
            time.sleep(config.STATUS_POLL_S)


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass


@command(app, "get")
def get(
    ctx: typer.Context,
    torrent: Annotated[str, typer.Option(help="The .torrent file.")],
    tracker: Annotated[Optional[list[str]], typer.Option(
        help="Tracker endpoint; repeat it or comma-separate several (default: the torrent's trackers).")] = None,
) -> None:
    """List the torrent's peers and what each holds (standard BitTorrent clients too)."""
    from ctl import client, render
    from protocol import messages as m
    from protocol import metainfo

    meta = metainfo.read(torrent)
    endpoints = config.tracker_endpoints(tracker) if tracker else client.tracker_endpoints_for(meta)
    try:
        reply = client.tracker(endpoints, m.GetPeers(info_hash=meta.info_hash, standard_clients=True),
                               timeout_s=ctx.obj.timeout_s)
    except RemoteError as exc:
        if exc.code != ErrorCode.UNKNOWN_TORRENT:
            raise
        _scrape_only(ctx, endpoints, meta, exc)
        return
    if ctx.obj.json:
        render.emit_json({"name": reply.name, "info_hash": reply.info_hash, "num_pieces": reply.num_pieces,
                          "peers": [{"peer_id": p.peer_id, "host": p.host, "port": p.port, "have": p.have,
                                     "seeder": p.have == reply.num_pieces, "kind": p.kind, "client": _client(p),
                                     "bt_port": p.bt_port} for p in reply.peers]})
        return
    rows = [[p.peer_id, f"{p.host}:{p.port}", f"{p.have}/{reply.num_pieces}",
             f"{100 * p.have / reply.num_pieces:.0f}%", "yes" if p.have == reply.num_pieces else "no", _client(p)]
            for p in reply.peers]
    render.out.print(render.table(f"{reply.name} ({reply.info_hash})",
                                  ["Peer ID", "Address", "Pieces", "Done", "Seeder", "Client"], rows))
    if not rows:
        render.out.print("No live peer seeds or downloads it.")


def _client(p) -> str:
    """The Client column: zorrent (and its BEP 3 port), or what a standard client's peer id names."""
    if p.kind != "bittorrent":
        return f"zorrent (BEP 3 :{p.bt_port})" if p.bt_port else "zorrent"
    from node.peer.bt.framing import client_of

    try:
        return client_of(bytes.fromhex(p.peer_id.removeprefix("bt:")))
    except ValueError:
        return "BitTorrent client"


def _scrape_only(ctx: typer.Context, endpoint: list[str], meta: "metainfo.Metainfo", unknown: RemoteError) -> None:
    """No zorrent peer registered the torrent; standard clients may still share it (BEP 48 counts)."""
    from ctl import client, render
    from protocol import messages as m

    swarm = client.tracker(endpoint, m.Scrape(info_hashes=[meta.info_hash]), timeout_s=ctx.obj.timeout_s).files[0]
    if not swarm.complete + swarm.incomplete:
        raise unknown
    if ctx.obj.json:
        render.emit_json({"name": meta.name, "info_hash": meta.info_hash, "num_pieces": meta.num_pieces,
                          "peers": [], "standard_clients": {"seeders": swarm.complete,
                                                            "leechers": swarm.incomplete,
                                                            "completed": swarm.downloaded}})
        return
    render.out.print(f"{meta.name} ({meta.info_hash}): no zorrent peer holds it; standard BitTorrent clients: "
                     f"{swarm.complete} seeding, {swarm.incomplete} downloading, {swarm.downloaded} completed")


@command(app, "remove")
def remove(
    ctx: typer.Context,
    torrent: Annotated[str, typer.Option(help="The .torrent file.")],
    peer_id: Annotated[str, typer.Option(help="The running peer that holds it.")],
    delete: Annotated[bool, typer.Option("--delete", help="Also delete the downloaded file or folder (never an uploaded one).")] = False,
) -> None:
    """Have a peer stop seeding or downloading a torrent."""
    from ctl import client, render
    from protocol import messages as m
    from protocol import metainfo

    meta = metainfo.read(torrent)
    client.peer_control(peer_id, m.Remove(info_hash=meta.info_hash, delete_data=delete), timeout_s=ctx.obj.timeout_s)
    render.out.print(f"{peer_id} no longer holds {meta.name}" + (" (file deleted)" if delete else ""))
