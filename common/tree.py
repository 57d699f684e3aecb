"""The reduction tree of a round (schedule = "tree"; seed 000 §5.3.2).

The round's roster is arranged as a complete `fanout`-ary tree. Each member XORs its children's
vectors into its own and sends one vector to its parent; the root sends to the leader. The leader's
link then carries `fanout` vectors a round instead of one per member, and a round takes about
log_fanout(n) stages. The order is reshuffled every round (from the round number), so that the
work and the waiting of interior positions move around; everyone computes the same tree.

For anonymity the schedule does not matter: a parent sees its children's padded vectors, as
anyone on the LAN sees every member's in the star.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def order(roster: frozenset[int], rnd: int) -> list[int]:
    """The roster in tree order for round `rnd`: position 0 is the root."""
    seed = rnd.to_bytes(8, "big")
    return sorted(
        roster, key=lambda m: hashlib.blake2b(seed + m.to_bytes(4, "big"), digest_size=8).digest()
    )


@dataclass(frozen=True, slots=True)
class Place:
    position: int
    depth: int  # the root has depth 0
    height: int  # depth of the deepest position of this tree
    parent: int | None  # a member index, or None for the root (its parent is the leader)
    children: tuple[int, ...]  # member indices


def depth_of(position: int, fanout: int) -> int:
    d = 0
    while position > 0:
        position = (position - 1) // fanout
        d += 1
    return d


def place(roster: frozenset[int], rnd: int, member: int, fanout: int) -> Place:
    members = order(roster, rnd)
    pos = members.index(member)
    first = fanout * pos + 1
    children = tuple(members[first : min(first + fanout, len(members))])
    parent = None if pos == 0 else members[(pos - 1) // fanout]
    return Place(pos, depth_of(pos, fanout), depth_of(len(members) - 1, fanout), parent, children)


def forward_by(opened: float, deadline: float, p: Place) -> float:
    """When an interior member sends what it has, even without a silent child: deeper members
    earlier, so that the root still reaches the leader before its deadline."""
    stage = deadline / (p.height + 1)
    return opened + stage * (p.height - p.depth + 0.5)
