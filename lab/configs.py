"""Configuration files the lab writes for its hosts (the same format operators write)."""

from __future__ import annotations


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def coalition_toml(
    name: str,
    lan: str,
    members: list[tuple[str, str]],
    gateways: list[tuple[str, str, str]],
    *,
    idle_interval: float,
    deadline: float,
    min_members: int,
    epoch_seconds: float = 600.0,
) -> str:
    lines = [
        f"# lanon coalition file of lab {name}: every host of the coalition loads this same file",
        "[coalition]",
        f"name = {_q(name)}",
        f"lan = {_q(lan)}",
        f"min_members = {min_members}",
        "",
        "[rounds]",
        f"idle_interval = {idle_interval}",
        f"deadline = {deadline}",
        f"epoch_seconds = {epoch_seconds}",
        "clock_tolerance = 0.5  # the lab's hosts share one clock",
        "",
        "[key_graph]",
        'kind = "full"',
        "",
    ]
    for gname, key, share in gateways:
        lines += [
            "[[gateways]]",
            f"name = {_q(gname)}",
            f"public_key = {_q(key)}",
            f"addresses = [{_q(share)}]",
            "",
        ]
    for mname, key in members:
        lines += ["[[members]]", f"name = {_q(mname)}", f"public_key = {_q(key)}", ""]
    return "\n".join(lines)


def daemon_toml(
    role: str, name: str, *, coalition: str, key: str, metrics: str, control: str
) -> str:
    return "\n".join(
        [
            f"# lanon {role} {name}",
            f"coalition = {_q(coalition)}",
            f"name = {_q(name)}",
            f"private_key = {_q(key)}",
            'interface = "eth0"',
            f"metrics = {_q(metrics)}",
            f"control_socket = {_q(control)}",
            "",
        ]
    )
