"""One base error for the protocol package; each error carries its data as attributes."""
from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Codes carried in ERROR replies. The number is the wire value; never reuse one."""

    BAD_FRAME = 1          # not decodable: size, msgpack, envelope shape
    BAD_VERSION = 2
    UNKNOWN_TYPE = 3
    BAD_FIELD = 4          # missing, mistyped or out-of-range field
    INTERNAL = 5           # handler raised something unexpected
    UNKNOWN_PEER = 10
    PEER_ID_TAKEN = 11
    NOT_AUTHORISED = 12
    UNKNOWN_TORRENT = 13
    PIECE_UNAVAILABLE = 14
    BAD_METAINFO = 15
    BAD_INPUT = 16         # a path or file the request names is unusable
    STORE = 17             # the tracker store failed; nothing was acknowledged
    BUSY = 18              # this remote already has its share of requests or bytes in flight; retry later
    LIMIT = 19             # a cap on what one peer may register was reached


class ZorrentError(Exception):
    """Base for every error zorrent raises on purpose. ``str(err)`` is one line."""

    code: ErrorCode = ErrorCode.INTERNAL
    retry_after_s: float = 0.0   # carried in the ERROR reply: when a retry may succeed (0: unknown)

    def __init__(self, message: str, code: ErrorCode | None = None, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retry_after_s:
            self.retry_after_s = float(retry_after_s)


class ProtocolError(ZorrentError):
    """A frame or message that does not follow the protocol."""

    code = ErrorCode.BAD_FRAME


class FieldError(ProtocolError):
    """A message field is missing, mistyped or out of range; ``path`` names it."""

    code = ErrorCode.BAD_FIELD

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.path = path
        self.problem = problem


class MetainfoError(ZorrentError):
    """A .torrent file that is not valid BEP-3 metainfo (or one zorrent refuses)."""

    code = ErrorCode.BAD_METAINFO


class RemoteError(ZorrentError):
    """The other side answered with an ERROR reply."""

    def __init__(self, code: int, message: str, retry_after_s: float = 0.0) -> None:
        try:
            code = ErrorCode(code)
        except ValueError:
            code = ErrorCode.INTERNAL
        super().__init__(message, code, retry_after_s)


class TransportError(ZorrentError):
    """No reply within the deadline after every retry (nothing is listening, or it hangs)."""
