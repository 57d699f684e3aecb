"""Daemon configuration files (one TOML file per daemon), loaded and checked once at start."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lanon.common import coalition as coalition_mod
from lanon.common.coalition import Coalition
from lanon.common.crypto import HostKey, encode_key, read_private_key
from lanon.common.errors import ConfigError
from lanon.common.settings import (
    REQUIRED,
    is_listen,
    is_name,
    is_network,
    load_table,
    one_of,
    opt,
    resolve,
)


def is_ifname(v: str) -> str | None:
    ok = 0 < len(v) < 16 and "/" not in v and not any(c.isspace() for c in v)
    return None if ok else "an interface name of 1 to 15 characters"


@dataclass(frozen=True)
class DaemonSettings:
    coalition: str = opt(REQUIRED, "path of the coalition file (relative to this file)")
    name: str = opt(REQUIRED, "this host's name in the coalition file", is_name)
    private_key: str = opt(
        REQUIRED, "path of this host's private key, mode 0600 (relative to this file)"
    )
    interface: str = opt("eth0", "the LAN interface", is_ifname)
    metrics: str = opt(
        "",
        "ADDRESS:PORT where Prometheus metrics are served; ':PORT' serves them on the IPv4 "
        "address of `interface` (looked up at start); '' for none",
        is_listen,
    )
    metrics_clients: list[str] = opt(
        [],
        "prefixes of the hosts that may read the metrics (where Prometheus runs); empty: the "
        "coalition's LAN prefix. Other hosts' connections are closed unanswered",
        is_network,
    )
    control_socket: str = opt("", "unix socket path for 'lanon status', '' for none")
    log_level: str = opt("info", "log level", one_of("debug", "info", "warning", "error"))


S = TypeVar("S", bound=DaemonSettings)


@dataclass(frozen=True)
class Loaded:
    path: Path
    coalition: Coalition
    key: HostKey
    key_path: Path | None = None
    next_key: HostKey | None = None  # `lanon rekey` made it: a version is to give it


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load(cls: type[S], path: Path, role: str) -> tuple[S, Loaded]:
    """Settings of class `cls` from `path`, with the coalition file and key it names, checked
    against each other: the name is a `role` of the coalition and the key is that host's."""
    settings = load_table(cls, read_toml(path), str(path))
    base = path.parent
    coalition = coalition_mod.load(resolve(base, settings.coalition))
    hosts = coalition.members if role == "member" else coalition.gateways
    key_path = resolve(base, settings.private_key)
    key = read_private_key(key_path)
    next_path = next_key_path(key_path)
    next_key = read_private_key(next_path) if next_path.exists() else None
    listed = {h.name: h.public for h in hosts}
    if next_key is not None and listed.get(settings.name) == next_key.public != key.public:
        next_path.replace(key_path)  # a version gave the key lanon rekey made: ours now
        key, next_key = next_key, None
    if role == "member" and coalition.versioned and listed.get(settings.name) != key.public:
        # Not (yet) in the coalition with this key: the daemon asks to join (member/engine.py)
        return settings, Loaded(path, coalition, key, key_path, next_key)
    if settings.name not in listed:
        raise ConfigError(
            f"{path}: name = {settings.name!r}: expected the name of a {role} of {coalition.path} "
            f"({', '.join(h.name for h in hosts)})"
        )
    peer = coalition.member(settings.name) if role == "member" else coalition.gateway(settings.name)
    if key.public != peer.public:
        raise ConfigError(
            f"{key_path}: this key is not {role} {settings.name}'s: its public key "
            f"{encode_key(key.public)} is not the one in {coalition.path}"
        )
    return settings, Loaded(path, coalition, key, key_path, next_key)


def next_key_path(key_path: Path) -> Path:
    """Where `lanon rekey` keeps the key it made until a version gives it."""
    return key_path.with_name(key_path.name + ".next")


def control_path(settings: DaemonSettings, base: Path) -> Path | None:
    return resolve(base, settings.control_socket) if settings.control_socket else None
