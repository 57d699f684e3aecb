"""Blame end to end, in memory: a jammer is traced and excluded, and nobody honest ever is.

Played as the jammer (writes into others' reserved slots), as a jammer that lies about a pad,
one that stays silent when asked, as the network that loses an honest member's frames, as a
leader that restarts mid-trace, and as a leader that names an honest member in its verdict.
"""

from __future__ import annotations

import dataclasses

from lanon.common import wire
from lanon.common.accusation import Accusation
from lanon.common.blame import Outcome
from lanon.common.coalition import GatewayPeer
from lanon.common.engine import signed
from lanon.common.events import (
    BlameAnswered,
    CellDelivered,
    MemberExcluded,
    MemberReadmitted,
    SlotCorrupted,
    TraceEnded,
    VerdictChecked,
)
from lanon.common.reservation import ENTRY_LEN
from lanon.common.verdict import Evidence, distinct_entries, judge, pull_evidence
from lanon.lab.jammer import Flooding, Jamming
from lanon.member.contributor import Contributor
from lanon.member.revealer import Revealer
from tests.harness import Lan, running_lan
from tests.member.test_corruption import keep_sending

JAMMER = 3  # member4


def jammed(revealer: type[Revealer] | None = None) -> Lan:
    lan = running_lan(4, gateways=2)
    lan.member("member4").rounds.__class__ = Jamming
    if revealer is not None:
        lan.member("member4").blame.__class__ = revealer
    return lan


def traces(lan: Lan) -> list[TraceEnded]:
    return [e for e in lan.all_events(TraceEnded) if isinstance(e, TraceEnded)]


def excluded(lan: Lan) -> bool:
    return JAMMER in lan.gateway("gateway1").tracer.exclusions.members


def test_a_jammer_is_traced_excluded_and_the_others_go_on() -> None:
    lan = jammed()
    keep_sending(lan, ["member1", "member2"], 400)
    ended = traces(lan)
    assert any(e.outcome == "disruptor" and e.named == ("member4",) for e in ended)
    assert all(e.named in ((), ("member4",)) for e in ended)  # nobody else, ever
    first = next(e for e in ended if e.named)
    assert first.since_round < 1.0  # from the accused round to the exclusion
    for g in ("gateway1", "gateway2"):  # the standby mirrors the leader's heartbeat
        assert lan.gateway(g).tracer.exclusions.members.keys() == {JAMMER}, g
        assert [e.name for e in lan.events(g, MemberExcluded)] == ["member4"]  # type: ignore[attr-defined]
    for m in ("member1", "member2", "member3"):  # every honest member checked the evidence
        checked = [e for e in lan.events(m, VerdictChecked) if isinstance(e, VerdictChecked)]
        assert checked and all(e.agrees for e in checked), m
        assert any(e.named == ("member4",) for e in checked), m
        assert lan.member(m).blame.excluded.keys() == {JAMMER}
    # out of every roster from then on, and nothing is corrupted any more
    corrupted = len(lan.all_events(SlotCorrupted))
    keep_sending(lan, ["member1", "member2"], 200)
    assert len(lan.all_events(SlotCorrupted)) == corrupted
    opens = [
        wire.pull_open(wire.split_sealed(f, 4)[0]) for _s, _d, f in lan.frames(wire.MsgType.OPEN)
    ]
    assert JAMMER not in opens[-1].roster


def test_an_operator_readmits_an_excluded_member() -> None:
    lan = jammed()
    lan.run_until(lambda: excluded(lan) or bool(keep_sending(lan, ["member1"], 5)))
    leader = lan.gateway("gateway1")
    lan.run(1.5)
    assert JAMMER in lan.gateway("gateway2").tracer.exclusions.members
    lan.member("member4").rounds.__class__ = Contributor  # its operator mended it
    assert leader.readmit("member4", lan.now)
    assert not leader.readmit("member4", lan.now)  # not excluded any more
    lan.run(1.5)  # a heartbeat later, the standby follows
    assert JAMMER not in lan.gateway("gateway2").tracer.exclusions.members
    assert lan.events("gateway2", MemberReadmitted)
    keep_sending(lan, ["member1", "member4"], 100)  # and it takes part in rounds again
    opens = [
        wire.pull_open(wire.split_sealed(f, 4)[0]) for _s, _d, f in lan.frames(wire.MsgType.OPEN)
    ]
    assert JAMMER in opens[-1].roster


