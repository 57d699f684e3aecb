"""A whole coalition's keys and files in one directory, made from the shipped templates.

Used by the lab, by `lanon init` (trials and demo setups) and by docker-compose's init step. On
real hosts, each host makes its own key with `lanon keygen` and the operator assembles the
coalition file from the template by hand (deploy/README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lanon.common.crypto import HostKey, encode_key, write_private_key, write_public_key
from lanon.common.errors import LanonError
from lanon.common.settings import is_name
from lanon.common.templates import Values, coalition_file, daemon_file


def write_coalition(
    dest: Path,
    name: str,
    lan: str,
    gateways: list[tuple[str, str]],
    members: list[str],
    *,
    sections: dict[str, Values] | None = None,
    daemon: Callable[[str, str], Values] | None = None,
) -> dict[str, HostKey]:
    """Keys in dest/keys, dest/coalition.toml, and dest/<host>.toml for every host.

    `gateways` are (name, share: prefixes separated by commas); `daemon(role, name)` gives a
    host's own settings.
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
    all_sections = {"coalition": {"name": name, "lan": lan}}
    for table, values in (sections or {}).items():
        all_sections.setdefault(table, {}).update(values)
    text = coalition_file(
        all_sections,
        [
            {"name": g, "public_key": encode_key(keys[g].public), "addresses": share.split(",")}
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
