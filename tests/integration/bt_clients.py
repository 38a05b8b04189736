"""Standard BitTorrent clients for the BEP 3 wire and HTTP tracker tests: a loopback-only
libtorrent session (the PyPI wheel) and aria2c (Debian), where a zorrent peer's BEP 3 port
is, and the tracker's HTTP door (its URL, a scrape)."""
from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

import fastbencode
import libtorrent as lt

from tests.procs import free_port, wait_for

ARIA2 = shutil.which("aria2c")


def http_url(swarm) -> str:
    return (swarm.workdir / "tracker.ready.http").read_text()


def scrape(announce_url: str, info_hash: str) -> dict:
    url = announce_url.replace("/announce", "/scrape") + "?info_hash=" + "".join(
        f"%{b:02x}" for b in bytes.fromhex(info_hash))
    with urllib.request.urlopen(url, timeout=5) as r:
        return fastbencode.bdecode(r.read())[b"files"].get(bytes.fromhex(info_hash), {})


def bt_port(swarm, peer_id: str) -> int:
    """The BEP 3 port a test peer (started with --port 0) bound: written beside its ready file."""
    return int((swarm.workdir / f"{peer_id}.ready.bt").read_text())


def lt_session() -> lt.session:
    """A libtorrent on loopback only: no DHT, LSD, UPnP, NAT-PMP or uTP."""
    return lt.session({"listen_interfaces": f"127.0.0.1:{free_port()}", "enable_dht": False,
                       "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
                       "enable_incoming_utp": False, "enable_outgoing_utp": False,
                       "allow_multiple_connections_per_ip": True, "alert_mask": 0})


def lt_add(ses: lt.session, torrent: Path | None, save: Path, magnet: str = "", seed_mode: bool = False):
    params = lt.parse_magnet_uri(magnet) if magnet else lt.add_torrent_params()
    if torrent is not None:
        params.ti = lt.torrent_info(str(torrent))
    params.save_path = str(save)
    if seed_mode:
        params.flags |= lt.torrent_flags.seed_mode
    return ses.add_torrent(params)


def lt_wait_done(handle, timeout_s: float = 60, what: str = "libtorrent to finish") -> None:
    """Until libtorrent has every piece (hashed); then it is asked to write them out (see ``wrote``)."""
    wait_for(lambda: handle.status().is_seeding, timeout_s=timeout_s,
             what=f"{what} (state {handle.status().state}, {handle.status().progress:.0%})")
    handle.flush_cache()


def wrote(path: Path, src: Path, timeout_s: float = 15) -> None:
    """Assert that a standard client's copy at ``path`` becomes byte-identical to ``src``.

    libtorrent 2 hashes a piece from its store buffer and writes it asynchronously, and
    Transmission from its write cache: "seeding" / "100%" can come before the last piece is
    in the file (read at once, under load the copy was zeros at offset 0). So the copy is
    polled with a deadline; a copy still different then fails."""
    want = src.read_bytes()
    try:
        wait_for(lambda: path.exists() and path.read_bytes() == want, timeout_s=timeout_s, interval_s=0.05,
                 what=f"{path.name} to be written out")
    except AssertionError:
        got = path.read_bytes() if path.exists() else b""
        raise AssertionError(f"{path} differs from {src} ({len(got)} of {len(want)} bytes, "
                             f"first difference at {next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))})") from None
