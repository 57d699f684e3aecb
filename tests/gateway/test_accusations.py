"""The owner of a jammed slot accuses, anonymously and with proof; the gateways judge.

Played as the disruptor (a member that XORs junk into every reserved slot but its own), as
one who would accuse on behalf of another (no secret, another round, another slot, a bit
that did not emerge as 1, a repeat), and as a member reading outputs for the secrets.
"""

from __future__ import annotations

import random

from lanon.common.accusation import Accusation, open_accusation, seal_accusation, sealed_len
from lanon.common.events import AccusationJudged, SlotCorrupted
from lanon.common.flowkey import KeyWrapper
from lanon.common.output import RoundOutput
from lanon.common.reservation import SECRET_LEN
from lanon.gateway.accusations import Accusations, Judgement
from lanon.lab.jammer import Jamming
from tests.harness import Lan, running_lan
from tests.member.test_corruption import keep_sending


def jammed(rounds: int = 300, victims: tuple[str, ...] = ("member1", "member2")) -> Lan:
    lan = running_lan(4, gateways=2)
    lan.member("member4").rounds.__class__ = Jamming
    keep_sending(lan, list(victims), rounds)
    return lan


def test_the_owner_of_a_jammed_slot_proves_it_to_every_gateway() -> None:
    lan = jammed()
    corrupted = {
        (e.round, e.slot, e.bit)  # type: ignore[attr-defined]
        for m in ("member1", "member2")
        for e in lan.events(m, SlotCorrupted)
    }
    assert corrupted
    for g in ("gateway1", "gateway2"):
        judged = lan.events(g, AccusationJudged)
        proven = {(e.round, e.slot, e.bit) for e in judged if e.judgement == "proven"}  # type: ignore[attr-defined]
        assert proven and proven <= corrupted, g  # each one a real corruption, as its owner saw it
        # the jammer jams accusations too: some never come through; none was refused
        assert {e.judgement for e in judged} <= {"proven", "repeated"}, g  # type: ignore[attr-defined]
    # a victim keeps one accusation waiting, the latest, however much is jammed; its data
    # cells never share the accusation's slots
    cells = -(-sealed_len(2) // lan.c.cell_data)
    for m in ("member1", "member2"):
        assert len(lan.member(m).rounds.accusation) <= cells
        assert not any(p.accuses for p in lan.member(m).rounds.queue)


def test_a_lone_victim_whose_every_reserved_slot_is_jammed_still_accuses() -> None:
    """Its retried cells go back to the queue front round after round: the accusation must not
    queue behind them into reserved slots, where it would be jammed too."""
    lan = jammed(200, victims=("member1",))
    proven = [e for e in lan.events("gateway1", AccusationJudged) if e.judgement == "proven"]  # type: ignore[attr-defined]
    assert proven  # and the jammer was traced and excluded (tests/gateway/test_tracer.py)
    assert lan.gateway("gateway1").tracer.exclusions.members.keys() == {3}


def test_honest_contention_accuses_nobody() -> None:
    lan = running_lan(3, gateways=2)
    keep_sending(lan, ["member1", "member2", "member3"], 300)
    assert not lan.all_events(AccusationJudged)


def kept(lan: Lan) -> tuple[Accusations, Accusation]:
    """The first gateway's record of outputs, and a corruption member1 saw (with its proof)."""
    acc = lan.gateway("gateway1").egress.accusations
    e = next(
        e
        for e in reversed(lan.events("member1", SlotCorrupted))
        if {e.round - 1, e.round + 1} <= set(acc.outputs)  # type: ignore[attr-defined]
    )
    return acc, Accusation(e.round, e.slot, e.bit, e.secret)  # type: ignore[attr-defined]


def test_nobody_accuses_on_behalf_of_another_or_of_a_slot_not_written_into() -> None:
    lan = jammed(60)  # before the jammer's exclusion pushes its rounds out of the kept
    acc, a = kept(lan)
    judge = Accusations(acc.c, acc.key, acc.index)  # a fresh judge over the same outputs
    for out in acc.outputs.values():
        judge.record(out)
    forged = [
        (Accusation(a.round, a.slot, a.bit, bytes(SECRET_LEN)), Judgement.WRONG_SECRET),
        (Accusation(a.round + 10_000, a.slot, a.bit, a.secret), Judgement.UNKNOWN_ROUND),
        # the next round: another claim won the slot, or none did
        (
            Accusation(a.round + 1, a.slot, a.bit, a.secret),
            {Judgement.WRONG_SECRET, Judgement.NOT_GRANTED},
        ),
        (Accusation(a.round, 63, a.bit, a.secret), Judgement.NOT_GRANTED),
        (Accusation(a.round, a.slot, a.bit + 8 * 4096, a.secret), Judgement.OUTSIDE),
    ]
    for f, want in forged:
        assert judge.judge(f) in (want if isinstance(want, set) else {want}), (f, want)
    out = judge.outputs[a.round]
    zero = next(b for b in range(a.bit, a.bit + 4096) if not out.vector[b // 8] >> (7 - b % 8) & 1)
    assert judge.judge(Accusation(a.round, a.slot, zero, a.secret)) is Judgement.NOT_SET
    assert judge.judge(a) is Judgement.PROVEN
    assert judge.judge(a) is Judgement.REPEATED  # one is enough
    assert judge.judged[Judgement.PROVEN] == 1


def test_only_the_gateways_read_an_accusation_and_no_output_shows_the_secret() -> None:
    lan = jammed(60)  # before the jammer's exclusion pushes its rounds out of the kept
    acc, a = kept(lan)
    c = lan.c
    data = seal_accusation(a, KeyWrapper([g.public for g in c.gateways]), random.Random(1))
    for i, g in enumerate(c.gateways):
        assert open_accusation(lan.gateway(g.name).key, i, len(c.gateways), data) == a
    member_key = lan.member("member2").key
    assert open_accusation(member_key, 0, len(c.gateways), data) is None
    assert open_accusation(lan.gateway("gateway1").key, 1, len(c.gateways), data) is None
    # a member that reads every output finds no victim's secret in any of them
    secrets = {e.secret for m in ("member1", "member2") for e in lan.events(m, SlotCorrupted)}  # type: ignore[attr-defined]
    outputs: list[RoundOutput] = list(acc.outputs.values())
    assert outputs and not any(s in out.vector for s in secrets for out in outputs)
    # and anything else in a tag-0 cell is refused, not read
    assert acc.receive(b"\0" * len(data))[1] is Judgement.UNREADABLE
    assert acc.receive(b"junk")[1] is Judgement.UNREADABLE