class LyingRevealer(Revealer):
    """Flips its pad bit with its first neighbour, so that its own bit reads 0."""

    def receive_blame(self, gateway: GatewayPeer, src: bytes, frame: bytes, now: float) -> None:
        b = wire.pull_blame(wire.split_auth(frame, wire.SIG_LEN)[0])
        if b.phase is not wire.BlamePhase.REVEAL:
            return super().receive_blame(gateway, src, frame, now)
        seen = self.rounds.history[b.round]
        keys, _ = self.pads.pair_keys(seen.epoch, seen.roster, seen.key_of)
        assert keys
        from lanon.common.crypto import pad_bit

        pads = {j: pad_bit(k, b.round, b.bit, seen.nslots, seen.nentries) for j, k in keys.items()}
        first = min(pads)
        pads[first] ^= 1
        own, publics = self.pads.publics(seen.epoch, seen.roster, seen.key_of)
        msg = wire.RevealMsg(b.round, b.bit, len(self.c.members), seen.opened, own, pads, publics)
        self.e.send(src, signed(self.key, msg.encode(self.c.id, self.index)))


class SilentRevealer(Revealer):
    def receive_blame(self, gateway: GatewayPeer, src: bytes, frame: bytes, now: float) -> None:
        return


def test_a_jammer_that_lies_about_a_pad_is_named_by_the_proofs() -> None:
    lan = jammed(LyingRevealer)
    keep_sending(lan, ["member1", "member2"], 300)
    lan.run(0.5)
    ended = traces(lan)
    assert any(e.named == ("member4",) for e in ended)
    assert all(e.named in ((), ("member4",)) for e in ended)
    assert lan.frames(wire.MsgType.PROOF)  # it came to proofs: the pads were disputed
    assert excluded(lan)


def test_a_jammer_that_stays_silent_is_kept_out_for_the_epoch_and_names_nobody() -> None:
    lan = jammed(SilentRevealer)
    keep_sending(lan, ["member1", "member2"], 300)
    lan.run(0.5)  # the wait for its reveal ends
    ended = traces(lan)
    assert ended and all(e.outcome == "incomplete" and not e.named for e in ended)
    assert ended[0].silent == ("member4",)
    tracer = lan.gateway("gateway1").tracer
    assert not tracer.exclusions.members
    assert tracer.exclusions.held == {JAMMER: lan.gateway("gateway1").leader.epoch}
    corrupted = len(lan.all_events(SlotCorrupted))
    keep_sending(lan, ["member1", "member2"], 100)
    assert len(lan.all_events(SlotCorrupted)) == corrupted  # out of the rosters meanwhile


def test_an_honest_member_whose_answers_are_lost_is_never_named() -> None:
    """Its silence names nobody and shields nobody: the jammer is named by its own signed
    contribution and pads; the silent member is only held out for the rest of the epoch."""
    lan = jammed()
    lan.member("member2").blame.__class__ = SilentRevealer  # crashed, or its REVEAL lost
    lan.run_until(lambda: bool(traces(lan)) or bool(keep_sending(lan, ["member1"], 3)))
    lan.run(0.5)
    first = traces(lan)[0]
    assert first.named == ("member4",) and "member2" in first.silent
    assert all(e.named in ((), ("member4",)) for e in traces(lan))
    assert lan.gateway("gateway1").tracer.exclusions.members.keys() == {JAMMER}


