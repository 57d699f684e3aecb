"""The reduction tree of a round (schedule = "tree"; seed 000 §5.3.2).

The round's roster is arranged as a complete `fanout`-ary tree. Each member XORs its children's
vectors into its own and sends one vector to its parent; the root sends to the leader. The leader's
link then carries `fanout` vectors a round instead of one per member, and a round takes about
log_fanout(n) stages. The order is reshuffled every round (from the round number), so that the
work and the waiting of interior positions move around; everyone computes the same tree.

The shuffle is an affine permutation of the sorted roster, `position = (a * i + b) mod n` with `a`
a unit mod n, both drawn from a hash of the round: a host finds its own place, its parent and its
children with one hash and a few multiplications, whatever the size of the roster (wire version
12; ordering everyone by a keyed hash every round cost each host a hash per member and a sort).

Every member is at every position equally often (b is uniform). Pairs are not all alike: two
members whose indices are n/2 apart in the sorted roster are parent and child twice as often as
a random order would make them (2/n of rounds instead of 1/n). That matters only for the lever
below, which any member has every few rounds either way.

For anonymity the schedule does not matter: a parent sees its children's padded vectors, as
anyone on the LAN sees every member's in the star. For availability it does: a parent that
leaves a child's vector out of its sum has the leader count that child absent (out of rosters
until it says HELLO again), as a silent child would be, and every host can compute who will be
whose parent in any round. A hostile member can do this to whichever member it is parent of;
the leader's blame of silent members (gateway/leader.py `_missing`) cannot tell a dropped child
from a silent one. (A keyed Feistel permutation made pairs uniform, at 28 µs a place with 32
members against 5: not worth it for a lever that is there every few rounds.)
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

from lanon.common.wire import roster_order, roster_positions


@lru_cache(maxsize=64)
def _units(n: int) -> tuple[int, ...]:
    return tuple(a for a in range(1, n) if math.gcd(a, n) == 1) or (1,)


@dataclass(frozen=True, slots=True)
class Shuffle:
    """Round `rnd`'s order of a roster: who stands at which position of the tree."""

    roster: frozenset[int]
    members: tuple[int, ...]  # the roster, sorted
    a: int
    a_inverse: int
    b: int

    @classmethod
    def of(cls, roster: frozenset[int], rnd: int) -> Shuffle:
        members = roster_order(roster)
        n = len(members)
        seed = hashlib.blake2b(
            rnd.to_bytes(8, "big") + n.to_bytes(4, "big"), digest_size=16, person=b"lanon-tree-v1"
        ).digest()
        units = _units(n)
        a = units[int.from_bytes(seed[:8], "big") % len(units)]
        return cls(
            roster, members, a, pow(a, -1, n) if n > 1 else 0, int.from_bytes(seed[8:], "big") % n
        )

    def position(self, member: int) -> int:
        """`member`'s position; it must be in the roster."""
        i = roster_positions(self.roster).get(member)
        if i is None:
            raise ValueError(f"member {member} is not in the roster")
        return (self.a * i + self.b) % len(self.members)

    def at(self, position: int) -> int:
        return self.members[(self.a_inverse * (position - self.b)) % len(self.members)]


def order(roster: frozenset[int], rnd: int) -> list[int]:
    """The roster in tree order for round `rnd`: position 0 is the root (for tests and tools;
    hosts ask only for their own place)."""
    s = Shuffle.of(roster, rnd)
    return [s.at(q) for q in range(len(roster))]


def root(roster: frozenset[int], rnd: int) -> int:
    return Shuffle.of(roster, rnd).at(0)


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
    s = Shuffle.of(roster, rnd)
    n = len(s.members)
    pos = s.position(member)
    first = fanout * pos + 1
    children = tuple(s.at(q) for q in range(first, min(first + fanout, n)))
    parent = None if pos == 0 else s.at((pos - 1) // fanout)
    return Place(pos, depth_of(pos, fanout), depth_of(n - 1, fanout), parent, children)


def forward_by(opened: float, deadline: float, p: Place) -> float:
    """When an interior member sends what it has, even without a silent child: deeper members
    earlier, so that the root still reaches the leader before its deadline."""
    stage = deadline / (p.height + 1)
    return opened + stage * (p.height - p.depth + 0.5)
