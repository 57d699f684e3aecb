"""The contributor's promises, checked from outside as an observer or an attacker would: when a
round's answers leave and what they look like, the phase table, express slots, and what a
flood of INBOUND parts may make a member hold (in memory, explicit clock)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from lanon.common import flowkey, wire
from lanon.common.errors import LocalProtocolError
from lanon.common.events import (
    CellDelivered,
    CellRetried,
    Command,
    Contributed,
    FrameRejected,
    InjectPacket,
    OutputSeen,
    PacketDropped,
    RetryReason,
    RoundCompleted,
    SendFrame,
)
from lanon.common.parts import PartDrop
from lanon.member.contributor import _TRANSITIONS, Phase
from lanon.member.engine import HELLO_INTERVAL, MemberEngine
from tests.harness import Lan, make_coalition
from tests.packets import echo_internet, udp


def started(
    n: int, *, seed: int = 7, latency: float = 0.0, echo: bool = True, **sections: dict[str, Any]
) -> Lan:
    """Like harness.running_lan, with the LAN's random seed as a parameter."""
    c, keys = make_coalition(n, 1, seed=1, **sections)
    lan = Lan(c, keys, seed=seed, internet=echo_internet if echo else None, latency=latency)
    lan.run_until(lambda: len(lan.all_events(OutputSeen)) >= 3 * n)
    return lan


def member_ip(i: int) -> str:
    return f"198.18.0.{10 + i}"


@dataclass
class Mirror:
    """What a mirrored switch port shows: every frame with the moment it left its host, and
    when each OPEN reached each member (the kernel's receive stamp the member is given)."""

    sent: list[tuple[float, str, bytes]] = field(default_factory=list)  # (time, host, frame)
    arrived: dict[str, dict[int, float]] = field(default_factory=lambda: defaultdict(dict))

    def frames(self, mtype: wire.MsgType, host: str | None = None) -> list[tuple[float, bytes]]:
        return [
            (t, f)
            for t, h, f in self.sent
            if len(f) > 1 and f[1] == mtype and (host is None or h == host)
        ]

    def contribs(self) -> dict[int, dict[str, list[tuple[float, int]]]]:
        """round -> member -> [(time sent, frame length)] of its CONTRIB frames."""
        out: dict[int, dict[str, list[tuple[float, int]]]] = defaultdict(lambda: defaultdict(list))
        for t, h, f in self.sent:
            if len(f) > 1 and f[1] == wire.MsgType.CONTRIB:
                out[wire.pull_part(f[: -wire.MAC_LEN]).round][h].append((t, len(f)))
        return out


def mirror(lan: Lan) -> Mirror:
    """Record, without changing lab/sim.py, when every host's frames leave: the sim collects an
    engine's commands at the simulated moment the engine made them (`lan.now`), a round's answer at its moment."""
    seen = Mirror()
    nmembers = len(lan.c.members)
    for h in lan.hosts.values():
        eng = h.engine

        def pop(name: str = h.name, inner: Callable[[], list[Command]] = eng.pop_commands) -> Any:
            cmds = inner()
            sent = [(max(lan.now, c.at), name, c.frame) for c in cmds if isinstance(c, SendFrame)]
            seen.sent.extend(sent)  # an answer leaves at its moment (`at`), the rest at once
            return cmds

        eng.pop_commands = pop
        if isinstance(eng, MemberEngine):

            def receive(
                src: bytes,
                frame: bytes,
                now: float,
                name: str = h.name,
                inner: Callable[[bytes, bytes, float], None] = eng.receive_frame,
            ) -> None:
                if len(frame) > 1 and frame[1] == wire.MsgType.OPEN:
                    rnd = wire.pull_open(wire.split_sealed(frame, nmembers)[0]).round
                    seen.arrived[name].setdefault(rnd, now)
                inner(src, frame, now)

            eng.receive_frame = receive  # type: ignore[method-assign]
    return seen


# --- 1. constant-time answers ---------------------------------------------------------------


