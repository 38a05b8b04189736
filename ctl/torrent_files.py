"""The .torrent files the commands make and reuse: output/torrents/NAME.torrent for a file,
or for a folder as one multi-file torrent, with the trackers it names, and the table that
shows what was made. Local work only: nothing here talks to a node.

Imported by the commands that run it (create, upload, download), never at `--help`: rich
and the protocol modules are imported inside the functions that use them."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from node import config
from protocol.errors import ErrorCode, ZorrentError

if TYPE_CHECKING:
    from protocol import metainfo

    Made = tuple[metainfo.Metainfo, Path]     # a torrent and where its file is


def inputs(path: str) -> list[Path]:
    """``--input``: the file, or every file of the folder (hidden ones left out)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            raise ZorrentError(f"{p} has no files to share", ErrorCode.BAD_INPUT)
        return files
    raise ZorrentError(f"input not found: {p}", ErrorCode.BAD_INPUT)


def folder(path: str) -> Path:
    """``--input`` with ``--one-torrent``: a folder."""
    p = Path(path)
    if not p.is_dir():
        raise ZorrentError(f"--one-torrent needs a folder, and {p} is not one", ErrorCode.BAD_INPUT)
    return p


def torrent_path(name: str) -> Path:
    return config.torrents_dir() / f"{name}.torrent"


def trackers(announce: str | None) -> list[str]:
    """``--announce``: ZeroMQ tracker endpoints (comma-separated, preferred first), or a URL as
    given; None: every tracker of ``$ZORRENT_TRACKER`` (or the default)."""
    if announce is None:
        return config.tracker_endpoints()
    parts = [p.strip() for p in announce.split(",") if p.strip()]
    if parts and all(p.startswith("tcp://") or "://" not in p for p in parts):
        return config.tracker_endpoints(announce)
    return parts or [announce]


def tiers(endpoints: list[str], http_announce: str | None, private: bool = False) -> list[list[str]]:
    """The torrent's trackers (BEP 12): every ZeroMQ endpoint, then the HTTP one for standard clients
    (none for a private torrent unless asked for: the HTTP door refuses it)."""
    from protocol import making

    if http_announce is None and private:
        http_announce = ""
    if http_announce is None:
        http_announce = config.http_announce_url(endpoints[0]) if endpoints[0].startswith("tcp://") else ""
    return making.announce_list(*endpoints, http_announce)


def create(path: Path, piece_size: int | None, announce: str | None, http_announce: str | None = None,
           is_folder: bool = False, private: bool = False, show: bool = False) -> Made:
    """Hash ``path`` into output/torrents/NAME.torrent (``show``: with a progress bar, rate and ETA)."""
    from protocol import making, metainfo

    make = making.create_folder if is_folder else making.create
    endpoints = trackers(announce)
    listed = tiers(endpoints, http_announce, private)
    if show:
        from ctl import render

        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if is_folder else path.stat().st_size
        with render.download_progress() as bar:
            task = bar.add_task(f"hashing {path.name} for its torrent", total=size, pieces="")
            meta = make(path, endpoints[0], piece_size, listed, private=private,
                        progress=lambda n: bar.advance(task, n))
    else:
        meta = make(path, endpoints[0], piece_size, listed, private=private)
    dest = torrent_path(meta.name)
    metainfo.write(meta, dest)
    return meta, dest


def torrent_for(path: Path, announce: str | None, http_announce: str | None, show: bool = False) -> Made:
    """The existing torrent for the file ``path`` if it describes it, else a new one."""
    from protocol import metainfo

    dest = torrent_path(path.name)
    if dest.exists():
        meta = metainfo.read(dest)
        if not meta.multi_file and meta.length == path.stat().st_size:
            return meta, dest
    return create(path, None, announce, http_announce, show=show)


def folder_torrent_for(path: Path, announce: str | None, http_announce: str | None, show: bool = False) -> Made:
    """The existing torrent for the folder ``path`` (ours or, say, mktorrent's) if its files are
    there with their sizes, else a new one."""
    from protocol import metainfo

    dest = torrent_path(path.resolve().name)
    if dest.exists():
        meta = metainfo.read(dest)
        if meta.multi_file and all(f.pad or _size(path.joinpath(*f.path)) == f.length for f in meta.files):
            return meta, dest
    return create(path, None, announce, http_announce, is_folder=True, show=show)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else -1
    except OSError:
        return -1


def print_made(title: str, items: list[Made]) -> None:
    """A table of the torrents, then each one's magnet link (whole, never wrapped)."""
    from ctl import render
    from protocol import magnet

    rows = [[meta.name + ("/" if meta.multi_file else ""), render.mib(meta.length), meta.num_pieces,
             f"{meta.piece_length // 1024} KiB", meta.info_hash, dest] for meta, dest in items]
    render.out.print(render.table(title, ["Name", "Size", "Pieces", "Piece size", "Info hash", "Torrent"], rows))
    for meta, _ in items:
        render.out.print(magnet.link(meta), soft_wrap=True, highlight=False)
