"""Blame (sans-IO, pure): who wrote into a slot that was not theirs, from what a round's members
reveal about one bit of it. The protocol that carries accusations and reveals builds on this.

    the owner      its reserved slot emerged corrupted (`SlotCorrupted`): it names the round, a
                   bit of the slot where it wrote 0 and 1 emerged (`choose_bit`), and the secret
                   its reservation claim committed to (`reservation.proves_claim`): only the
                   slot's owner can accuse, and the accusation travels in a cell, sealed to
                   the gateways (common/accusation.py), which judge it (gateway/accusations.py)
    the leader     shows each roster member's contribution bit there (what the member signed)
    every member   reveals its pad bit there with each key-graph neighbour in the roster
                   (`Reveal`; one keystream bit says nothing of the key)
    anyone         `trace`: a member's own bit is its contribution bit XOR its pad bits. It is
                   0 for every honest member: the owner wrote 0 there and nobody else writes in
                   a reserved slot. The members whose own bit is 1 wrote there.

A member is named by its own words alone: its signed contribution bit and its signed pad bits
add up to 1 (it wrote there), or its reveal does not name its neighbours. A disruptor that
lies about a pad bit to hide makes the two ends of that edge disagree (`DISPUTED`). Each end
then shows the pair's epoch exchange with its proof (`crypto.Ephemeral.prove`), made with the
keys both ends signed in their reveals; `settle` computes the true pad bit from it and names
whoever revealed another. That exposes the pair's pads for the epoch, which therefore rotates.

What blame never does:
- Blame the honest. A member that revealed nothing (crashed, its frames lost) is not named,
  and its silence shields nobody else either (the protocol keeps the silent out of rosters for
  the rest of the epoch, which costs an honest crashed member nothing: it is out anyway). An
  honest member's reveal always adds up, and it can always prove its exchange; a reveal that
  does not even name its member's neighbours can only come from a member that breaks the
  protocol, and names it.
- Say who sent any other cell. Only the accused bit is opened, in the accuser's own slot,
  where every honest member's own bit is 0 (the accuser's too: it chose a bit it wrote 0 in).
  An accuser that lies about that bit has own bit 1 there and names itself.

The protocol around this: gateway/tracer.py, member/revealer.py, common/verdict.py. Not built:
keeping an epoch's keys while an accusation about it is open beyond a second after the epoch
ends (member/keys.py BLAME_GRACE: a later trace is incomplete and names nobody).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lanon.common.crypto import bit_of, epoch_key, pad_bit, verify_exchange

__all__ = [
    "Edge",
    "ExchangeProof",
    "Outcome",
    "Reveal",
    "Verdict",
    "bit_of",
    "choose_bit",
    "settle",
    "trace",
]

Edge = tuple[int, int]


def choose_bit(sent: bytes, emerged: bytes) -> int | None:
    """The first bit where we wrote 0 and 1 emerged, or None: the bit an owner may accuse at
    without showing anything it sent (revealing a bit it wrote 1 in would point at it). Cells
    are whitened (common/cell.py): a writer cannot pick bits it knows are 1."""
    for i, (a, b) in enumerate(zip(sent, emerged, strict=False)):
        flipped = ~a & b & 0xFF
        if flipped:
            return i * 8 + (8 - flipped.bit_length())
    return None


@dataclass(frozen=True, slots=True)
class Reveal:
    """A member's pad bits at the accused bit, one per key-graph neighbour in the roster, and
    the ephemeral keys it says it used: its own (`own`), and each neighbour's (`keys`)."""

    member: int
    pads: Mapping[int, int]
    own: bytes = b""
    keys: Mapping[int, bytes] = field(default_factory=dict)

    def own_bit(self, contribution_bit: int) -> int:
        bit = contribution_bit
        for pad in self.pads.values():
            bit ^= pad
        return bit


