"""The member's INBOUND ring read in compiled code (inbound_drain.c): the adapter's side.

Every member reads every INBOUND frame of every download, nearly all of them another's. The
engine's path costs a member about 7 µs of Python a frame; `InboundDrain` reads the ring and
opens each frame in one call, with the libsodium calls the engine's opener makes
(`flowkey.InboundOpener`), and hands back only what the engine must see:

* each fresh frame of ours, opened (`take_ours()`): the engine takes it from there
  (`MemberEngine.receive_opened`);
* how many frames of our tags it refused, their seal broken or their number seen before
  (`take_refused()`): counted in C, so that a flood of forgeries or replays of a flow's tag
  costs its owner no more than anyone else;
* a frame it does not take (short, foreign, of no gateway, cut by the kernel, from a source
  the door has closed), left in its slot (`Stop.PYTHON`): the daemon reads that one through
  the engine, which checks and counts it as it always did.

It stops between two frames when a rounds' frame waits (`Stop.ROUNDS`) and when the loop's
next timer is due (`Stop.TIMER`). `pip install` compiles it (setup.py, cffi); in a checkout
that was never installed, `load()` says why it cannot be had and the daemon reads in Python.
"""

from __future__ import annotations

import enum
import socket
import struct
from collections.abc import Collection, Mapping
from typing import Any

from lanon.common import compiled, wire
from lanon.common.clock import CLOCK_ID
from lanon.common.crypto import KEY_LEN
from lanon.common.flowkey import InboundCipher
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


# A fresh frame of ours in the output: sender, index, parts, size, sequence number, tag
# (inbound_drain.c's RECORD); then its part.
_RECORD = struct.Struct("=HBBiQQ")
# Our frames opened between two looks: 4 packets of 64 KiB in parts of a 1500-byte MTU's
# frame, each with its record (and one slot more, so that a frame always fits an empty one).
OUT_LEN = 4 * (65536 + 48 * 24)


def load() -> tuple[Any, str | None]:
    """(the compiled module, None), or (None, why not)."""
    return compiled.load("member._inbound_drain", "lanon_inbound_init2")


