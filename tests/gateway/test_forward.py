"""Rounds only move forward, lanon-wide, whoever leads: a frozen leader, a flap, a partition."""

from __future__ import annotations

from lanon.common import wire
from lanon.common.events import MemberChanged, OutputSeen, RefuseReason, RoundRefused
from tests.harness import Lan, running_lan
from tests.packets import udp


def outputs(lan: Lan, name: str) -> int:
    return len(lan.events(name, OutputSeen))


def exchange(lan: Lan, name: str, payload: bytes, limit: float) -> float:
    """Seconds until a UDP datagram from `name` got its echo back."""
    host = lan.host(name)
    before, start = len(host.injected), lan.now
    lan.submit(name, udp(src="198.18.0.12", payload=payload))
    lan.run_until(lambda: len(host.injected) > before, limit=limit)
    return lan.now - start


def test_a_leader_frozen_three_times_never_stops_the_lanon() -> None:
    lan = running_lan(4, 2)
    frozen = []
    for i in range(3):
        leader = next(g.name for g in lan.c.gateways if lan.gateway(g.name).leading)
        frozen.append(leader)
        lan.kill(leader)  # SIGSTOP: it keeps its state and its old round numbers
        lan.run(1.5)
        lan.resume(leader)
        forgiven = len(lan.events(leader, MemberChanged))
        seen = outputs(lan, "member2")
        # A datagram at once: the gateway that took over still holds and leads; the one that
        # comes back must not contest them (its emissions and the router's ARP would split).
        assert exchange(lan, "member2", b"at resume %d" % i, limit=1.0) < 1.0
        lan.run(2.0)
        assert len(lan.events(leader, MemberChanged)) == forgiven  # its pause: nobody's fault
        assert outputs(lan, "member2") > seen + 10, f"freeze {i + 1}: rounds did not resume"
        assert exchange(lan, "member2", b"after freeze %d" % i, limit=5.0) < 5.0
    # No flapping: the gateway frozen last holds nothing and does not lead; the other holds all.
    last, other = frozen[-1], next(g.name for g in lan.c.gateways if g.name != frozen[-1])
    assert not lan.gateway(last).held and not lan.gateway(last).leading
    assert lan.gateway(other).held == set(range(len(lan.c.anonymous)))
    assert lan.gateway(other).leading
    answered = [
        wire.pull_part(f).round
        for src, _d, f in lan.frames(wire.MsgType.CONTRIB)
        if src == lan.host("member2").mac
    ]
    answered = list(dict.fromkeys(answered))  # one entry a round (a vector may take parts)
    assert answered == sorted(answered), "a member answered a round below one it answered"


def test_a_member_says_which_round_it_expects_and_the_leader_adopts_it() -> None:
    lan = running_lan(3, 1)
    gw = lan.gateway()
    gw.leader.round -= 1000  # as if it led long ago and others led since
    lan.run(0.5)
    refused = [e for e in lan.all_events(RoundRefused) if e.reason is RefuseReason.STALE_ROUND]  # type: ignore[attr-defined]
    assert refused
    seen = outputs(lan, "member1")
    lan.run(0.5)
    assert outputs(lan, "member1") > seen + 5


def test_a_refusal_cannot_push_rounds_beyond_the_clock() -> None:
    lan = running_lan(3, 1)
    gw = lan.gateway()
    leader = gw.leader
    before = leader.epoch
    refuse = wire.Refuse(leader.round, wire.RefuseCode.STALE_ROUND, wire.MAX_ROUND, 7)
    from lanon.common.engine import maced

    mkey = leader.mac_keys[0]
    frame = maced(mkey, refuse.encode(lan.c.id, 0))
    gw.receive_frame(lan.host("member1").mac, frame, lan.now)
    wall_us = int((lan.now + leader.wall_offset) * 1e6)
    assert leader.floor <= wall_us + 2e6 * lan.c.rounds.clock_tolerance
    assert leader.epoch <= before + 1  # epochs move one step at a time
    lan.run(1.0)
    assert outputs(lan, "member1") > 5


