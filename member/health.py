"""What a member can tell about its lanon from where it sits: times in, a verdict out (pure).

A member sees rounds (OPENs, and whether it is in their roster) and, while there are none, the
leading gateway's heartbeats. From them:

    running      in the roster of the last rounds
    joining      rounds run, without this member (the leader has not taken it in, or refuses it)
    excluded     rounds run without it since a verdict named it (blame): until readmitted
    asking       not in the coalition file (yet): it asks to be added, with JOIN requests
    removed      a version of the coalition file left it out (or gave its name another key)
    paused       a leading gateway is alive but opens no rounds: too few members present
    no gateway   neither rounds nor a leading gateway's heartbeat for a while
    no rounds    no rounds, and the engine does not say whether a gateway is alive
    starting     just started, nothing heard yet

`HealthLog` turns successive verdicts into log lines: a problem is logged once it has lasted
PROBLEM_AFTER seconds (a restarting gateway or member is not one), then every REPEAT seconds
while it lasts, and its end once.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

QUIET = 2.0  # seconds without an OPEN (or a leader's heartbeat) before it counts as stopped
START_GRACE = 3.0  # seconds after start before silence is a problem
PROBLEM_AFTER = 5.0  # seconds a problem lasts before it is logged
REPEAT = 60.0  # seconds between repeats of a lasting problem in the log
MEMBER_HEARD = 3.0  # a member heard from this recently is present (KEYS come every second)


class State(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    JOINING = "joining"
    EXCLUDED = "excluded"
    ASKING = "asking"
    REMOVED = "removed"
    PAUSED = "paused"
    NO_GATEWAY = "no gateway"
    NO_ROUNDS = "no rounds"


PROBLEMS = frozenset(
    {
        State.JOINING,
        State.EXCLUDED,
        State.ASKING,
        State.REMOVED,
        State.PAUSED,
        State.NO_GATEWAY,
        State.NO_ROUNDS,
    }
)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the member knows, as times of the loop's clock (-inf: never)."""

    now: float
    started: float
    last_open: float  # the last OPEN of any roster
    last_in_roster: float  # the last OPEN whose roster held this member
    last_heartbeat: float | None  # a leading gateway's last heartbeat; None: not known
    members_heard: int | None  # members heard from lately, this one included; None: not known
    members: int  # members in the coalition file
    min_members: int
    foreign: bool = False  # frames of another coalition file or protocol version arrive lately
    excluded: bool = False  # a verdict it checked named this member (member/revealer.py)
    outside: str = ""  # "asking" (not in the coalition file yet) or "removed" (by a version)
    version: int = 0  # of the coalition file it runs
    behind: int = 0  # a newer version a leader runs, not yet heard whole here


@dataclass(frozen=True, slots=True)
class Health:
    state: State
    message: str
    since: float  # when this state began (as far as the member can tell)

    @property
    def problem(self) -> bool:
        return self.state in PROBLEMS


def assess(o: Observation) -> Health:
    now = o.now
    if o.outside == "asking":
        return Health(
            State.ASKING,
            f"asking to join: version {o.version} of the coalition file does not list this "
            "host with its key; its JOIN requests wait for an administrator (lanon admin "
            "pending, then approve)",
            o.started,
        )
    if o.outside == "removed":
        return Health(
            State.REMOVED,
            f"removed: version {o.version} of the coalition file leaves this host out; it "
            "takes no part, and nothing leaves with its address",
            o.started,
        )
    if now - o.last_in_roster < QUIET:
        return Health(State.RUNNING, "running: in the roster", o.last_in_roster)
    if now - o.last_open < QUIET:
        since = max(o.last_in_roster, o.started)
        if o.excluded:
            return Health(
                State.EXCLUDED,
                "excluded: a verdict (blame) shows this member wrote into slots not its own; "
                "out of every roster until an operator readmits it (lanon readmit)",
                since,
            )
        behind = (
            f" (the leader runs version {o.behind} of the coalition file, this host "
            f"{o.version}: waiting for the gateways to repeat it)"
            if o.behind > o.version
            else ""
        )
        return Health(
            State.JOINING,
            f"joining: rounds run without this member for {now - since:.0f} s{behind}",
            since,
        )
    heard = o.last_open if o.last_heartbeat is None else max(o.last_open, o.last_heartbeat)
    if now - o.started < START_GRACE and heard == float("-inf"):
        return Health(State.STARTING, "starting: waiting for a gateway", o.started)
    since = max(o.last_open, o.started)
    if o.last_heartbeat is None:
        why = (
            "frames of another coalition or version arrive: do all hosts use the same "
            "coalition file and lanon version?"
            if o.foreign
            else f"paused (fewer than {o.min_members} members present) or no gateway running"
        )
        return Health(State.NO_ROUNDS, f"no rounds for {now - since:.0f} s: {why}", since)
    if now - heard < QUIET:
        present = (
            f"{o.members_heard} of {o.members} members present"
            if o.members_heard is not None
            else "too few members present"
        )
        return Health(State.PAUSED, f"paused: {present} (min {o.min_members})", since)
    since = max(heard, o.started)
    hint = (
        " (frames of another coalition or version arrive: do all hosts use the same "
        "coalition file and lanon version?)"
        if o.foreign
        else ""
    )
    return Health(State.NO_GATEWAY, f"no gateway heard for {now - since:.0f} s{hint}", since)


class HealthLog:
    """Logs what changes in a member's health, without a WARNING for what every restart does."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.ran = False  # in a roster at least once
        self.logged: State | None = None  # the problem last logged, until it ends
        self.problem_since = 0.0
        self.next_repeat = 0.0

    def update(self, h: Health, now: float) -> None:
        if h.state is State.RUNNING:
            if not self.ran:
                self.log.info("running: in the roster")
            elif self.logged is not None:
                self.log.info(
                    "running again: in the roster (%s for %.0f s)",
                    self.logged.value,
                    now - self.problem_since,
                )
            self.ran = True
            self.logged = None
            return
        if not h.problem or now - h.since < PROBLEM_AFTER:
            return
        if self.logged is not h.state or now >= self.next_repeat:
            if self.logged is None:
                self.problem_since = h.since
            self.logged = h.state
            self.next_repeat = now + REPEAT
            self.log.warning("%s", h.message)
