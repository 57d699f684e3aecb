"""A receive ring in memory, laid out as the kernel lays out a TPACKET_V2 ring (common/rxring.py):
frames for the compiled INBOUND path (member/drain.py) in the tests and the benchmark."""

from __future__ import annotations

import mmap

from lanon.common import wire
from lanon.common.rxring import MAC_AT, PACKET_OUTGOING, PKTTYPE_AT, SLOT_HEADER, SLOT_STATUS

SRC = b"\x02\x00\x00\x00\x00\x01"


class MemoryRing:
    """`count` slots of `slot` bytes; `put` writes a frame into the next one as the kernel
    would (the frame, then its status). It has what `RxRing.frames` and `InboundDrain` read."""

    def __init__(self, count: int = 16, slot: int = 1664) -> None:
        self.count, self.slot = count, slot
        self.map = mmap.mmap(-1, count * slot)
        self.starts = [i * slot for i in range(count)]
        self.next = 0  # the reader's
        self.put_at = 0  # the kernel's
        self.truncated = 0  # (RxRing.frames counts here)

    def put(
        self, payload: bytes, *, outgoing: bool = False, cut: bool = False, src: bytes = SRC
    ) -> int:
        """`payload` (a lanon frame) in an Ethernet broadcast from `src`; `outgoing`: as this
        host's own; `cut`: its last 10 bytes cut off, as from a slot too short."""
        at = self.starts[self.put_at]
        frame = b"\xff" * 6 + src + wire.ETHERTYPE.to_bytes(2, "big") + payload
        snap = len(frame) - 10 if cut else len(frame)
        self.map[at + MAC_AT : at + MAC_AT + snap] = frame[:snap]
        self.map[at + PKTTYPE_AT] = PACKET_OUTGOING if outgoing else 0
        SLOT_HEADER.pack_into(self.map, at, 1, len(frame), snap, MAC_AT, MAC_AT + 14, 0, 0)
        used = self.put_at
        self.put_at = (self.put_at + 1) % self.count
        return used

    def give_back_all(self) -> None:
        """Every slot holds its frame again, as the kernel left it (the benchmark reads the
        same frames again)."""
        for at in self.starts:
            SLOT_STATUS.pack_into(self.map, at, 1)

    def status(self, i: int) -> int:
        return int(SLOT_STATUS.unpack_from(self.map, self.starts[i])[0])
