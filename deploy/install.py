"""`lanon deploy install`: put the shipped deployment files where a host uses them.

A `pip install` leaves the files of deploy/ inside the package, where no operator looks. This
copies them out, under `root` (default /, or a staging directory for a package build):

    systemd/*          -> /etc/systemd/system/     (ExecStart names the installed `lanon`)
    sysctl.d/*         -> /etc/sysctl.d/
    sysusers.d/*       -> /etc/sysusers.d/
    tmpfiles.d/*       -> /etc/tmpfiles.d/
    udev/*             -> /etc/udev/rules.d/
    README.md          -> /usr/share/doc/lanon/README.md   (the units' Documentation=)
    everything else    -> /usr/share/lanon/               (rules, templates, Prometheus, Grafana)

Units and sysctl files are lanon's own: an upgrade replaces them (change a unit with a drop-in,
`systemctl edit lanon-member`). Nothing is started, enabled or reloaded.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path

from lanon.deploy import path as deploy_path

SHARE = Path("usr/share/lanon")
DOC = Path("usr/share/doc/lanon")
PLACES = {
    "systemd": Path("etc/systemd/system"),
    "sysctl.d": Path("etc/sysctl.d"),
    "sysusers.d": Path("etc/sysusers.d"),
    "tmpfiles.d": Path("etc/tmpfiles.d"),
    "udev": Path("etc/udev/rules.d"),
}
SKIP = {"__init__.py", "install.py", "__pycache__"}
UNIT_LANON = "/opt/lanon/bin/lanon"  # where the shipped units expect lanon (deploy/README.md)


@dataclass(frozen=True)
class Installed:
    path: Path
    change: str  # "new", "replaced" or "unchanged"


def shipped() -> list[tuple[str, Traversable]]:
    """Every shipped deployment file, as (relative path, file)."""
    out: list[tuple[str, Traversable]] = []

    def walk(node: Traversable, rel: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name in SKIP or child.name.endswith(".pyc"):
                continue
            sub = f"{rel}/{child.name}" if rel else child.name
            if child.is_dir():
                walk(child, sub)
            else:
                out.append((sub, child))

    walk(deploy_path(), "")
    return out


def installed_lanon() -> str:
    """The `lanon` command of this installation (beside the running Python)."""
    found = shutil.which("lanon", path=str(Path(sys.executable).parent))
    return found or UNIT_LANON


def plan(lanon: str | None = None) -> list[tuple[Path, bytes]]:
    """(destination relative to the root, content) of every file to install."""
    lanon = lanon or installed_lanon()
    files: list[tuple[Path, bytes]] = []
    for rel, node in shipped():
        data = node.read_bytes()
        top, _, rest = rel.partition("/")
        if rel == "README.md":
            files.append((DOC / "README.md", data))
        if top in PLACES and rest and "/" not in rest:
            if top == "systemd":
                data = data.replace(UNIT_LANON.encode(), lanon.encode())
            files.append((PLACES[top] / rest, data))
        files.append((SHARE / rel, data))
    return files


def install(root: Path, lanon: str | None = None) -> list[Installed]:
    done = []
    for rel, data in plan(lanon):
        dest = root / rel
        old = dest.read_bytes() if dest.is_file() else None
        change = "new" if old is None else ("unchanged" if old == data else "replaced")
        if change != "unchanged":
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.lanon-tmp")
            tmp.write_bytes(data)
            tmp.chmod(0o644)
            tmp.replace(dest)
        done.append(Installed(dest, change))
    return done