def test_a_leader_that_goes_away_mid_trace_names_nobody_and_the_next_one_traces() -> None:
    lan = jammed()
    for m in ("member1", "member2", "member3", "member4"):  # slow to answer: a trace waits
        lan.member(m).blame.__class__ = SilentRevealer
    leader = lan.gateway("gateway1")
    lan.run_until(
        lambda: leader.tracer.active is not None or bool(keep_sending(lan, ["member1"], 3))
    )
    lan.kill("gateway1")
    for m in ("member1", "member2", "member3", "member4"):
        lan.member(m).blame.__class__ = Revealer
    keep_sending(lan, ["member1", "member2"], 600)
    assert not lan.events("gateway1", TraceEnded)
    assert JAMMER in lan.gateway("gateway2").tracer.exclusions.members
    assert all(e.named in ((), ("member4",)) for e in traces(lan))


def first_verdict() -> tuple[Lan, Evidence]:
    """A jammed coalition, and the evidence of its first verdict, as it went out."""
    lan = jammed()
    lan.run_until(lambda: excluded(lan) or bool(keep_sending(lan, ["member1", "member2"], 5)))
    lan.run(0.3)
    pieces: dict[int, bytes] = {}
    for _s, _d, f in lan.frames(wire.MsgType.VERDICT):
        p = wire.pull_verdict(wire.split_auth(f, wire.SIG_LEN)[0])
        if p.round == traces(lan)[0].round:
            pieces[p.index] = p.data
    return lan, pull_evidence(b"".join(pieces[i] for i in sorted(pieces)))


def test_a_verdict_that_names_an_honest_member_does_not_check() -> None:
    """A leader holds every MAC key, but it cannot forge what members signed: a verdict that
    names anyone else than the evidence shows, or a reveal it changed, does not hold."""
    lan, ev = first_verdict()
    verify = lan.member("member1").verifier.verify
    finding = judge(lan.c, ev, verify)
    assert finding.outcome is Outcome.DISRUPTOR and finding.agrees(ev)
    framed = dataclasses.replace(ev, named=frozenset({1}))
    assert not judge(lan.c, framed, verify).agrees(framed)
    bent = dict(ev.reveals)
    key = (JAMMER, ev.bit)
    bent[key] = bent[key][:-1] + bytes([bent[key][-1] ^ 1])  # its signature breaks
    forged = dataclasses.replace(ev, reveals=bent)
    assert judge(lan.c, forged, verify).outcome is Outcome.INCOMPLETE  # nobody named


def test_a_member_reveals_nothing_at_a_bit_of_its_own_slot_it_did_not_accuse() -> None:
    """A gateway knows every claim's secret: it could ask the owner about a bit it wrote 1 in."""
    lan = running_lan(3, gateways=1)
    keep_sending(lan, ["member1"], 30)
    m = lan.member("member1")
    rnd, seen = next((r, a) for r, a in reversed(m.rounds.history.items()) if a.own)
    slot = min(seen.own)
    bit = (seen.nentries * ENTRY_LEN + slot * lan.c.coalition.cell_size) * 8 + 5
    g = lan.gateway()
    frame = signed(g.key, wire.Blame(rnd, bit, wire.BlamePhase.REVEAL).encode(lan.c.id, 0))
    m.receive_frame(lan.host("gateway1").mac, frame, lan.now)
    answered = [e for e in m.pop_events() if isinstance(e, BlameAnswered)]
    assert answered and "slot of ours" in answered[0].refused
    assert not [c for c in m.pop_commands() if getattr(c, "frame", b"  ")[1] == wire.MsgType.REVEAL]


