"""Blame (sans-IO, pure): who wrote into a slot that was not theirs, from what a round's members
reveal about one bit of it. The protocol that carries accusations and reveals builds on this.

    the owner      its reserved slot emerged corrupted (`SlotCorrupted`): it names the round, a
                   bit of the slot where it wrote 0 and 1 emerged (`choose_bit`), and the secret
                   its reservation claim committed to (`reservation.proves_claim`): only the
                   slot's owner can accuse, and the accusation travels in a cell, sealed to
                   the gateways (common/accusation.py), which judge it (gateway/accusations.py)
    the leader     shows each roster member's contribution bit there (its stored copy)
    every member   reveals its pad bit there with each key-graph neighbour in the roster
                   (`Reveal`; one keystream bit says nothing of the key)
    anyone         `trace`: a member's own bit is its contribution bit XOR its pad bits. It is
                   0 for every honest member: the owner wrote 0 there and nobody else writes in
                   a reserved slot. The members whose own bit is 1 wrote there.

A disruptor that lies about a pad bit to hide makes the two ends of that edge disagree
(`DISPUTED`). Each end then shows the pair's epoch exchange with its proof
(`crypto.Ephemeral.prove`); `settle` computes the true pad bit from it and names whoever
revealed another. That exposes the pair's pads for the epoch, which therefore rotates.

What blame never does:
- Blame the honest. A member that revealed nothing (crashed, its frames lost) is not named:
  the verdict is INCOMPLETE (the protocol keeps the silent out of rosters until they reveal,
  which costs an honest crashed member nothing: it is out anyway). An honest member's reveal
  always adds up, and it can always prove its exchange; a reveal that does not even name its
  member's neighbours can only come from a member that breaks the protocol, and names it.
- Say who sent any other cell. Only the accused bit is opened, in the accuser's own slot,
  where every honest member's own bit is 0 (the accuser's too: it chose a bit it wrote 0 in).
  An accuser that lies about that bit has own bit 1 there and names itself.

The protocol around this (gateway/tracer.py, member/revealer.py, common/verdict.py): members
sign their contributions in rounds with reserved slots (a leader holds every MAC key and could
otherwise forge a member's bit); tracing starts only from an accusation judged proven; a member
asked to reveal at a bit of a slot of its own that it did not accuse refuses; the verdict's
evidence is checked by every member. Not built: keeping an epoch's keys past its end while an
accusation about it is open (a trace that comes too late is incomplete and names nobody), and a
proof against keys as signed in KEYS (rounds name keys by a 32-bit id: a member that signs two
keys under one id and proves both makes `settle` return None, naming nobody).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lanon.common.crypto import bit_of, epoch_key, key_id, pad_bit, verify_exchange

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
    """A member's pad bits at the accused bit, one per key-graph neighbour in the roster."""

    member: int
    pads: Mapping[int, int]

    def own_bit(self, contribution_bit: int) -> int:
        bit = contribution_bit
        for pad in self.pads.values():
            bit ^= pad
        return bit


class Outcome(enum.Enum):
    DISRUPTOR = "disruptor"  # `members` wrote into the slot
    DISPUTED = "disputed"  # the ends of `disputes` disagree on their pad: `settle` each
    INCOMPLETE = "incomplete"  # `members` revealed nothing: nobody is named
    CLEAN = "clean"  # nobody wrote there: the accused bit did not emerge as 1


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    members: frozenset[int] = frozenset()
    disputes: frozenset[Edge] = frozenset()


def trace(
    roster: Iterable[int],
    edges: Iterable[Edge],
    contributions: Mapping[int, int],
    reveals: Mapping[int, Reveal],
) -> Verdict:
    """The verdict on one accused bit, from each roster member's contribution bit (the
    leader's copy) and reveal. A reveal must name exactly the member's neighbours in the
    roster: the members whose reveals do not are named."""
    members = frozenset(roster)
    missing = frozenset(m for m in members if m not in reveals or m not in contributions)
    if missing:
        return Verdict(Outcome.INCOMPLETE, missing)
    neighbours: dict[int, set[int]] = {m: set() for m in members}
    for a, b in edges:
        if a in members and b in members:
            neighbours[a].add(b)
            neighbours[b].add(a)
    broken = frozenset(m for m in members if set(reveals[m].pads) != neighbours[m])
    if broken:
        return Verdict(Outcome.DISRUPTOR, broken)
    disputes = frozenset(
        (a, b)
        for a in sorted(members)
        for b in sorted(neighbours[a])
        if a < b and reveals[a].pads[b] != reveals[b].pads[a]
    )
    if disputes:
        return Verdict(Outcome.DISPUTED, disputes=disputes)
    wrote = frozenset(m for m in members if reveals[m].own_bit(contributions[m]))
    return Verdict(Outcome.DISRUPTOR, wrote) if wrote else Verdict(Outcome.CLEAN)


@dataclass(frozen=True, slots=True)
class ExchangeProof:
    """One end of a disputed edge shows the pair's epoch exchange (`shared`) and its proof,
    made with its ephemeral key `public` against the other end's `peer` (both named by the
    round's key ids)."""

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
    revealed: Mapping[int, int],
    proofs: Iterable[ExchangeProof],
    key_ids: Mapping[int, int],
) -> frozenset[int] | None:
    """Who of the edge's two ends lied about their pad bit, or None if no end showed a valid
    exchange (nobody is named: an honest end always can), or two valid exchanges disagree (an
    end announced two keys under one id: nobody can tell which the other end used).
    `revealed`: each end's pad bit with the other; `key_ids`: each member's ephemeral key id
    as the round named it."""
    a, b = edge
    truths = set()
    for p in proofs:
        if p.member not in edge:
            continue
        other = b if p.member == a else a
        if key_id(p.public) != key_ids.get(p.member) or key_id(p.peer) != key_ids.get(other):
            continue  # a proof about keys other than the round's proves nothing here
        if verify_exchange(p.public, p.peer, p.shared, p.proof):
            truths.add(pad_bit(epoch_key(epoch, p.shared), rnd, bit))
    if len(truths) != 1:
        return None
    truth = truths.pop()
    return frozenset(m for m in edge if revealed[m] != truth)
