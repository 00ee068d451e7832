"""Build frozen, typed config objects from plain mappings, with errors that name the key.

Dataclass fields may carry ``metadata={"ge": .., "le": .., "gt": .., "lt": .., "choices": ..}``;
unknown keys, missing keys, wrong types and out-of-range values raise
:class:`~sandbox.errors.SandboxInputError` naming the dotted key and the bad value. A renamed
field carries ``"alias": "<old name>"``: the old key is read as the field (configs and run
folders written before the rename), and giving both is refused.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from sandbox.errors import SandboxInputError

T = TypeVar("T")


def _fail(path: str, msg: str) -> typing.NoReturn:
    raise SandboxInputError(f"config key '{path}': {msg}")


def _check_range(path: str, value: float, meta: Mapping[str, Any]) -> None:
    if isinstance(value, float) and value != value:
        _fail(path, "is NaN")
    if "ge" in meta and value < meta["ge"]:
        _fail(path, f"{value!r} is below the minimum {meta['ge']}")
    if "gt" in meta and value <= meta["gt"]:
        _fail(path, f"{value!r} must be greater than {meta['gt']}")
    if "le" in meta and value > meta["le"]:
        _fail(path, f"{value!r} is above the maximum {meta['le']}")
    if "lt" in meta and value >= meta["lt"]:
        _fail(path, f"{value!r} must be less than {meta['lt']}")


def _convert(tp: Any, value: Any, path: str, meta: Mapping[str, Any]) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path, meta)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # already built (a programme's own config type)
            return value
        return build(tp, value, path)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            _fail(path, f"expected a list, got {value!r}")
        (inner, *rest) = typing.get_args(tp)
        if rest and rest[0] is not Ellipsis:
            args = typing.get_args(tp)
            if len(value) != len(args):
                _fail(path, f"expected {len(args)} items, got {len(value)}")
            return tuple(
                _convert(a, v, f"{path}[{i}]", meta)
                for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
        return tuple(_convert(inner, v, f"{path}[{i}]", meta) for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            _fail(path, f"expected a mapping, got {value!r}")
        kt, vt = typing.get_args(tp) or (str, Any)
        return types.MappingProxyType(
            {str(k): _convert(vt, v, f"{path}.{k}", meta) for k, v in value.items()}
        )
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            _fail(path, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                _fail(path, f"expected an integer, got {value!r}")
        _check_range(path, value, meta)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(path, f"expected a number, got {value!r}")
        value = float(value)
        if value in (float("inf"), float("-inf")):
            _fail(path, "must be finite")
        _check_range(path, value, meta)
        return value
    if tp is str:
        if not isinstance(value, str):
            _fail(path, f"expected text, got {value!r}")
        if "choices" in meta and value not in meta["choices"]:
            _fail(path, f"{value!r} is not one of {', '.join(meta['choices'])}")
        return value
    return value


def build(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, validating every field recursively."""
    if not isinstance(data, Mapping):
        _fail(path or cls.__name__, f"expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    aliases = {f.metadata["alias"]: name for name, f in fields.items() if "alias" in f.metadata}
    if aliases.keys() & data.keys():
        data = dict(data)
        for old, name in aliases.items():
            if old in data:
                if name in data:
                    where = f"{path}.{old}" if path else old
                    _fail(where, f"is the old name of {name}; give one of them")
                data[name] = data.pop(old)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        _fail(where, f"unknown key (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{path}.{name}" if path else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                _fail(key, "is required")
            continue
        kwargs[name] = _convert(hints[name], data[name], key, f.metadata)
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        check(path)
    return obj


def fail(path: str, msg: str) -> typing.NoReturn:
    """Raise the standard one-line config error (for cross-field checks in ``check``)."""
    _fail(path, msg)


def to_dict(obj: Any) -> Any:
    """Plain, YAML-safe form of a config object."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [to_dict(v) for v in obj]
    return obj
