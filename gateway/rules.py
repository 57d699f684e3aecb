"""The gateway host's rules: its own stack never touches an anonymous address.

Packets to anonymous addresses are dropped in the raw table, before conntrack and routing:
the daemon has already captured them on its packet socket, and the kernel must not answer
them (no RST, no ICMP). Packets the daemon emits from anonymous addresses are not tracked.
"""

from __future__ import annotations

from collections.abc import Iterable

from lanon.common import iptables

CHAIN_IN = "LANON_GW_IN"
CHAIN_OUT = "LANON_GW_OUT"


def ruleset(prefixes: Iterable[str]) -> str:
    """deploy/iptables/gateway.rules, with its @PREFIX@ lines written for every prefix."""
    return iptables.shipped_rules("gateway.rules", {}, repeat={"PREFIX": list(prefixes)})


def install(prefixes: Iterable[str]) -> None:
    iptables.restore(4, ruleset(prefixes))
    iptables.ensure_jump(4, "raw", "PREROUTING", CHAIN_IN)
    iptables.ensure_jump(4, "raw", "OUTPUT", CHAIN_OUT)


def remove() -> None:
    iptables.remove_chain(4, "raw", "PREROUTING", CHAIN_IN)
    iptables.remove_chain(4, "raw", "OUTPUT", CHAIN_OUT)
