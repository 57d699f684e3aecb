"""Filling the documented configuration templates of deploy/templates with values.

A template is a TOML file whose comments document every key. Filling one keeps the comments:
a key's line (`key = ...` or the commented default `# key = ...`) in the right table is replaced,
and the example `[[gateways]]` and `[[members]]` tables of the coalition template are repeated
for each host. The lab, `lanon init` and docker-compose all make their files this way.
"""

from __future__ import annotations

import json
import re
from typing import Any

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