def test_a_member_proves_only_a_pad_it_is_shown_to_be_disputed() -> None:
    """A proof opens the pair's pads for the epoch: a gateway that asks for one without a
    neighbour's signed REVEAL that disputes it gets nothing."""
    lan = running_lan(3, gateways=1)
    keep_sending(lan, ["member3"], 30)  # the slots are member3's
    m1, m2 = lan.member("member1"), lan.member("member2")
    rnd, seen = next(reversed(m1.rounds.history.items()))
    bit = (seen.nentries * ENTRY_LEN) * 8 + 5  # in reserved slot 0
    g = lan.gateway()
    src = lan.host("gateway1").mac

    def ask(reveal: bytes) -> list[BlameAnswered]:
        blame = wire.Blame(rnd, bit, wire.BlamePhase.PROVE, (0, 1), reveal)
        m1.receive_frame(src, signed(g.key, blame.encode(lan.c.id, 0)), lan.now)
        m1.pop_commands()
        return [e for e in m1.pop_events() if isinstance(e, BlameAnswered)]

    # member2's true REVEAL: its pad bit with member1 is member1's own: no dispute
    reveal = wire.Blame(rnd, bit, wire.BlamePhase.REVEAL).encode(lan.c.id, 0)
    m2.receive_frame(src, signed(g.key, reveal), lan.now)
    truthful = next(
        c.frame for c in m2.pop_commands() if getattr(c, "frame", b"  ")[1] == wire.MsgType.REVEAL
    )
    answered = ask(truthful)
    assert answered and answered[0].refused.startswith("no dispute")
    forged = truthful[:-1] + bytes([truthful[-1] ^ 1])  # not member2's signature
    assert ask(forged)[0].refused.startswith("no REVEAL signed")


def test_a_verdict_about_another_roster_than_the_members_signed_does_not_hold() -> None:
    """The leader leaves a member out of the round's roster in its evidence: its neighbours'
    reveals would then name it 'broken'. Every ATTEST signs the OPEN: nobody is named."""
    lan, ev = first_verdict()
    o = ev.open
    smaller = dataclasses.replace(o, roster=o.roster - {1}, key_ids=o.key_ids[:1] + o.key_ids[2:])
    opened = smaller.encode(lan.c.id, 0)
    framed = dataclasses.replace(ev, opened=opened, named=frozenset({0}))
    finding = judge(lan.c, framed, lan.member("member1").verifier.verify)
    assert finding.outcome is Outcome.INCOMPLETE and not finding.agrees(framed)


def test_exclusions_survive_a_leader_restart() -> None:
    lan = jammed()
    lan.run_until(lambda: excluded(lan) or bool(keep_sending(lan, ["member1"], 5)))
    lan.run(1.5)  # the standby has it from a heartbeat
    lan.restart("gateway1")  # a new process: it knows nothing
    lan.run(3.0)
    for g in ("gateway1", "gateway2"):
        assert lan.gateway(g).tracer.exclusions.members.keys() == {JAMMER}, g


def test_a_member_that_floods_the_reservations_is_traced_and_excluded() -> None:
    """Claims are anonymous; more of them than the roster may write is proof that someone
    claimed beyond its share. Such a round's grants are void (nobody's cell goes in them), and
    blame opens who wrote which entries: the flooder, and only it, wrote more than max_claims."""
    lan = running_lan(4, gateways=2)
    lan.member("member4").rounds.__class__ = Flooding
    keep_sending(lan, ["member1", "member2"], 200)
    lan.run(0.5)
    ended = traces(lan)
    assert any(e.flood and e.named == ("member4",) for e in ended), ended
    assert all(e.named in ((), ("member4",)) for e in ended)
    assert lan.gateway("gateway1").tracer.exclusions.members.keys() == {JAMMER}
    for m in ("member1", "member2", "member3"):
        checked = [e for e in lan.events(m, VerdictChecked) if isinstance(e, VerdictChecked)]
        assert checked and all(e.agrees for e in checked), m
    delivered = len(lan.events("member1", CellDelivered))
    keep_sending(lan, ["member1", "member2"], 100)  # the lanon goes on without it
    assert len(lan.events("member1", CellDelivered)) > delivered


def test_honest_contention_floods_nothing() -> None:
    lan = running_lan(4, gateways=1)
    keep_sending(lan, ["member1", "member2", "member3", "member4"], 300)
    assert not traces(lan)
    assert not any(lan.member(m).rounds.flooded for m in ("member1", "member2"))


