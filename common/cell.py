"""Cells: the fixed-size unit a data slot carries.

    check(8)  tag(8)  packet id(4)  index(1)  count(1)  length(2)  data  zero padding

`check` is BLAKE2b-64 of everything after it, so the XOR of two cells sent into one slot (a
collision) or a slot garbled by a member that sent junk is detected. An all-zero slot is empty.
A packet larger than a cell's capacity travels in `count` cells with the same (tag, packet id)
and is put together again by the gateway.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass

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
    rest = _CELL.pack(tag, packet_id, index, count, len(data)) + data + bytes(pad)
    return _check(rest) + rest


def decode_slot(slot: bytes) -> tuple[SlotState, Cell | None]:
    if not any(slot[:CELL_HEADER_LEN]) and slot.count(0) == len(slot):
        return SlotState.EMPTY, None
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
    return [packet[i : i + capacity] for i in range(0, len(packet), capacity)] or [b""]


class Reassembler:
    """Puts multi-cell packets together; gives up on a packet after `timeout` seconds."""

    def __init__(self, timeout: float = 5.0, max_pending: int = 4096) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        self._pending: dict[tuple[int, int], tuple[float, list[bytes | None]]] = {}
        self.expired = 0

    def add(self, cell: Cell, now: float) -> bytes | None:
        if cell.count == 1:
            return cell.data
        key = (cell.tag, cell.packet_id)
        entry = self._pending.get(key)
        if entry is None or len(entry[1]) != cell.count:
            if len(self._pending) >= self.max_pending:
                oldest = min(self._pending, key=lambda k: self._pending[k][0])
                del self._pending[oldest]
                self.expired += 1
            entry = (now, [None] * cell.count)
            self._pending[key] = entry
        parts = entry[1]
        parts[cell.index] = cell.data
        if any(p is None for p in parts):
            return None
        del self._pending[key]
        return b"".join(p for p in parts if p is not None)

    def expire(self, now: float) -> int:
        stale = [k for k, (t, _) in self._pending.items() if now - t > self.timeout]
        for k in stale:
            del self._pending[k]
        self.expired += len(stale)
        return len(stale)

    def __len__(self) -> int:
        return len(self._pending)
