"""Endpoint allocation (gateway/endpoints.py, gateway/flows.py): unique lanon-wide, random,
bounded, pinned endpoints for their key's holder only, freed when nobody asks."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from lanon.common.crypto import HostKey, encode_key
from lanon.common.endpoints import (
    MAX_SERVICES,
    Granted,
    Refusal,
    Refused,
    Register,
    pull_answer,
    pull_register,
    sign_pin,
)
from lanon.common.errors import ConfigError
from lanon.common.flowkey import flow_tag
from lanon.common.packet import ICMP, TCP, UDP
from lanon.gateway.endpoints import Registrar
from lanon.gateway.flows import FlowTable
from lanon.lab.sim import make_coalition

A = ipaddress.IPv4Address("198.18.0.193").packed
B = ipaddress.IPv4Address("198.18.0.194").packed
NOW_MS = 1_700_000_000_000


def registrar(
    members: int = 3, endpoints: list[dict[str, Any]] | None = None, **flows: Any
) -> Registrar:
    c, _ = make_coalition(members, endpoints=endpoints or [], flows=flows)
    table = FlowTable(c.flows, c.identity, [e.where for e in c.endpoints])
    table.time = NOW_MS / 1000
    return Registrar(c, table)


def key(i: int) -> bytes:
    return bytes([i]) * 32


def ask(r: Registrar, i: int, proto: int = TCP, anon: bytes = A, port: int = 0) -> Any:
    return r.register(flow_tag(key(i)), key(i), Register(proto, anon, port, NOW_MS))


def test_the_port_asked_for_if_free_else_a_random_one_never_twice() -> None:
    r = registrar()
    assert ask(r, 1, port=8080) == Granted(TCP, A, 8080)
    second = ask(r, 2, port=8080)
    assert isinstance(second, Granted) and second.port != 8080
    assert ask(r, 3, proto=UDP, port=8080) == Granted(UDP, A, 8080)  # another protocol
    assert ask(r, 4, anon=B, port=8080) == Granted(TCP, B, 8080)  # another address
    ports = {(g.proto, g.anon, g.port) for g in r.flows.by_tag.values()}
    assert len(ports) == 4 and r.flows.endpoints == 4


def test_asking_again_refreshes_the_same_endpoint() -> None:
    r = registrar()
    first = ask(r, 1, port=9000)
    r.flows.time += 50
    assert ask(r, 1, anon=B, port=9000) == first  # the address asked for first stays
    assert ask(r, 1, port=0) == first
    assert r.flows.by_tag[flow_tag(key(1))].state.last == r.flows.time


def test_a_random_endpoint_moves_to_the_port_asked_for_once_it_is_free() -> None:
    """A service restarted while its old endpoint still held its port: it gets that port
    back when the old one expires, not never."""
    r = registrar(endpoint_timeout=60)
    assert ask(r, 1, port=8080) == Granted(TCP, A, 8080)  # the old instance
    r.flows.time += 30
    second = ask(r, 2, port=8080)  # the restarted one, with a new tag
    assert second.port != 8080
    r.flows.time += 40
    r.flows.expire(r.flows.time)  # the old one's endpoint expires
    assert ask(r, 2, port=8080) == Granted(TCP, A, 8080)
    assert r.flows.endpoints == 1 and (TCP, A, second.port) not in r.flows.by_port


def test_the_same_tag_on_every_gateway_gets_the_same_port() -> None:
    ports = [ask(registrar(), 7).port for _ in range(3)]
    assert len(set(ports)) == 1  # deterministic from the tag: standbys agree


def test_exhaustion_and_the_bound_are_refusals_never_a_collision() -> None:
    r = registrar(port_min=2000, port_max=2002)
    granted = [ask(r, i) for i in range(1, 4)]
    assert sorted(g.port for g in granted) == [2000, 2001, 2002]
    assert ask(r, 9) == Refused(Refusal.EXHAUSTED)
    small = registrar()
    for i in range(MAX_SERVICES * 3):
        assert isinstance(ask(small, i + 1), Granted)
    assert ask(small, 200) == Refused(Refusal.TOO_MANY)


def test_only_tcp_and_udp_at_anonymous_addresses() -> None:
    r = registrar()
    assert ask(r, 1, proto=ICMP) == Refused(Refusal.PROTOCOL)
    lan_host = ipaddress.IPv4Address("198.18.0.11").packed
    assert ask(r, 2, anon=lan_host) == Refused(Refusal.NOT_ANONYMOUS)
    assert r.flows.endpoints == 0


def test_a_flows_tag_cannot_become_an_endpoint() -> None:
    r = registrar()
    tag = flow_tag(key(5))
    r.flows.outbound(tag, TCP, A, bytes([203, 0, 113, 10]), 80, 0x02, r.flows.time, key(5))
    assert ask(r, 5) == Refused(Refusal.TAG_IN_USE)


def test_endpoints_and_flows_share_the_port_space() -> None:
    r = registrar(port_min=3000, port_max=3001)
    assert ask(r, 1).port in (3000, 3001)
    flow, _ = r.flows.outbound(
        flow_tag(key(2)), TCP, A, bytes([203, 0, 113, 10]), 80, 0x02, r.flows.time, key(2)
    )
    assert {flow.port, r.flows.by_tag[flow_tag(key(1))].port} == {3000, 3001}


def test_an_endpoint_is_freed_after_endpoint_timeout_without_asking_or_sending() -> None:
    r = registrar(endpoint_timeout=60)
    ask(r, 1, port=8080)
    r.flows.expire(r.flows.time + 59)
    assert r.flows.endpoints == 1
    assert r.flows.expire(r.flows.time + 61)[0].endpoint
    assert r.flows.endpoints == 0
    assert ask(r, 2, port=8080) == Granted(TCP, A, 8080)  # free again


def pinned(holder: HostKey) -> Registrar:
    return registrar(
        endpoints=[
            {
                "name": "site",
                "protocol": "tcp",
                "address": "198.18.0.193",
                "port": 443,
                "public_key": encode_key(holder.public),
            }
        ]
    )


def ask_pinned(r: Registrar, i: int, signer: HostKey, since: int = NOW_MS) -> Any:
    request = Register(TCP, A, 443, since)
    signed = sign_pin(signer, r.c.identity, flow_tag(key(i)), request)
    return r.register(flow_tag(key(i)), key(i), signed)


def test_a_pinned_endpoint_goes_to_its_keys_holder_and_the_latest_start_wins() -> None:
    holder = HostKey.generate()
    r = pinned(holder)
    assert ask(r, 1, port=443) != Granted(TCP, A, 443)  # unsigned: never the pinned port
    assert ask_pinned(r, 2, HostKey.generate()) == Refused(Refusal.BAD_PIN)
    assert ask_pinned(r, 3, holder) == Granted(TCP, A, 443)
    # the service restarts (or moves) with a new tag: its later start takes the endpoint over
    assert ask_pinned(r, 4, holder, NOW_MS + 5000) == Granted(TCP, A, 443)
    assert r.flows.by_port[(TCP, A, 443)].tag == flow_tag(key(4))
    # the older copy, still running somewhere, asks again: refused, not flapping back
    assert ask_pinned(r, 3, holder) == Refused(Refusal.STALE)
    assert r.flows.by_port[(TCP, A, 443)].tag == flow_tag(key(4))
    # its refreshes hours later still carry its start: the endpoint stays where it is
    r.flows.time += 3600
    assert ask_pinned(r, 4, holder, NOW_MS + 5000) == Granted(TCP, A, 443)
    # a start far in the lanon's future would win for good: refused
    assert ask_pinned(r, 6, holder, int(r.flows.time * 1000) + 3_600_000) == Refused(Refusal.STALE)


def test_a_signature_binds_its_own_tag_only() -> None:
    holder = HostKey.generate()
    r = pinned(holder)
    request = sign_pin(holder, r.c.identity, flow_tag(key(1)), Register(TCP, A, 443, NOW_MS))
    # a member that copied the signed request under its own tag gets nothing
    assert r.register(flow_tag(key(9)), key(9), request) == Refused(Refusal.BAD_PIN)


def test_a_squat_of_dynamic_endpoints_never_keeps_a_pinned_one_out() -> None:
    holder = HostKey.generate()
    r = pinned(holder)
    for i in range(MAX_SERVICES * 3):
        assert isinstance(ask(r, 100 + i), Granted)
    assert ask(r, 99) == Refused(Refusal.TOO_MANY)
    assert ask_pinned(r, 1, holder) == Granted(TCP, A, 443)


def test_a_version_that_drops_or_rekeys_a_pinned_endpoint_unbinds_it() -> None:
    holder = HostKey.generate()
    r = pinned(holder)
    assert ask_pinned(r, 1, holder) == Granted(TCP, A, 443)
    c2, _ = make_coalition(3)  # the same coalition without the pin
    after = Registrar(c2, r.flows)
    after.carry(r)
    assert (TCP, A, 443) not in r.flows.by_port
    kept = pinned(holder)
    assert ask_pinned(kept, 1, holder) == Granted(TCP, A, 443)
    same = Registrar(kept.c, kept.flows)
    same.carry(kept)  # a version that keeps it: the binding stays
    assert (TCP, A, 443) in kept.flows.by_port


def test_flows_never_take_a_pinned_port() -> None:
    r = registrar(
        port_min=443,
        port_max=444,
        endpoints=[
            {
                "name": "site",
                "protocol": "tcp",
                "address": "198.18.0.193",
                "port": 443,
                "public_key": encode_key(HostKey.generate().public),
            }
        ],
    )
    ports = set()
    for i in range(1, 3):
        try:
            flow, _ = r.flows.outbound(
                flow_tag(key(i)), TCP, A, bytes([203, 0, 113, 10]), 80 + i, 2, 0.0, key(i)
            )
            ports.add(flow.port)
        except Exception:
            ports.add(None)
    assert ports == {444, None}


def test_records_carry_endpoints_to_a_restarted_gateway() -> None:
    r = registrar()
    ask(r, 1, port=8080)
    fresh = registrar()
    assert fresh.flows.merge(r.flows.export()) == (1, 0)
    assert fresh.flows.by_tag[flow_tag(key(1))].endpoint and fresh.flows.endpoints == 1


def test_codecs_refuse_what_they_are_not() -> None:
    for bad in (b"", b"\x01", b"\x02" * 9, b"\x45" + bytes(15)):
        with pytest.raises(ValueError):
            pull_register(bad)
        with pytest.raises(ValueError):
            pull_answer(bad)
    with pytest.raises(ValueError):
        pull_answer(b"\x03\xff")
    assert pull_answer(Refused(Refusal.STALE).encode()) == Refused(Refusal.STALE)
    r = Register(UDP, A, 53, NOW_MS, b"s" * 64)
    assert pull_register(r.encode()) == r


@pytest.mark.parametrize(
    "entry, expected",
    [
        ({"address": "198.18.0.11"}, "expected an anonymous address"),
        ({"protocol": "icmp"}, "expected one of 'tcp', 'udp'"),
        ({"port": 0}, "expected a number from 1"),
    ],
)
def test_a_bad_pinned_endpoint_is_a_clear_error(entry: dict[str, Any], expected: str) -> None:
    base = {
        "name": "site",
        "protocol": "tcp",
        "address": "198.18.0.193",
        "port": 443,
        "public_key": encode_key(HostKey.generate().public),
    }
    with pytest.raises(ConfigError, match=expected):
        make_coalition(3, endpoints=[{**base, **entry}])


def test_a_pinned_endpoint_with_a_hosts_own_key_is_refused() -> None:
    """Its signatures would verify under that host's key: everyone would know who serves."""
    _, keys = make_coalition(3)
    base = {"name": "site", "protocol": "tcp", "address": "198.18.0.193", "port": 443}
    with pytest.raises(ConfigError, match="member2's own key"):
        make_coalition(3, endpoints=[{**base, "public_key": encode_key(keys["member2"].public)}])
