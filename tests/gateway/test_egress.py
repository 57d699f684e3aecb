"""Gateways emit only where the Internet is: every class of refused destination, the allow
list, and the 'administratively prohibited' answer that reaches the member's application."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, IPerror, UDPerror

from lanon.common import coalition
from lanon.common.errors import ConfigError
from lanon.common.events import DropReason, PacketDropped
from lanon.gateway.egress import Destinations
from tests.harness import coalition_dict, make_coalition, running_lan
from tests.packets import MEMBER_IP, udp

C, KEYS = make_coalition(3, 1)

CLASSES = [
    ("255.255.255.255", "broadcast"),
    ("198.18.0.255", "broadcast"),  # the LAN's
    ("198.18.0.12", "lan"),  # a member
    ("198.18.0.1", "lan"),  # the router
    ("198.18.0.193", "lan"),  # an anonymous address
    ("0.0.0.0", "reserved"),
    ("0.1.2.3", "reserved"),
    ("240.0.0.1", "reserved"),
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("169.254.169.254", "link_local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "private"),
    ("198.19.0.1", "private"),  # 198.18/15 outside the LAN
    ("203.0.113.10", None),  # the lab's Internet (TEST-NET-3) stays reachable
    ("1.1.1.1", None),
    ("172.32.0.1", None),
    ("100.128.0.1", None),
    ("223.255.255.255", None),
]


def packed(a: str) -> bytes:
    return ipaddress.IPv4Address(a).packed


@pytest.mark.parametrize("dst,cls", CLASSES)
def test_each_class_of_destination(dst: str, cls: str | None) -> None:
    expected = None if cls is None else DropReason.prohibited(cls)
    assert Destinations(C).refused(packed(dst)) is expected


def test_the_gateway_hosts_own_addresses_are_never_destinations() -> None:
    d = Destinations(C)
    d.refuse_local([ipaddress.IPv4Address("10.9.9.9"), ipaddress.IPv4Address("203.0.113.77")])
    assert d.refused(packed("10.9.9.9")) is DropReason.PROHIBITED_LOCAL
    assert d.refused(packed("203.0.113.77")) is DropReason.PROHIBITED_LOCAL
    assert d.refused(packed("203.0.113.78")) is None


def allowing(*prefixes: str) -> coalition.Coalition:
    c, _ = make_coalition(3, 1, egress={"allow": list(prefixes)})
    return c


def test_allow_opens_private_ranges_only() -> None:
    d = Destinations(allowing("10.0.0.0/8", "192.168.7.0/24", "198.18.0.0/15"))
    assert d.refused(packed("10.1.2.3")) is None
    assert d.refused(packed("192.168.7.9")) is None
    assert d.refused(packed("192.168.8.9")) is DropReason.PROHIBITED_PRIVATE
    assert d.refused(packed("198.19.0.1")) is None
    assert d.refused(packed("198.18.0.12")) is DropReason.PROHIBITED_LAN  # even inside 198.18/15
    assert d.refused(packed("198.18.0.255")) is DropReason.PROHIBITED_BROADCAST


@pytest.mark.parametrize(
    "prefix,message",
    [
        (
            "127.0.0.0/8",
            r"allow = '127.0.0.0/8': expected a prefix gateways may emit to; .*loopback",
        ),
        ("224.0.0.0/24", r"lies in 224.0.0.0/4 \(multicast\)"),
        ("198.18.0.128/25", r"lies in 198.18.0.0/24 \(LAN\)"),
        ("10.0.0.1/8", r"allow = '10.0.0.1/8': expected an IPv4 prefix"),
    ],
)
def test_allow_entries_that_cannot_be_meant_are_refused(prefix: str, message: str) -> None:
    raw = coalition_dict(
        [(f"member{i}", KEYS[f"member{i}"]) for i in (1, 2, 3)],
        [("gateway1", KEYS["gateway1"], ["198.18.0.192/30"])],
        egress={"allow": [prefix]},
    )
    with pytest.raises(ConfigError, match=message):
        coalition.parse(raw, Path("c.toml"))


def test_allow_enters_the_fingerprint_only_when_set() -> None:
    assert allowing().fingerprint == C.fingerprint
    assert allowing("10.0.0.0/8").fingerprint != C.fingerprint


def dropped(lan: object, name: str = "gateway1") -> list[str]:
    return [e.reason.value for e in lan.events(name, PacketDropped)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "dst,reason",
    [
        ("255.255.255.255", "prohibited_broadcast"),
        ("224.0.0.251", "prohibited_multicast"),
        ("127.0.0.1", "prohibited_loopback"),
        ("10.0.0.1", "prohibited_private"),
        ("198.18.0.12", "prohibited_lan"),
    ],
)
def test_a_refused_packet_is_answered_administratively_prohibited(dst: str, reason: str) -> None:
    lan = running_lan()
    lan.submit("member1", udp(dst=dst, sport=41000))
    lan.run_until(lambda: bool(lan.host("member1").injected))
    assert lan.emitted == []
    assert dropped(lan) == [reason]
    answer = IP(lan.host("member1").injected[-1])
    assert answer[ICMP].type == 3 and answer[ICMP].code == 13
    assert answer.dst == MEMBER_IP
    quoted = answer[IPerror]
    assert quoted.src == MEMBER_IP and quoted.dst == dst and answer[UDPerror].sport == 41000
    # from a source the member's kernel accepts (a broadcast, multicast, loopback or LAN
    # source would be a martian): the destination if unicast, else the anonymous address
    anonymous = {str(a) for a in lan.c.anonymous}
    assert answer.src == dst if reason == "prohibited_private" else answer.src in anonymous
    assert len(lan.gateway().flows) == 0  # no port given to a refused packet


def test_allowed_private_destinations_are_emitted() -> None:
    lan = running_lan(egress={"allow": ["10.0.0.0/8"]})
    lan.submit("member1", udp(dst="10.0.0.1"))
    lan.run_until(lambda: bool(lan.emitted))
    assert IP(lan.emitted[0][1]).dst == "10.0.0.1"
    assert dropped(lan) == []


def test_internet_destinations_still_pass() -> None:
    lan = running_lan()
    lan.submit("member1", udp())
    lan.run_until(lambda: bool(lan.emitted))
    assert IP(lan.emitted[0][1]).dst == "203.0.113.10"


# --- [lan_services] (#10.7): the LAN's resolver through the lanon, and nothing else of the LAN


def serving(**services: list[str]) -> coalition.Coalition:
    c, _ = make_coalition(3, 1, lan_services=services)
    return c


def test_only_the_named_lan_service_is_a_destination() -> None:
    d = Destinations(serving(anonymous=["198.18.0.1:53", "198.18.0.2:123/udp"]))
    router = packed("198.18.0.1")
    assert d.refused(router, 17, 53) is None and d.refused(router, 6, 53) is None
    assert d.refused(router, 6, 80) is DropReason.PROHIBITED_LAN  # another port of it
    assert d.refused(router) is DropReason.PROHIBITED_LAN  # ICMP, say
    assert d.refused(packed("198.18.0.2"), 17, 123) is None
    assert d.refused(packed("198.18.0.2"), 6, 123) is DropReason.PROHIBITED_LAN  # udp only
    assert d.refused(packed("198.18.0.12"), 17, 53) is DropReason.PROHIBITED_LAN  # a member


def test_a_query_to_the_routers_resolver_leaves_from_an_anonymous_address() -> None:
    lan = running_lan(lan_services={"anonymous": ["198.18.0.1:53"]})
    lan.submit("member1", udp(dst="198.18.0.1", dport=53))
    lan.run_until(lambda: bool(lan.emitted))
    sent = IP(lan.emitted[0][1])
    assert sent.dst == "198.18.0.1" and sent.src in {str(a) for a in lan.c.anonymous}
    assert dropped(lan) == []


@pytest.mark.parametrize(
    "entry,message",
    [
        ("203.0.113.10:53", r"expected a host of the LAN 198.18.0.0/24"),
        ("198.18.0.255:53", r"expected a host of the LAN"),
        ("198.18.0.193:53", r"an anonymous address, not a LAN server"),
        ("198.18.0.1", r"expected a LAN service such as '198.18.0.1:53'"),
        ("198.18.0.1:53/icmp", r"expected a LAN service"),
        ("198.18.0.1:0", r"expected a LAN service"),
    ],
)
def test_lan_services_that_cannot_be_meant_are_refused(entry: str, message: str) -> None:
    raw = coalition_dict(
        [(f"member{i}", KEYS[f"member{i}"]) for i in (1, 2, 3)],
        [("gateway1", KEYS["gateway1"], ["198.18.0.192/30"])],
        lan_services={"direct": [entry]},
    )
    with pytest.raises(ConfigError, match=message):
        coalition.parse(raw, Path("c.toml"))


def test_lan_services_enter_the_fingerprint_only_when_set() -> None:
    assert serving().fingerprint == C.fingerprint
    assert serving(anonymous=["198.18.0.1:53"]).fingerprint != C.fingerprint