def test_busy_and_idle_members_answer_every_round_at_the_same_moment_with_the_same_frames() -> None:
    """member1 always has a full queue (many flows, most packets three cells long, their echoes
    coming back as multi-part INBOUNDs); the others have nothing. For every round, every
    member's CONTRIB frames leave together at the OPEN's arrival + answer_delay, the same
    moment for all, and they are as many and as large."""
    latency = 0.001
    lan = started(4, latency=latency)
    seen = mirror(lan)
    busy = lan.member("member1")
    delay = lan.c.rounds.answer_delay
    k = 0
    first = busy.last_round

    def answered() -> int:
        return sum(e.round > first for e in lan.events("member1", Contributed))  # type: ignore[attr-defined]

    while answered() < 150:
        while len(busy.queue) < 60:  # keep it full: 3000-byte datagrams and small ones
            size = 3000 if k % 4 else 120
            lan.submit("member1", udp(sport=20000 + k % 37, payload=bytes([k % 251]) * size))
            k += 1
        lan.advance()
    lan.run(0.01)  # let the last rounds' answers leave

    names = [f"member{i}" for i in range(1, 5)]
    opened_at = {
        wire.pull_open(wire.split_sealed(f, 4)[0]).round: t
        for t, f in seen.frames(wire.MsgType.OPEN, "gateway1")
    }
    contribs = seen.contribs()
    rounds = sorted(r for r in contribs if r > first)
    assert len(rounds) >= 150
    data_rounds = 0
    for rnd in rounds[:-1]:  # (the last may still be under way)
        by_member = contribs[rnd]
        assert sorted(by_member) == names, rnd  # every member answered every round
        moments = {m: {t for t, _ in frames} for m, frames in by_member.items()}
        for m in names:
            # all of a member's frames leave at once, at the OPEN's arrival + answer_delay
            assert moments[m] == {seen.arrived[m][rnd] + delay}, (rnd, m, moments[m])
            # and the OPEN arrived when the wire says (nothing member-specific in between)
            assert seen.arrived[m][rnd] == opened_at[rnd] + latency
        assert len({frozenset(v) for v in moments.values()}) == 1, (rnd, moments)
        shapes = {m: sorted(n for _, n in frames) for m, frames in by_member.items()}
        assert len({tuple(s) for s in shapes.values()}) == 1, (rnd, shapes)
        data_rounds += len(shapes["member1"]) > 1
    # rounds with data slots: the busy member really was busy, and it did not show
    assert data_rounds >= 0.9 * len(rounds)
    busy_rounds = [e for e in lan.events("member1", Contributed) if e.round > first]  # type: ignore[attr-defined]
    assert sum(e.busy for e in busy_rounds) >= 0.9 * len(busy_rounds)  # type: ignore[attr-defined]
    for m in names[1:]:
        assert not any(e.busy for e in lan.events(m, Contributed))  # type: ignore[attr-defined]
    assert len(lan.events("member1", CellDelivered)) >= 3 * len(rounds)
    assert lan.host("member1").injected  # echoes came back while it was busy
    assert all(lan.member(m).rounds.late == 0 for m in names)
    assert not lan.all_events(FrameRejected) and not lan.all_events(PacketDropped)


# --- 2. the phase table and the roster ------------------------------------------------------


def test_every_transition_outside_the_table_is_refused_and_changes_nothing() -> None:
    lan = started(3)
    rounds = lan.member("member1").rounds
    assert set(_TRANSITIONS) == set(Phase)
    illegal = [(a, b) for a in Phase for b in Phase if b not in _TRANSITIONS[a]]
    # no contribution leaves without a round accepted first, and never two rounds at once
    for must in [(Phase.OUTSIDE, Phase.SENT), (Phase.READY, Phase.SENT)]:
        assert must in illegal
    assert (Phase.ANSWERING, Phase.ANSWERING) in illegal
    assert (Phase.SENT, Phase.ANSWERING) in illegal
    for a, b in illegal:
        rounds.phase = a
        with pytest.raises(LocalProtocolError):
            rounds._to(b)
        assert rounds.phase is a
    for a, targets in _TRANSITIONS.items():
        for b in targets:
            rounds.phase = a
            rounds._to(b)
            assert rounds.phase is b


