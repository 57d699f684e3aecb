"""Reassembly of inbound IPv4 fragments, so that the flow of every fragment is known.

Only the first fragment carries ports; the gateway puts the datagram together before it looks
up the flow, and broadcasts it whole (members' TUN devices take up to 64 KB).

Fragments come from the Internet, so everything here is bounded and nothing raises:

- a datagram keeps its fragments as byte ranges sorted by offset; a fragment costs a binary
  search and one list insertion among at most `max_fragments`, and completion is a comparison
  of the bytes covered with the datagram's length (no resorting, no scan);
- a fragment that overlaps another with different bytes drops its datagram (RFC 5722 does so
  for IPv6; overlaps are how fragment attacks evade inspection); an exact duplicate is ignored;
- at most `max_pending` datagrams and `max_bytes` of fragment data are pending: past either,
  the oldest datagrams are given up; a datagram is given up `timeout` seconds after its first
  fragment;
- every datagram or fragment given up is counted by `FragmentDrop` (common/events.py) in
  `drops`.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field

from lanon.common.events import FragmentDrop
from lanon.common.packet import checksum
from lanon.common.pending import Pending

_H = struct.Struct("!H")
MAX_DATAGRAM = 65535


@dataclass(slots=True)
class _Datagram:
    first: float  # when its first fragment (in time) arrived
    starts: list[int] = field(default_factory=list)  # sorted fragment offsets
    chunks: list[bytes] = field(default_factory=list)  # the fragments' data, in that order
    covered: int = 0  # bytes held (fragments never overlap)
    header: bytes | None = None  # the IP header of the fragment at offset 0
    end: int | None = None  # the payload's length, once the last fragment is seen


class Defragmenter(Pending[bytes, _Datagram, FragmentDrop]):
    def __init__(
        self,
        timeout: float = 5.0,
        max_pending: int = 256,
        max_bytes: int = 4 << 20,
        max_fragments: int = 64,
    ) -> None:
        super().__init__(timeout, FragmentDrop.TIMEOUT)  # insertion order: oldest datagram first
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.max_fragments = max_fragments
        self.bytes_pending = 0

    @property
    def dropped(self) -> int:
        """Fragments and datagrams given up, for every reason."""
        return sum(self.drops.values())

    def add(self, pkt: bytes, now: float) -> bytes | None:
        """Feed one fragment; the whole datagram when it is complete, else None."""
        n = len(pkt)
        if n < 20 or pkt[0] >> 4 != 4:
            self.drops[FragmentDrop.MALFORMED] += 1
            return None
        ihl = (pkt[0] & 0x0F) * 4
        total = (pkt[2] << 8) | pkt[3]
        if ihl < 20 or total < ihl or total > n:
            self.drops[FragmentDrop.MALFORMED] += 1
            return None
        flags_off = (pkt[6] << 8) | pkt[7]
        offset = (flags_off & 0x1FFF) * 8
        more = bool(flags_off & 0x2000)
        size = total - ihl
        if more and (size == 0 or size % 8):  # the next fragment could not follow on
            self.drops[FragmentDrop.MALFORMED] += 1
            return None
        key = bytes(pkt[12:20]) + bytes(pkt[9:10]) + bytes(pkt[4:6])
        if offset + size > MAX_DATAGRAM - 20:
            self._give_up(key, FragmentDrop.TOO_LARGE)
            return None
        d = self._pending.get(key)
        if d is None:
            self.expire(now)
            while self._pending and len(self._pending) >= self.max_pending:
                self._evict_oldest()
            d = self._pending[key] = _Datagram(now)
        if not more:
            if d.end is not None and d.end != offset + size:
                self._give_up(key, FragmentDrop.INCONSISTENT)
                return None
            d.end = offset + size
            if d.starts and d.starts[-1] + len(d.chunks[-1]) > d.end:
                self._give_up(key, FragmentDrop.INCONSISTENT)  # data past the end came before
                return None
        if d.end is not None and offset + size > d.end:
            self._give_up(key, FragmentDrop.INCONSISTENT)
            return None
        if size:
            verdict = self._insert(d, offset, bytes(pkt[ihl:total]))
            if verdict is not None:
                self._give_up(key, verdict)
                return None
        if offset == 0 and d.header is None:
            d.header = bytes(pkt[:ihl])
        if d.header is not None and d.end is not None and len(d.header) + d.end > MAX_DATAGRAM:
            self._give_up(key, FragmentDrop.TOO_LARGE)  # IP options make the header longer
            return None
        while self.bytes_pending > self.max_bytes and self._pending:
            oldest = next(iter(self._pending))
            self._evict_oldest()
            if oldest == key:
                return None
        if d.header is None or d.end is None or d.covered != d.end:
            return None
        return self._assemble(key, d)

    def _insert(self, d: _Datagram, offset: int, data: bytes) -> FragmentDrop | None:
        """Put a fragment among the datagram's (no overlap); the reason to drop it, if any."""
        i = bisect.bisect_left(d.starts, offset)
        if i < len(d.starts) and d.starts[i] == offset and d.chunks[i] == data:
            return None  # the same fragment again
        if i > 0 and d.starts[i - 1] + len(d.chunks[i - 1]) > offset:
            return FragmentDrop.OVERLAP
        if i < len(d.starts) and offset + len(data) > d.starts[i]:
            return FragmentDrop.OVERLAP
        if len(d.starts) >= self.max_fragments:
            return FragmentDrop.TOO_MANY_FRAGMENTS
        d.starts.insert(i, offset)
        d.chunks.insert(i, data)
        d.covered += len(data)
        self.bytes_pending += len(data)
        return None

    def _assemble(self, key: bytes, d: _Datagram) -> bytes:
        self._forget(key)
        assert d.header is not None
        hdr = bytearray(d.header)
        hdr[2:4] = _H.pack(len(hdr) + d.covered)
        hdr[6:8] = _H.pack((hdr[6] << 8 | hdr[7]) & 0x4000)  # keep DF, clear MF and offset
        hdr[10:12] = b"\0\0"
        hdr[10:12] = _H.pack(checksum(hdr))
        return bytes(hdr) + b"".join(d.chunks)

    def _forget(self, key: bytes) -> None:
        d = self._pending.pop(key, None)
        if d is not None:
            self.bytes_pending -= d.covered

    def _evict_oldest(self) -> None:
        self._give_up(next(iter(self._pending)), FragmentDrop.EVICTED)
