"""Collecting one round's output: a signed OUTPUT_HEAD and the OUTPUT_PARTs it vouches for.

The assembler is made from what a signed frame said (the round's OPEN, or its head), so it
knows the round, the part count and every part's length before any part arrives; parts that
do not fit are rejected at once. The head is verified by the engine (it holds the gateway
keys); every part is then checked against the digest the head lists for it, so one signature
covers the whole round.

Parts that arrive before their head fix nothing: they wait as candidates (a few per index),
and the head picks the one whose digest it lists. A forged part can neither change the
round's shape nor push out the real part, which the leader sends after its head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lanon.common.crypto import digest16
from lanon.common.errors import RejectReason, RemoteProtocolError
from lanon.common.wire import OutputHead, Part

CANDIDATES = 2  # unverified parts kept per index while the head is missing


@dataclass(frozen=True, slots=True)
class RoundOutput:
    """A round's whole output, as the leader published it: what the gateways' egress reads."""

    round: int
    leader_ms: int  # the leader's clock in the round's OPEN and head
    nentries: int  # reservation entries at the start of the vector
    nslots: int  # data slots after them
    vector: bytes


@dataclass(frozen=True, slots=True)
class SlotStats:
    """What a round's data slots held: cells carried, and slots whose check failed."""

    used: int
    garbled: int


class OutputAssembler:
    def __init__(self, round: int, part_lens: list[int], nslots: int, nentries: int) -> None:
        self.round = round
        self.part_lens = part_lens
        self.nslots = nslots
        self.nentries = nentries
        self.head: OutputHead | None = None
        self._parts: dict[int, bytes] = {}
        self._early: dict[int, list[bytes]] = {}
        self._shape: Callable[[int, int], list[int]] | None = None
        self._most_parts = 0

    @classmethod
    def up_to(
        cls, round: int, max_slots: int, shape: Callable[[int, int], list[int]]
    ) -> OutputAssembler:
        """An output of at most `max_slots` cells and no reservation area, whose signed head
        says how many (trusted mode: only the cells members sent; `shape` gives the parts'
        lengths of a number of slots and entries)."""
        a = cls(round, [], max_slots, 0)
        a._shape = shape
        a._most_parts = len(shape(max_slots, 0))
        return a

    def add_head(self, head: OutputHead) -> None:
        if head.round != self.round:
            raise RemoteProtocolError(RejectReason.STALE, f"head of round {head.round}")
        if self._shape is not None and self.head is None:
            if head.nentries != 0 or head.nslots > self.nslots:
                raise RemoteProtocolError(RejectReason.MALFORMED, "output head beyond its OPEN")
            lens = self._shape(head.nslots, 0)
            if len(head.digests) != len(lens):  # checked before anything changes
                raise RemoteProtocolError(RejectReason.MALFORMED, "output head's part count")
            self.nslots, self.part_lens = head.nslots, lens
            self._shape = None
            self._early = {
                i: [d for d in early if i < len(self.part_lens) and len(d) == self.part_lens[i]]
                for i, early in self._early.items()
            }
        if head.nslots != self.nslots or head.nentries != self.nentries:
            raise RemoteProtocolError(RejectReason.MALFORMED, "output head disagrees with OPEN")
        if len(head.digests) != len(self.part_lens):
            raise RemoteProtocolError(RejectReason.MALFORMED, "output head's part count")
        if self.head is not None:
            raise RemoteProtocolError(RejectReason.REPLAY, "second output head")
        self.head = head
        for index, candidates in self._early.items():
            for data in candidates:
                if digest16(data) == head.digests[index]:
                    self._parts[index] = data
                    break
        self._early.clear()

    def add_part(self, part: Part) -> None:
        if part.round != self.round:
            raise RemoteProtocolError(RejectReason.STALE, f"part of round {part.round}")
        if self._shape is not None:  # the shape comes with the head: keep it till then
            if part.index >= self._most_parts:
                raise RemoteProtocolError(RejectReason.MALFORMED, "output part beyond its OPEN")
            early = self._early.setdefault(part.index, [])
            if len(early) < CANDIDATES and part.payload not in early:
                early.append(part.payload)
            return
        if part.count != len(self.part_lens) or len(part.payload) != self.part_lens[part.index]:
            raise RemoteProtocolError(RejectReason.MALFORMED, "output part of the wrong shape")
        if part.index in self._parts:
            raise RemoteProtocolError(RejectReason.REPLAY, "duplicate output part")
        if self.head is None:
            early = self._early.setdefault(part.index, [])
            if len(early) < CANDIDATES and part.payload not in early:
                early.append(part.payload)
            return
        if digest16(part.payload) != self.head.digests[part.index]:
            raise RemoteProtocolError(RejectReason.BAD_AUTH, "output part does not match head")
        self._parts[part.index] = part.payload

    def vector(self) -> bytes | None:
        """The whole output once the head and every part are in, else None."""
        if self.head is None or len(self._parts) != len(self.part_lens):
            return None
        return b"".join(self._parts[i] for i in range(len(self.part_lens)))