def test_in_roster_follows_the_rounds_that_name_us_and_hello_is_said_outside() -> None:
    """A model of `in_roster` from what an observer sees, checked after every step: True iff
    the latest OPEN that reached the member names it and came less than roster_silence ago.
    The member joins, the leader stops hearing it (a round without it follows the deadline),
    hears it again, then goes silent (no rounds at all)."""
    c, keys = make_coalition(4, 1)
    lan = Lan(c, keys, internet=None)
    eng = lan.member("member1")
    me = lan.host("member1").mac
    assert not eng.in_roster and eng.rounds.phase is Phase.OUTSIDE
    assert [s for s, _d, _f in lan.frames(wire.MsgType.HELLO) if s == me]  # said at the start
    seen = mirror(lan)
    transitions: list[tuple[Phase, Phase]] = []
    inner_to = eng.rounds._to

    def to(phase: Phase) -> None:
        before = eng.rounds.phase
        inner_to(phase)
        transitions.append((before, phase))

    eng.rounds._to = to  # type: ignore[method-assign]
    rosters: dict[int, frozenset[int]] = {}

    def model() -> bool:
        for _t, f in seen.frames(wire.MsgType.OPEN, "gateway1")[len(rosters) :]:
            o = wire.pull_open(wire.split_sealed(f, 4)[0])
            rosters[o.round] = o.roster
        arrived = seen.arrived["member1"]
        if not arrived:
            return False
        rnd = max(arrived, key=lambda r: arrived[r])
        return 0 in rosters[rnd] and lan.now - arrived[rnd] < eng.roster_silence

    def step_until(done: Callable[[], bool], limit: float) -> None:
        end = lan.now + limit
        while not done():
            assert lan.now <= end, "not within the limit"
            lan.advance()
            assert eng.in_roster == model(), (lan.now, eng.rounds.phase)
            assert eng.in_roster == (eng.rounds.phase is not Phase.OUTSIDE)

    def hellos_since(t: float) -> list[float]:
        return [at for at, _f in seen.frames(wire.MsgType.HELLO, "member1") if at >= t]

    def contribs_since(t: float) -> list[float]:
        return [at for at, _f in seen.frames(wire.MsgType.CONTRIB, "member1") if at >= t]

    # 1. not in the roster until a round names it
    step_until(lambda: eng.in_roster, limit=5.0)
    assert 0 in rosters[max(seen.arrived["member1"])]
    step_until(lambda: len(lan.events("member1", OutputSeen)) >= 10, limit=5.0)

    # 2. the leader stops hearing member1: the deadline forgives it, the next round omits it
    gw = lan.host("gateway1")
    gw.allow = frozenset(mac for mac in lan.hosts if mac != me)
    step_until(lambda: not eng.in_roster, limit=2.0)
    left = lan.now
    assert left - eng.last_in_roster < eng.roster_silence  # a round without it, not silence
    assert 0 not in rosters[max(seen.arrived["member1"])]
    assert hellos_since(left) == [left]  # asks to come back at once
    until = left + 3 * HELLO_INTERVAL + 0.1
    step_until(lambda: lan.now >= until, limit=2.0)  # still rounds, none with it
    assert not eng.in_roster
    assert hellos_since(left) == pytest.approx([left + i * HELLO_INTERVAL for i in range(4)])
    assert contribs_since(left) == []
    assert len(lan.events("gateway1", RoundCompleted)) > 10

    # 3. heard again: back in the roster with the next round
    gw.allow = None
    step_until(lambda: eng.in_roster, limit=2 * HELLO_INTERVAL)
    back = lan.now
    step_until(lambda: bool(contribs_since(back)), limit=1.0)

    # 4. no rounds at all (the gateway is gone): out after roster_silence, HELLO at once
    lan.kill("gateway1")
    step_until(lambda: not eng.in_roster, limit=2 * eng.roster_silence)
    silent = lan.now
    assert silent - eng.last_in_roster == pytest.approx(eng.roster_silence)
    assert hellos_since(silent) == [silent]
    step_until(lambda: lan.now >= silent + 1.0, limit=2.0)
    assert hellos_since(silent) == pytest.approx([silent + i * HELLO_INTERVAL for i in range(3)])
    assert contribs_since(silent) == []

    # every phase change went by the table: join, then READY -> ANSWERING -> (SENT) -> READY
    # (the output may come back before the engine's timer marks the answer sent)
    assert transitions[0][0] is Phase.OUTSIDE
    assert {(Phase.READY, Phase.ANSWERING), (Phase.ANSWERING, Phase.READY)} <= set(transitions)
    assert all(b in _TRANSITIONS[a] for a, b in transitions)
    # each answer left at its round's moment, the OPEN's arrival + answer_delay
    sends = {at for at, _f in seen.frames(wire.MsgType.CONTRIB, "member1")}
    delay = lan.c.rounds.answer_delay
    assert sends and sends <= {t + delay for t in seen.arrived["member1"].values()}


