"""A scripted raw-socket BEP 3 peer for the hostile tests (libtorrent's test_fast_extension
style): it sends exactly the bytes a test names and reads what comes back."""
from __future__ import annotations

import socket
import struct
import time

from node.peer.bt import framing as f


class RawPeer:
    def __init__(self, port: int, timeout_s: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def handshake(self, info_hash: bytes, peer_id: bytes = b"-XX0001-hostile00000") -> bytes:
        self.send(f.handshake(info_hash, peer_id))
        return self.read_exactly(f.HANDSHAKE_BYTES)

    def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def message(self) -> tuple[int, bytes] | None:
        """The next message (id, payload); None for a keep-alive; ConnectionError if closed."""
        n = struct.unpack(">I", self.read_exactly(4))[0]
        if n == 0:
            return None
        body = self.read_exactly(n)
        return body[0], body[1:]

    def until(self, msg_id: int, timeout_s: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.message()
            if got is not None and got[0] == msg_id:
                return got[1]
        raise AssertionError(f"no {f.NAMES.get(msg_id, msg_id)} message within {timeout_s}s")

    def closed_by_remote(self, timeout_s: float = 5.0) -> bool:
        """True once the remote closes the connection (what it sends meanwhile is skipped)."""
        deadline = time.monotonic() + timeout_s
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                if not self.sock.recv(65536):
                    return True
            except socket.timeout:
                continue
            except OSError:
                return True
        return False


def request(piece: int, begin: int, length: int) -> bytes:
    return f.triple(f.REQUEST, piece, begin, length)


def length_prefixed(msg_id: int, payload: bytes) -> bytes:
    return struct.pack(">IB", 1 + len(payload), msg_id) + payload
