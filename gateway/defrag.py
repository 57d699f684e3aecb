"""Reassembly of inbound IPv4 fragments, so that the flow of every fragment is known.

Only the first fragment carries ports; the gateway puts the datagram together before it looks
up the flow, and broadcasts it whole (members' TUN devices take up to 64 KB).
"""

from __future__ import annotations

import struct

from lanon.common.packet import checksum

_H = struct.Struct("!H")
MAX_DATAGRAM = 65535


class Defragmenter:
    def __init__(self, timeout: float = 5.0, max_pending: int = 256) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        self._pending: dict[bytes, tuple[float, bytes | None, dict[int, bytes], int | None]] = {}
        self.dropped = 0

    def add(self, pkt: bytes, now: float) -> bytes | None:
        """Feed one fragment; the whole datagram when it is complete, else None."""
        ihl = (pkt[0] & 0x0F) * 4
        total = (pkt[2] << 8) | pkt[3]
        flags_off = (pkt[6] << 8) | pkt[7]
        offset = (flags_off & 0x1FFF) * 8
        more = bool(flags_off & 0x2000)
        key = bytes(pkt[12:20]) + bytes(pkt[9:10]) + bytes(pkt[4:6])
        entry = self._pending.get(key)
        if entry is None:
            if len(self._pending) >= self.max_pending:
                self.expire(now, force_oldest=True)
            entry = (now, None, {}, None)
        first, header, chunks, end = entry
        data = bytes(pkt[ihl:total])
        if offset + len(data) > MAX_DATAGRAM - 20:
            self._pending.pop(key, None)
            self.dropped += 1
            return None
        chunks[offset] = data
        if offset == 0:
            header = bytes(pkt[:ihl])
        if not more:
            end = offset + len(data)
        self._pending[key] = (first, header, chunks, end)
        if header is None or end is None:
            return None
        pos, out = 0, []
        for off in sorted(chunks):
            if off > pos:
                return None  # a hole
            piece = chunks[off][pos - off :]
            out.append(piece)
            pos = max(pos, off + len(chunks[off]))
        if pos < end:
            return None
        del self._pending[key]
        body = b"".join(out)[:end]
        hdr = bytearray(header)
        hdr[2:4] = _H.pack(len(hdr) + len(body))
        hdr[6:8] = _H.pack((hdr[6] << 8 | hdr[7]) & 0x4000)  # keep DF, clear MF and offset
        hdr[10:12] = b"\0\0"
        hdr[10:12] = _H.pack(checksum(hdr))
        return bytes(hdr) + body

    def expire(self, now: float, force_oldest: bool = False) -> int:
        stale = [k for k, v in self._pending.items() if now - v[0] > self.timeout]
        if force_oldest and not stale and self._pending:
            stale = [min(self._pending, key=lambda k: self._pending[k][0])]
        for k in stale:
            del self._pending[k]
        self.dropped += len(stale)
        return len(stale)