# --- 3. express slots -----------------------------------------------------------------------


@pytest.mark.parametrize("phase", [Phase.READY, Phase.ANSWERING, Phase.SENT])
def test_a_lone_packet_leaves_in_the_next_round_without_a_reservation(phase: Phase) -> None:
    """Whatever the member is doing when the packet comes, it is carried by the next OPEN the
    member answers: one round, in an express slot, with no claim anywhere."""
    lan = started(4, latency=0.002)
    eng = lan.member("member1")
    lan.run_until(lambda: eng.rounds.phase is phase, limit=1.0)
    mark, gmark = len(lan.events("member1")), len(lan.events("gateway1"))
    lan.submit("member1", udp(payload=b"the first packet of a conversation"))
    lan.run_until(lambda: bool(lan.events("member1", CellDelivered)))
    after = lan.events("member1")[mark:]
    delivered = next(i for i, e in enumerate(after) if isinstance(e, CellDelivered))
    answered = [e for e in after[:delivered] if isinstance(e, Contributed)]
    assert len(answered) == 1 and answered[0].busy  # exactly one OPEN answered
    rnd = answered[0].round
    assert next(e for e in after[delivered:] if isinstance(e, OutputSeen)).round == rnd
    assert not [e for e in after if isinstance(e, CellRetried)]
    done = [e for e in lan.events("gateway1")[gmark:] if isinstance(e, RoundCompleted)]
    carrying = next(e for e in done if e.round == rnd)
    assert carrying.nslots == lan.c.rounds.express_slots  # no reserved slot in that round
    assert (carrying.used, carrying.garbled, carrying.claims) == (1, 0, 0)
    assert all(e.claims == 0 for e in done)  # nobody reserved anything, before or after
    lan.run_until(lambda: bool(lan.host("member1").injected))


def two_at_once(seed: int, express_slots: int) -> str:
    """member1 and member2 get a packet at the same moment; how it went ("express": both in
    the next round, different slots; "collided": they met in a slot and retried)."""
    lan = started(4, seed=seed, rounds={"express_slots": express_slots, "linger": 0.0})
    gmark = len(lan.events("gateway1"))
    payloads = {"member1": b"one says hi", "member2": b"two says hi"}
    for i, (name, payload) in enumerate(payloads.items(), 1):
        lan.member(name).submit_packet(udp(src=member_ip(i), payload=payload), lan.now)
    lan.run_until(lambda: all(lan.host(m).injected for m in payloads), limit=10.0)
    lan.run(0.5)
    for name, payload in payloads.items():  # no loss, no duplicate
        assert len(lan.events(name, CellDelivered)) == 1
        assert [p[-len(payload) :] for p in lan.host(name).injected] == [payload]
    assert sorted(p[-11:] for _g, p in lan.emitted) == sorted(payloads.values())
    done = [e for e in lan.events("gateway1")[gmark:] if isinstance(e, RoundCompleted)]
    first = next(e for e in done if e.used or e.garbled)
    retries = {m: [e.reason for e in lan.events(m, CellRetried)] for m in payloads}  # type: ignore[attr-defined]
    if first.garbled == 0:
        assert first.used == 2 and first.nslots == express_slots
        assert retries == {m: [] for m in payloads}
        return "express"
    assert (first.used, first.garbled) == (0, 1)
    assert all(r and r[0] is RetryReason.DATA_COLLISION for r in retries.values()), retries
    return "collided"


def test_two_new_packets_with_one_express_slot_collide_then_both_arrive() -> None:
    assert {two_at_once(seed, 1) for seed in range(1, 4)} == {"collided"}


def test_two_new_packets_with_several_express_slots_meet_or_not_and_both_arrive() -> None:
    outcomes = [two_at_once(seed, 3) for seed in range(1, 9)]
    assert set(outcomes) == {"express", "collided"}, outcomes  # both cases were exercised


# --- 4. inbound reassembly is bounded -------------------------------------------------------


