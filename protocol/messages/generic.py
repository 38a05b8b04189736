"""Messages every node speaks: ping, and the generic replies."""
from protocol.messages.base import Message, message
from protocol.messages.names import MsgType


@message(MsgType.PING)
class Ping(Message):
    pass


@message(MsgType.PONG)
class Pong(Message):
    node: str              # "tracker" or "peer"
    peer_id: str           # empty for the tracker
    pid: int
    bt_port: int = 0       # a peer's BEP 3 port (0: none)


@message(MsgType.OK)
class Ok(Message):
    pass


@message(MsgType.ERROR)
class Error(Message):
    code: int
    message: str
    retry_after_s: float = 0.0   # when a retry may succeed (PEER_ID_TAKEN: the old record's expiry); 0: unknown
