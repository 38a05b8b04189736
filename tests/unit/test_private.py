"""Private swarms without processes: BEP 27's flag, the HTTP door's refusal, the key folder
(node/curve.py) and peers.json's "keys" entry."""
import json

import fastbencode
import pytest

from ctl import cli
from ctl.nodes import load_peers, read_peers
from node import config, curve
from node.tracker.handlers import TrackerContext, standard
from node.tracker.store import TorrentRecord, open_store
from protocol import messages as m
from protocol import metainfo
from protocol.codec import decode, encode
from protocol.errors import ErrorCode, ZorrentError
from tests.conftest import write_random


def test_create_private_sets_the_flag_inside_info(tmp_path):
    src = write_random(tmp_path / "f.bin", 100_000, 3)
    public, private = metainfo.create(src, "tcp://t:1"), metainfo.create(src, "tcp://t:1", private=True)
    assert not public.private and private.private
    assert fastbencode.bdecode(private.raw)[b"info"][b"private"] == 1
    assert public.info_hash != private.info_hash          # the flag is part of the info-hash
    assert metainfo.parse(private.raw).private
    assert metainfo.is_private(private.raw) and not metainfo.is_private(public.raw)
    folder = metainfo.create_folder(tmp_path, "tcp://t:1", private=True)
    assert folder.private and folder.multi_file


def test_the_http_door_never_serves_a_private_torrent(tmp_path):
    ctx = TrackerContext(store=open_store("sqlite://:memory:"))
    meta = metainfo.create(write_random(tmp_path / "f.bin", 100_000, 4), "tcp://t:1", private=True)
    ctx.store.put_torrent(TorrentRecord(meta.info_hash, meta.name, meta.length, meta.piece_length,
                                        meta.num_pieces, meta.raw))       # as RegisterTorrent stores it
    ctx.commit()
    reply = decode(standard.dispatch(ctx, encode(m.ClientAnnounce(
        info_hash=meta.info_hash, peer_id="aa" * 20, host="127.0.0.1", port=51413, left=0, event="started",
        numwant=50), 3))).msg
    assert isinstance(reply, m.Error) and reply.code == ErrorCode.NOT_AUTHORISED and "private" in reply.message


def test_keys_new_makes_a_loadable_swarm_and_never_overwrites(tmp_path):
    made = curve.make_swarm(tmp_path / "k")
    assert made.server_secret and made.client_secret
    assert (tmp_path / "k" / "allowed" / "client.key").exists()
    assert oct((tmp_path / "k" / "server.key_secret").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ZorrentError, match="already holds swarm keys"):
        curve.make_swarm(tmp_path / "k")
    member = curve.add_member(tmp_path / "k", tmp_path / "laptop", "laptop", listen=False)
    assert member.server_secret is None and member.server_public == made.server_public
    assert (tmp_path / "k" / "allowed" / "laptop.key").exists()
    with pytest.raises(ZorrentError, match="does not exist"):
        curve.load(tmp_path / "nowhere")


def test_peers_json_keys_entry_is_not_a_peer(tmp_path, monkeypatch):
    monkeypatch.setenv(config.KEYS_ENV, "")      # unset (empty), and put back after the test
    monkeypatch.setattr(cli, "_keys_source", None)
    (tmp_path / "peers.json").write_text(json.dumps({"keys": "swarm-keys", "peer1": {"ip": "127.0.0.1", "port": 6881}}))
    assert [s.peer_id for s in load_peers(tmp_path / "peers.json")] == ["peer1"]
    assert not config.keys_dir()                         # reading the file applies nothing
    peers = read_peers(tmp_path / "peers.json")
    assert peers.keys == str(tmp_path / "swarm-keys") and not config.keys_dir()
    peers.use_keys()                                     # what a command that starts or reaches them does
    assert config.keys_dir() == str((tmp_path / "swarm-keys").resolve())    # relative to peers.json
    monkeypatch.setattr(cli, "_keys_source", None)
    monkeypatch.setenv(config.KEYS_ENV, "/elsewhere")                        # an earlier choice wins
    read_peers(tmp_path / "peers.json").use_keys()
    assert config.keys_dir() == "/elsewhere"
    (tmp_path / "bad.json").write_text(json.dumps({"keys": 5, "peer1": {"ip": "127.0.0.1", "port": 6881}}))
    with pytest.raises(ZorrentError, match='"keys" must name'):
        load_peers(tmp_path / "bad.json")
