"""The member host's packet filter rules: outbound Internet traffic goes to NFQUEUE, fail-closed.

There is no --queue-bypass: with no daemon bound to the queue, the kernel drops the packets,
so nothing leaves with the member's real address. Forwarded traffic (containers, VMs, a
hotspot) beyond the LAN is refused, unsolicited traffic from beyond the LAN to the host's own
address is dropped, and a safety net in the mangle table drops whatever would still leave
beyond the LAN, whatever the filter table says. IPv6 beyond the link is refused (lanon carries
IPv4 only). Conntrack is kept out of the carried flows: their packets leave through the DC-net
and come back through the TUN device, which conntrack would see as unrelated.

The rules are the files deploy/iptables/member.rules and member6.rules as they ship (and
member-closed.rules, for a host whose configuration cannot be read). They live in chains of
their own with one jump each from the built-in chains, inserted first, so installing and
removing them touches nothing else.

Order at start (issue 17): the rules go in before anything of the configuration that can fail
is read (`install_first`: the LAN prefix, the queue, the TUN device, the DHCP server), and
nothing but `lanon member --remove-rules` ever takes them away.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lanon.common import iptables
from lanon.common.errors import ConfigError
from lanon.common.iptables import Jump, RuleSet
from lanon.common.services import is_service, parse_service

CHAIN = "LANON_OUT"
RAW_CHAIN = "LANON_RAW"
CHAIN6 = "LANON_OUT6"

# the jumps into our chains, the safety net first
JUMPS_V4 = (
    Jump("mangle", "POSTROUTING", "LANON_POST"),
    Jump("filter", "OUTPUT", CHAIN),
    Jump("filter", "FORWARD", "LANON_FWD"),
    Jump("mangle", "INPUT", "LANON_IN"),
    Jump("raw", "OUTPUT", RAW_CHAIN),
    Jump("raw", "PREROUTING", RAW_CHAIN + "_IN"),
)
JUMPS_V6 = (
    Jump("mangle", "POSTROUTING", "LANON_POST6"),
    Jump("filter", "OUTPUT", CHAIN6),
    Jump("filter", "FORWARD", "LANON_FWD6"),
)
# What every member rule set, full or closed, has: the jumps and the safety net's last rule.
CORE_V4 = RuleSet(4, "*mangle\n-A LANON_POST -j DROP\nCOMMIT\n", JUMPS_V4)


@dataclass(frozen=True)
class MemberRules:
    """deploy/iptables/member.rules and member6.rules, filled in for this host."""

    lan: str
    queue: int
    tun: str
    dhcp_server: str = ""  # a DHCP server beyond the LAN, or ""
    direct: tuple[str, ...] = ()  # [lan_services] direct: reached with the host's own address
    tun_address: str = "198.19.255.254"  # reached through the TUN device only (services)

    def ipv4(self) -> str:
        ipaddress.IPv4Network(self.lan)
        dhcp = [str(ipaddress.IPv4Address(self.dhcp_server))] if self.dhcp_server else []
        direct = [m for text in self.direct for m in parse_service(text).match_rules()]
        tun_address = str(ipaddress.IPv4Address(self.tun_address))
        return iptables.shipped_rules(
            "member.rules",
            {
                "LAN": self.lan,
                "QUEUE": str(self.queue),
                "TUN": self.tun,
                "TUN_ADDRESS": tun_address,
            },
            repeat={"DHCP": dhcp, "DIRECT": direct},
        )

    def ipv6(self) -> str:
        return ipv6()

    def rulesets(self) -> tuple[RuleSet, RuleSet]:
        return RuleSet(4, self.ipv4(), JUMPS_V4), RuleSet(6, self.ipv6(), JUMPS_V6)


def ipv6() -> str:
    """member6.rules: the same for every member, whatever its configuration."""
    return iptables.shipped_rules("member6.rules", {})


def closed() -> tuple[RuleSet, RuleSet]:
    """member-closed.rules (and member6.rules): nothing beyond loopback and the link leaves;
    needs no configuration."""
    return (
        RuleSet(4, iptables.shipped_rules("member-closed.rules", {}), JUMPS_V4),
        RuleSet(6, ipv6(), JUMPS_V6),
    )


def install(rules: MemberRules | None) -> list[Jump]:
    """Install (or refresh) the rules, closed ones for None; each jump is added first in its
    chain, once. Returns the jumps that were missing."""
    return iptables.install(closed() if rules is None else rules.rulesets())


def remove() -> None:
    """Remove our chains and jumps (the host is open again: only on an operator's request)."""
    for rs in closed():
        rs.remove()


def installed() -> bool:
    return iptables.has_jump(4, "filter", "OUTPUT", CHAIN)


def in_place() -> bool:
    """Whether lanon member rules (full or closed) hold this host: every jump, and the safety
    net's final DROP."""
    return CORE_V4.intact()


def from_config(path: Path) -> tuple[MemberRules, bool]:
    """The rules a member file asks for, and whether the daemon manages them, read from the
    least of the file and its coalition file: nothing else of them (a key file, a setting the
    rules do not use) can keep the rules out. Raises ConfigError."""
    from lanon.common.daemon_config import read_toml
    from lanon.common.settings import is_network, load_table, resolve
    from lanon.member.config import MemberSettings

    raw = read_toml(path)
    part = _part(
        MemberSettings,
        ("coalition", "queue", "tun", "manage_rules", "dhcp_server", "tun_address"),
    )
    s = load_table(part, {k: v for k, v in raw.items() if k in _names(part)}, str(path))
    coalition_path = resolve(path.parent, s.coalition)
    section = read_toml(coalition_path).get("coalition")
    lan = section.get("lan") if isinstance(section, dict) else None
    expected = is_network(lan) if isinstance(lan, str) else "an IPv4 prefix such as 198.18.0.0/24"
    if not isinstance(lan, str) or expected:
        raise ConfigError(f"{coalition_path}: [coalition] lan = {lan!r}: expected {expected}")
    direct = _direct(coalition_path)
    return MemberRules(lan, s.queue, s.tun, s.dhcp_server, direct, s.tun_address), s.manage_rules


def _direct(coalition_path: Path) -> tuple[str, ...]:
    """[lan_services] direct, or none if it is not valid: fewer exceptions is the safe side
    (the daemon then refuses the file and says why)."""
    from lanon.common.daemon_config import read_toml

    section = read_toml(coalition_path).get("lan_services", {})
    entries = section.get("direct", []) if isinstance(section, dict) else None
    if not isinstance(entries, list) or any(
        not isinstance(e, str) or is_service(e) for e in entries
    ):
        return ()
    return tuple(entries)


def _part(cls: type[Any], names: tuple[str, ...]) -> type[Any]:
    """A settings class with only the named fields of `cls` (types, defaults and checks as there)."""
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        if f.name in names:
            kw: dict[str, Any] = {"metadata": f.metadata}
            if f.default is not dataclasses.MISSING:
                kw["default"] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                kw["default_factory"] = f.default_factory
            fields.append((f.name, hints[f.name], dataclasses.field(**kw)))
    return dataclasses.make_dataclass(cls.__name__ + "Part", fields, frozen=True, kw_only=True)


def _names(cls: type[Any]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def install_first(path: Path, log: logging.Logger) -> MemberRules | None:
    """The rules, before the daemon reads anything else: the full ones if the file gives their
    few settings, else `fall_back()`. Never removes anything. Returns the rules installed, None
    after a fall-back or when none were wanted (manage_rules = false)."""
    try:
        rules, manage = from_config(path)
    except ConfigError as exc:
        log.error("%s; %s", exc, fall_back())
        return None
    if not manage:
        return None
    install(rules)
    return rules


def fall_back() -> str:
    """For a host whose configuration cannot be read: the lanon rules in place (full or closed)
    stay; with none in place (as after a boot), the closed ones go in. Says what it did."""
    if in_place():
        iptables.install([RuleSet(6, ipv6(), JUMPS_V6)])
        return "the lanon rules in place stay: nothing leaves but through the lanon"
    install(None)
    return (
        "installed the closed rules: nothing leaves this host but loopback, broadcast, "
        "multicast and link-local traffic until the configuration is fixed"
    )