def test_forged_output_parts_before_the_head_fix_nothing() -> None:
    """One forged OUTPUT_PART per round, with a huge part count, sent before the real output:
    every cell still gets through (it used to fix the round's part count: 0 of 20 delivered)."""
    from lanon.common.events import CellDelivered

    lan = running_lan(3, 2)
    attacker = bytes.fromhex("02666c6f6f64")
    delivered = len(lan.events("member1", CellDelivered))
    for i in range(20):
        rnd = lan.gateway("gateway1").leader.round
        for r in (rnd, rnd + 1):  # the round being collected and the next one
            forged = wire.Part(r, 0, 1000, b"\x00" * 100).encode(
                wire.MsgType.OUTPUT_PART, lan.c.id, 0
            )
            for h in lan.hosts.values():
                h.engine.receive_frame(attacker, forged, lan.now)
        lan.submit("member1", udp(payload=b"cell %d" % i))
        lan.run(0.05)
    lan.run(1.0)
    assert len(lan.events("member1", CellDelivered)) - delivered >= 20


def unheld_for(lan: Lan, seconds: float, step: float = 0.01) -> tuple[float, float]:
    """Over `seconds`: the longest an address was held by no gateway, and the longest one
    was held by two at once."""
    n = len(lan.c.anonymous)
    single = [lan.now] * n  # when the address last had a holder
    alone = [lan.now] * n  # when it last had at most one
    unheld = twice = 0.0
    for _ in range(int(seconds / step)):
        lan.run(step)
        for a in range(n):
            holders = sum(a in lan.gateway(g.name).held for g in lan.c.gateways)
            if holders:
                single[a] = lan.now
            if holders <= 1:
                alone[a] = lan.now
            unheld = max(unheld, lan.now - single[a])
            twice = max(twice, lan.now - alone[a])
    return unheld, twice


def test_a_gateway_frozen_while_the_other_is_dead_carries_on_with_everything() -> None:
    lan = running_lan(4, 2)
    lan.kill("gateway2")  # for good
    lan.run(2.0)
    everything = set(range(len(lan.c.anonymous)))
    assert lan.gateway("gateway1").held == everything
    lan.kill("gateway1")
    lan.run(0.6)
    lan.resume("gateway1")
    lan.run(0.02)
    assert lan.gateway("gateway1").held == everything and lan.gateway("gateway1").leading
    assert exchange(lan, "member2", b"after the freeze", limit=1.0) < 1.0


def test_a_freeze_just_over_the_timeout_leaves_no_address_long_unheld_nor_held_twice() -> None:
    for frozen in ("gateway1", "gateway2"):
        lan = running_lan(4, 2)
        lan.kill(frozen)
        lan.run(lan.c.rounds.gateway_timeout + 0.02)
        lan.resume(frozen)
        unheld, twice = unheld_for(lan, 1.5)
        assert unheld <= lan.c.rounds.gateway_timeout, (frozen, unheld)
        assert twice == 0, frozen
        assert sum(lan.gateway(g.name).leading for g in lan.c.gateways) == 1
        assert exchange(lan, "member2", b"after the freeze", limit=1.0) < 1.0


def test_a_quiet_spell_after_a_freeze_is_no_freeze_of_its_own() -> None:
    # A gateway timeout shorter than 2.5 heartbeats: the spell must still end (and, the other
    # gateway dead meanwhile, the one back from its freeze must take everything).
    lan = running_lan(4, 2, rounds={"gateway_timeout": 0.25})
    lan.kill("gateway2")
    lan.run(0.6)
    lan.kill("gateway1")  # for good
    lan.resume("gateway2")
    lan.run(2.0)
    assert lan.gateway("gateway2").held == set(range(len(lan.c.anonymous)))
    assert lan.gateway("gateway2").leading


def test_a_freeze_just_under_the_timeout_but_beyond_the_last_heartbeat_is_noticed() -> None:
    # The others time us out from our last heartbeat, up to one interval before the loop
    # last ran: a freeze of less than a gateway timeout can still let them take over.
    for pause in (0.31, 0.33, 0.35, 0.37, 0.39):
        lan = running_lan(4, 2)
        lan.kill("gateway1")
        lan.run(pause)
        lan.resume("gateway1")
        unheld, twice = unheld_for(lan, 1.0)
        # (a takeover at the moment its heartbeat comes back: the next heartbeat settles it)
        assert twice <= 2 * lan.c.rounds.heartbeat_interval, (pause, twice)
        assert unheld <= lan.c.rounds.gateway_timeout, (pause, unheld)
        assert sum(lan.gateway(g.name).leading for g in lan.c.gateways) == 1, pause
