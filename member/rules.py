"""The member host's packet filter rules: outbound Internet traffic goes to NFQUEUE, fail-closed.

There is no --queue-bypass: with no daemon bound to the queue, the kernel drops the packets,
so nothing leaves with the member's real address. IPv6 beyond the link is refused (lanon
carries IPv4 only). Conntrack is kept out of the carried flows: their packets leave through the
DC-net and come back through the TUN device, which conntrack would see as unrelated.

Rules live in chains of their own (LANON_OUT, LANON_RAW, LANON_OUT6) with one jump each from
the built-in chains, so installing and removing them touches nothing else.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from lanon.common import iptables

CHAIN = "LANON_OUT"
RAW_CHAIN = "LANON_RAW"
CHAIN6 = "LANON_OUT6"

IPV4_TEMPLATE = """\
# lanon member rules (iptables-restore --noflush): outbound Internet traffic to NFQUEUE {queue}
*raw
:{raw_chain} - [0:0]
:{raw_chain}_IN - [0:0]
-A {raw_chain} -o lo -j RETURN
-A {raw_chain} -d {lan} -j RETURN
-A {raw_chain} -j CT --notrack
-A {raw_chain}_IN -i {tun} -j CT --notrack
COMMIT
*filter
:{chain} - [0:0]
-A {chain} -o lo -j RETURN
-A {chain} -d {lan} -j RETURN
-A {chain} -d 255.255.255.255/32 -j RETURN
-A {chain} -d 224.0.0.0/4 -j RETURN
-A {chain} -p udp --sport 68 --dport 67 -j RETURN
-A {chain} -j NFQUEUE --queue-num {queue}
COMMIT
"""

IPV6_TEMPLATE = """\
# lanon member rules (ip6tables-restore --noflush): lanon carries IPv4 only
*filter
:{chain6} - [0:0]
-A {chain6} -o lo -j RETURN
-A {chain6} -d fe80::/10 -j RETURN
-A {chain6} -d ff00::/8 -j RETURN
-A {chain6} -j REJECT --reject-with icmp6-adm-prohibited
COMMIT
"""

# (table, built-in chain, our chain): the jumps into our chains
JUMPS_V4 = (
    ("raw", "OUTPUT", RAW_CHAIN),
    ("raw", "PREROUTING", RAW_CHAIN + "_IN"),
    ("filter", "OUTPUT", CHAIN),
)


@dataclass(frozen=True)
class MemberRules:
    lan: str
    queue: int
    tun: str

    def ipv4(self) -> str:
        ipaddress.IPv4Network(self.lan)
        return IPV4_TEMPLATE.format(
            queue=self.queue, lan=self.lan, tun=self.tun, chain=CHAIN, raw_chain=RAW_CHAIN
        )

    def ipv6(self) -> str:
        return IPV6_TEMPLATE.format(chain6=CHAIN6)


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
