"""The gateway host's rules: its own stack never touches an anonymous address.

Packets to anonymous addresses are dropped in the raw table, before conntrack and routing:
the daemon has already captured them on its packet socket, and the kernel must not answer
them (no RST, no ICMP). Packets the daemon emits from anonymous addresses are not tracked.

They need only the coalition file (its anonymous addresses): the daemon installs them before it
reads its key (`install_first`), the boot unit before any network is up (`lanon rules install
gateway`), and the daemon's watch puts them back if anything removes them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from lanon.common import iptables
from lanon.common.coalition import Coalition
from lanon.common.errors import ConfigError
from lanon.common.iptables import Jump, RuleSet

CHAIN_IN = "LANON_GW_IN"
CHAIN_OUT = "LANON_GW_OUT"
JUMPS = (Jump("raw", "PREROUTING", CHAIN_IN), Jump("raw", "OUTPUT", CHAIN_OUT))


def ruleset(prefixes: Iterable[str]) -> str:
    """deploy/iptables/gateway.rules, with its @PREFIX@ lines written for every prefix."""
    return iptables.shipped_rules("gateway.rules", {}, repeat={"PREFIX": list(prefixes)})


def prefixes(coalition: Coalition) -> list[str]:
    """The coalition's anonymous addresses, as the rules name them."""
    return sorted({f"{a}/32" for a in coalition.anonymous})


def from_config(path: Path) -> list[str]:
    """The prefixes a gateway file's coalition file gives: its anonymous addresses. Only the
    coalition file is read (not the key). Raises ConfigError."""
    from lanon.common import coalition as coalition_mod
    from lanon.common.daemon_config import read_toml
    from lanon.common.settings import resolve

    name = read_toml(path).get("coalition")
    if not isinstance(name, str):
        raise ConfigError(f"{path}: coalition = {name!r}: expected the coalition file's path")
    return prefixes(coalition_mod.load(resolve(path.parent, name)))


def rulesets(prefixes: Iterable[str]) -> tuple[RuleSet]:
    return (RuleSet(4, ruleset(prefixes), JUMPS),)


def install(prefixes: Iterable[str]) -> list[Jump]:
    """Install (or refresh) the rules; returns the jumps that were missing."""
    return iptables.install(rulesets(prefixes))


def remove() -> None:
    for j in JUMPS:
        iptables.remove_chain(4, *j)


def install_first(path: Path, log: logging.Logger) -> None:
    """The rules, before the daemon reads anything else (its key): from the coalition file
    that the gateway file names. Without it there is nothing to protect (a gateway claims no
    address before it has its configuration): say so and install nothing. Never removes
    anything."""
    from lanon.common.daemon_config import read_toml

    try:
        manage = read_toml(path).get("manage_rules", True)
        own = from_config(path)
    except ConfigError as exc:
        log.error("%s; no quiet-stack rules installed (the gateway claims nothing without it)", exc)
        return
    if manage is not False:
        install(own)
