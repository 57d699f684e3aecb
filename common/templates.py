"""Filling the documented configuration templates of deploy/templates with values.

A template is a TOML file whose comments document every key. Filling one keeps the comments:
a key's line (`key = ...` or the commented default `# key = ...`) in the right table is replaced,
and the example `[[gateways]]` and `[[members]]` tables of the coalition template are repeated
for each host.

`write_coalition` makes a whole coalition's keys and files in one directory this way: the lab,
`lanon init` (trials and demo setups) and docker-compose's init step (which runs `lanon init`)
use it. On real hosts, each host makes its own key with `lanon keygen` and the operator
assembles the coalition file from the template by hand (deploy/README.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lanon.common.crypto import HostKey, encode_key, write_private_key, write_public_key
from lanon.common.errors import LanonError
from lanon.common.settings import is_name
from lanon.common.sodium import AES_GCM_MISSING
from lanon.deploy import path as deploy_path

Values = dict[str, Any]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


_TABLE = re.compile(r"^\s*\[\[?([A-Za-z0-9_.-]+)\]\]?\s*$")


def set_keys(text: str, values: Values, table: str | None = None) -> str:
    """Set `values` in `table` (None: the top level) of a TOML text, keeping its comments."""
    lines = text.split("\n")
    current: str | None = None
    todo = dict(values)
    end = len(lines)  # where the table ends, for keys the template does not mention
    for i, line in enumerate(lines):
        m = _TABLE.match(line)
        if m:
            if current == table and todo:
                end = i
            current = m.group(1)
            continue
        if current != table:
            continue
        for key in list(todo):
            if re.match(rf"^#?\s*{re.escape(key)}\s*=", line):
                lines[i] = f"{key} = {toml_value(todo.pop(key))}"
    if todo:
        while end > 0 and not lines[end - 1].strip():
            end -= 1
        lines[end:end] = [f"{k} = {toml_value(v)}" for k, v in todo.items()]
    return "\n".join(lines)


def template(name: str) -> str:
    return deploy_path("templates", name).read_text()


def daemon_file(role: str, values: Values) -> str:
    """A member or gateway file from its template."""
    return set_keys(template(f"{role}.toml"), values)


def coalition_file(
    sections: dict[str, Values], gateways: list[Values], members: list[Values]
) -> str:
    """A coalition file from its template: sections' values set, one table per host."""
    text = template("coalition.toml")
    head, rest = text.split("\n[[gateways]]\n", 1)
    gateway_block, rest = rest.split("\n# --- members", 1)
    members_intro, member_block = rest.split("\n[[members]]\n", 1)
    for table, values in sections.items():
        head = set_keys(head, values, table)
    out = [head]
    for g in gateways:
        out.append(set_keys("[[gateways]]\n" + gateway_block.rstrip("\n") + "\n", g, "gateways"))
    out.append("# --- members" + members_intro + "\n")
    for m in members:
        out.append(set_keys("[[members]]\n" + member_block.rstrip("\n") + "\n", m, "members"))
    return "\n".join(out)


def write_coalition(
    dest: Path,
    name: str,
    lan: str,
    gateways: list[tuple[str, str]],
    members: list[str],
    *,
    sections: dict[str, Values] | None = None,
    daemon: Callable[[str, str], Values] | None = None,
    operators: dict[str, str] | None = None,
) -> dict[str, HostKey]:
    """Keys in dest/keys, dest/coalition.toml, and dest/<host>.toml for every host.

    `gateways` are (name, share: prefixes separated by commas); `daemon(role, name)` gives a
    host's own settings; `operators` gives gateways' operators (default: their names). The
    template's AES-256-GCM for INBOUND frames becomes ChaCha20-Poly1305 where this machine
    cannot run it (a virtual machine without AES-NI): its labs and trials run here.
    """
    hosts = [(g, "gateway") for g, _ in gateways] + [(m, "member") for m in members]
    for host, _ in hosts:
        expected = is_name(host)
        if expected:
            raise LanonError(f"host name {host!r}: expected {expected}")
    keys = {host: HostKey.generate() for host, _ in hosts}
    kdir = dest / "keys"
    kdir.mkdir(parents=True, mode=0o700, exist_ok=True)
    for host, key in keys.items():
        write_private_key(kdir / f"{host}.key", key, f"{host} of coalition {name}")
        write_public_key(kdir / f"{host}.pub", key, f"{host} of coalition {name}")
    all_sections: dict[str, Values] = {"coalition": {"name": name, "lan": lan}}
    if AES_GCM_MISSING is not None:
        all_sections["coalition"]["inbound_cipher"] = "chacha20-poly1305"
    for table, values in (sections or {}).items():
        all_sections.setdefault(table, {}).update(values)
    text = coalition_file(
        all_sections,
        [
            {
                "name": g,
                "public_key": encode_key(keys[g].public),
                "addresses": share.split(","),
                **({"operator": operators[g]} if operators and g in operators else {}),
            }
            for g, share in gateways
        ],
        [{"name": m, "public_key": encode_key(keys[m].public)} for m in members],
    )
    (dest / "coalition.toml").write_text(text)
    for host, role in hosts:
        own: Values = {
            "coalition": "coalition.toml",
            "name": host,
            "private_key": f"keys/{host}.key",
        }
        own.update(daemon(role, host) if daemon else {})
        (dest / f"{host}.toml").write_text(daemon_file(role, own))
    return keys
