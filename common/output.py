"""Collecting one round's output: a signed OUTPUT_HEAD and the OUTPUT_PARTs it vouches for.

The head is verified by the engine (it holds the gateway keys); every part is then checked
against the digest the head lists for it, so one signature covers the whole round.
Parts may arrive before their head: they wait (bounded by the part count).
"""

from __future__ import annotations

from lanon.common.crypto import digest16
from lanon.common.errors import RejectReason, RemoteProtocolError
from lanon.common.wire import OutputHead, Part

MAX_PARTS = 1024


class OutputAssembler:
    def __init__(self, round: int, nslots: int | None = None, nentries: int | None = None) -> None:
        self.round = round
        self._expect = (nslots, nentries)
        self.head: OutputHead | None = None
        self._parts: dict[int, bytes] = {}
        self._count: int | None = None

    def add_head(self, head: OutputHead) -> None:
        nslots, nentries = self._expect
        if head.round != self.round:
            raise RemoteProtocolError(RejectReason.STALE, f"head of round {head.round}")
        if (nslots is not None and head.nslots != nslots) or (
            nentries is not None and head.nentries != nentries
        ):
            raise RemoteProtocolError(RejectReason.MALFORMED, "output head disagrees with OPEN")
        if self.head is not None:
            raise RemoteProtocolError(RejectReason.REPLAY, "second output head")
        if self._count is not None and self._count != len(head.digests):
            raise RemoteProtocolError(RejectReason.MALFORMED, "part count differs from head")
        self.head = head
        self._count = len(head.digests)
        bad = [i for i, data in self._parts.items() if digest16(data) != head.digests[i]]
        for i in bad:
            del self._parts[i]
        if bad:
            raise RemoteProtocolError(
                RejectReason.BAD_AUTH, f"{len(bad)} part(s) do not match head"
            )

    def add_part(self, part: Part) -> None:
        if part.round != self.round:
            raise RemoteProtocolError(RejectReason.STALE, f"part of round {part.round}")
        if part.count > MAX_PARTS or (self._count is not None and part.count != self._count):
            raise RemoteProtocolError(RejectReason.MALFORMED, "part count differs")
        self._count = part.count
        if part.index in self._parts:
            raise RemoteProtocolError(RejectReason.REPLAY, "duplicate output part")
        if self.head is not None and digest16(part.payload) != self.head.digests[part.index]:
            raise RemoteProtocolError(RejectReason.BAD_AUTH, "output part does not match head")
        self._parts[part.index] = part.payload

    def vector(self) -> bytes | None:
        """The whole output once the head and every part are in, else None."""
        if self.head is None or len(self._parts) != self._count:
            return None
        return b"".join(self._parts[i] for i in range(len(self._parts)))
