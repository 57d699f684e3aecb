"""Running iptables: restore a ruleset into our own chains, and add or remove the jumps to them.

There is no netlink library for xtables rules (pyroute2 speaks nftables, whose `queue`
statement this kernel lacks), so the iptables tools are run; their output is never parsed.
"""

from __future__ import annotations

import shutil
import subprocess

from lanon.common.errors import PrerequisiteError


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise PrerequisiteError(f"{name} is missing: install the 'iptables' package")
    return path


def run(args: list[str], stdin: str | None = None, check: bool = True) -> bool:
    try:
        proc = subprocess.run(args, input=stdin, text=True, capture_output=True, timeout=30)
    except FileNotFoundError as exc:
        raise PrerequisiteError(f"{args[0]} is missing: {exc}") from None
    if check and proc.returncode != 0:
        raise PrerequisiteError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.returncode == 0


def restore(family: int, ruleset: str) -> None:
    """Load a ruleset without flushing anything but the chains it declares."""
    run(
        [tool("iptables-restore" if family == 4 else "ip6tables-restore"), "-w", "--noflush"],
        ruleset,
    )


def ensure_jump(family: int, table: str, builtin: str, chain: str) -> None:
    ipt = tool("iptables" if family == 4 else "ip6tables")
    if not run([ipt, "-w", "-t", table, "-C", builtin, "-j", chain], check=False):
        run([ipt, "-w", "-t", table, "-I", builtin, "1", "-j", chain])


def remove_chain(family: int, table: str, builtin: str, chain: str) -> None:
    ipt = tool("iptables" if family == 4 else "ip6tables")
    while run([ipt, "-w", "-t", table, "-D", builtin, "-j", chain], check=False):
        pass
    run([ipt, "-w", "-t", table, "-F", chain], check=False)
    run([ipt, "-w", "-t", table, "-X", chain], check=False)


def has_jump(family: int, table: str, builtin: str, chain: str) -> bool:
    ipt = tool("iptables" if family == 4 else "ip6tables")
    return run([ipt, "-w", "-t", table, "-C", builtin, "-j", chain], check=False)


def shipped_rules(
    name: str, values: dict[str, str], repeat: dict[str, list[str]] | None = None
) -> str:
    """A rules file of deploy/iptables with @NAME@ placeholders filled; a line holding a
    placeholder of `repeat` is written once for each of its values."""
    from lanon.deploy import path as deploy_path

    out = []
    for line in deploy_path("iptables", name).read_text().splitlines():
        rows = [line]
        for key, options in (repeat or {}).items():
            if f"@{key}@" in line:
                rows = [r.replace(f"@{key}@", v) for r in rows for v in options]
        for key, value in values.items():
            rows = [r.replace(f"@{key}@", value) for r in rows]
        out.extend(rows)
    text = "\n".join(out) + "\n"
    if "@" in "".join(line for line in out if not line.startswith("#")):
        raise ValueError(f"{name}: a placeholder was left unfilled")
    return text
