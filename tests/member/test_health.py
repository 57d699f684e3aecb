"""What a member says about its lanon: paused, no gateway, joining; logged once, not on restarts."""

from __future__ import annotations

import logging

import pytest

from lanon.member.health import (
    PROBLEM_AFTER,
    REPEAT,
    Health,
    HealthLog,
    Observation,
    State,
    assess,
)

NEVER = float("-inf")


def seen(now: float, **kw: object) -> Observation:
    values: dict[str, object] = {
        "now": now,
        "started": 0.0,
        "last_open": NEVER,
        "last_in_roster": NEVER,
        "last_heartbeat": NEVER,
        "members_heard": 1,
        "members": 3,
        "min_members": 3,
    }
    values.update(kw)
    return Observation(**values)  # type: ignore[arg-type]


def test_in_the_roster_is_running() -> None:
    h = assess(seen(100.0, last_open=99.9, last_in_roster=99.9))
    assert h.state is State.RUNNING and not h.problem


def test_rounds_without_us_is_joining() -> None:
    h = assess(seen(100.0, last_open=99.9, last_in_roster=88.0))
    assert (
        h.state is State.JOINING and h.message == "joining: rounds run without this member for 12 s"
    )


def test_a_living_leader_without_rounds_is_paused_with_who_is_there() -> None:
    h = assess(
        seen(100.0, last_open=50.0, last_in_roster=50.0, last_heartbeat=99.9, members_heard=2)
    )
    assert h.state is State.PAUSED
    assert h.message == "paused: 2 of 3 members present (min 3)"
    h = assess(seen(100.0, last_heartbeat=99.9, members_heard=None))
    assert h.message == "paused: too few members present (min 3)"


def test_silence_is_no_gateway_for_so_long() -> None:
    h = assess(seen(100.0, last_open=80.0, last_in_roster=80.0, last_heartbeat=88.0))
    assert h.state is State.NO_GATEWAY and h.message == "no gateway heard for 12 s"
    h = assess(seen(12.0))  # never heard one since the start
    assert h.message == "no gateway heard for 12 s"
    h = assess(seen(12.0, foreign=True))
    assert "do all hosts use the same coalition file and lanon version?" in h.message


def test_without_heartbeats_the_member_says_both_possibilities() -> None:
    h = assess(seen(100.0, last_open=88.0, last_heartbeat=None))
    assert h.state is State.NO_ROUNDS
    assert h.message == (
        "no rounds for 12 s: paused (fewer than 3 members present) or no gateway running"
    )


def test_just_started_is_starting_not_a_problem() -> None:
    h = assess(seen(1.0))
    assert h.state is State.STARTING and not h.problem


def at(state: State, since: float, message: str = "") -> Health:
    return Health(state, message or state.value, since)


def test_the_log_says_each_problem_once_and_its_end(caplog: pytest.LogCaptureFixture) -> None:
    log = HealthLog(logging.getLogger("test.health"))
    with caplog.at_level(logging.INFO, "test.health"):
        log.update(at(State.STARTING, 0.0), 0.5)
        log.update(at(State.RUNNING, 1.0), 1.0)
        log.update(at(State.RUNNING, 2.0), 2.0)
        # a gateway restart: two seconds without rounds, then rounds again (nothing to say)
        log.update(at(State.NO_GATEWAY, 2.0, "no gateway heard for 2 s"), 4.0)
        log.update(at(State.RUNNING, 4.5), 4.5)
        # a real pause: said once it has lasted, repeated a minute later, its end said once
        log.update(at(State.PAUSED, 10.0, "paused: 2 of 3 members present (min 3)"), 11.0)
        log.update(
            at(State.PAUSED, 10.0, "paused: 2 of 3 members present (min 3)"), 10 + PROBLEM_AFTER
        )
        log.update(at(State.PAUSED, 10.0, "paused: 2 of 3 members present (min 3)"), 16.0)
        log.update(
            at(State.PAUSED, 10.0, "paused: 2 of 3 members present (min 3)"),
            10 + PROBLEM_AFTER + REPEAT,
        )
        log.update(at(State.RUNNING, 80.0), 80.0)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("INFO", "running: in the roster"),
        ("WARNING", "paused: 2 of 3 members present (min 3)"),
        ("WARNING", "paused: 2 of 3 members present (min 3)"),
        ("INFO", "running again: in the roster (paused for 70 s)"),
    ]
