"""The gateway engine: what it emits, what it broadcasts, what it answers, with one or two gateways."""

import random
import socket

from scapy.layers.inet import IP, TCP, UDP

from lanon.common.events import (
    AddressClaimed,
    ArpAnswered,
    DropReason,
    EmitPacket,
    LeadershipChanged,
    PacketDropped,
    SendArp,
)
from lanon.gateway import arp
from lanon.gateway.engine import GatewayEngine
from tests.harness import WALL, Lan, make_coalition
from tests.harness import running_lan as harness_lan
from tests.packets import tcp, udp


def running_lan(members: int = 3, gateways: int = 1) -> Lan:
    return harness_lan(members, gateways)


def test_gateway_claims_its_share_and_leads() -> None:
    lan = running_lan()
    claimed = [e.address for e in lan.events("gateway1", AddressClaimed)]  # type: ignore[attr-defined]
    assert claimed == ["198.18.0.192", "198.18.0.193", "198.18.0.194", "198.18.0.195"]
    assert lan.events("gateway1", LeadershipChanged)


def test_arp_is_answered_for_held_addresses_only() -> None:
    lan = running_lan()
    gw = lan.gateway()
    router = bytes.fromhex("021a00030001")
    ask = arp.Arp(
        arp.OP_REQUEST, router, bytes([198, 18, 0, 1]), arp.ZERO_MAC, bytes([198, 18, 0, 193])
    )
    gw.receive_arp(router, ask.encode(), lan.now)
    other = arp.Arp(
        arp.OP_REQUEST, router, bytes([198, 18, 0, 1]), arp.ZERO_MAC, bytes([198, 18, 0, 11])
    )
    gw.receive_arp(router, other.encode(), lan.now)
    cmds = [c for c in gw.pop_commands() if isinstance(c, SendArp)]
    assert len(cmds) == 1 and cmds[0].dst == router
    reply = arp.pull_arp(cmds[0].payload)
    assert (
        reply is not None
        and reply.op == arp.OP_REPLY
        and reply.sender_mac == gw.mac
        and reply.target_mac == router
    )
    assert len([e for e in gw.pop_events() if isinstance(e, ArpAnswered)]) == 1


def test_announcements_are_request_style_gratuitous_arp() -> None:
    c, keys = make_coalition(3, 1)
    mac = bytes.fromhex("020000000001")
    g = GatewayEngine(
        c, "gateway1", keys["gateway1"], mac, now=0.0, wall_offset=WALL, rng=random.Random(1)
    )
    g.start(0.0)
    sent: list[SendArp] = []
    while (t := g.get_timer()) < 4.0:
        g.handle_timer(t)
        sent += [a for a in g.pop_commands() if isinstance(a, SendArp)]
    packets = [arp.pull_arp(a.payload) for a in sent]
    probes = [a for a in packets if a is not None and a.sender_ip == arp.ZERO_IP]
    assert len(probes) == 4 * arp.PROBE_COUNT  # each address probed before it is claimed
    announced = [a for a in packets if a not in probes]
    assert len(announced) == 4 * len(arp.ANNOUNCE_DELAYS)  # four addresses, each announced thrice
    for a in announced:
        assert (
            a is not None
            and a.op == arp.OP_REQUEST
            and a.sender_ip == a.target_ip
            and a.sender_mac == mac
        )


def test_egress_never_emits_a_source_outside_the_anonymous_set() -> None:
    lan = running_lan()
    eng = lan.member("member1")
    # a misbehaving member: its cell carries its real address
    eng.anonymous = (bytes([198, 18, 0, 11]),)
    lan.submit("member1", udp())
    lan.run(1.0)
    assert lan.emitted == []
    assert DropReason.NOT_ANONYMOUS in [e.reason for e in lan.events("gateway1", PacketDropped)]  # type: ignore[attr-defined]


def test_egress_refuses_lan_destinations() -> None:
    lan = running_lan()
    lan.submit("member1", udp(dst="198.18.0.12"))
    lan.run(1.0)
    assert lan.emitted == []
    assert DropReason.PROHIBITED_LAN in [e.reason for e in lan.events("gateway1", PacketDropped)]  # type: ignore[attr-defined]


def test_unsolicited_inbound_is_dropped_silently() -> None:
    lan = running_lan()
    gw = lan.gateway()
    gw.pop_events()
    syn = tcp(src="203.0.113.66", dst="198.18.0.193", sport=1234, dport=22)
    gw.receive_packet(syn, lan.now)
    assert gw.pop_commands() == []  # no RST, no ICMP, no broadcast
    drops = [e.reason for e in gw.pop_events() if isinstance(e, PacketDropped)]
    assert drops == [DropReason.NO_FLOW]


def test_emitted_packets_are_rewritten_and_normalized() -> None:
    lan = running_lan()
    lan.submit("member1", tcp(options=[("MSS", 1460)]))
    lan.run_until(lambda: bool(lan.emitted))
    out = IP(lan.emitted[0][1])
    assert out.src in {str(a) for a in lan.c.anonymous} and out.ttl == 64
    assert out[TCP].sport >= 1024 and out[TCP].sport != 40000


def test_two_gateways_split_the_set_and_agree_on_flows() -> None:
    lan = running_lan(3, 2)
    g1, g2 = lan.gateway("gateway1"), lan.gateway("gateway2")
    assert g1.leading and not g2.leading
    assert g1.held == {0, 1, 2, 3} and g2.held == {4, 5, 6, 7}
    for i in range(40):
        lan.submit(
            f"member{1 + i % 3}", udp(src=f"198.18.0.{11 + i % 3}", sport=30000 + i, payload=b"m")
        )
    lan.run(2.0)
    emitters = {name for name, _ in lan.emitted}
    assert emitters == {"gateway1", "gateway2"}
    for name, p in lan.emitted:  # each emits the addresses it holds
        held = lan.gateway(name).held
        assert lan.gateway(name).addresses.index(socket.inet_aton(IP(p).src)) in held
    assert {t: (f.anon, f.port) for t, f in g1.flows.by_tag.items()} == {
        t: (f.anon, f.port) for t, f in g2.flows.by_tag.items()
    }
    assert sum(len(lan.host(f"member{i}").injected) for i in (1, 2, 3)) == 40


