"""What an administrator does to a coalition file (lanon admin): the next version, with a
member added, removed or given a new key, a gateway's share changed, signed.

The file is edited as text, table by table, so that its comments stay. Every edit strips the
signatures (they signed the old content) and raises the version; `sign` adds one.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from lanon.common.coalition import (
    Coalition,
    loads,
    signature_block,
    signed_message,
    split_signed,
)
from lanon.common.crypto import HostKey, encode_key
from lanon.common.errors import ConfigError
from lanon.common.templates import set_keys, toml_value
from lanon.common.versions import changes

_TABLE = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?$")


def _blocks(text: str) -> list[tuple[str | None, list[str]]]:
    """(table name, its lines) in order; the first block is what precedes any table."""
    out: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in text.split("\n"):
        m = _TABLE.match(line)
        if m:
            out.append((m.group(1), [line]))
        else:
            out[-1][1].append(line)
    return out


def _join(blocks: list[tuple[str | None, list[str]]]) -> str:
    return "\n".join(line for _, lines in blocks for line in lines)


def _named(lines: list[str], name: str) -> bool:
    quoted = f"(\"{re.escape(name)}\"|'{re.escape(name)}')"
    return any(re.match(rf"^\s*name\s*=\s*{quoted}\s*(#.*)?$", x) for x in lines)


def unsigned(text: str) -> str:
    return split_signed(text)[0]


def next_version(text: str, path: Path) -> str:
    """The same content, one version up and unsigned."""
    c = loads(text, path, signatures=False)
    return set_keys(unsigned(text), {"version": c.version + 1}, "coalition")


def add_host(text: str, kind: str, values: dict[str, object]) -> str:
    """A [[members]] or [[gateways]] table after the last one of its kind."""
    blocks = _blocks(text)
    table = [f"[[{kind}]]"] + [f"{k} = {toml_value(v)}" for k, v in values.items() if v] + [""]
    last = max((i for i, (t, _) in enumerate(blocks) if t == kind), default=len(blocks) - 1)
    if blocks[last][1] and blocks[last][1][-1].strip():
        blocks[last][1].append("")
    blocks.insert(last + 1, (kind, table))
    return _join(blocks)


def remove_host(text: str, kind: str, name: str) -> str:
    blocks = _blocks(text)
    kept = [b for b in blocks if not (b[0] == kind and _named(b[1], name))]
    if len(kept) == len(blocks):
        raise ConfigError(f"no [[{kind}]] named {name!r}")
    return _join(kept)


def set_host(text: str, kind: str, name: str, values: dict[str, object]) -> str:
    blocks = _blocks(text)
    for i, (table, lines) in enumerate(blocks):
        if table == kind and _named(lines, name):
            body = set_keys("\n".join(lines[1:]), values)
            blocks[i] = (table, [lines[0], *body.split("\n")])
            return _join(blocks)
    raise ConfigError(f"no [[{kind}]] named {name!r}")


def sign(text: str, path: Path, key: HostKey) -> str:
    """`text` with `key`'s signature of its body added (replacing one that key made)."""
    c = loads(text, path, signatures=False)
    if key.public not in c.admins:
        raise ConfigError(f"{path}: this key is not one of [admin] keys")
    body = c.text.split("\n[[signatures]]\n", 1)[0].rstrip() + "\n"
    others = {
        k: sig for k, sig in _signatures(c.text) if k != key.public
    }  # valid ones only: c.text keeps no other
    others[key.public] = key.sign(signed_message(body))
    return body + "".join(signature_block(k, others[k]) for k in c.admins if k in others)


def _signatures(text: str) -> list[tuple[bytes, bytes]]:
    import base64
    import tomllib

    raw = tomllib.loads(text)
    return [
        (base64.b64decode(e["key"]), base64.b64decode(e["signature"]))
        for e in raw.get("signatures", [])
    ]


def member_added(c: Coalition, name: str, public: bytes, address: str = "") -> str:
    if any(m.name == name for m in c.members) or any(g.name == name for g in c.gateways):
        raise ConfigError(f"{name!r} is already a host of coalition {c.coalition.name}")
    text = next_version(c.text, c.path)
    values: dict[str, object] = {"name": name, "public_key": encode_key(public), "address": address}
    return _checked(c, add_host(text, "members", values), ((name,), (), ()))


def member_removed(c: Coalition, name: str) -> str:
    c.member(name)
    return _checked(
        c, remove_host(next_version(c.text, c.path), "members", name), ((), (name,), ())
    )


def key_replaced(c: Coalition, name: str, public: bytes) -> str:
    kind = "members" if any(m.name == name for m in c.members) else "gateways"
    if kind == "gateways":
        c.gateway(name)
    text = set_host(next_version(c.text, c.path), kind, name, {"public_key": encode_key(public)})
    return _checked(c, text, ((), (), (name,)))


def _checked(c: Coalition, text: str, expected: tuple[tuple[str, ...], ...]) -> str:
    """The edited text, once its parse shows the change meant and no other (a file written
    in a way these edits do not foresee is edited by hand: lanon admin show, sign, publish)."""
    new = loads(text, c.path, signatures=False)
    same = [dataclasses.replace(x.coalition, version=0) for x in (c, new)]
    if (
        changes(c, new) != expected
        or same[0] != same[1]
        or (c.rounds, c.flows) != (new.rounds, new.flows)
    ):
        raise ConfigError(
            f"{c.path}: the edit would not change only what was asked; edit the file by hand "
            "(lanon admin show, lanon admin sign --next, lanon admin publish)"
        )
    return text