class Outcome(enum.Enum):
    DISRUPTOR = "disruptor"  # `members` wrote into the slot (or broke the protocol, or lied)
    DISPUTED = "disputed"  # nobody named yet; the ends of `disputes` disagree: `settle` each
    INCOMPLETE = "incomplete"  # nobody named; `members` revealed nothing
    CLEAN = "clean"  # nobody wrote there: the accused bit did not emerge as 1


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    members: frozenset[int] = frozenset()
    disputes: frozenset[Edge] = frozenset()
    silent: frozenset[int] = frozenset()
    wrote: frozenset[int] = frozenset()  # own bit 1 (DISRUPTOR's members: these and `broken`)
    broken: frozenset[int] = frozenset()  # a reveal that does not name its neighbours


def trace(
    roster: Iterable[int],
    edges: Iterable[Edge],
    contributions: Mapping[int, int],
    reveals: Mapping[int, Reveal],
) -> Verdict:
    """The verdict on one accused bit, from each roster member's contribution bit (what it
    signed) and reveal (what it signed). A member is named by its own words alone: its own bit
    (its contribution bit XOR its pad bits) is 1, or its reveal does not name exactly its
    neighbours in the roster. Whatever others say or do not say (silent members, disputed pads)
    names nobody else; disputes are for `settle`."""
    members = frozenset(roster)
    silent = frozenset(m for m in members if m not in reveals or m not in contributions)
    spoke = members - silent
    neighbours: dict[int, set[int]] = {m: set() for m in members}
    for a, b in edges:
        if a in members and b in members:
            neighbours[a].add(b)
            neighbours[b].add(a)
    broken = frozenset(m for m in spoke if set(reveals[m].pads) != neighbours[m])
    wrote = frozenset(m for m in spoke - broken if reveals[m].own_bit(contributions[m]))
    sound = spoke - broken
    disputes = frozenset(
        (a, b)
        for a in sorted(sound)
        for b in sorted(neighbours[a] & sound)
        if a < b and reveals[a].pads[b] != reveals[b].pads[a]
    )
    if broken or wrote:
        return Verdict(Outcome.DISRUPTOR, broken | wrote, disputes, silent, wrote, broken)
    if disputes:
        return Verdict(Outcome.DISPUTED, disputes=disputes, silent=silent)
    if silent:
        return Verdict(Outcome.INCOMPLETE, silent, silent=silent)
    return Verdict(Outcome.CLEAN)


@dataclass(frozen=True, slots=True)
class ExchangeProof:
    """One end of a disputed edge shows the pair's epoch exchange (`shared`) and its proof,
    made with its ephemeral key `public` against the other end's `peer`."""

    member: int
    public: bytes
    peer: bytes
    shared: bytes
    proof: bytes


def settle(
    edge: Edge,
    rnd: int,
    epoch: int,
    bit: int,
    reveals: Mapping[int, Reveal],
    proofs: Iterable[ExchangeProof],
    shape: tuple[int, int],
) -> frozenset[int] | None:
    """Who of the edge's two ends lied about their pad bit in a round of this `shape` (nslots,
    nentries), or None if it cannot be told (nobody is named). Proofs count only for the keys
    both ends signed in their reveals, and only if they agree: each end's key as it says it
    used it is the key the other end says it used (an end that announced two keys, one to
    each, makes them disagree: nobody is named)."""
    a, b = edge
    ra, rb = reveals[a], reveals[b]
    if ra.keys.get(b) != rb.own or rb.keys.get(a) != ra.own or not ra.own or not rb.own:
        return None
    own = {a: ra.own, b: rb.own}
    truths = set()
    for p in proofs:
        if p.member not in edge:
            continue
        other = b if p.member == a else a
        if p.public != own[p.member] or p.peer != own[other]:
            continue  # a proof about keys other than those both ends signed proves nothing
        if verify_exchange(p.public, p.peer, p.shared, p.proof):
            truths.add(pad_bit(epoch_key(epoch, p.shared), rnd, bit, *shape))
    if len(truths) != 1:
        return None
    truth = truths.pop()
    return frozenset(m for m in edge if reveals[m].pads[other_end(edge, m)] != truth)


def other_end(edge: Edge, m: int) -> int:
    return edge[1] if edge[0] == m else edge[0]
