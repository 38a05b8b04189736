"""The ZAP handler of a private swarm (node/curve.py): pyzmq's ThreadAuthenticator, with
a credentials callback that admits the public keys in ``allowed/`` (re-read whenever the
folder changes) and a log line for each refused source, once."""
from __future__ import annotations

import logging
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from node import config

log = logging.getLogger("zorrent.curve")


class Allowed:
    """The ZAP credentials callback: is this z85 public key in ``allowed/``? Re-read on change."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.stamp: tuple | None = None
        self.keys: dict[bytes, bool] = {}

    def callback(self, domain: str, key: bytes) -> bool:
        """Never raises: an exception here would end pyzmq's ZAP thread, and with it every
        later handshake. A failure refuses this key."""
        try:
            stamp = self._stamp()
            if stamp != self.stamp:
                self.keys, self.stamp = self._load(), stamp
        except OSError as exc:
            log.warning("cannot read the allowed keys in %s (%s): refusing every key", self.folder, exc)
            self.keys, self.stamp = {}, None
        except Exception as exc:       # noqa: BLE001 -- the thread must survive whatever this is
            log.warning("cannot check a key against %s (%s): refusing it", self.folder, exc)
            self.keys, self.stamp = {}, None
            return False
        return key in self.keys

    def _stamp(self) -> tuple:
        """Changes when the folder does, and when a key file is overwritten in place."""
        st = self.folder.stat()
        files = sorted(self.folder.glob("*.key"))
        mtimes = []
        for f in files:
            try:
                fs = f.stat()
            except OSError:
                continue               # removed meanwhile; the folder's mtime tells
            mtimes.append((f.name, fs.st_mtime_ns, fs.st_size, fs.st_ino))
        return st.st_mtime_ns, st.st_ino, tuple(mtimes)

    def _load(self) -> dict[bytes, bool]:
        """The public keys of the ``*.key`` files, one at a time: a bad file (empty, half
        copied) is skipped with one warning, not fatal to the others."""
        keys: dict[bytes, bool] = {}
        for f in sorted(self.folder.glob("*.key")):
            try:
                public, _ = zmq.auth.load_certificate(f)
            except (OSError, ValueError) as exc:
                log.warning("skipping the allowed key file %s: %s", f, exc)
                continue
            if public:
                keys[public] = True
        return keys


class Gate(ThreadAuthenticator):
    """pyzmq's ZAP handler, which logs each refused source once (at most
    ``CURVE_REFUSED_SOURCES_LOGGED`` of them; then one line says the rest go unlogged)."""

    def __init__(self, zctx: zmq.Context, allowed: Path) -> None:
        super().__init__(zctx, log=logging.getLogger("zorrent.curve.zap"))
        self.allowed = allowed
        self.refused = 0
        self.refused_from: set[str] = set()
        self._address = ""

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self._address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        await super().handle_zap_message(msg)

    def _send_zap_reply(self, request_id, status_code, status_text, user_id="anonymous") -> None:
        if status_code != b"200":
            self.refused += 1
            source = self._address
            if source not in self.refused_from and len(self.refused_from) < config.CURVE_REFUSED_SOURCES_LOGGED:
                self.refused_from.add(source)
                log.warning("refused %s at the CURVE handshake: %s (its key is not in %s; logged once per source)",
                            source or "a local socket", status_text.decode("utf-8", "replace"), self.allowed)
                if len(self.refused_from) == config.CURVE_REFUSED_SOURCES_LOGGED:
                    log.warning("%d sources refused; further ones are not logged", len(self.refused_from))
        super()._send_zap_reply(request_id, status_code, status_text, user_id)


def start_gate(zctx: zmq.Context, allowed: Path, domain: str) -> Gate:
    gate = Gate(zctx, allowed)
    gate.start()
    gate.configure_curve_callback(domain=domain, credentials_provider=Allowed(allowed))
    return gate
