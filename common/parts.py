"""One bounded reassembler for everything that travels in numbered parts: a packet's cells
(gateway), an inbound packet's INBOUND frames (member).

A piece is (group, ident, index, count, data): pieces of one (group, ident) make one whole.
Bounded in wholes pending (`max_pending`), per group (`max_per_group`, e.g. per flow tag),
bytes held (`max_bytes`) and pieces per whole (`max_parts`); what it gives up is counted by
`PartDrop` in `drops`, oldest first. Pieces come from hosts that may lie, so nothing raises.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from lanon.common.pending import Pending

G = TypeVar("G", bound=Hashable)


class PartDrop(enum.Enum):
    """Why a whole was given up; bounded, usable as a metric label."""

    MISMATCH = "mismatch"  # pieces of one whole disagree: count, or data of an index
    MALFORMED = "malformed"  # an index or a count no whole can have
    EVICTED = "evicted"  # made room (pending wholes, per group, or bytes)
    TIMEOUT = "timeout"


@dataclass(slots=True)
class _Whole:
    first: float
    parts: list[bytes | None]
    have: int = 0  # parts received
    size: int = 0  # bytes held


class PartReassembler(Pending[tuple[G, int], _Whole, PartDrop], Generic[G]):
    def __init__(
        self,
        timeout: float = 5.0,
        max_pending: int = 4096,
        max_per_group: int = 16,
        max_bytes: int = 4 << 20,
        max_parts: int = 255,
    ) -> None:
        super().__init__(timeout, PartDrop.TIMEOUT)  # insertion order: oldest whole first
        self.max_pending = max_pending
        self.max_per_group = max_per_group
        self.max_bytes = max_bytes
        self.max_parts = max_parts
        self._per_group: dict[G, dict[int, None]] = {}  # group -> its pending idents, oldest first
        self.bytes_pending = 0

    @property
    def expired(self) -> int:
        return self.drops[PartDrop.TIMEOUT]

    def add(
        self, group: G, ident: int, index: int, count: int, data: bytes, now: float
    ) -> bytes | None:
        """Feed one piece; the whole when its last piece arrives, else None."""
        if count == 1 and index == 0:
            return data
        if not 0 <= index < count <= self.max_parts:
            self.drops[PartDrop.MALFORMED] += 1
            return None
        key = (group, ident)
        entry = self._pending.get(key)
        if entry is None:
            self._make_room(group)
            entry = self._pending[key] = _Whole(now, [None] * count)
            self._per_group.setdefault(group, {})[ident] = None
        elif len(entry.parts) != count:
            self._give_up(key, PartDrop.MISMATCH)
            return None
        old = entry.parts[index]
        if old is not None:
            if old != data:
                self._give_up(key, PartDrop.MISMATCH)
            return None  # the same piece again
        entry.parts[index] = data
        entry.have += 1
        entry.size += len(data)
        self.bytes_pending += len(data)
        if entry.have < len(entry.parts):
            while self.bytes_pending > self.max_bytes and self._pending:
                self._give_up(next(iter(self._pending)), PartDrop.EVICTED)
            return None
        self._forget(key)
        return b"".join(p for p in entry.parts if p is not None)

    def _make_room(self, group: G) -> None:
        mine = self._per_group.get(group)
        if mine is not None and len(mine) >= self.max_per_group:
            self._give_up((group, next(iter(mine))), PartDrop.EVICTED)
        while len(self._pending) >= self.max_pending:
            self._give_up(next(iter(self._pending)), PartDrop.EVICTED)

    def _forget(self, key: tuple[G, int]) -> None:
        entry = self._pending.pop(key, None)
        if entry is None:
            return
        self.bytes_pending -= entry.size
        mine = self._per_group[key[0]]
        del mine[key[1]]
        if not mine:
            del self._per_group[key[0]]
