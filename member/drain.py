"""The member's INBOUND ring read in compiled code (inbound_drain.c): the adapter's side.

Every member reads every INBOUND frame of every download, nearly all of them another's. The
engine's path costs a member about 7 µs of Python a frame; `InboundDrain` reads the ring and
opens each frame in one call, with the libsodium calls the engine's opener makes
(`flowkey.InboundOpener`), and hands back only what the engine must see:

* each frame of ours, opened (`take_ours()`): the engine takes it from there
  (`MemberEngine.receive_opened`);
* a frame it does not take (short, foreign, of no gateway, cut by the kernel), left in its
  slot (`Stop.PYTHON`): the daemon reads that one through the engine, which checks and counts
  it as it always did.

It stops between two frames when a rounds' frame waits (`Stop.ROUNDS`) and when the loop's
next timer is due (`Stop.TIMER`). Compiled at install (setup.py, cffi); where it was not, or
cannot find libsodium in PyNaCl's module, `load()` says why and the daemon reads in Python.
"""

from __future__ import annotations

import enum
import struct
import sys
from collections.abc import Iterable
from typing import Any

from lanon.common import wire
from lanon.common.clock import CLOCK_ID
from lanon.common.rxring import RxRing
from lanon.member.inbound import OpenedInbound


class Stop(enum.IntEnum):
    """Why a drain stopped (inbound_drain.c's enum)."""

    EMPTY = 0
    PYTHON = 1  # a frame for the engine's own path, still in its slot
    ROUNDS = 2  # a rounds' frame waits
    LIMIT = 3
    FULL = 4  # no room left for our frames: take them, then go on
    TIMER = 5  # the loop's next timer is due


# A frame of ours in the output: sender, index, parts, size (-1: the seal did not hold),
# sequence number, tag (inbound_drain.c's RECORD); then its part.
_RECORD = struct.Struct("=HBBiQQ")
OUT_LEN = 1 << 16  # our frames opened between two looks (with one slot more)


def load() -> tuple[Any, str | None]:
    """(the compiled module, None), or (None, why not)."""
    try:
        from lanon.member import _inbound_drain  # type: ignore[attr-defined]
    except ImportError as exc:
        return None, f"not built ({exc})"
    sodium = sys.modules.get("nacl._sodium")
    if sodium is None or not sodium.__file__:
        return None, "PyNaCl's libsodium module is not loaded"
    if _inbound_drain.lib.lanon_inbound_init(sodium.__file__.encode()) != 0:
        return None, f"libsodium's functions not found in {sodium.__file__}"
    return _inbound_drain, None


class InboundDrain:
    """Reads `ring` (the INBOUND socket's); `rounds`: the rounds' socket's ring, looked at
    between two frames; `nobody`: a key of nobody's, to open others' frames under."""

    def __init__(self, native: Any, ring: RxRing, rounds: RxRing | None, nobody: bytes) -> None:
        ffi, self._lib = native.ffi, native.lib
        self._ffi = ffi
        self._ring, self._rounds = ring, rounds
        d = self._d = ffi.new("struct lanon_inbound *")
        # What the struct points at lives as long as this object.
        out_len = OUT_LEN + _RECORD.size + ring.slot  # (a frame always fits an empty one)
        self._keep = [
            ffi.from_buffer(ring.map),
            ffi.new("uint32_t[]", ring.starts),
            ffi.new("unsigned char[]", nobody),
            ffi.new("unsigned char[]", ring.slot),
            ffi.new("unsigned char[]", out_len),
        ]
        d.ring, d.starts, d.nobody, d.scratch, d.out = self._keep
        d.count, d.slot, d.out_len = ring.count, ring.slot, out_len
        d.clock_id = CLOCK_ID
        self._coalition: tuple[int, int] | None = None
        self.follow(0, 0)
        self._rounds_map: Any = ffi.from_buffer(rounds.map) if rounds is not None else None
        self._taken = ffi.new("int *")
        self._out = ffi.buffer(d.out, out_len)
        self._owned: list[Any] = []
        self.set_owned(())

    def follow(self, coalition: int, gateways: int) -> None:
        """The coalition's id and its number of gateways (a new version may change them)."""
        if (coalition, gateways) != self._coalition:
            self._coalition = (coalition, gateways)
            head = bytes([wire.VERSION, wire.MsgType.INBOUND]) + coalition.to_bytes(4, "big")
            self._d.head = head
            self._d.gateways = gateways

    def set_owned(self, owned: Iterable[tuple[int, bytes]]) -> None:
        """The tags and keys of this member's flows and services."""
        pairs = sorted((tag.to_bytes(8, "big"), key) for tag, key in owned)
        tags = self._ffi.new("unsigned char[]", b"".join(t for t, _ in pairs) or b"\0")
        keys = self._ffi.new("unsigned char[]", b"".join(k for _, k in pairs) or b"\0")
        self._owned = [tags, keys]
        d = self._d
        d.tags, d.keys, d.owned = tags, keys, len(pairs)

    def drain(self, limit: int, due: float) -> tuple[Stop, int]:
        """Reads up to `limit` frames, stopping once the loop's clock reaches `due`: (why it
        stopped, frames read)."""
        ring, rounds, d = self._ring, self._rounds, self._d
        d.next = ring.next
        d.due = due
        at = (
            self._ffi.cast("uint32_t *", self._rounds_map + rounds.starts[rounds.next])
            if rounds is not None
            else self._ffi.NULL
        )
        why = self._lib.lanon_inbound_drain(d, limit, at, self._taken)
        ring.next = d.next
        return Stop(why), self._taken[0]

    def take_ours(self) -> list[OpenedInbound]:
        """The frames of ours read since the last call, opened."""
        d = self._d
        used = d.used
        if not used:
            return []
        out, record, at, ours = self._out, _RECORD, 0, []
        data = out[:used]
        while at < used:
            sender, index, parts, size, seq, tag = record.unpack_from(data, at)
            at += record.size
            part = None
            if size >= 0:
                part = data[at : at + size]
                at += size
            ours.append(OpenedInbound(sender, seq, tag, index, parts, part))
        d.used = 0
        return ours

    @property
    def work(self) -> tuple[int, int, int]:
        """libsodium's work so far: (calls, bytes through ChaCha20, bytes through Poly1305)."""
        d = self._d
        return d.calls, d.chacha20, d.poly1305
