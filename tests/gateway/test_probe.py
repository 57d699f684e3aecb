"""Probing anonymous addresses before claiming them (RFC 5227 style), as a sans-IO machine:
time and ARP packets in, SendArp commands and events out."""

from __future__ import annotations

import ipaddress
import random

import pytest

from lanon.common.events import (
    AddressClaimed,
    AddressDefended,
    AddressFree,
    AddressRefused,
    ClaimRefusal,
    Command,
    Event,
    SendArp,
    SendFrame,
)
from lanon.common.wire import BROADCAST
from lanon.gateway import arp
from lanon.gateway.arp import Arp, Prober, State
from lanon.gateway.claims import ClaimPolicy
from lanon.gateway.engine import GatewayEngine
from tests.harness import WALL, mac_of, make_coalition

ADDRESSES = tuple(ipaddress.IPv4Address(f"198.18.0.{i}").packed for i in (192, 193, 194, 195))
ME = bytes.fromhex("020000000001")
OTHER_GATEWAY = bytes.fromhex("020000000002")
HOST = bytes.fromhex("02aa00000011")
END = 2.0  # every probe of a fresh start is over by then


class Box:
    """A prober with its outboxes and a set of held addresses."""

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.events: list[Event] = []
        self.held: set[int] = set()
        self.p = Prober(ADDRESSES, ME, self.commands.append, self.events.append, self.held)

    def run(self, until: float) -> None:
        while (t := self.p.get_timer()) <= until:
            self.p.handle_timer(t)

    def sent(self) -> list[Arp]:
        out = []
        for c in self.commands:
            assert isinstance(c, SendArp) and c.dst == BROADCAST
            a = arp.pull_arp(c.payload)
            assert a is not None
            out.append(a)
        self.commands.clear()
        return out

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


def reply(mac: bytes, i: int) -> Arp:
    return Arp(arp.OP_REPLY, mac, ADDRESSES[i], ME, arp.ZERO_IP)


def request_from(mac: bytes, i: int) -> Arp:
    """A host using ADDRESSES[i] asks for the router."""
    return Arp(arp.OP_REQUEST, mac, ADDRESSES[i], arp.ZERO_MAC, bytes([198, 18, 0, 1]))


def test_every_address_is_probed_three_times_then_free() -> None:
    b = Box()
    b.p.start(0.0)
    assert b.p.unavailable() == frozenset(range(4))  # nothing claimable before its probe
    b.run(END)
    probes = b.sent()
    assert len(probes) == 4 * arp.PROBE_COUNT
    for a in probes:
        assert a.op == arp.OP_REQUEST and a.sender_ip == arp.ZERO_IP and a.sender_mac == ME
        assert a.target_mac == arp.ZERO_MAC and a.target_ip in ADDRESSES
    assert b.p.unavailable() == frozenset()
    assert b.p.get_timer() == float("inf")  # nothing more to do
    total = arp.PROBE_SPREAD + (arp.PROBE_COUNT - 1) * arp.PROBE_SPACING + arp.PROBE_WAIT
    listen = make_coalition()[0].rounds.gateway_timeout + 1.0  # the claim policy's
    assert total < listen  # probing never delays the first claims


def test_an_answer_from_another_host_refuses_the_address_until_a_probe_finds_it_free() -> None:
    b = Box()
    b.p.start(0.0)
    b.p.handle_timer(0.0)
    b.p.observe(reply(HOST, 0), 0.01)
    b.run(END)
    assert b.p.unavailable() == frozenset({0})
    (refused,) = b.of(AddressRefused)
    assert refused == AddressRefused(
        "198.18.0.192", ClaimRefusal.IN_USE, HOST.hex(":"), f"{HOST.hex(':')} answered a probe"
    )
    assert b.p.refused()["198.18.0.192"]["mac"] == HOST.hex(":")
    b.sent()
    concluded = (arp.PROBE_COUNT - 1) * arp.PROBE_SPACING + arp.PROBE_WAIT  # address 0 first
    b.run(concluded + arp.REPROBE_INTERVAL - 0.01)
    assert b.sent() == []  # not probed again before REPROBE_INTERVAL
    b.run(END + arp.REPROBE_INTERVAL)
    assert len(b.sent()) == arp.PROBE_COUNT
    assert b.p.unavailable() == frozenset() and b.of(AddressFree) == [AddressFree("198.18.0.192")]
    assert b.p.refused() == {}


