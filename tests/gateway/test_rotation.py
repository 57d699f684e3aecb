"""Key epochs: rotation under traffic, forward secrecy, refusals, a leader that restarts."""

from typing import Any

from lanon.common.events import (
    CellDelivered,
    EpochChanged,
    RefuseReason,
    RoundAborted,
    RoundRefused,
)
from lanon.common.wire import AbortReason
from lanon.member.keys import BLAME_GRACE
from tests.harness import Lan
from tests.harness import running_lan as harness_lan
from tests.packets import udp


def started(n: int = 4, **kw: dict[str, Any]) -> Lan:
    return harness_lan(n, latency=0.001, **kw)


def test_rotation_does_not_interrupt_traffic_and_old_keys_are_gone() -> None:
    lan = started(4, rounds={"epoch_rounds": 20})
    first = lan.gateway().leader.epoch
    sent = 0
    while lan.gateway().leader.epoch < first + 10:
        lan.submit("member1", udp(sport=10000 + sent, payload=b"across epochs"))
        sent += 1
        lan.run(0.05)
    lan.run(1.0)
    assert len(lan.events("member1", CellDelivered)) == sent
    assert len(lan.host("member1").injected) == sent
    assert not lan.events("gateway1", RoundAborted)
    epoch = lan.gateway().leader.epoch
    assert len(lan.events("gateway1", EpochChanged)) >= 10
    for i in range(1, 5):  # forward secrecy: no key of a past epoch survives anywhere (but
        ring = lan.member(f"member{i}").keys  # the last one's, for blame, a moment after it)
        grace = lan.now - ring.adopted_at < BLAME_GRACE
        low = epoch - 1 if grace else epoch
        assert set(ring.pads.own) <= {low, epoch, epoch + 1}
        assert all(e >= low for _m, e in ring.pads.peers)
    assert all(min(keys) >= epoch for keys in lan.gateway().leader.ephemeral if keys)


def test_a_member_missing_a_key_refuses_and_the_round_is_redone_at_once() -> None:
    lan = started(4)
    m1 = lan.member("member1")
    epoch = m1.epoch
    m1.keys.pads.forget(1, epoch)  # member1 lost member2's key
    before = lan.now
    lan.run_until(lambda: bool(lan.events("gateway1", RoundAborted)), limit=2)
    abort = lan.events("gateway1", RoundAborted)[0]
    assert abort.reason is AbortReason.REFUSED and abort.missing == ("member1",)  # type: ignore[attr-defined]
    assert lan.now - before < lan.c.rounds.deadline  # no wait for the deadline
    assert [e.reason for e in lan.events("member1", RoundRefused)] == [RefuseReason.MISSING_KEY]  # type: ignore[attr-defined]
    lan.run_until(
        lambda: 0 in lan.gateway().leader.present and (1, epoch) in m1.keys.pads.peers, limit=5
    )
    lan.submit("member1", udp(payload=b"keys again"))
    lan.run_until(lambda: bool(lan.host("member1").injected), limit=5)


def test_a_restarted_leader_finds_the_epoch_and_rounds_resume() -> None:
    lan = started(4, rounds={"epoch_rounds": 30, "idle_interval": 0.02})
    lan.run(1.0)
    epoch = lan.gateway().leader.epoch
    assert epoch > 0
    lan.restart("gateway1")
    lan.run(3.0)
    assert lan.gateway().leading and lan.gateway().leader.epoch >= epoch
    lan.submit("member2", udp(src="198.18.0.12", payload=b"new leader"))
    lan.run_until(lambda: bool(lan.host("member2").injected), limit=5)
