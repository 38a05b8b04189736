"""Hypothesis strategies for hostile frames, shared by the fuzz tests and bench/fuzz.py.

Four kinds, mixed: raw garbage; random msgpack; well-formed envelopes of every
registered type with hostile field values; and real messages with bytes flipped,
cut short or padded.
"""
from __future__ import annotations

import dataclasses

import msgpack
from hypothesis import strategies as st

from protocol import messages as m
from protocol.codec import encode

SMALL_INT = st.integers(min_value=-(2**63), max_value=2**64 - 1)
HOSTILE_TEXT = st.one_of(st.text(max_size=24), st.sampled_from(
    ["../../etc/passwd", "/etc/passwd", "", "\x00", "a" * 300, "peer1", "0" * 40, "tcp://127.0.0.1:1"]))
LEAF = st.one_of(st.none(), st.booleans(), SMALL_INT, st.floats(allow_nan=True), HOSTILE_TEXT,
                 st.binary(max_size=64))
ANY_VALUE = st.recursive(LEAF, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                      st.dictionaries(HOSTILE_TEXT, kids, max_size=4)),
                         max_leaves=12)


def _value_for(tp) -> st.SearchStrategy:
    """Mostly the right type with hostile values, sometimes anything at all."""
    plausible = {int: st.one_of(SMALL_INT, st.sampled_from([-1, 0, 2**31, 2**63 - 1])),
                 str: HOSTILE_TEXT, bytes: st.binary(max_size=256), bool: st.booleans(),
                 float: st.floats()}.get(tp)
    if plausible is None:
        return ANY_VALUE
    return st.one_of(plausible, plausible, ANY_VALUE)


def _body(cls) -> st.SearchStrategy:
    import typing

    hints = typing.get_type_hints(cls)
    fields = {f.name: _value_for(hints[f.name]) for f in dataclasses.fields(cls)}
    return st.fixed_dictionaries({}, optional=fields)


def envelopes(exclude: frozenset = frozenset()) -> st.SearchStrategy:
    types = [t for t in m.MsgType if t not in exclude]
    typed = st.sampled_from(types).flatmap(lambda t: st.fixed_dictionaries({
        "v": st.one_of(st.just(m.PROTOCOL_VERSION), st.just(m.PROTOCOL_VERSION), SMALL_INT),
        "id": st.one_of(st.integers(0, 2**32), SMALL_INT),
        "type": st.just(t.value),
        "body": _body(m.REGISTRY[t]),
    }))
    loose = st.dictionaries(st.sampled_from(["v", "id", "type", "body", "x"]), ANY_VALUE, max_size=5)
    return st.one_of(typed, typed, typed, loose)


def _packed(env) -> bytes:
    return msgpack.packb(env, use_bin_type=True)


SAMPLES = [encode(m.Ping(), 1)[0],
           encode(m.GetBlock(info_hash="ab" * 20, piece_index=3, block_offset=0, length=16384), 2)[0],
           encode(m.Announce(peer_id="p1", token="t" * 32, info_hash="ab" * 20, pieces=[1, 2, 3]), 3)[0]]


@st.composite
def mutated(draw) -> bytes:
    raw = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "pad"]))
        if op == "flip" and raw:
            raw[draw(st.integers(0, len(raw) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del raw[draw(st.integers(0, len(raw))):]
        else:
            raw += draw(st.binary(min_size=1, max_size=16))
    return bytes(raw)


def frame_lists(exclude: frozenset = frozenset()) -> st.SearchStrategy:
    """A request as it arrives after the ROUTER identity: one to three frames."""
    header = st.one_of(st.binary(max_size=128), ANY_VALUE.map(_packed), envelopes(exclude).map(_packed), mutated())
    payload = st.binary(max_size=256)
    return st.one_of(header.map(lambda h: [h]),
                     st.tuples(header, payload).map(list),
                     st.lists(st.binary(max_size=32), min_size=3, max_size=3))
