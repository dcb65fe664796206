"""Typed loading of plain data into dataclasses, with errors that name the key.

A tiny, strict cousin of pydantic: enough for the recipe, and no dependency. Supported field
types: bool, int, float, str, `X | None`, `list[X]`, `dict[str, Any]`, `Literal[...]` and nested
dataclasses.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

from edgekd.errors import EdgekdError


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass `cls` from `data`, rejecting unknown keys and wrong types.

    `where` is the dotted path of `data` inside the whole document, used in error messages.
    """
    if dataclasses.is_dataclass(data):
        data = dataclasses.asdict(data)
    if not isinstance(data, dict):
        raise EdgekdError(f"recipe key '{where or '<top>'}' must be a mapping, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = _join(where, unknown[0])
        raise EdgekdError(f"unknown recipe key '{key}' (known here: {', '.join(fields)})")
    values = {}
    for name, field in fields.items():
        key = _join(where, name)
        if name in data:
            values[name] = convert(hints[name], data[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise EdgekdError(f"recipe key '{key}' is required")
    try:
        return cls(**values)
    except EdgekdError:
        raise
    except (TypeError, ValueError) as exc:
        raise EdgekdError(f"recipe section '{where or '<top>'}': {exc}") from None


def convert(hint: Any, value: Any, key: str) -> Any:
    """Convert `value` to the type `hint`, or raise an error naming `key`."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        candidates = [a for a in args if a is not type(None)]
        errors = []
        for candidate in candidates:
            try:
                return convert(candidate, value, key)
            except EdgekdError as exc:
                # A mapping given for a section: its own error (naming the inner key) is the useful one.
                if isinstance(value, dict) and dataclasses.is_dataclass(candidate):
                    raise
                errors.append(str(exc))
        raise EdgekdError(errors[0] if len(errors) == 1 else
                          f"recipe key '{key}' has an unsupported value {value!r}")
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise EdgekdError(f"recipe key '{key}' must be one of {choices}, got {value!r}")
        return value
    if origin is list:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]   # `--set bench.threads=2` means [2]
        if not isinstance(value, (list, tuple)):
            raise EdgekdError(f"recipe key '{key}' must be a list, got {_kind(value)}")
        return [convert(args[0], item, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise EdgekdError(f"recipe key '{key}' must be a mapping, got {_kind(value)}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `2e-3` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    else:  # pragma: no cover - a programming error in a dataclass definition
        raise TypeError(f"unsupported field type {hint!r} for {key}")
    raise EdgekdError(f"recipe key '{key}' must be {hint.__name__}, got {_kind(value)} {value!r}")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
