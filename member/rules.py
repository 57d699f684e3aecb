"""The member host's packet filter rules: outbound Internet traffic goes to NFQUEUE, fail-closed.

There is no --queue-bypass: with no daemon bound to the queue, the kernel drops the packets,
so nothing leaves with the member's real address. IPv6 beyond the link is refused (lanon
carries IPv4 only). Conntrack is kept out of the carried flows: their packets leave through the
DC-net and come back through the TUN device, which conntrack would see as unrelated.

The rules are the files deploy/iptables/member.rules and member6.rules as they ship. They live
in chains of their own (LANON_OUT, LANON_RAW, LANON_OUT6) with one jump each from the built-in
chains, so installing and removing them touches nothing else.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from lanon.common import iptables

CHAIN = "LANON_OUT"
RAW_CHAIN = "LANON_RAW"
CHAIN6 = "LANON_OUT6"

# (table, built-in chain, our chain): the jumps into our chains
JUMPS_V4 = (
    ("raw", "OUTPUT", RAW_CHAIN),
    ("raw", "PREROUTING", RAW_CHAIN + "_IN"),
    ("filter", "OUTPUT", CHAIN),
)


@dataclass(frozen=True)
class MemberRules:
    """deploy/iptables/member.rules and member6.rules, filled in for this host."""

    lan: str
    queue: int
    tun: str

    def ipv4(self) -> str:
        ipaddress.IPv4Network(self.lan)
        return iptables.shipped_rules(
            "member.rules", {"LAN": self.lan, "QUEUE": str(self.queue), "TUN": self.tun}
        )

    def ipv6(self) -> str:
        return iptables.shipped_rules("member6.rules", {})


def install(rules: MemberRules) -> None:
    """Install (or refresh) the rules; each jump is added first in its chain, once."""
    iptables.restore(4, rules.ipv4())
    for table, builtin, chain in JUMPS_V4:
        iptables.ensure_jump(4, table, builtin, chain)
    iptables.restore(6, rules.ipv6())
    iptables.ensure_jump(6, "filter", "OUTPUT", CHAIN6)


def remove() -> None:
    """Remove our chains and jumps (the host is open again: only on an operator's request)."""
    for table, builtin, chain in JUMPS_V4:
        iptables.remove_chain(4, table, builtin, chain)
    iptables.remove_chain(6, "filter", "OUTPUT", CHAIN6)


def installed() -> bool:
    return iptables.has_jump(4, "filter", "OUTPUT", CHAIN)