def test_a_host_still_there_at_the_next_probe_is_not_reported_again() -> None:
    b = Box()
    b.p.start(0.0)
    b.p.observe(reply(HOST, 1), 0.01)
    b.run(END)
    b.run(END + arp.REPROBE_INTERVAL - 1)  # the next probe has started
    b.p.observe(reply(HOST, 1), END + arp.REPROBE_INTERVAL - 0.99)
    b.run(END + arp.REPROBE_INTERVAL + 1)
    assert b.p.unavailable() == frozenset({1})
    assert len(b.of(AddressRefused)) == 1 and not b.of(AddressFree)


def test_a_gateway_answering_for_an_address_it_holds_is_no_conflict() -> None:
    b = Box()
    b.p.start(0.0)
    b.p.observe(reply(OTHER_GATEWAY, 2), 0.01)  # before its heartbeat arrives
    b.p.vouch(OTHER_GATEWAY, {2, 3})
    b.p.observe(reply(OTHER_GATEWAY, 3), 0.02)
    b.run(END)
    assert b.p.unavailable() == frozenset() and not b.of(AddressRefused)


def test_a_gateway_whose_heartbeat_comes_after_the_probe_is_no_conflict_either() -> None:
    """A gateway that comes back hears a burst of flow frames from the leader: the leader's
    heartbeat may be read only after the probe of the addresses it answered for ended."""
    b = Box()
    b.p.start(0.0)
    b.p.observe(reply(OTHER_GATEWAY, 2), 0.01)
    b.run(END)
    assert b.p.unavailable() == frozenset({2})
    b.p.vouch(OTHER_GATEWAY, {2, 3})
    assert b.p.unavailable() == frozenset() and len(b.of(AddressFree)) == 1
    b.p.vouch(HOST, {1})  # whatever another MAC says, an address it never answered for is free
    assert b.p.unavailable() == frozenset()


def test_a_vouched_gateway_does_not_free_an_address_another_host_answered_for_too() -> None:
    b = Box()
    b.p.start(0.0)
    b.p.observe(reply(HOST, 2), 0.01)  # a host that uses it
    b.p.observe(reply(OTHER_GATEWAY, 2), 0.02)  # and a gateway whose heartbeat comes later
    b.run(END)
    b.p.vouch(OTHER_GATEWAY, {2})
    assert b.p.unavailable() == frozenset({2})


def test_a_gateway_answering_for_an_address_it_does_not_hold_is_a_conflict() -> None:
    """A gateway host's own address inside a share: its kernel answers, its heartbeats never
    list it (it refuses its own address)."""
    b = Box()
    b.p.vouch(OTHER_GATEWAY, {3})
    b.p.start(0.0)
    b.p.observe(reply(OTHER_GATEWAY, 2), 0.01)
    b.run(END)
    assert b.p.unavailable() == frozenset({2})


def test_an_arp_from_a_free_address_refuses_it_at_once() -> None:
    b = Box()
    b.p.start(0.0)
    b.run(END)
    b.p.observe(request_from(HOST, 1), 5.0)  # a host that was off during the probe boots
    assert b.p.unavailable() == frozenset({1})
    assert [e.detail for e in b.of(AddressRefused)] == [f"{HOST.hex(':')} sent an ARP from it"]  # type: ignore[attr-defined]


