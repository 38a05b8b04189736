import msgpack
import pytest

from protocol import messages as m
from protocol.codec import decode, encode
from protocol.errors import ErrorCode, FieldError, ProtocolError


def test_ping_exact_bytes():
    frames = encode(m.Ping(), 7)
    assert frames == [b"\x84\xa1v\x01\xa2id\x07\xa4type\xa4ping\xa4body\x80"]
    env = decode(frames)
    assert env.id == 7 and env.msg == m.Ping() and env.payload is None


def test_get_block_round_trip_exact_bytes():
    msg = m.GetBlock(info_hash="ab" * 20, piece_index=3, block_offset=0, length=16384)
    frames = encode(msg, 1)
    assert frames[0] == msgpack.packb({"v": 1, "id": 1, "type": "get_block", "body": {
        "info_hash": "ab" * 20, "piece_index": 3, "block_offset": 0, "length": 16384, "requester": ""}})
    assert decode(frames).msg == msg


def test_block_payload_is_a_separate_raw_frame():
    payload = memoryview(b"\x00\x01" * 1000)
    frames = encode(m.Block(info_hash="x", piece_index=0, block_offset=0), 9, payload)
    assert len(frames) == 2 and frames[1] is payload
    env = decode([frames[0], bytes(payload)])
    assert bytes(env.payload) == bytes(payload)


def test_nested_records_round_trip():
    msg = m.PeerList(info_hash="h", name="f", num_pieces=9, length=100, peers=[
        m.PeerInfo(peer_id="p1", host="127.0.0.1", port=6881, bitfield=b"\xff\x80", have=9)])
    assert decode(encode(msg, 2)).msg == msg


def raw(**kw):
    env = {"v": 1, "id": 1, "type": "get_block",
           "body": {"info_hash": "h", "piece_index": 0, "block_offset": 0, "length": 1}}
    env.update(kw)
    return [msgpack.packb(env)]


@pytest.mark.parametrize("frames, code, text", [
    (raw(type="nope"), ErrorCode.UNKNOWN_TYPE, "unknown message type 'nope'"),
    (raw(v=2), ErrorCode.BAD_VERSION, "protocol version 2 is not 1"),
    (raw(body={"info_hash": "h", "piece_index": "0", "block_offset": 0, "length": 1}),
     ErrorCode.BAD_FIELD, "['body']['piece_index'] must be int, not str"),
    (raw(body={"info_hash": "h", "piece_index": True, "block_offset": 0, "length": 1}),
     ErrorCode.BAD_FIELD, "['body']['piece_index'] must be int, not bool"),
    (raw(body={"info_hash": "h", "block_offset": 0, "length": 1}),
     ErrorCode.BAD_FIELD, "['body']['piece_index'] is missing"),
    (raw(body={"info_hash": "h", "piece_index": 0, "block_offset": 0, "length": 1, "x": 1}),
     ErrorCode.BAD_FIELD, "['body']['x'] is not a field"),
    (raw(id=-1), ErrorCode.BAD_FIELD, "['id'] is out of range"),
    ([b"\xc1"], ErrorCode.BAD_FRAME, "header is not valid msgpack: FormatError"),
    ([msgpack.packb([1, 2])], ErrorCode.BAD_FRAME, "header must be map, not list"),
    ([b"a", b"b", b"c"], ErrorCode.BAD_FRAME, "expected 1 or 2 frames, got 3"),
    ([b"\x00" * (m.MAX_HEADER_BYTES + 1)], ErrorCode.BAD_FRAME,
     f"header frame is {m.MAX_HEADER_BYTES + 1} bytes, limit {m.MAX_HEADER_BYTES}"),
])
def test_decode_rejects_with_key_path(frames, code, text):
    with pytest.raises(ProtocolError) as info:
        decode(frames)
    assert info.value.code == code
    assert info.value.message == text


def test_nested_field_path():
    frames = [msgpack.packb({"v": 1, "id": 1, "type": "announce", "body": {
        "peer_id": "p", "token": "t", "info_hash": "h", "pieces": [1, 2, "3"]}})]
    with pytest.raises(FieldError, match=r"\['body'\]\['pieces'\]\[2\] must be int, not str"):
        decode(frames)


def test_every_type_is_registered_once():
    assert set(m.REGISTRY) == set(m.MsgType)


def test_error_replies_never_echo_a_malformed_id():
    from protocol.codec import decode_id

    assert decode_id([msgpack.packb({"v": None, "id": False})]) == 0       # found by the fuzzer
    assert decode_id([msgpack.packb({"id": -5})]) == 0
    assert decode_id([msgpack.packb({"id": 42, "type": 3})]) == 42
