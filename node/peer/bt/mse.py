"""The responder's side of Message Stream Encryption (MSE/PE, the "encrypted handshake"),
negotiated down to a plaintext stream.

libtorrent (and others) open an outgoing connection with an MSE handshake first and fall
back to a plain BitTorrent handshake only after the remote closes it: a reconnect that
cost about 1 s of every transfer from a zorrent seed (bench/bt_interop.py: libtorrent's
first block came 1.6 s after its start from a zorrent seed, 0.6 s from a libtorrent one).
So we answer MSE, and select plaintext when the initiator offers it (libtorrent's default
``allowed_enc_level`` is both): only the handshake itself is RC4-encrypted, the pieces go
as they do on a plain connection (sendfile stays possible). An initiator that offers RC4
only is closed, as before.

The exchange (B is us, the responder; S the Diffie-Hellman secret, SKEY the info-hash):

    A->B  Ya (96) PadA (0-512)
    B->A  Yb (96)
    A->B  HASH('req1', S)  HASH('req2', SKEY) xor HASH('req3', S)
          ENCRYPT(VC (8 zeros), crypto_provide (4), len(PadC) (2), PadC, len(IA) (2)), ENCRYPT(IA)
    B->A  ENCRYPT(VC, crypto_select (4), len(PadD) (2) = 0)
    then  plaintext both ways; IA (decrypted) is the start of A's BitTorrent stream

ENCRYPT is RC4 keyed with HASH('keyA', S, SKEY) from A, HASH('keyB', S, SKEY) from B,
the first 1024 bytes of each keystream discarded. What a remote can make us hold here is
bounded: the search for HASH('req1', S) gives up after PadA's 512 bytes, PadC is at most
512 and IA at most MSE_MAX_IA bytes; the handshake deadline of the connection applies.
"""
from __future__ import annotations

import hashlib
import secrets

P = int("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
        "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563", 16)
KEY_BYTES = 96
MAX_PAD = 512
MAX_IA = 16 * 1024              # the initiator's first payload (its BitTorrent handshake and a few messages)
VC = bytes(8)
PLAINTEXT, RC4 = 0x01, 0x02


class MseError(Exception):
    """The remote's MSE handshake is not one we can answer; the connection is closed."""


def _sha1(*parts: bytes) -> bytes:
    h = hashlib.sha1()
    for p in parts:
        h.update(p)
    return h.digest()


class Rc4:
    """RC4 for the few hundred bytes of a handshake (the payload goes plain)."""

    def __init__(self, key: bytes) -> None:
        s = list(range(256))
        j = 0
        for i in range(256):
            j = (j + s[i] + key[i % len(key)]) & 0xFF
            s[i], s[j] = s[j], s[i]
        self.s, self.i, self.j = s, 0, 0
        self.crypt(bytes(1024))                 # MSE discards the first 1024 bytes of keystream

    def crypt(self, data: bytes) -> bytes:
        s, i, j = self.s, self.i, self.j
        out = bytearray(len(data))
        for k, b in enumerate(data):
            i = (i + 1) & 0xFF
            j = (j + s[i]) & 0xFF
            s[i], s[j] = s[j], s[i]
            out[k] = b ^ s[(s[i] + s[j]) & 0xFF]
        self.i, self.j = i, j
        return bytes(out)


class MseResponder:
    """Fed the bytes received so far (from the start of the connection); says what to
    send, and once done, how many bytes the exchange took and the initiator's decrypted
    first payload (IA), which the connection parses as a plain BitTorrent stream."""

    def __init__(self, info_hashes) -> None:
        self.info_hashes = info_hashes           # callable: the info-hashes held here (bytes)
        self.x = secrets.randbits(160)
        self.secret = b""
        self.sent_key = False

    def feed(self, data: bytes) -> tuple[bytes, int | None, bytes]:
        """(bytes to send, bytes consumed once done or None, IA). Raises MseError."""
        if len(data) < KEY_BYTES:
            return b"", None, b""
        out = b""
        if not self.sent_key:
            ya = int.from_bytes(data[:KEY_BYTES], "big")
            if not 1 < ya < P - 1:
                raise MseError("not a BitTorrent handshake, nor an encrypted one (MSE)")
            self.secret = pow(ya, self.x, P).to_bytes(KEY_BYTES, "big")
            self.sent_key = True
            out = pow(2, self.x, P).to_bytes(KEY_BYTES, "big")
        req1 = _sha1(b"req1", self.secret)
        at = data.find(req1, KEY_BYTES, KEY_BYTES + MAX_PAD + len(req1))
        if at < 0:
            if len(data) >= KEY_BYTES + MAX_PAD + len(req1):
                raise MseError("not a BitTorrent handshake, nor an encrypted one (MSE: no sync)")
            return out, None, b""
        head = at + 20 + 20 + 8 + 4 + 2
        if len(data) < head:
            return out, None, b""
        skey = self._skey(data[at + 20:at + 40])
        key_a = _sha1(b"keyA", self.secret, skey)
        plain = Rc4(key_a).crypt(data[at + 40:head])         # (decrypted anew on each feed: a few bytes)
        vc, provide, pad_len = plain[:8], int.from_bytes(plain[8:12], "big"), int.from_bytes(plain[12:14], "big")
        if vc != VC:
            raise MseError("MSE handshake with a bad verification constant")
        if pad_len > MAX_PAD:
            raise MseError(f"MSE padding of {pad_len} bytes")
        if len(data) < head + pad_len + 2:
            return out, None, b""
        rc4a = Rc4(key_a)
        rest = rc4a.crypt(data[at + 40:head + pad_len + 2])
        ia_len = int.from_bytes(rest[-2:], "big")
        if ia_len > MAX_IA:
            raise MseError(f"MSE initial payload of {ia_len} bytes")
        end = head + pad_len + 2 + ia_len
        if len(data) < end:
            return out, None, b""
        if not provide & PLAINTEXT:
            raise MseError("MSE with RC4 only (zorrent selects the plaintext stream)")
        ia = rc4a.crypt(data[head + pad_len + 2:end])
        reply = Rc4(_sha1(b"keyB", self.secret, skey)).crypt(VC + PLAINTEXT.to_bytes(4, "big") + b"\0\0")
        return out + reply, end, ia

    def _skey(self, masked: bytes) -> bytes:
        req3 = _sha1(b"req3", self.secret)
        want = bytes(a ^ b for a, b in zip(masked, req3))
        for info_hash in self.info_hashes():
            if _sha1(b"req2", info_hash) == want:
                return info_hash
        raise MseError("MSE handshake for a torrent not held here")
