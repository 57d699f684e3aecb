"""An engine's `get_timer` names its earliest due work, whatever else waits: a daemon fires
its timers only then (common/daemon.py `run_timers`). A join request or a version's repeat
due before the next heartbeat once hid everything else, the leader's next OPEN too."""

from __future__ import annotations

from lanon.common.crypto import HostKey
from tests.harness import running_lan


def test_a_gateways_join_or_repeat_never_hides_the_leaders_next_open() -> None:
    lan = running_lan(3)
    g = lan.gateway()
    lt = g.leader.get_timer()
    assert lt is not None
    g.next_join = lt + 0.01  # due before the heartbeat, after the next OPEN
    g.next_heartbeat = lt + 1.0
    assert g.get_timer() == lt
    g.next_join = lt - 0.01  # and itself when it is the earliest
    assert g.get_timer() == lt - 0.01


def test_a_members_pending_rekey_never_hides_its_other_timers() -> None:
    lan = running_lan(3)
    m = lan.member("member1")
    m.ask_for_key(HostKey.generate(), lan.now)
    others = min(m.keys.get_timer(), m.rounds.get_timer(), m.last_in_roster + m.roster_silence)
    m.next_join = others + 0.2  # due before housekeeping, after the others
    m.next_housekeeping = others + 0.5
    assert m.get_timer() == others
    m.next_join = others - 0.1
    assert m.get_timer() == others - 0.1