def test_standby_takes_over_a_silent_gateway_and_the_returning_one_does_not_fight() -> None:
    lan = running_lan(3, 2)
    lan.submit("member1", udp(sport=5000))
    lan.run_until(lambda: bool(lan.host("member1").injected))
    lan.kill("gateway1")
    lan.run(1.5)
    g2 = lan.gateway("gateway2")
    assert g2.leading and g2.held == set(range(8))
    takeovers = [e for e in lan.events("gateway2", AddressClaimed) if e.takeover]  # type: ignore[attr-defined]
    assert len(takeovers) == 4
    lan.host("member1").injected.clear()
    lan.submit("member1", udp(sport=5000))  # the same flow, through the other gateway
    lan.run_until(lambda: bool(lan.host("member1").injected), limit=5)
    lan.restart("gateway1")
    lan.run(2.0)
    g1 = lan.gateway("gateway1")
    assert not g1.leading and g1.held == set() and g2.held == set(range(8))
    assert [c for c in g1.pop_commands() if isinstance(c, EmitPacket)] == []


def test_a_gateway_whose_link_fails_lets_go_and_does_not_fight_when_it_is_back() -> None:
    lan = running_lan(3, 2)
    g1, g2 = lan.gateway("gateway1"), lan.gateway("gateway2")
    lan.kill("gateway1")  # nothing it sends arrives...
    g1.set_link(False, lan.now)  # ...and it notices its link is down
    assert g1.held == set() and not g1.leading
    lan.run(1.5)
    assert g2.leading and g2.held == set(range(8))
    assert {e.silence > 0.3 for e in lan.events("gateway2", AddressClaimed) if e.takeover} == {True}  # type: ignore[attr-defined]
    lan.host("gateway1").down = False
    g1.set_link(True, lan.now)
    lan.run(3.0)
    assert g1.held == set() and not g1.leading and g2.held == set(range(8))
    lan.submit("member1", udp(sport=7777, payload=b"after the storm"))
    lan.run_until(lambda: bool(lan.host("member1").injected), limit=5)


def test_a_clean_stop_hands_over_at_the_next_heartbeat() -> None:
    lan = running_lan(3, 2)
    g1, g2 = lan.gateway("gateway1"), lan.gateway("gateway2")
    g1.shutdown(lan.now)
    lan.collect()
    stopped = lan.now
    lan.kill("gateway1")
    lan.run_until(lambda: g2.leading and g2.held == set(range(8)), limit=1)
    assert lan.now - stopped <= lan.c.rounds.heartbeat_interval + 0.01  # not gateway_timeout
    takeovers = [e for e in lan.events("gateway2", AddressClaimed) if e.takeover]  # type: ignore[attr-defined]
    assert len(takeovers) == 4 and all(e.silence < 0.15 for e in takeovers)  # type: ignore[attr-defined]
    lan.submit("member1", udp(sport=8888, payload=b"after a planned stop"))
    lan.run_until(lambda: bool(lan.host("member1").injected), limit=5)


def test_a_restarted_gateway_learns_the_flows_and_can_take_them_over() -> None:
    from lanon.common.events import FlowsReceived

    lan = running_lan(3, 2)
    for i in range(12):  # flows on both gateways' addresses
        lan.submit("member1", udp(sport=6000 + i, payload=b"before"))
    lan.run_until(lambda: len(lan.host("member1").injected) == 12)
    g1 = lan.gateway("gateway1")
    before = {t: (f.anon, f.port) for t, f in g1.flows.by_tag.items()}
    lan.restart("gateway2")  # empty table
    lan.run(2.5)
    g2 = lan.gateway("gateway2")
    assert [e.added for e in lan.events("gateway2", FlowsReceived)] == [12]  # type: ignore[attr-defined]
    assert {t: (f.anon, f.port) for t, f in g2.flows.by_tag.items()} == before
    lan.kill("gateway1")
    lan.run(1.5)
    assert g2.leading and g2.held == set(range(8))
    lan.emitted.clear()
    lan.host("member1").injected.clear()
    for i in range(12):  # the same flows, now through the gateway that restarted
        lan.submit("member1", udp(sport=6000 + i, payload=b"after"))
    lan.run_until(lambda: len(lan.host("member1").injected) == 12, limit=5)
    seen = {(socket.inet_aton(IP(p).src), IP(p)[UDP].sport) for _, p in lan.emitted}
    assert seen == set(before.values())  # same anonymous endpoints: the far ends notice nothing


def test_a_replayed_flows_frame_is_refused() -> None:
    from lanon.common import wire
    from lanon.common.errors import RejectReason
    from lanon.common.events import FrameRejected

    lan = running_lan(3, 2)
    lan.submit("member1", udp(sport=4321))
    lan.run_until(lambda: bool(lan.host("member1").injected))
    lan.restart("gateway2")
    lan.run(2.5)
    src, _dst, frame = lan.frames(wire.MsgType.FLOWS)[-1]
    g2 = lan.gateway("gateway2")
    g2.pop_events()
    g2.receive_frame(src, frame, lan.now)
    assert [e.reason for e in g2.pop_events() if isinstance(e, FrameRejected)] == [
        RejectReason.REPLAY
    ]