class InboundDrain:
    """Reads `ring` (the INBOUND socket's; `sock` its socket); `rounds`: the rounds' socket's
    ring, looked at between two frames; `nobody`: a key of nobody's, to open others' frames;
    `cipher`: the coalition's (which no version changes: it is part of its identity)."""

    def __init__(
        self,
        native: Any,
        ring: RxRing,
        rounds: RxRing,
        nobody: bytes,
        sock: socket.socket | None = None,
        *,
        cipher: InboundCipher,
    ) -> None:
        why = cipher.missing()
        if why is not None:  # (libsodium would abort)
            raise RuntimeError(why)
        ffi, self._lib = native.ffi, native.lib
        self._ffi = ffi
        self._ring, self._rounds, self._sock = ring, rounds, sock
        d = self._d = ffi.new("struct lanon_inbound *")
        out_len = OUT_LEN + _RECORD.size + ring.slot  # (a frame always fits an empty one)
        # What the struct points at lives as long as this object.
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
        d.cipher = cipher.compiled
        self._rounds_map = ffi.from_buffer(rounds.map)
        self._taken = ffi.new("int *")
        self._out = ffi.buffer(d.out, out_len)
        self._owned: list[Any] = []
        self._tables: list[Any] = []
        self._door: tuple[Collection[bytes], Collection[bytes] | None] = ((), None)
        self._held: list[OpenedInbound] = []  # a packet's first parts, its rest not read yet
        self._coalition = (-1, -1)
        self.follow(0, 0)

    def follow(self, coalition: int, gateways: int) -> bool:
        """The coalition's id and its number of gateways (a new version may change them).
        True if they changed: then `set_owned` must be called again."""
        if (coalition, gateways) == self._coalition:
            return False
        self._coalition = (coalition, gateways)
        self._d.head = bytes([wire.VERSION, wire.MsgType.INBOUND]) + coalition.to_bytes(4, "big")
        self._d.gateways = gateways
        self.set_owned({})
        return True

    def set_owned(self, owned: Mapping[int, tuple[bytes, Mapping[int, int]]]) -> None:
        """Our flows' and services' tags: each one's key, and the last number taken from
        each gateway (a frame numbered no higher is a replay)."""
        gateways = self._coalition[1]
        tags = sorted(owned)
        ffi, d = self._ffi, self._d
        keys = [owned[t][0] for t in tags]
        if any(len(k) != KEY_LEN for k in keys):
            raise ValueError("a flow key of the wrong length")
        seen = [owned[t][1].get(g, 0) for t in tags for g in range(max(gateways, 0))]
        self._owned = [
            ffi.new("unsigned char[]", b"".join(t.to_bytes(8, "big") for t in tags) or b"\0"),
            ffi.new("unsigned char[]", b"".join(keys) or b"\0"),
            ffi.new("uint64_t[]", seen or [0]),
        ]
        d.tags, d.keys, d.seen = self._owned
        d.owned = len(tags)

    def set_door(self, closed: Collection[bytes], allowed: Collection[bytes] | None) -> None:
        """The door now: the sources whose frames it turns away, and while it is shut the only
        ones it lets in (None: not shut). Frames it would not let in are left to the engine,
        which turns them away and counts them."""
        if (closed, allowed) == self._door:
            return
        self._door = (closed, allowed)
        ffi, d = self._ffi, self._d
        self._tables = [
            ffi.new("unsigned char[]", b"".join(sorted(closed)) or b"\0"),
            ffi.new("unsigned char[]", b"".join(sorted(allowed or ())) or b"\0"),
        ]
        d.closed, d.allowed = self._tables
        d.nclosed, d.nallowed = len(closed), len(allowed or ())
        d.shut = allowed is not None

    def drain(self, limit: int, due: float) -> tuple[Stop, int]:
        """Reads up to `limit` frames, stopping once the loop's clock reaches `due`: (why it
        stopped, frames read)."""
        ring, rounds, d = self._ring, self._rounds, self._d
        d.next = ring.next
        d.due = due
        at = self._ffi.cast("uint32_t *", self._rounds_map + rounds.starts[rounds.next])
        why = self._lib.lanon_inbound_drain(d, limit, at, self._taken)
        ring.next = d.next
        return Stop(why), self._taken[0]

    def clear_error(self) -> None:
        """Woken with nothing to read: an error the socket holds (the link went down) keeps
        it readable until a call takes it (as `RxRing.frames` does)."""
        if self._sock is not None:
            self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def take_ours(self, more: bool = False) -> list[OpenedInbound]:
        """The fresh frames of ours read since the last call, opened. A packet whose parts all
        came one after the other, as a gateway sends them, comes whole: one part of one,
        numbered as its last (the engine takes it as it would have taken them one by one).
        `more`: the read stopped with frames still waiting (its output full): the first parts
        of a packet whose rest may follow are kept for the next call."""
        d = self._d
        used = d.used
        run, self._held = self._held, []  # a packet's parts read so far, one after the other
        if not used:
            return run
        record, at, ours = _RECORD, 0, []
        data = self._out[:used]
        while at < used:
            sender, index, parts, size, seq, tag = record.unpack_from(data, at)
            at += record.size
            part = OpenedInbound(sender, seq, tag, index, parts, data[at : at + size])
            at += size
            if run and not _follows(run[-1], part):
                ours += run  # (a packet not all here: the engine puts its parts together)
                run = []
            run.append(part)
            if index == parts - 1 and len(run) == parts:
                ours.append(OpenedInbound(sender, seq, tag, 0, 1, b"".join(p.part for p in run)))
                run = []
        d.used = 0
        if more:
            self._held = run
            return ours
        return ours + run

    @property
    def holding(self) -> bool:
        """Whether a packet's first parts wait here for their rest (`take_ours(more=True)`)."""
        return bool(self._held)

    def take_refused(self) -> tuple[int, int]:
        """Frames of our tags refused since the last call: (seal broken, replayed)."""
        d = self._d
        refused = (d.bad_seals, d.replays)
        if refused != (0, 0):
            d.bad_seals = d.replays = 0
        return refused

    @property
    def work(self) -> tuple[int, int, int, int]:
        """libsodium's work so far: (calls, bytes through ChaCha20, bytes through Poly1305,
        bytes through AES-256-GCM)."""
        d = self._d
        return d.calls, d.chacha20, d.poly1305, d.aes256gcm


def _follows(before: OpenedInbound, part: OpenedInbound) -> bool:
    """Whether `part` is the next part of `before`'s packet."""
    return (
        part.index == before.index + 1
        and part.seq == before.seq + 1
        and part.tag == before.tag
        and part.sender == before.sender
        and part.count == before.count
    )
