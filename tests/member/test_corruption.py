"""A member whose reserved slot emerges corrupted knows it, and holds what an accusation needs;
honest contention never looks like corruption."""

from __future__ import annotations

from lanon.common.events import CellRetried, RetryReason, SlotCorrupted
from lanon.common.reservation import SECRET_LEN
from lanon.lab.jammer import Jamming
from tests.harness import running_lan
from tests.packets import udp


def keep_sending(lan, names: list[str], rounds: int) -> None:  # type: ignore[no-untyped-def]
    for k in range(rounds):
        for i, m in enumerate(names):
            eng = lan.member(m)
            while len(eng.queue) < 4:
                eng.submit_packet(
                    udp(src=f"198.18.0.{11 + i}", sport=40000 + k, payload=b"x" * 900), lan.now
                )
        lan.advance()


def test_the_owner_of_a_jammed_slot_learns_it_with_a_bit_to_accuse_and_its_proof() -> None:
    lan = running_lan(4)
    lan.member("member4").rounds.__class__ = Jamming
    keep_sending(lan, ["member1", "member2"], 300)
    for victim in ("member1", "member2"):
        seen = lan.events(victim, SlotCorrupted)
        assert seen, victim
        for e in seen:
            assert e.bit is not None and len(e.secret) == SECRET_LEN
        retried = [e for e in lan.events(victim, CellRetried) if e.reason is RetryReason.CORRUPTED]
        assert len(retried) == len(seen) == lan.member(victim).rounds.corrupted
    assert not lan.events("member4", SlotCorrupted)  # its own slots it leaves alone


def test_honest_contention_is_never_taken_for_corruption() -> None:
    lan = running_lan(3)
    keep_sending(lan, ["member1", "member2", "member3"], 400)
    for m in ("member1", "member2", "member3"):
        assert not lan.events(m, SlotCorrupted), m
        assert lan.events(m, CellRetried)  # they did contend
