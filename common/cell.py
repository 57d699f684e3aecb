"""Cells: the fixed-size unit a data slot carries.

    check(8)  packet id(4)  whitened: tag(8) index(1) count(1) length(2) data   zero padding

`check` is BLAKE2b-64 of everything after it, so the XOR of two cells sent into one slot (a
collision) or a slot garbled by a member that sent junk is detected. An all-zero slot is empty.
A packet larger than a cell's capacity travels in `count` cells with the same (tag, packet id)
and is put together again by the gateway.

Whitened: the header and data after the packet id are XORed with a ChaCha20 keystream whose
nonce is the packet id, a random number of the sender's. No bit of a cell that could be 1 can
be foretold by anyone but its sender (the padding is 0), so a member that writes into a slot
not its own cannot choose to clear only bits it knows are 1: the slot's owner always finds a
bit it wrote 0 in and 1 emerged, to accuse at (common/blame.py). It hides nothing: the key is
public. It costs a keystream as long as the data (a short packet, a short one).

Slots come from round outputs that any member can write into, so decoding never raises and the
reassembler (common/parts.py) is bounded: pending packets in all, per flow tag, bytes held
and cells per packet; what it gives up is counted by `CellDrop` in `drops`.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass

from lanon.common.parts import PartDrop, PartReassembler
from lanon.common.sodium import stream_xor

_ID = struct.Struct("!I")
_CELL = struct.Struct("!QBBH")  # what the whitening covers, before the data
CHECK_LEN = 8
CELL_HEADER_LEN = CHECK_LEN + _ID.size + _CELL.size
_WHITENING_KEY = hashlib.blake2b(b"lanon cell whitening", digest_size=32).digest()
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
    pid = _ID.pack(packet_id)
    rest = pid + _whiten(pid, _CELL.pack(tag, index, count, len(data)) + data) + bytes(pad)
    return _check(rest) + rest


def _whiten(pid: bytes, data: bytes) -> bytes:
    """XOR with the keystream of this packet id (its own inverse)."""
    return stream_xor(data, pid + bytes(4), _WHITENING_KEY)


def decode_slot(slot: bytes) -> tuple[SlotState, Cell | None]:
    """What a data slot holds; never raises (a short or inconsistent slot is GARBLED)."""
    if not any(slot[:CELL_HEADER_LEN]) and slot.count(0) == len(slot):
        return SlotState.EMPTY, None
    if len(slot) < CELL_HEADER_LEN:
        return SlotState.GARBLED, None
    rest = slot[CHECK_LEN:]
    if _check(rest) != slot[:CHECK_LEN]:
        return SlotState.GARBLED, None
    pid = rest[: _ID.size]
    tag, index, count, length = _CELL.unpack(_whiten(pid, rest[_ID.size : _ID.size + _CELL.size]))
    if count == 0 or index >= count or length > len(rest) - _ID.size - _CELL.size:
        return SlotState.GARBLED, None
    plain = _whiten(pid, rest[_ID.size : _ID.size + _CELL.size + length])
    return SlotState.CELL, Cell(tag, _ID.unpack(pid)[0], index, count, plain[_CELL.size :])


CellDrop = PartDrop  # why the cell reassembler gave up a packet


class Reassembler(PartReassembler[int]):
    """Puts multi-cell packets together: the pieces of (flow tag, packet id), bounded per tag."""

    def __init__(
        self,
        timeout: float = 5.0,
        max_pending: int = 4096,
        max_per_tag: int = 16,
        max_bytes: int = 4 << 20,
        max_cells: int = MAX_CELLS_PER_PACKET,
    ) -> None:
        super().__init__(timeout, max_pending, max_per_tag, max_bytes, max_cells)

    def add_cell(self, cell: Cell, now: float) -> bytes | None:
        """Feed one cell; the whole packet when its last cell arrives, else None."""
        return self.add(cell.tag, cell.packet_id, cell.index, cell.count, cell.data, now)
