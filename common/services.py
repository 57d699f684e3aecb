"""LAN services in the coalition file ([lan_services]): which of the LAN's own servers members
reach, and how.

Members' traffic to the LAN is carried by the lanon like any other (issue 10.7): a resolver on
the router would otherwise see every member's queries under its real address. Two lists say
what else happens:

- `anonymous`: services gateways emit to from an anonymous address (the router's resolver);
  gateways refuse every other LAN destination.
- `direct`: services members reach with their own address (a printer, a file server that must
  know who asks); the member's rules let that traffic pass, and the service sees who sent it.

An entry is "address:port" (TCP and UDP) or "address:port/tcp", "address:port/udp".
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

PROTOCOLS = {"tcp": 6, "udp": 17}


@dataclass(frozen=True)
class LanService:
    address: ipaddress.IPv4Address
    port: int
    protocols: tuple[str, ...]  # "tcp", "udp"

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(PROTOCOLS[p] for p in self.protocols)

    def match_rules(self) -> list[str]:
        """iptables match fragments, one per protocol, for traffic to this service."""
        return [f"-d {self.address}/32 -p {p} -m {p} --dport {self.port}" for p in self.protocols]

    def __str__(self) -> str:
        suffix = "" if len(self.protocols) == 2 else f"/{self.protocols[0]}"
        return f"{self.address}:{self.port}{suffix}"


def parse_service(text: str) -> LanService:
    """'198.18.0.1:53', '198.18.0.1:53/udp'; ValueError with what is expected."""
    spec, _, proto = text.partition("/")
    address, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected address:port, optionally /tcp or /udp")
    if proto and proto not in PROTOCOLS:
        raise ValueError(f"protocol {proto!r}: expected tcp or udp")
    try:
        addr = ipaddress.IPv4Address(address)
    except ValueError:
        raise ValueError(f"{address!r} is not an IPv4 address") from None
    return LanService(addr, int(port), (proto,) if proto else ("tcp", "udp"))


def is_service(v: str) -> str | None:
    try:
        parse_service(v)
    except ValueError:
        return "a LAN service such as '198.18.0.1:53' or '198.18.0.1:53/udp'"
    return None