def test_a_flood_of_inbound_parts_never_grows_reassembly_past_its_bounds() -> None:
    """The gateway (or its stolen key) sends member1, for one of its flows, many first parts of
    packets that never complete, then many parts of a few huge ones: the member holds at most
    max_pending packets and max_bytes bytes, counts what it gave up, and still takes a genuine
    packet afterwards; what is left expires."""
    lan = started(3, rounds={"linger": 0.0})  # (fewer rounds to simulate while it expires)
    lan.submit("member1", udp(payload=b"open a flow"))
    lan.run_until(lambda: bool(lan.host("member1").injected))
    gw_mac, _dst, genuine = lan.frames(wire.MsgType.INBOUND)[-1]
    real = wire.pull_inbound(genuine)
    eng = lan.member("member1")
    flow = eng.flows.by_tag(real.tag)
    assert flow is not None and flow.inbound_seq is not None and real.count == 1
    cipher = lan.c.coalition.inbound_cipher
    plain = flowkey.open_part(
        flow.secret, 0, real.seq, genuine[: wire.INBOUND_HEAD], real.payload, cipher
    )
    assert plain is not None
    parts = eng.inbound.parts
    seq = flow.inbound_seq[0]
    size = lan.c.inbound_capacity  # a full INBOUND frame's worth
    eng.pop_events()

    def feed(index: int, count: int, payload: bytes) -> list[Command]:
        nonlocal seq
        seq += 1
        head = wire.Inbound(seq, real.tag, index, count, b"").encode(lan.c.id, 0)
        sealed = flowkey.seal_part(flow.secret, 0, seq, head, payload, cipher)
        eng.receive_frame(gw_mac, head + sealed, lan.now)
        held = sum(w.size for w in parts._pending.values())
        assert len(parts) <= parts.max_pending and parts.bytes_pending <= parts.max_bytes
        assert parts.bytes_pending == held  # and the count of bytes is true
        return eng.pop_commands()

    for i in range(3 * parts.max_pending):  # first parts of three-part packets
        assert feed(0, 3, bytes([i % 256]) * size) == []
    assert len(parts) == parts.max_pending
    assert parts.drops[PartDrop.EVICTED] == 2 * parts.max_pending
    huge = parts.max_parts
    wholes = -(-2 * parts.max_bytes // ((huge - 1) * size))  # twice the byte budget
    for w in range(wholes):  # every part but the last of a few packets as large as can be
        for i in range(huge - 1):
            assert feed(i, huge, bytes([w]) * size) == []
    assert parts.bytes_pending > parts.max_bytes - huge * size  # the byte bound was reached
    assert not [e for e in eng.pop_events() if isinstance(e, FrameRejected)]

    half = len(plain) // 2  # a genuine packet, in two parts, still gets through
    assert feed(0, 2, plain[:half]) == []
    injected = [c for c in feed(1, 2, plain[half:]) if isinstance(c, InjectPacket)]
    assert len(injected) == 1 and injected[0].packet.endswith(b"open a flow")

    lan.run(7.0)  # the reassembly timeout and a housekeeping sweep
    assert len(parts) == 0 and parts.bytes_pending == 0


def round_after_collision(seed: int) -> RoundCompleted:
    """member1 and member2 meet in the one express slot: the round that follows, as the leader
    completed it."""
    lan = started(4, seed=seed, rounds={"express_slots": 1, "linger": 0.0})
    gmark = len(lan.events("gateway1"))
    names = ("member1", "member2")
    for i, name in enumerate(names, 1):
        lan.member(name).submit_packet(udp(src=member_ip(i), payload=b"new"), lan.now)
    lan.run_until(lambda: all(lan.events(m, CellDelivered) for m in names), limit=10.0)
    done = {e.round: e for e in lan.events("gateway1")[gmark:] if isinstance(e, RoundCompleted)}
    hit = next(r for r, e in done.items() if e.garbled)
    return done[hit + 1]


def test_after_an_express_collision_both_members_reserve_instead() -> None:
    """rounds.express_slots: 'two at once collide (detected) and reserve instead'; contributor:
    'someone else had a new packet too: reserve for a while'. The round after the collision
    should carry two claims and no cell (the one after, both cells in reserved slots)."""
    for seed in range(1, 9):
        after = round_after_collision(seed)
        assert (after.used, after.garbled, after.claims) == (0, 0, 2), (seed, after)
