"""Cells: the fixed-size unit a data slot carries.

    check(8)  tag(8)  packet id(4)  index(1)  count(1)  length(2)  data  zero padding

`check` is BLAKE2b-64 of everything after it, so the XOR of two cells sent into one slot (a
collision) or a slot garbled by a member that sent junk is detected. An all-zero slot is empty.
A packet larger than a cell's capacity travels in `count` cells with the same (tag, packet id)
and is put together again by the gateway.

Slots come from round outputs that any member can write into, so decoding never raises and the
reassembler is bounded: pending packets in all (`max_pending`), per flow tag (`max_per_tag`),
bytes held (`max_bytes`) and cells per packet (`max_cells`); what it gives up is counted by
`CellDrop` in `drops`.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass

from lanon.common.pending import Pending

_CELL = struct.Struct("!QIBBH")
CHECK_LEN = 8
CELL_HEADER_LEN = CHECK_LEN + _CELL.size
MAX_CELLS_PER_PACKET = 255


class SlotState(enum.Enum):
    EMPTY = "empty"
    GARBLED = "garbled"  # check failed: a data collision, or junk
    CELL = "cell"


@dataclass(frozen=True, slots=True)
class Cell:
    tag: int
    packet_id: int
    index: int
    count: int
    data: bytes


def _check(rest: bytes) -> bytes:
    return hashlib.blake2b(rest, digest_size=CHECK_LEN).digest()


def encode_cell(
    cell_size: int, tag: int, packet_id: int, index: int, count: int, data: bytes
) -> bytes:
    pad = cell_size - CELL_HEADER_LEN - len(data)
    if pad < 0:
        raise ValueError(f"{len(data)} bytes do not fit a {cell_size}-byte cell")
    if not 0 <= index < count <= MAX_CELLS_PER_PACKET:
        raise ValueError(f"cell {index} of {count}")
    rest = _CELL.pack(tag, packet_id, index, count, len(data)) + data + bytes(pad)
    return _check(rest) + rest


def decode_slot(slot: bytes) -> tuple[SlotState, Cell | None]:
    """What a data slot holds; never raises (a short or inconsistent slot is GARBLED)."""
    if not any(slot[:CELL_HEADER_LEN]) and slot.count(0) == len(slot):
        return SlotState.EMPTY, None
    if len(slot) < CELL_HEADER_LEN:
        return SlotState.GARBLED, None
    rest = slot[CHECK_LEN:]
    if _check(rest) != slot[:CHECK_LEN]:
        return SlotState.GARBLED, None
    tag, packet_id, index, count, length = _CELL.unpack_from(rest)
    if count == 0 or index >= count or length > len(rest) - _CELL.size:
        return SlotState.GARBLED, None
    return SlotState.CELL, Cell(
        tag, packet_id, index, count, rest[_CELL.size : _CELL.size + length]
    )


def split_packet(packet: bytes, capacity: int) -> list[bytes]:
    if capacity <= 0:
        raise ValueError(f"a capacity of {capacity} bytes")
    return [packet[i : i + capacity] for i in range(0, len(packet), capacity)] or [b""]


class CellDrop(enum.Enum):
    """Why the reassembler gave up a packet; bounded, usable as a metric label."""

    MISMATCH = "mismatch"  # cells of one (tag, packet id) disagree: count, or data of an index
    MALFORMED = "malformed"  # an index or a count no packet can have
    EVICTED = "evicted"  # made room (pending packets, per tag, or bytes)
    TIMEOUT = "timeout"


@dataclass(slots=True)
class _Packet:
    first: float
    parts: list[bytes | None]
    have: int = 0  # parts received
    size: int = 0  # bytes held


class Reassembler(Pending[tuple[int, int], _Packet, CellDrop]):
    """Puts multi-cell packets together; gives up on a packet after `timeout` seconds."""

    def __init__(
        self,
        timeout: float = 5.0,
        max_pending: int = 4096,
        max_per_tag: int = 16,
        max_bytes: int = 4 << 20,
        max_cells: int = MAX_CELLS_PER_PACKET,
    ) -> None:
        super().__init__(timeout, CellDrop.TIMEOUT)  # insertion order: oldest packet first
        self.max_pending = max_pending
        self.max_per_tag = max_per_tag
        self.max_bytes = max_bytes
        self.max_cells = max_cells
        self._per_tag: dict[
            int, dict[int, None]
        ] = {}  # tag -> its pending packet ids, oldest first
        self.bytes_pending = 0

    @property
    def expired(self) -> int:
        return self.drops[CellDrop.TIMEOUT]

    def add(self, cell: Cell, now: float) -> bytes | None:
        """Feed one cell; the whole packet when its last cell arrives, else None."""
        if cell.count == 1:
            return cell.data
        if not 0 <= cell.index < cell.count <= self.max_cells:
            self.drops[CellDrop.MALFORMED] += 1
            return None
        key = (cell.tag, cell.packet_id)
        entry = self._pending.get(key)
        if entry is None:
            self._make_room(cell.tag)
            entry = self._pending[key] = _Packet(now, [None] * cell.count)
            self._per_tag.setdefault(cell.tag, {})[cell.packet_id] = None
        elif len(entry.parts) != cell.count:
            self._give_up(key, CellDrop.MISMATCH)
            return None
        old = entry.parts[cell.index]
        if old is not None:
            if old != cell.data:
                self._give_up(key, CellDrop.MISMATCH)
            return None  # the same cell again
        entry.parts[cell.index] = cell.data
        entry.have += 1
        entry.size += len(cell.data)
        self.bytes_pending += len(cell.data)
        if entry.have < len(entry.parts):
            while self.bytes_pending > self.max_bytes and self._pending:
                self._give_up(next(iter(self._pending)), CellDrop.EVICTED)
            return None
        self._forget(key)
        return b"".join(p for p in entry.parts if p is not None)

    def _make_room(self, tag: int) -> None:
        mine = self._per_tag.get(tag)
        if mine is not None and len(mine) >= self.max_per_tag:
            self._give_up((tag, next(iter(mine))), CellDrop.EVICTED)
        while len(self._pending) >= self.max_pending:
            self._give_up(next(iter(self._pending)), CellDrop.EVICTED)

    def _forget(self, key: tuple[int, int]) -> None:
        entry = self._pending.pop(key, None)
        if entry is None:
            return
        self.bytes_pending -= entry.size
        mine = self._per_tag[key[0]]
        del mine[key[1]]
        if not mine:
            del self._per_tag[key[0]]
