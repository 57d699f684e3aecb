"""The member's veto (sans-IO): data goes only into rounds that meet its own anonymity policy.

Any gateway may open a round with any roster that meets the coalition's `min_members`, and
whoever runs the switches can shrink a roster by blocking ports. A member therefore judges
every round itself before it puts a cell or a claim in it:

- the roster has at least `min_members` members (0: the coalition's), and at least
  `min_fraction` of the members this member saw in rosters within the last `window` seconds;
- the key graph among the roster is at least `min_k`-connected.

A round that fails is answered with an idle vector (the same frames, no data): nobody can tell
a veto from an idle member, and the cells wait for a round that passes. The smallest roster and
k that any of this member's cells went out with are kept for `lanon status`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lanon.common import keygraph
from lanon.common.coalition import Coalition
from lanon.common.events import VetoReason

CACHE = 256  # rosters whose connectivity is remembered


@dataclass(frozen=True, slots=True)
class AnonymityPolicy:
    min_members: int = 0  # 0: the coalition's min_members
    min_fraction: float = 0.67  # of the members seen recently
    min_k: int = 2
    window: float = 60.0  # seconds a member seen in a roster counts as recently present


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: VetoReason | None
    size: int
    k: int


class Veto:
    def __init__(self, coalition: Coalition, policy: AnonymityPolicy) -> None:
        self.c = coalition
        self.policy = policy
        self.min_members = policy.min_members or coalition.coalition.min_members
        self._seen: dict[int, float] = {}  # member -> when last seen in a roster, but:
        self._roster: frozenset[int] = frozenset()  # the last roster, whose members were
        self._roster_at = 0.0  # last seen then (written into _seen when the roster changes)
        self._others = 0  # members recently seen that are not in the last roster
        self._oldest_other = -math.inf  # when the first of them was last seen
        self._k: dict[frozenset[int], int] = {}
        self.smallest_set: int | None = None  # of the rounds our cells went out in
        self.smallest_k: int | None = None
        self.vetoed = 0

    def judge(self, roster: frozenset[int], now: float) -> Verdict:
        """Whether to put data into a round with this roster (seen now)."""
        recent = self._recent(roster, now)
        k = self._connectivity(roster)
        reason = None
        if len(roster) < self.min_members:
            reason = VetoReason.FEW_MEMBERS
        elif len(roster) < math.ceil(self.policy.min_fraction * recent - 1e-9):
            reason = VetoReason.SHRUNK
        elif k < self.policy.min_k and not self.c.trusted:  # trusted mode: no pads, no graph
            reason = VetoReason.WEAK_KEY_GRAPH
        if reason is not None:
            self.vetoed += 1
        return Verdict(reason, len(roster), k)

    def sent_with(self, verdict: Verdict) -> None:
        """Our cells went out in a round judged so."""
        self.smallest_set = min(verdict.size, self.smallest_set or verdict.size)
        self.smallest_k = min(verdict.k, self.smallest_k or verdict.k)

    def _recent(self, roster: frozenset[int], now: float) -> int:
        """How many members were seen in a roster within the window, this one included. The same
        roster every round costs nothing per member: the count changes only when the roster does
        or when a member seen earlier ages out."""
        if roster is not self._roster and roster != self._roster:
            for m in self._roster:
                self._seen[m] = self._roster_at
            self._roster = roster
            self._oldest_other = -math.inf
        if now < self._roster_at:  # (a clock that went back: count afresh)
            self._oldest_other = -math.inf
        self._roster_at = now
        window = self.policy.window
        if now - self._oldest_other > window:
            others = [t for m, t in self._seen.items() if m not in roster and now - t <= window]
            self._others = len(others)
            self._oldest_other = min(others, default=math.inf)
        return len(roster) + self._others

    def _connectivity(self, roster: frozenset[int]) -> int:
        k = self._k.get(roster)
        if k is None:
            if len(self._k) >= CACHE:
                self._k.clear()
            k = self._k[roster] = keygraph.connectivity(roster, self.c.edges).k
        return k
