"""Magnet links (BEP 9): hex and base32 btih, dn, tr, x.pe; bad links are one exact line;
the tracker's GET_METAINFO handler serves the stored .torrent by info-hash."""
import base64

import pytest

from node.tracker.handlers import TrackerContext
from node.tracker.store import open_store
from protocol import magnet
from protocol import messages as m
from protocol import metainfo
from protocol.errors import ErrorCode
from tests.conftest import write_random
from tests.unit.test_tracker_handlers import ask, expect_error

HASH = "c9676c6e1b5001a4e731ec81b6a497ae69b7ab72"
B32 = base64.b32encode(bytes.fromhex(HASH)).decode()


def test_hex_and_base32_name_the_same_torrent():
    hexed = magnet.parse(f"magnet:?xt=urn:btih:{HASH.upper()}&dn=my%20folder&tr=tcp%3A%2F%2F127.0.0.1%3A6969"
                         f"&tr=http://t.example/announce&x.pe=127.0.0.1:6881")
    assert hexed == magnet.Magnet(HASH, "my folder", ("tcp://127.0.0.1:6969", "http://t.example/announce"),
                                  (("127.0.0.1", 6881),))
    assert magnet.parse(f"magnet:?xt=urn:btih:{B32.lower()}").info_hash == HASH
    hybrid = f"magnet:?xt=urn:btih:{HASH}&xt=urn:btmh:1220{'0' * 64}"
    assert magnet.parse(hybrid).info_hash == HASH       # a hybrid link: the v1 hash is used


def test_link_round_trips(tmp_path):
    meta = metainfo.create(write_random(tmp_path / "a b&c.bin", 50_000, seed=1), "tcp://127.0.0.1:6969")
    link = magnet.link(meta)
    assert link == f"magnet:?xt=urn:btih:{meta.info_hash}&dn=a%20b%26c.bin&tr=tcp%3A%2F%2F127.0.0.1%3A6969"
    assert magnet.parse(link) == magnet.Magnet(meta.info_hash, "a b&c.bin", ("tcp://127.0.0.1:6969",))


@pytest.mark.parametrize("uri, text", [
    ("http://x/?xt=urn:btih:" + HASH, "not a magnet link (it must start with magnet:?): 'http://x/?xt=urn:btih:"),
    ("magnet:?dn=x", "magnet link has no xt=urn:btih:... (the info-hash)"),
    ("magnet:?xt=urn:btmh:1220" + "0" * 64, "magnet link has only a v2 hash (urn:btmh, BEP 52); zorrent needs urn:btih"),
    ("magnet:?xt=urn:btih:abc", "magnet link: xt 'urn:btih:abc' must end in 40 hex or 32 base32 characters"),
    ("magnet:?xt=urn:btih:" + "g" * 40, f"magnet link: xt 'urn:btih:{'g' * 40}' must end in 40 hex or 32 base32 characters"),
    ("magnet:?xt=urn:btih:" + "1" * 32, f"magnet link: xt 'urn:btih:{'1' * 32}' must end in 40 hex or 32 base32 characters"),
    (f"magnet:?xt=urn:btih:{HASH}&xt=urn:btih:{'0' * 40}", "magnet link names two different btih info-hashes"),
    (f"magnet:?xt=urn:btih:{HASH}&x.pe=host", "magnet link: x.pe 'host' must be HOST:PORT"),
    (f"magnet:?xt=urn:btih:{HASH}&x.pe=h:70000", "magnet link: x.pe 'h:70000' must be HOST:PORT"),
    ("magnet:?" + "a" * 9000, "magnet link is 9008 characters, limit 8192"),
])
def test_bad_links_are_one_exact_line(uri, text):
    with pytest.raises(magnet.MagnetError) as info:
        magnet.parse(uri)
    assert info.value.message.startswith(text) and "\n" not in info.value.message
    assert info.value.code == ErrorCode.BAD_INPUT


def test_tracker_serves_the_metainfo_it_stored(tmp_path):
    ctx = TrackerContext(store=open_store("sqlite://:memory:"), started=0.0)
    folder = tmp_path / "folder"
    write_random(folder / "x" / "a.bin", 40_000, seed=2)
    write_random(folder / "b.bin", 1, seed=3)
    meta = metainfo.create_folder(folder, "tcp://127.0.0.1:1")
    expect_error(ctx, m.GetMetainfo(info_hash=meta.info_hash), ErrorCode.UNKNOWN_TORRENT)
    token = ask(ctx, m.RegisterPeer(peer_id="p1", host="127.0.0.1", port=6881, token="")).token
    ask(ctx, m.RegisterTorrent(peer_id="p1", token=token, metainfo=meta.raw))
    reply = ask(ctx, m.GetMetainfo(info_hash=meta.info_hash))
    assert reply == m.MetainfoReply(info_hash=meta.info_hash, metainfo=meta.raw)
    assert metainfo.info_hash_of(reply.metainfo) == meta.info_hash


def test_download_takes_exactly_one_of_torrent_and_magnet_and_refuses_bad_links(tmp_path, monkeypatch, mute_endpoint):
    from typer.testing import CliRunner

    from ctl.app import app
    from ctl.cli import EXIT_TRANSPORT, EXIT_USAGE
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZORRENT_TRACKER", mute_endpoint)
    runner = CliRunner()
    base = ["download", "--peer-id", "p2", "--peer-port", "1"]
    cases = [
        (base, EXIT_USAGE, "error: give exactly one of --torrent and --magnet"),
        (base + ["--torrent", "t", "--magnet", "magnet:?"], EXIT_USAGE, "error: give exactly one of"),
        (base + ["--magnet", "magnet:?xt=urn:btih:xyz"], EXIT_USAGE,
         "error: magnet link: xt 'urn:btih:xyz' must end in 40 hex or 32 base32 characters"),
        (base + ["--magnet", f"magnet:?xt=urn:btih:{B32}"], EXIT_TRANSPORT,
         f"error: no source had the metainfo of btih {HASH} (asked the tracker at tcp://127.0.0.1:"),
    ]
    for args, code, text in cases:
        res = runner.invoke(app, args)
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert res.exit_code == code and len(lines) == 1 and lines[0].startswith(text), res.output
