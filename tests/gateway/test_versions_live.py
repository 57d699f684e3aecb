"""Versions applied while the lanon runs (in memory): a member joins, one is removed, a key is
replaced and a gateway's share moves, with no engine made anew; flows and the lead go on."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import IP, TCP

from lanon.common import admin, wire
from lanon.common.coalition import Coalition, loads
from lanon.common.crypto import HostKey, encode_key
from lanon.common.engine import signed
from lanon.common.events import (
    FlowsEnded,
    FrameRejected,
    OutputSeen,
    Retired,
    VersionApplied,
    VersionRefused,
)
from lanon.common.versions import Outcome
from lanon.lab.packets import echo_internet
from lanon.lab.sim import ADMIN, Lan, make_versioned
from tests.packets import checksums_ok, tcp, udp

PATH = Path("test-coalition.toml")


def running(members: int = 3, gateways: int = 1) -> Lan:
    c, keys = make_versioned(members, gateways)
    lan = Lan(c, keys, internet=echo_internet)
    lan.run_until(lambda: len(lan.all_events(OutputSeen)) >= 3 * members)
    return lan


def publish(lan: Lan, text: str) -> Coalition:
    """The administrator gives gateway1 a signed version; it goes out on the LAN."""
    signed_text = admin.sign(text, PATH, ADMIN)
    considered = lan.gateway("gateway1").offer_version(signed_text, lan.now)
    assert considered.outcome is Outcome.APPLIED, considered
    lan.collect()
    assert considered.coalition is not None
    return considered.coalition


def echo(lan: Lan, member: str, sport: int) -> None:
    host = lan.host(member)
    host.injected.clear()
    lan.submit(member, udp(sport=sport, payload=b"hello"))
    lan.run_until(lambda: bool(host.injected), limit=5)


def in_rounds(lan: Lan) -> frozenset[int]:
    """The members of the round being collected (empty between rounds)."""
    col = lan.gateway().leader.collecting
    return col.roster if col is not None else frozenset()


def on_version(lan: Lan, version: int) -> bool:
    return all(h.engine.c.version == version for h in lan.hosts.values())


def test_a_member_joins_and_one_is_removed_while_a_flow_goes_on() -> None:
    lan = running(3)
    gw = lan.gateway()
    engines = {h.name: h.engine for h in lan.hosts.values()}
    echo(lan, "member1", 5000)
    newcomer_engines = len(engines) + 1
    port = {f.port for f in gw.flows.by_tag.values()}

    newcomer = HostKey(bytes([44]) * 32)
    lan.add_member("member4", newcomer, gw.c)  # a host with the file, not in it: it asks
    lan.run_until(lambda: bool(gw.joins.requests), limit=3)
    [request] = gw.joins.requests.values()
    assert request.name == "member4" and request.public == newcomer.public
    publish(lan, admin.member_added(gw.c, request.name, request.public))
    lan.run_until(lambda: on_version(lan, 2), limit=3)
    assert not gw.joins.requests
    lan.run_until(lambda: 3 in in_rounds(lan), limit=5)
    assert gw.leading and gw.leader.present == frozenset(range(4))
    echo(lan, "member4", 6000)  # the newcomer's packets leave and its replies come back
    echo(lan, "member1", 5000)  # the old flow, on the same port
    assert {f.port for f in gw.flows.by_tag.values() if f.port in port} == port

    hello = wire.Hello(0, lan.member("member2").c.fingerprint, 2).encode(gw.c.id, 1)
    replayed = signed(lan.keys["member2"], hello)
    v3 = publish(lan, admin.member_removed(gw.c, "member2"))
    lan.run_until(lambda: on_version(lan, 3), limit=3)
    assert lan.events("member2", Retired)
    lan.run(1.0)
    assert gw.leader.present == frozenset(range(3)) and len(v3.members) == 3
    assert not lan.member("member2").in_roster
    echo(lan, "member1", 5000)
    echo(lan, "member4", 6000)
    before = len(lan.events("gateway1", FrameRejected))
    gw.receive_frame(lan.host("member2").mac, replayed, lan.now)  # its frames are refused
    assert len(lan.events("gateway1", FrameRejected)) + len(gw.pop_events()) > before
    assert gw.leader.members[1].state.value == "present"  # index 1 is member3 now, untouched
    # no engine was made anew, and every host says which versions it applied
    assert all(h.engine is engines[h.name] for h in lan.hosts.values() if h.name in engines)
    assert len(lan.hosts) == newcomer_engines
    applied = [(e.old, e.new) for e in lan.events("member1", VersionApplied)]  # type: ignore[attr-defined]
    assert applied == [(1, 2), (2, 3)]


def test_old_and_forged_versions_heard_on_the_lan_are_refused_and_counted() -> None:
    lan = running(3)
    gw = lan.gateway()
    v1 = gw.c
    publish(lan, admin.member_added(v1, "member4", HostKey(bytes([44]) * 32).public))
    lan.run_until(lambda: on_version(lan, 2), limit=3)
    forged = loads(admin.next_version(gw.c.text, PATH), PATH, signatures=False)
    from lanon.common.versions import chunks

    m1 = lan.member("member1")
    for frame in chunks(v1) + chunks(forged):  # a replay of version 1, an unsigned version 3
        m1.receive_frame(b"\x02" * 6, frame, lan.now)
    refused = [e.outcome for e in m1.pop_events() if isinstance(e, VersionRefused)]
    assert refused == ["forged"]  # version 1 is older than ours: not even reassembled
    assert m1.c.version == 2


def test_a_member_key_is_replaced_without_restarts() -> None:
    lan = running(4)
    gw = lan.gateway()
    new_key = HostKey(bytes([77]) * 32)
    m2, m3 = lan.member("member2"), lan.member("member3")
    m3.next_key = new_key  # lanon rekey made it: the engine asks, signed by both keys
    m3.next_join = lan.now
    lan.run_until(lambda: bool(gw.joins.requests), limit=3)
    [request] = gw.joins.requests.values()
    assert request.old_public == lan.keys["member3"].public
    publish(lan, admin.key_replaced(gw.c, "member3", request.public))
    publish(lan, admin.key_replaced(gw.c, "member2", HostKey(bytes([78]) * 32).public))
    lan.run_until(lambda: on_version(lan, 3), limit=3)
    assert m3.key is new_key and not m3.retired
    assert m2.retired  # a key it does not hold: out, and nothing leaves
    lan.run_until(lambda: in_rounds(lan) == frozenset({0, 2, 3}), limit=5)
    echo(lan, "member3", 7000)


def test_a_share_moves_to_a_new_gateway_with_announcements() -> None:
    lan = running(3, 2)
    g1, g2 = lan.gateway("gateway1"), lan.gateway("gateway2")
    text = admin.set_host(
        admin.next_version(g1.c.text, PATH),
        "gateways",
        "gateway2",
        {"addresses": ["198.18.0.196/30", "198.18.0.200/30"]},
    )
    publish(lan, text)
    lan.run_until(lambda: on_version(lan, 2), limit=3)
    lan.run(8.0)  # probes of the new addresses, then claims
    assert len(g2.addresses) == 12 and len(g2.held) == 8 and len(g1.held) == 4
    echo(lan, "member1", 8000)


def test_a_version_below_min_members_disbands_and_a_long_disband_ends_flows_quietly() -> None:
    c, keys = make_versioned(3, coalition={"disband_timeout": 5.0})
    lan = Lan(c, keys, internet=echo_internet)
    lan.run_until(lambda: len(lan.all_events(OutputSeen)) >= 9)
    gw = lan.gateway()
    m1 = lan.member("member1")
    lan.submit("member1", tcp(sport=41000, flags="S", seq=100))
    lan.submit("member1", tcp(sport=41000, flags="A", seq=101, ack=5000))
    lan.run_until(lambda: len(gw.flows) == 1, limit=3)
    publish(lan, admin.member_removed(gw.c, "member2"))
    lan.run_until(lambda: on_version(lan, 2), limit=3)
    lan.run(1.0)
    assert gw.leader.phase.value == "disbanded" and "min_members" in gw.c.shortfall
    emitted = len(lan.emitted)
    m1_host = lan.host("member1")
    m1_host.injected.clear()
    lan.run(3.0)
    assert len(m1.flows) == 1 and len(gw.flows) == 1  # not yet: a disband may be short
    lan.run(4.0)
    assert len(m1.flows) == 0 and len(gw.flows) == 0
    [ended] = [e for e in lan.events("member1") if isinstance(e, FlowsEnded)]
    assert (ended.flows, ended.reset) == (1, 1)
    [rst] = m1_host.injected  # inside the host: the application's connection is reset
    assert IP(rst)[TCP].flags == "R" and IP(rst)[TCP].seq == 5000 and IP(rst)[TCP].dport == 41000
    assert IP(rst).src == "203.0.113.10" and checksums_ok(rst)
    assert len(lan.emitted) == emitted  # and nothing left for the Internet: no burst of resets
    assert lan.events("gateway1", FlowsEnded)


def test_a_gateway_started_with_the_next_version_brings_it_to_everyone() -> None:
    lan = running(3, 1)
    g1 = lan.gateway("gateway1")
    g2_key = HostKey(bytes([88]) * 32)
    text = admin.add_host(
        admin.next_version(g1.c.text, PATH),
        "gateways",
        {
            "name": "gateway2",
            "public_key": encode_key(g2_key.public),
            "addresses": ["198.18.0.196/30"],
        },
    )
    v2 = loads(admin.sign(text, PATH, ADMIN), PATH)
    lan.add_gateway("gateway2", g2_key, v2)  # the new gateway runs it: its repeats carry it
    lan.run_until(lambda: on_version(lan, 2), limit=5)
    lan.run(8.0)  # probes, then its claims
    g2 = lan.gateway("gateway2")
    assert len(g1.held) == 4 and len(g2.held) == 4 and g1.leading and not g2.leading
    for sport in range(9000, 9012):  # flows on every address, the new gateway's too
        echo(lan, "member1", sport)
    assert {
        lan.gateway(n).addresses[i] for n in ("gateway1", "gateway2") for i in lan.gateway(n).held
    } == set(g2.addresses)
    assert any(name == "gateway2" for name, _ in lan.emitted)


def test_a_heartbeat_of_the_next_version_before_the_version_breaks_nothing() -> None:
    lan = running(3, 2)
    g1, g2 = lan.gateway("gateway1"), lan.gateway("gateway2")
    text = admin.set_host(
        admin.next_version(g1.c.text, PATH),
        "gateways",
        "gateway1",
        {"addresses": ["198.18.0.200/30"]},
    )
    v2 = loads(admin.sign(text, PATH, ADMIN), PATH)
    # gateway1's heartbeat in version 2's numbering (it holds addresses 8..11 of 12) reaches
    # gateway2 first: it is heard as alive, its addresses wait for the version
    hb = wire.Heartbeat(
        g1.hb_seq + 10,
        g1.leader.round,
        g1.leader.epoch,
        True,
        frozenset({8, 9, 10, 11}),
        12,
        version=2,
        text_digest=b"\0" * 16,
    )
    g2.receive_frame(
        lan.host("gateway1").mac, signed(lan.keys["gateway1"], hb.encode(g1.c.id, 0)), lan.now
    )
    assert g2.policy.peers[0].held <= frozenset(range(8))
    considered = g2.offer_version(v2.text, lan.now)
    assert considered.outcome is Outcome.APPLIED and g2.c.version == 2
    publish_text = g1.offer_version(v2.text, lan.now)
    assert publish_text.outcome is Outcome.APPLIED
    lan.collect()
    lan.run(8.0)
    assert {g1.addresses[i] for i in g1.held} == {
        a.packed for a in v2.gateway("gateway1").addresses
    }
    echo(lan, "member1", 9100)


def test_a_member_removed_then_added_again_takes_part_again() -> None:
    lan = running(4)
    gw = lan.gateway()
    m2 = lan.member("member2")
    key2 = lan.keys["member2"]
    publish(lan, admin.member_removed(gw.c, "member2"))
    lan.run_until(lambda: on_version(lan, 2), limit=3)
    assert m2.retired
    publish(lan, admin.member_added(gw.c, "member2", key2.public))
    lan.run_until(lambda: on_version(lan, 3), limit=3)
    assert not m2.retired
    index = gw.c.member("member2").index
    lan.run_until(lambda: index in in_rounds(lan), limit=5)
    echo(lan, "member2", 9200)


def test_a_gateway_key_is_replaced_without_restarts() -> None:
    lan = running(3, 2)
    g1, g2 = lan.gateway("gateway1"), lan.gateway("gateway2")
    new_key = HostKey(bytes([99]) * 32)
    g2.ask_for_key(new_key, lan.now)  # lanon rekey on gateway2
    lan.run_until(lambda: any(r.name == "gateway2" for r in g1.joins.requests.values()), limit=8)
    [request] = [r for r in g1.joins.requests.values() if r.name == "gateway2"]
    assert request.public == new_key.public and request.old_public == lan.keys["gateway2"].public
    publish(lan, admin.key_replaced(g1.c, "gateway2", request.public))
    lan.run_until(lambda: on_version(lan, 2), limit=3)
    assert g2.key is new_key and not g2.retired and g2.next_key is None
    lan.run(3.0)
    assert g1.policy.alive(lan.now) == frozenset({0, 1}) and len(g2.held) == 4
    for sport in range(9300, 9310):  # flows on gateway2's addresses too
        echo(lan, "member1", sport)
