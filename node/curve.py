"""A private swarm: ZeroMQ CURVE on every tcp socket, applied in one place.

With ``$ZORRENT_KEYS`` naming a key folder (``zorrent keys new``), every tcp ROUTER (the
tracker, each peer's data port) is a CURVE server, and a ZAP handler (pyzmq's
``zmq.auth`` on its own thread) admits only the public keys in the folder's ``allowed/``;
every tcp DEALER (peer to tracker, peer to peer, the CLI, the web view) is a CURVE client
of the swarm's server key. A refused key never gets past the handshake, so it cannot
send one request; traffic is encrypted and authenticated by libsodium.

ipc and inproc sockets stay as they are: a peer's control socket lives in a 0700
folder, so the kernel already says who may drive it, and inproc never leaves the process.

The key folder (``zorrent keys new``)::

    server.key          the swarm's server public key: every member needs it
    server.key_secret   its secret: only hosts that listen (tracker, peers) need it
    client.key_secret   this member's client keypair (client.key is its public half)
    allowed/            the client public keys the servers admit (NAME.key, one each)

``allowed/`` is read again whenever it changes, so a key removed from it is refused at
the next handshake without a restart.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import zmq

from node import config
from protocol.errors import ErrorCode, ZorrentError


SERVER_KEY = "server"
CLIENT_KEY = "client"
ALLOWED_DIR = "allowed"
ZAP_DOMAIN = "zorrent"


@dataclass(frozen=True)
class SwarmKeys:
    folder: Path
    server_public: bytes
    server_secret: bytes | None      # None on a host that only asks (CLI, web view)
    client_public: bytes
    client_secret: bytes

    @property
    def allowed(self) -> Path:
        return self.folder / ALLOWED_DIR


def _read(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        import zmq.auth     # only with keys: every other process (and command) skips its imports

        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ZorrentError(f"cannot read key {path}: {getattr(exc, 'strerror', None) or exc}",
                           ErrorCode.BAD_INPUT) from None
    if secret and not secret_key:
        raise ZorrentError(f"{path} holds no secret key", ErrorCode.BAD_INPUT)
    return public, secret_key


def load(folder: str | os.PathLike) -> SwarmKeys:
    """The keys in ``folder``; one line naming what is missing otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ZorrentError(f"key folder {folder} does not exist (make one with: zorrent keys new --dir {folder})",
                           ErrorCode.BAD_INPUT)
    server_secret = None
    if (folder / f"{SERVER_KEY}.key_secret").exists():
        server_public, server_secret = _read(folder / f"{SERVER_KEY}.key_secret", True)
    else:
        server_public, _ = _read(folder / f"{SERVER_KEY}.key", False)
    client_public, client_secret = _read(folder / f"{CLIENT_KEY}.key_secret", True)
    return SwarmKeys(folder, server_public, server_secret, client_public, client_secret)


_loaded: dict[str, SwarmKeys] = {}


def active() -> SwarmKeys | None:
    """The keys of ``$ZORRENT_KEYS`` (read once per folder), or None: an open swarm."""
    folder = config.keys_dir()
    if folder is None:
        return None
    if folder not in _loaded:
        _loaded[folder] = load(folder)
    return _loaded[folder]


def _networked(endpoint: str) -> bool:
    return endpoint.startswith("tcp://")


def secure_client(sock: zmq.Socket, endpoint: str) -> None:
    """Before ``connect``: a CURVE client of the swarm's server key (tcp only, keys set)."""
    keys = active()
    if keys is None or not _networked(endpoint):
        return
    sock.curve_secretkey = keys.client_secret
    sock.curve_publickey = keys.client_public
    sock.curve_serverkey = keys.server_public


def secure_server(zctx: zmq.Context, sock: zmq.Socket, endpoint: str) -> None:
    """Before ``bind``: a CURVE server whose ZAP handler admits only ``allowed/``."""
    keys = active()
    if keys is None or not _networked(endpoint):
        return
    if keys.server_secret is None:
        raise ZorrentError(f"{keys.folder} has no {SERVER_KEY}.key_secret, so this host cannot listen in "
                           f"the private swarm (copy it from the folder keys new made)", ErrorCode.BAD_INPUT)
    _gate(zctx, keys)
    sock.zap_domain = ZAP_DOMAIN.encode()
    sock.curve_secretkey = keys.server_secret
    sock.curve_publickey = keys.server_public
    sock.curve_server = True


