"""The member's veto: a leader (or whoever blocks switch ports) cannot shrink the anonymity set
under a member's cells; the member answers such rounds with an idle vector and its cells wait."""

from __future__ import annotations

import random

from lanon.common import wire
from lanon.common.events import CellDelivered, RoundVetoed, VetoReason
from lanon.lab.sim import make_coalition
from lanon.member.veto import AnonymityPolicy, Veto
from tests.harness import Lan, running_lan
from tests.packets import udp


def delivered(lan: Lan, name: str) -> int:
    return len(lan.events(name, CellDelivered))


def shrink(lan: Lan, keep: int) -> None:
    """The other members fall silent: the leader runs rounds with `keep` of them."""
    for m in lan.c.members[keep:]:
        lan.kill(m.name)
    lan.run(1.0)
    assert len(lan.gateway().leader.present) == keep


def test_a_shrunk_roster_gets_no_data_and_the_cells_wait() -> None:
    lan = running_lan(6)
    shrink(lan, 3)  # 3 of the 6 members seen a moment ago
    before = delivered(lan, "member1")
    lan.submit("member1", udp(payload=b"only when the set is large enough"))
    lan.run(2.0)
    assert delivered(lan, "member1") == before  # vetoed: it waits
    vetoes = lan.events("member1", RoundVetoed)
    assert vetoes and all(v.reason is VetoReason.SHRUNK and v.size == 3 for v in vetoes)  # type: ignore[attr-defined]
    # its frames are those of an idle member: as many, as large as everyone else's
    rnd = lan.gateway().leader.round - 1
    sizes = {
        src: len(f)
        for src, _d, f in lan.frames(wire.MsgType.CONTRIB)
        if wire.pull_part(f).round == rnd
    }
    assert len(set(sizes.values())) == 1 and len(sizes) == 3
    for m in lan.c.members[3:]:  # the members come back: the cells go out
        lan.resume(m.name)
    lan.run_until(lambda: delivered(lan, "member1") > before, limit=10)
    assert lan.member("member1").veto.smallest_set == 6


def test_members_long_gone_no_longer_count() -> None:
    lan = running_lan(6)
    eng = lan.member("member1")
    eng.veto = Veto(lan.c, AnonymityPolicy(window=3.0))
    lan.run(0.5)
    shrink(lan, 3)
    before = delivered(lan, "member1")
    lan.submit("member1", udp(payload=b"later"))
    lan.run(1.0)
    assert delivered(lan, "member1") == before
    lan.run_until(lambda: delivered(lan, "member1") > before, limit=10)  # after the window
    assert eng.veto.smallest_set == 3


def test_a_roster_below_the_members_k_is_vetoed() -> None:
    lan = running_lan(4)
    eng = lan.member("member1")
    eng.veto = Veto(lan.c, AnonymityPolicy(min_fraction=0.0, min_k=3))
    shrink(lan, 3)  # a full mesh of 3: k = 2
    before = delivered(lan, "member1")
    lan.submit("member1", udp(payload=b"needs k = 3"))
    lan.run(2.0)
    assert delivered(lan, "member1") == before
    assert {v.reason for v in lan.events("member1", RoundVetoed)} == {VetoReason.WEAK_KEY_GRAPH}  # type: ignore[attr-defined]


def test_the_count_of_recent_members_is_the_plain_one_however_rosters_come() -> None:
    """The veto remembers rosters, not members, while the roster repeats (its cost a round does
    not grow with the roster): it must still count exactly who was seen within the window."""
    c, _ = make_coalition(12, 1)
    policy = AnonymityPolicy(min_members=1, window=5.0, min_fraction=1.0, min_k=0)
    veto = Veto(c, policy)
    seen: dict[int, float] = {}
    rng = random.Random(7)
    roster = frozenset(range(12))
    now = 0.0
    for _ in range(3000):
        now += rng.choice((0.01, 0.3, 2.0, 6.0, 0.1, -1.0, -7.0))  # (and back, once in a while)
        if rng.random() < 0.1:  # a new roster now and then, the same one in between
            roster = frozenset(rng.sample(range(12), rng.randrange(3, 13)))
        for m in roster:
            seen[m] = now
        recent = sum(1 for t in seen.values() if now - t <= policy.window)
        verdict = veto.judge(roster, now)
        shrunk = len(roster) < recent
        assert verdict.reason is (VetoReason.SHRUNK if shrunk else None), now
