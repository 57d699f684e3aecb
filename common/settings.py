"""Typed settings tables: every key has a type, a default and a help line (ExaBGP style).

A settings class is a frozen dataclass whose fields carry `opt(...)` metadata. `load_table`
checks a TOML table against it once, at start, and raises ConfigError naming the file, the
table, the key, the value and what was expected. A field typed as an `enum.Enum` of strings
takes one of its values in the file and holds the member.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar

from lanon.common.errors import ConfigError

T = TypeVar("T")
Check = Callable[[Any], str | None]  # returns what was expected, or None if the value is fine

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def opt(default: Any, help: str, check: Check | None = None) -> Any:
    """A documented setting with a default (use REQUIRED for none)."""
    meta = {"help": help, "check": check}
    if default is REQUIRED:
        return field(metadata=meta)
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


def between(lo: float, hi: float) -> Check:
    return lambda v: None if lo <= v <= hi else f"a number from {lo} to {hi}"


def one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else "one of " + ", ".join(repr(c) for c in choices)


def is_name(v: str) -> str | None:
    return None if NAME_RE.match(v) else "a name of lowercase letters, digits, '-' or '_'"


def is_network(v: str) -> str | None:
    try:
        ipaddress.IPv4Network(v, strict=True)
    except ValueError:
        return "an IPv4 prefix such as 198.18.0.0/24 (host bits zero)"
    return None


def is_address(v: str) -> str | None:
    try:
        ipaddress.IPv4Address(v)
    except ValueError:
        return "an IPv4 address such as 198.19.255.254"
    return None


def or_empty(check: Check) -> Check:
    """`check`, or '' for a setting left unset."""

    def checked(v: Any) -> str | None:
        expected = None if v == "" else check(v)
        return f"{expected}, or '' for none" if expected else None

    return checked


def is_listen(v: str) -> str | None:
    if v == "":
        return None
    host, sep, port = v.rpartition(":")
    if sep and port.isdigit() and 0 < int(port) < 65536:
        try:
            ipaddress.IPv4Address(host or "0.0.0.0")
        except ValueError:
            pass
        else:
            return None
    return "'ADDRESS:PORT' such as 198.18.0.11:9551, ':PORT' for the address of `interface`, or '' for none"


def _is_enum(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, enum.Enum)


def _table_class(hint: Any) -> Any:
    """The settings class of a [table] setting (`Cls` or `Cls | None`), or None."""
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        inner = [h for h in typing.get_args(hint) if dataclasses.is_dataclass(h)]
        return inner[0] if inner else None
    return None


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):  # a [table], checked by load_table
        return isinstance(value, Mapping)
    if _is_enum(hint):
        return isinstance(value, str) and value in {m.value for m in hint}
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        (inner,) = typing.get_args(hint)
        if dataclasses.is_dataclass(inner):  # an array of tables, each checked by load_table
            return isinstance(value, list) and all(isinstance(v, Mapping) for v in value)
        return isinstance(value, list) and all(_type_ok(v, inner) for v in value)
    if origin in (types.UnionType, typing.Union):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if origin is tuple:
        args = typing.get_args(hint)
        return (
            isinstance(value, list)
            and len(value) == len(args)
            and all(_type_ok(v, h) for v, h in zip(value, args, strict=True))
        )
    raise TypeError(f"unsupported settings type {hint!r}")


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if _table_class(hint) is not None:
        return "a table"
    if _is_enum(hint):
        return "one of " + ", ".join(repr(m.value) for m in hint)
    if origin is list:
        inner = typing.get_args(hint)[0]
        if dataclasses.is_dataclass(inner):
            return "an array of tables"
        plural = {str: "strings", int: "integers", float: "numbers", bool: "booleans"}
        return "a list of " + plural.get(inner, _describe(inner))
    if origin is tuple:
        return "a pair [" + ", ".join(_describe(h) for h in typing.get_args(hint)) + "]"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, str(hint)
    )


def load_table(cls: type[T], table: Any, where: str) -> T:
    """Build settings class `cls` from a TOML table, or raise ConfigError."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: expected a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; expected one of: {', '.join(sorted(fields))}"
        )
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in table:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing key {name!r} ({f.metadata.get('help', '')})")
            continue
        value = table[name]
        hint = hints[name]
        if not _type_ok(value, hint):
            raise ConfigError(f"{where}: {name} = {value!r}: expected {_describe(hint)}")
        if hint is float:
            value = float(value)
        elif (table_cls := _table_class(hint)) is not None and isinstance(value, Mapping):
            value = load_table(table_cls, value, f"{where}: [{name}]")
        elif _is_enum(hint):
            value = hint(value)
        elif typing.get_origin(hint) is list and dataclasses.is_dataclass(
            inner := typing.get_args(hint)[0]
        ):
            value = [
                load_table(inner, item, f"{where}: [[{name}]] #{i + 1}")  # type: ignore[arg-type]
                for i, item in enumerate(value)
            ]
        check = f.metadata.get("check")
        if check is not None:
            items = value if typing.get_origin(hint) is list else [value]
            for item in items:
                expected = check(item)
                if expected:
                    raise ConfigError(f"{where}: {name} = {item!r}: expected {expected}")
        values[name] = value
    return cls(**values)


def describe(cls: type[Any], prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, help) for every setting of cls, for documentation and --help."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if (table_cls := _table_class(hints[f.name])) is not None:  # its keys, each
            rows.extend(describe(table_cls, f"{prefix}[{f.name}] "))
            continue
        if f.default is not dataclasses.MISSING:
            plain = f.default.value if isinstance(f.default, enum.Enum) else f.default
            default = repr(plain)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        rows.append((prefix + f.name, default, f.metadata.get("help", "")))
    return rows


def resolve(base: Path, value: str) -> Path:
    """A path setting, relative to the directory of the file that names it."""
    p = Path(value)
    return p if p.is_absolute() else (base / p)