def test_a_flood_trace_counts_entries_not_bits() -> None:
    """A leader that asks about several bits of one entry an honest member claimed would count
    that member more than once: members refuse, and such evidence names nobody."""
    lan = running_lan(4, gateways=1)
    lan.member("member4").rounds.__class__ = Flooding
    keep_sending(lan, ["member1"], 20)
    m = lan.member("member2")
    rnd = next(r for r in reversed(m.rounds.flooded) if r in m.rounds.history)
    bits = (0, 1, 2, 3, 4, 5)  # six bits of entry 0
    blame = wire.Blame(rnd, 0, wire.BlamePhase.FLOOD, bits=bits)
    g = lan.gateway()
    m.receive_frame(lan.host("gateway1").mac, signed(g.key, blame.encode(lan.c.id, 0)), lan.now)
    answered = [e for e in m.pop_events() if isinstance(e, BlameAnswered)]
    assert answered and "two in one entry" in answered[0].refused
    assert not distinct_entries(bits, 64) and distinct_entries((0, 128, 300), 64)


def test_a_plain_trace_never_opens_the_reservation_area() -> None:
    """Even in a flooded round, only a FLOOD trace (counting entries) reveals there: a single-bit
    trace at a 1-bit of an honest claim would name its claimant."""
    lan = running_lan(4, gateways=1)
    lan.member("member4").rounds.__class__ = Flooding
    keep_sending(lan, ["member1"], 20)
    m = lan.member("member2")
    rnd = next(r for r in reversed(m.rounds.flooded) if r in m.rounds.history)
    blame = wire.Blame(rnd, 3, wire.BlamePhase.REVEAL)
    g = lan.gateway()
    m.receive_frame(lan.host("gateway1").mac, signed(g.key, blame.encode(lan.c.id, 0)), lan.now)
    answered = [e for e in m.pop_events() if isinstance(e, BlameAnswered)]
    assert answered and "reservation area" in answered[0].refused


class BogusProver(LyingRevealer):
    """Lies about a pad, then answers a request to prove at once, with a proof of nothing."""

    def receive_blame(self, gateway: GatewayPeer, src: bytes, frame: bytes, now: float) -> None:
        b = wire.pull_blame(wire.split_auth(frame, wire.SIG_LEN)[0])
        if b.phase is not wire.BlamePhase.PROVE or self.index not in b.edge:
            return super().receive_blame(gateway, src, frame, now)
        peer = b.edge[1] if b.edge[0] == self.index else b.edge[0]
        junk = wire.ProofMsg(b.round, b.bit, peer, bytes(32), bytes(32), bytes(32), bytes(64))
        self.e.send(src, signed(self.key, junk.encode(self.c.id, self.index)))


def test_a_bogus_proof_sent_first_settles_nothing() -> None:
    lan = jammed(BogusProver)
    keep_sending(lan, ["member1", "member2"], 300)
    lan.run(0.5)
    assert any(e.named == ("member4",) for e in traces(lan))
    assert all(e.named in ((), ("member4",)) for e in traces(lan))


def test_an_accusation_the_leader_cannot_trace_is_counted() -> None:
    """Its round was led by another gateway, or is no longer kept: nobody can trace it."""
    lan = running_lan(3, gateways=1)
    g = lan.gateway()
    gone = min(g.leader.kept) - 1
    g.tracer.start(Accusation(gone, 0, 0, bytes(16)), lan.now, leading=True)
    ended = [e for e in g.pop_events() if isinstance(e, TraceEnded)]
    assert [e.outcome for e in ended] == ["unkept"] and g.tracer.outcomes == {"unkept": 1}
    g.tracer.start(Accusation(gone, 0, 0, bytes(16)), lan.now, leading=True)  # once a round
    assert g.tracer.outcomes == {"unkept": 1}
