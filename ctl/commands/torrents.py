"""Working with torrents: create, upload (seed), download, get, remove (status: ctl/commands/status.py).

The commands only: the .torrent files they make and reuse are ctl/torrent_files.py's, and
following a peer's job with a progress bar is ctl/follow.py's. Each function imports the
modules it runs (those two, rich, zmq, the protocol messages) itself, so that the other
commands, and `--help`, pay for none of them."""
import os
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ctl.cli import command, commands
from node import config
from protocol.errors import ErrorCode, RemoteError

if TYPE_CHECKING:
    from protocol import metainfo

app = commands()
PeerHost = Annotated[Optional[str], typer.Option(
    help="That peer's address (default: its \"ip\" in peers.json, else 127.0.0.1).")]
PeersConfig = Annotated[str, typer.Option(
    "--config", help="peers.json: the peer id must be listed there (if it exists).")]
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
    from ctl import torrent_files as tf
    from protocol import magnet

    if one_torrent:
        made = [tf.create(tf.folder(input), piece_size, announce, http_announce, is_folder=True, private=private,
                          show=not ctx.obj.json)]
    else:
        made = [tf.create(p, piece_size, announce, http_announce, private=private, show=not ctx.obj.json)
                for p in tf.inputs(input)]
    if ctx.obj.json:
        render.emit_json([{"name": mi.name, "length": mi.length, "num_pieces": mi.num_pieces,
                           "piece_length": mi.piece_length, "info_hash": mi.info_hash, "private": mi.private,
                           "files": len(mi.files), "torrent": str(d), "magnet": magnet.link(mi)}
                          for mi, d in made])
        return
    tf.print_made("Torrents created", made)


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
    peers_config: PeersConfig = config.DEFAULT_PEERS_CONFIG,
    one_torrent: Annotated[bool, typer.Option("--one-torrent", help=
        "Seed a folder as ONE multi-file torrent (output/torrents/FOLDER.torrent, made if missing).")] = False,
) -> None:
    """Have a running peer seed a file (or every file in a folder), and print the magnet links.

    Creates the torrent first if there is none; returns once the tracker has every piece.
    """
    from ctl import client, follow, nodes, render
    from ctl import torrent_files as tf
    from protocol import magnet
    from protocol import messages as m

    files = [tf.folder(input)] if one_torrent else tf.inputs(input)
    client.check_peer(peer_id, nodes.listed_host(peer_id, peers_config, peer_host), peer_port)
    done = []
    for path in files:
        show = not ctx.obj.json
        meta, dest = (tf.folder_torrent_for(path, announce, http_announce, show) if one_torrent
                      else tf.torrent_for(path, announce, http_announce, show))
        client.peer_control(peer_id, m.Upload(path=os.path.abspath(path), metainfo=meta.raw),
                            timeout_s=ctx.obj.timeout_s)     # answered at once: the peer hashes it meanwhile
        done.append((meta, dest))
    follow.wait_hashed(peer_id, [meta for meta, _ in done], quiet=ctx.obj.json)
    for meta, _ in done:
        follow.wait_announced(peer_id, meta)
    if ctx.obj.json:
        render.emit_json([{"name": mi.name, "info_hash": mi.info_hash, "num_pieces": mi.num_pieces,
                           "torrent": str(d), "peer_id": peer_id, "magnet": magnet.link(mi)} for mi, d in done])
        return
    tf.print_made(f"Seeding on {peer_id}", done)


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
    peers_config: PeersConfig = config.DEFAULT_PEERS_CONFIG,
) -> None:
    """Have a running peer download a torrent (or a magnet link) from every peer that has pieces.

    Shows progress, then the Download Statistics. Run it again to re-attach to a job.
    """
    from ctl.output.download import show

    show(peer_id, peer_port, torrent=torrent, magnet_link=magnet_link, tracker=tracker, output=output,
         peer_host=peer_host, peers_config=peers_config, json_out=ctx.obj.json, timeout_s=ctx.obj.timeout_s)


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