_gates: dict = {}     # zmq.Context -> its node.zap.Gate


def _gate(zctx: zmq.Context, keys: SwarmKeys):
    """One ZAP handler per context (ZeroMQ asks the one bound in the socket's context)."""
    gate = _gates.get(zctx)
    if gate is None:
        from node import zap     # asyncio and a thread: only for a process that listens with keys

        if not keys.allowed.is_dir():
            raise ZorrentError(f"{keys.folder} has no {ALLOWED_DIR}/ folder of admitted keys", ErrorCode.BAD_INPUT)
        gate = _gates[zctx] = zap.start_gate(zctx, keys.allowed, ZAP_DOMAIN)
        zap.log.info("a private swarm: tcp sockets use CURVE, and only the keys in %s may connect", keys.allowed)
    return gate


def stop(zctx: zmq.Context) -> None:
    """Stop ``zctx``'s ZAP handler, if it has one (before closing or destroying the context)."""
    gate = _gates.pop(zctx, None)
    if gate is not None:
        gate.stop()


# ---------------------------------------------------------------- making keys (``zorrent keys``)
def _new_pair(folder: Path, name: str) -> Path:
    import zmq.auth

    public, secret = zmq.auth.create_certificates(folder, name)
    os.chmod(secret, 0o600)
    return Path(public)


def make_swarm(folder: str | os.PathLike) -> SwarmKeys:
    """A new swarm: the server keypair, one client keypair, ``allowed/`` admitting it."""
    folder = Path(folder)
    if (folder / f"{SERVER_KEY}.key").exists() or (folder / f"{CLIENT_KEY}.key").exists():
        raise ZorrentError(f"{folder} already holds swarm keys; choose another --dir (keys are never overwritten)",
                           ErrorCode.BAD_INPUT)
    try:
        (folder / ALLOWED_DIR).mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        _new_pair(folder, SERVER_KEY)
        client = _new_pair(folder, CLIENT_KEY)
        shutil.copyfile(client, folder / ALLOWED_DIR / client.name)
    except OSError as exc:
        raise ZorrentError(f"cannot write keys to {folder}: {exc.strerror or exc}", ErrorCode.BAD_INPUT) from None
    return load(folder)


def add_member(swarm: str | os.PathLike, out: str | os.PathLike, name: str, listen: bool) -> SwarmKeys:
    """A key folder ``out`` for one more member of ``swarm``: its own client keypair (admitted in
    ``swarm``'s ``allowed/``) and the server public key, with the server secret if it will ``listen``."""
    swarm, out = Path(swarm), Path(out)
    keys = load(swarm)
    config.check_peer_id(name)
    if (out / f"{CLIENT_KEY}.key").exists():
        raise ZorrentError(f"{out} already holds keys; choose another --out", ErrorCode.BAD_INPUT)
    if (keys.allowed / f"{name}.key").exists():
        raise ZorrentError(f"{keys.allowed} already admits a member named {name!r}", ErrorCode.BAD_INPUT)
    if listen and keys.server_secret is None:
        raise ZorrentError(f"{swarm} has no {SERVER_KEY}.key_secret to hand on", ErrorCode.BAD_INPUT)
    try:
        out.mkdir(parents=True, exist_ok=True)
        os.chmod(out, 0o700)
        names = [f"{SERVER_KEY}.key"] + ([f"{SERVER_KEY}.key_secret"] if listen else [])
        for fname in names:
            shutil.copy2(swarm / fname, out / fname)
        client = _new_pair(out, CLIENT_KEY)
        shutil.copyfile(client, keys.allowed / f"{name}.key")
        if listen:       # a server admits what the swarm admits
            shutil.copytree(keys.allowed, out / ALLOWED_DIR)
    except OSError as exc:
        raise ZorrentError(f"cannot write keys to {out}: {exc.strerror or exc}", ErrorCode.BAD_INPUT) from None
    return load(out)
