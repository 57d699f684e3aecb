"""The claim and leadership policy, as a pure function of heartbeats and time."""

from __future__ import annotations

from lanon.gateway.claims import ClaimPolicy, PeerView
from tests.harness import make_coalition

C, _ = make_coalition(3, 3)  # gateway shares: #0 -> 0..3, #1 -> 4..7, #2 -> 8..11
SHARE = {0: frozenset(range(0, 4)), 1: frozenset(range(4, 8)), 2: frozenset(range(8, 12))}
LISTEN = C.rounds.gateway_timeout + 1.0


def policy(me: int) -> ClaimPolicy:
    return ClaimPolicy(C, me, 0.0)


def hear(
    p: ClaimPolicy, g: int, now: float, held: frozenset[int] = frozenset(), leader: bool = False
) -> None:
    p.heard(g, PeerView(now, int(now * 1e6), leader, held, 0))


def test_nothing_is_claimed_while_listening() -> None:
    d = policy(0).decide(LISTEN - 0.01, frozenset(), False)
    assert not d.claim and not d.lead


def test_after_listening_each_claims_its_share_and_the_lowest_leads() -> None:
    p0, p1 = policy(0), policy(1)
    for p, other in ((p0, 1), (p1, 0)):
        hear(p, other, LISTEN)
        hear(p, 2, LISTEN)
    d0 = p0.decide(LISTEN + 0.05, frozenset(), False)
    d1 = p1.decide(LISTEN + 0.05, frozenset(), False)
    assert d0.claim == SHARE[0] and d0.lead
    assert d1.claim == SHARE[1] and not d1.lead


def test_a_silent_gateways_share_goes_to_the_lowest_alive() -> None:
    p1, p2 = policy(1), policy(2)
    t = LISTEN + 1
    for p in (p1, p2):
        hear(p, 0, t - 1.0, SHARE[0], leader=True)  # last heard a second ago: dead
    hear(p1, 2, t, SHARE[2])
    hear(p2, 1, t, SHARE[1])
    d1 = p1.decide(t, SHARE[1], False)
    d2 = p2.decide(t, SHARE[2], False)
    assert d1.claim == SHARE[0] and d1.lead  # takeover and lead by the lowest alive
    assert not d2.claim and not d2.lead
    assert p1.previous_holder_silence(0, t) == 1.0


def test_a_returning_gateway_does_not_take_back_what_was_taken_over() -> None:
    p0 = policy(0)  # gateway 0 restarted: gateway 1 holds its share and leads now
    t = LISTEN + 0.05
    hear(p0, 1, t, SHARE[1] | SHARE[0], leader=True)
    hear(p0, 2, t, SHARE[2])
    d = p0.decide(t, frozenset(), False)
    assert not d.claim and not d.lead


def test_two_holders_the_higher_index_lets_go() -> None:
    p1 = policy(1)
    t = LISTEN + 0.05
    hear(p1, 0, t, SHARE[0] | {4})  # both say they hold address 4
    d = p1.decide(t, SHARE[1], False)
    assert d.release == {4}
    p0 = policy(0)
    hear(p0, 1, t, SHARE[1])
    assert not p0.decide(t, SHARE[0] | {4}, False).release


def test_two_leaders_the_higher_index_steps_down() -> None:
    p1 = policy(1)
    t = LISTEN + 0.05
    hear(p1, 0, t, SHARE[0], leader=True)
    assert not p1.decide(t, SHARE[1], True).lead
    p0 = policy(0)
    hear(p0, 1, t, SHARE[1], leader=True)
    assert p0.decide(t, SHARE[0], True).lead  # incumbent with the lower index keeps leading


def test_a_leader_keeps_leading_when_a_lower_gateway_returns() -> None:
    p1 = policy(1)
    t = LISTEN + 0.05
    hear(p1, 0, t, frozenset(), leader=False)  # gateway 0 is back, but does not lead
    assert p1.decide(t, SHARE[1] | SHARE[0], True).lead


def test_a_gateway_never_heard_gets_time_to_boot_before_its_share_is_taken() -> None:
    from lanon.gateway.claims import BOOT_GRACE

    p0 = policy(0)
    t = LISTEN + 0.05
    hear(p0, 2, t, SHARE[2])  # gateway 1 has not come up yet; gateway 2 is there
    assert p0.decide(t, frozenset(), False).claim == SHARE[0]
    t = LISTEN + BOOT_GRACE - 0.1
    hear(p0, 2, t, SHARE[2])
    assert p0.decide(t, SHARE[0], True).claim == frozenset()  # gateway 1 may still be booting
    t = LISTEN + BOOT_GRACE + 0.1
    hear(p0, 2, t, SHARE[2])
    assert p0.decide(t, SHARE[0], True).claim == SHARE[1]  # it never came: serve its addresses
