"""The message base, the registry of message types, and the body schema checks.

Each message is a frozen dataclass registered under its ``MsgType`` (protocol/messages/names.py)
by ``@message``. The dataclass fields are the body schema: ``from_body`` checks names and
types and reports the key path of the first problem, e.g.
``['body']['pieces'][3] must be int, not str``.
"""
import dataclasses
import functools
import types
import typing
from dataclasses import dataclass
from importlib import import_module
from typing import Any, ClassVar

from protocol.errors import FieldError
from protocol.messages.names import MsgType


class Message:
    """Base of every registered message; ``TYPE`` is set by ``@message``."""

    TYPE: ClassVar[MsgType]

    def to_body(self) -> dict[str, Any]:
        return {name: _to_wire(getattr(self, name)) for name in _names(self.__class__)}

    @classmethod
    def from_body(cls, body: Any, path: str = "['body']") -> "Message":
        return _build(cls, body, path)

    # One __eq__, __hash__ and __repr__ for every message, over its fields, rather than three
    # generated (exec'd) for each class: generating them was half of this module's import
    # time, which every command and every node start pays.
    def _values(self) -> tuple:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((self.__class__, self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"{self.__class__.__name__}({fields})"


class Registry(dict):
    """MsgType -> its class. The role module of a type not registered yet is imported on its
    first lookup (``ROLES``, in order), so a process pays only for the roles it meets;
    iterating imports them all."""

    def __missing__(self, msg_type: MsgType) -> type[Message]:
        for role in ROLES:                 # in order, until the one that defines it
            import_module(f"protocol.messages.{role}")
            if dict.__contains__(self, msg_type):
                return dict.__getitem__(self, msg_type)
        raise KeyError(msg_type)

    def __iter__(self):
        load_all()
        return dict.__iter__(self)

    def __len__(self) -> int:
        load_all()
        return dict.__len__(self)

    def __contains__(self, msg_type: object) -> bool:
        load_all()
        return dict.__contains__(self, msg_type)

    def keys(self):
        load_all()
        return dict.keys(self)

    def items(self):
        load_all()
        return dict.items(self)

    def values(self):
        load_all()
        return dict.values(self)


REGISTRY: Registry = Registry()
ROLES = ("generic", "control", "data", "tracker")   # protocol/messages/ROLE.py, in lookup order


def load_all() -> None:
    for role in ROLES:
        import_module(f"protocol.messages.{role}")


def message(msg_type: MsgType):
    """Register a dataclass as the one definition of ``msg_type``."""

    def wrap(cls):
        if dict.__contains__(REGISTRY, msg_type):
            raise RuntimeError(f"{msg_type} registered twice")
        cls.__doc__ = cls.__doc__ or f"The {msg_type.value!r} message."   # else dataclass builds one
        cls = dataclass(frozen=True, eq=False, repr=False)(cls)            # with inspect.signature
        cls.TYPE = msg_type
        REGISTRY[msg_type] = cls
        return cls

    return wrap


# ---------------------------------------------------------------- (de)serialisation


@functools.cache
def _names(cls: type) -> tuple[str, ...] | None:
    """A dataclass's field names (None for any other type), once per class: a status of many
    jobs and peers encodes thousands of nested records a second."""
    if not dataclasses.is_dataclass(cls):
        return None
    return tuple(f.name for f in dataclasses.fields(cls))


def _to_wire(value: Any) -> Any:
    cls = value.__class__
    if cls in _PLAIN or value is None or cls is float:
        return value
    if cls is list:
        return [_to_wire(v) for v in value]
    names = _names(cls)
    if names is not None:
        return {name: _to_wire(getattr(value, name)) for name in names}
    if isinstance(value, list):
        return [_to_wire(v) for v in value]
    return value


_PLAIN = (int, str, bytes, bool)


def _plain(value: Any, tp: type, path: str, name: str) -> Any:
    """The common case, fast: a scalar of exactly the right type."""
    if type(value) is tp:
        return value
    return _check(value, tp, f"{path}[{name!r}]")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _check(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        return _check(value, next(o for o in options if o is not type(None)), path)
    if origin is list:
        if not isinstance(value, list):
            raise FieldError(path, f"must be list, not {type(value).__name__}")
        (item_tp,) = typing.get_args(tp)
        return [_check(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise FieldError(path, f"must be {_type_name(tp)}, not {type(value).__name__}")
    return value


@functools.cache
def _schema(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, type, required) for each field: computed once per class, not per message."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name],
                  f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
                 for f in dataclasses.fields(cls))


def _build(cls: type, body: Any, path: str) -> Any:
    if not isinstance(body, dict):
        raise FieldError(path, f"must be map, not {type(body).__name__}")
    schema = _schema(cls)
    kwargs = {}
    for name, tp, required in schema:
        if name not in body:
            if not required:
                continue
            raise FieldError(f"{path}[{name!r}]", "is missing")
        value = body[name]
        if tp in _PLAIN:
            kwargs[name] = _plain(value, tp, path, name)
        else:
            kwargs[name] = _check(value, tp, f"{path}[{name!r}]")
    extra = set(body) - {name for name, _, _ in schema}
    if extra:
        raise FieldError(f"{path}[{sorted(map(str, extra))[0]!r}]", "is not a field")
    return cls(**kwargs)
