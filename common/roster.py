"""Which rosters may run a round (sans-IO policy): the leader opens none other, and members
refuse one (the coalition file holds the settings; this is the rule)."""

from __future__ import annotations

from dataclasses import dataclass

from lanon.common import keygraph
from lanon.common.coalition import Coalition
from lanon.common.events import RefuseReason


@dataclass(frozen=True, slots=True)
class RosterProblem:
    """Why a roster may not run a round: what a member refuses it with."""

    reason: RefuseReason  # ROSTER_TOO_SMALL or WEAK_KEY_GRAPH
    detail: str


class RosterCheck:
    """Whether a round's roster may run: at least min_members, and a key graph among them at
    least 2-connected (else a member's neighbour alone would know what it sends). The leader
    opens no such round and members refuse one; verdicts are kept per roster (bounded)."""

    LIMIT = 256

    def __init__(self, coalition: Coalition) -> None:
        self.c = coalition
        self._verdicts: dict[frozenset[int], RosterProblem | None] = {}

    def __call__(self, roster: frozenset[int]) -> RosterProblem | None:
        """None if the roster may run, else its problem."""
        if roster in self._verdicts:
            return self._verdicts[roster]
        need = self.c.coalition.min_members
        verdict: RosterProblem | None = None
        if len(roster) < need:
            verdict = RosterProblem(
                RefuseReason.ROSTER_TOO_SMALL, f"{len(roster)} member(s), at least {need} needed"
            )
        elif not self.c.trusted:  # trusted mode has no pads: the key graph plays no part
            k = keygraph.connectivity(roster, self.c.edges).k
            if k < 2:
                verdict = RosterProblem(
                    RefuseReason.WEAK_KEY_GRAPH, f"the key graph among them is {k}-connected"
                )
        if len(self._verdicts) >= self.LIMIT:
            self._verdicts.clear()
        self._verdicts[roster] = verdict
        return verdict