def test_gateways_and_probes_are_not_conflicts_outside_a_probe() -> None:
    b = Box()
    b.p.vouch(OTHER_GATEWAY, set())  # a known gateway, holding nothing yet
    b.p.start(0.0)
    b.run(END)
    b.sent()
    b.held.add(0)
    b.p.observe(arp.announcement(OTHER_GATEWAY, ADDRESSES[0]), 3.0)  # its takeover, say
    b.p.observe(arp.announcement(OTHER_GATEWAY, ADDRESSES[1]), 3.0)
    b.p.observe(arp.probe(HOST, ADDRESSES[2]), 3.0)  # someone else's probe: 0.0.0.0
    b.p.observe(request_from(ME, 3), 3.0)  # our own
    assert b.p.unavailable() == frozenset() and not b.events and not b.commands


def test_a_held_address_is_defended_once_then_given_up() -> None:
    b = Box()
    b.p.start(0.0)
    b.run(END)
    b.sent()
    b.held.add(0)
    b.p.observe(request_from(HOST, 0), 5.0)
    (defence,) = b.sent()
    assert defence == arp.announcement(ME, ADDRESSES[0])
    assert b.of(AddressDefended) == [AddressDefended("198.18.0.192", HOST.hex(":"))]
    assert b.p.unavailable() == frozenset()
    b.p.observe(request_from(HOST, 0), 5.0 + arp.DEFEND_INTERVAL + 1)  # later: defended again
    assert len(b.sent()) == 1 and b.p.unavailable() == frozenset()
    b.p.observe(request_from(HOST, 0), 5.0 + arp.DEFEND_INTERVAL + 2)  # soon after: give up
    assert b.sent() == [] and b.p.unavailable() == frozenset({0})
    assert b.of(AddressRefused)[-1].reason is ClaimRefusal.IN_USE  # type: ignore[attr-defined]


def test_reserved_addresses_stay_refused_and_are_never_probed() -> None:
    b = Box()
    b.p.reserve(ADDRESSES[1], ClaimRefusal.ROUTER, "a router this host's routes go through")
    b.p.reserve(bytes([10, 0, 0, 1]), ClaimRefusal.OWN_ADDRESS, "not anonymous: ignored")
    b.p.start(0.0)
    b.run(END)
    assert all(a.target_ip != ADDRESSES[1] for a in b.sent())
    b.p.start(10.0)  # the link came back
    b.run(10.0 + END)
    assert b.p.unavailable() == frozenset({1})
    assert b.p.refused() == {
        "198.18.0.193": {
            "reason": "router",
            "mac": "",
            "detail": "a router this host's routes go through",
        }
    }
    assert b.p.counts()[ClaimRefusal.ROUTER] == 1
    with pytest.raises(RuntimeError, match="reserved -> probing"):
        b.p._move(b.p.slots[1], State.PROBING)


def test_the_claim_policy_claims_no_unavailable_address_and_releases_one() -> None:
    c, _ = make_coalition(3, 1)
    p = ClaimPolicy(c, 0, 0.0)
    t = c.rounds.gateway_timeout + 1.1
    d = p.decide(t, frozenset(), False, frozenset({1}))
    assert d.claim == frozenset({0, 2, 3})
    d = p.decide(t, frozenset({0, 2, 3}), True, frozenset({2}))
    assert d.release == frozenset({2}) and d.claim == frozenset({1})


def engine(name: str, mac: bytes, now: float) -> tuple[GatewayEngine, list[str]]:
    c, keys = make_coalition(3, 2)
    g = GatewayEngine(c, name, keys[name], mac, now=now, wall_offset=WALL, rng=random.Random(1))
    return g, [str(a) for a in c.anonymous]


def claimed(g: GatewayEngine) -> list[str]:
    return [e.address for e in g.pop_events() if isinstance(e, AddressClaimed)]


