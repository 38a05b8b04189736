"""Every zorrent message, defined once.

Wire layout (see ``protocol.codec``)::

    frame 0  msgpack map {"v": PROTOCOL_VERSION, "id": int, "type": str, "body": map}
    frame 1  raw piece bytes (BLOCK replies only), sent zero-copy, never inside msgpack

- ``names``: every message type's wire name (``MsgType``) and the protocol's limits;
- ``base``: the ``Message`` base, ``@message`` and the ``REGISTRY`` of types, the body checks;
- one module per role, each message a frozen dataclass registered under its type:
  ``generic`` (ping, ok, error), ``tracker``, ``data`` (a peer's data port), ``control``
  (a peer's control socket, the CLI's).

``from protocol import messages as m; m.Status(...)`` works for every message: a role
module is imported when one of its names (or, decoding, one of its types) is first asked
for, so `zorrent status` loads the control messages, not the tracker's.
"""
from importlib import import_module

from protocol.messages.base import REGISTRY, ROLES, Message, load_all, message
from protocol.messages.names import (
    MAX_BLOCK_BYTES,
    MAX_FRAME_BYTES,
    MAX_HEADER_BYTES,
    PROTOCOL_VERSION,
    MsgType,
)

__all__ = ["REGISTRY", "ROLES", "Message", "MsgType", "load_all", "message", "MAX_BLOCK_BYTES", "MAX_FRAME_BYTES",
           "MAX_HEADER_BYTES", "PROTOCOL_VERSION"]


def __getattr__(name: str):
    """A message class, record or enum of a role module, imported on first use."""
    if not name.startswith("__"):
        for role in ROLES:
            found = getattr(import_module(f"protocol.messages.{role}"), name, None)
            if found is not None and getattr(found, "__module__", "") == f"protocol.messages.{role}":
                globals()[name] = found
                return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