def test_a_gateway_claims_none_of_its_share_that_another_host_answers_for() -> None:
    g, addresses = engine("gateway1", mac_of(1), 0.0)
    g.start(0.0)
    g.probes.reserve(ADDRESSES[3], ClaimRefusal.OWN_ADDRESS, "an address of this host")
    while (t := g.get_timer()) < 0.1:
        g.handle_timer(t)
    g.receive_arp(HOST, reply(HOST, 1).encode(), 0.1)  # a member's kernel answers the probe
    while (t := g.get_timer()) < 3.0:
        g.handle_timer(t)
    assert sorted(addresses[i] for i in g.held) == ["198.18.0.192", "198.18.0.194"]
    refused = [e for e in g.pop_events() if isinstance(e, AddressRefused)]
    assert {(e.address, e.reason) for e in refused} == {
        ("198.18.0.193", ClaimRefusal.IN_USE),
        ("198.18.0.195", ClaimRefusal.OWN_ADDRESS),
    }
    # and it does not answer the router's ARP for them
    router = bytes.fromhex("021a00030001")
    g.pop_commands()
    ask = Arp(arp.OP_REQUEST, router, bytes([198, 18, 0, 1]), arp.ZERO_MAC, ADDRESSES[1])
    g.receive_arp(router, ask.encode(), 3.0)
    assert g.pop_commands() == []


def test_takeover_needs_no_probe_and_ignores_the_lost_gateways_answers() -> None:
    """gateway2 probed gateway1's addresses when it started (gateway1 answered for them, as
    its heartbeats said it held them); when gateway1 falls silent, gateway2 takes them over at
    its next decision, as fast as without probing."""
    g1, _ = engine("gateway1", mac_of(1), 0.0)
    g2, addresses = engine("gateway2", mac_of(2), 0.0)
    now = 0.0
    for g in (g1, g2):
        g.start(now)

    def exchange(t: float) -> None:
        for src, dst in ((g1, g2), (g2, g1)):
            for cmd in src.pop_commands():
                if isinstance(cmd, SendArp):
                    a = arp.pull_arp(cmd.payload)
                    assert a is not None
                    if a.sender_ip == arp.ZERO_IP:  # a probe: the holder answers
                        dst.receive_arp(src.mac, cmd.payload, t)
                        for answer in dst.pop_commands():
                            if isinstance(answer, SendArp):
                                src.receive_arp(dst.mac, answer.payload, t)
                            elif isinstance(answer, SendFrame):
                                src.receive_frame(dst.mac, answer.frame, t)
                    else:
                        dst.receive_arp(src.mac, cmd.payload, t)
                elif isinstance(cmd, SendFrame):  # (not a sequence file's mark)
                    dst.receive_frame(src.mac, cmd.frame, t)

    while now < 5.0:  # both up, each holding its share
        now = min(g1.get_timer(), g2.get_timer())
        g1.handle_timer(now)
        g2.handle_timer(now)
        exchange(now)
    assert len(g1.held) == 4 and len(g2.held) == 4
    g2.set_link(False, now)  # g2's cable is pulled and plugged back: it probes every address
    g2.set_link(True, now)  # again, while g1 holds its share
    while now < 8.0:
        now = min(g1.get_timer(), g2.get_timer())
        g1.handle_timer(now)
        g2.handle_timer(now)
        exchange(now)
    # ... g1 answered for its four, which its heartbeats vouch for: no conflict
    assert g2.probes.unavailable() == frozenset()
    assert not [e for e in g2.pop_events() if isinstance(e, AddressRefused)]
    died = now  # g1 falls silent
    while len(g2.held) != 8:
        now = g2.get_timer()
        g2.handle_timer(now)
        g2.pop_commands()
        assert now - died < 1.0
    timeout, interval = g2.c.rounds.gateway_timeout, g2.c.rounds.heartbeat_interval
    assert now - died <= timeout + interval + 1e-9
    assert sorted(addresses[i] for i in g2.held) == addresses
