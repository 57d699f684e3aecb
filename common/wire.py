"""The lanon frame codec: Ethernet payloads of EtherType 0x88B5 (IEEE local experimental).

Every frame starts with the same 8-byte header (version, type, coalition id, sender index),
then a type-specific body, then its authenticator:

    OPEN         leader -> all      round, epoch, leader clock, slot plan, roster     Ed25519
    CONTRIB      member -> leader   one part of the member's padded vector            MAC16
    OUTPUT_HEAD  leader -> all      round, slot plan, digest of every output part     Ed25519
    OUTPUT_PART  leader -> all      one part of the XOR of all contributions          (digest in head)
    ABORT        leader -> all      round given up, who was missing                   Ed25519
    INBOUND      gateway -> all     one part of an inbound packet for a flow tag      Ed25519
    HELLO        member -> all      asks to join the roster, with config fingerprint  Ed25519
    HEARTBEAT    gateway -> all     liveness, addresses held, leadership              Ed25519

Integers are big-endian. Decoders raise RemoteProtocolError(MALFORMED) on anything short or
inconsistent; authenticity is checked by the engines, which hold the keys.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from lanon.common.errors import RejectReason, RemoteProtocolError

ETHERTYPE = 0x88B5
VERSION = 1
BROADCAST = b"\xff" * 6
ETH_HEADER_LEN = 14
SIG_LEN = 64
MAC_LEN = 16
DIGEST_LEN = 16
FINGERPRINT_LEN = 16


class MsgType(enum.IntEnum):
    OPEN = 1
    CONTRIB = 2
    OUTPUT_HEAD = 3
    OUTPUT_PART = 4
    ABORT = 5
    INBOUND = 6
    HELLO = 7
    HEARTBEAT = 8


SIGNED_TYPES = frozenset(
    {
        MsgType.OPEN,
        MsgType.OUTPUT_HEAD,
        MsgType.ABORT,
        MsgType.INBOUND,
        MsgType.HELLO,
        MsgType.HEARTBEAT,
    }
)


class AbortReason(enum.IntEnum):
    DEADLINE = 1  # a roster member's contribution did not arrive in time
    LEADER_CHANGE = 2
    SHUTDOWN = 3


HEADER = struct.Struct("!BBIH")
_OPEN = struct.Struct("!QIQHHH")
_PART = struct.Struct("!QHH")
_HEAD = struct.Struct("!QQHHH")
_ABORT = struct.Struct("!QBH")
_INBOUND = struct.Struct("!QQBB")
_HELLO = struct.Struct("!Q16s")
_HEARTBEAT = struct.Struct("!QQBH")

# Fixed overheads, used to size parts so that every frame fits the LAN MTU.
CONTRIB_OVERHEAD = HEADER.size + _PART.size + MAC_LEN
OUTPUT_PART_OVERHEAD = HEADER.size + _PART.size
INBOUND_OVERHEAD = HEADER.size + _INBOUND.size + SIG_LEN


def malformed(detail: str) -> RemoteProtocolError:
    return RemoteProtocolError(RejectReason.MALFORMED, detail)


@dataclass(frozen=True, slots=True)
class Header:
    version: int
    type: MsgType
    coalition: int
    sender: int


def pull_header(frame: bytes) -> Header:
    if len(frame) < HEADER.size:
        raise malformed(f"{len(frame)} bytes is shorter than a header")
    version, mtype, coalition, sender = HEADER.unpack_from(frame)
    if version != VERSION:
        raise RemoteProtocolError(RejectReason.FOREIGN, f"version {version}")
    try:
        kind = MsgType(mtype)
    except ValueError:
        raise malformed(f"unknown type {mtype}") from None
    return Header(version, kind, coalition, sender)


def push_header(mtype: MsgType, coalition: int, sender: int) -> bytes:
    return HEADER.pack(VERSION, mtype, coalition, sender)


def split_auth(frame: bytes, length: int) -> tuple[bytes, bytes]:
    """Split a frame into the authenticated bytes and the trailing authenticator."""
    if len(frame) < HEADER.size + length:
        raise malformed("frame too short for its authenticator")
    return frame[:-length], frame[-length:]


def bitmap_encode(indices: Iterable[int], nbits: int) -> bytes:
    out = bytearray((nbits + 7) // 8)
    for i in indices:
        if not 0 <= i < nbits:
            raise ValueError(f"bit {i} outside 0..{nbits - 1}")
        out[i >> 3] |= 0x80 >> (i & 7)
    return bytes(out)


def bitmap_decode(data: bytes, nbits: int) -> frozenset[int]:
    if len(data) != (nbits + 7) // 8:
        raise malformed("bitmap length does not match its bit count")
    return frozenset(i for i in range(nbits) if data[i >> 3] & (0x80 >> (i & 7)))


# --- message bodies -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Open:
    """The leader opens round `round`: who takes part and how large the vector is."""

    round: int
    epoch: int
    leader_ms: int  # leader's wall clock, for freshness and for flow expiry
    nslots: int  # data slots in this round (granted by the previous round's reservations)
    nentries: int  # reservation entries in this round
    roster: frozenset[int]  # member indices expected to contribute
    nmembers: int  # size of the coalition's member list (bitmap width)

    def encode(self, coalition: int, sender: int) -> bytes:
        return (
            push_header(MsgType.OPEN, coalition, sender)
            + _OPEN.pack(
                self.round, self.epoch, self.leader_ms, self.nslots, self.nentries, self.nmembers
            )
            + bitmap_encode(self.roster, self.nmembers)
        )


def pull_open(body: bytes) -> Open:
    if len(body) < HEADER.size + _OPEN.size:
        raise malformed("short OPEN")
    rnd, epoch, leader_ms, nslots, nentries, nmembers = _OPEN.unpack_from(body, HEADER.size)
    roster = bitmap_decode(body[HEADER.size + _OPEN.size :], nmembers)
    return Open(rnd, epoch, leader_ms, nslots, nentries, roster, nmembers)


@dataclass(frozen=True, slots=True)
class Part:
    """One MTU-sized part of a vector: a member's contribution or the round output."""

    round: int
    index: int
    count: int
    payload: bytes

    def encode(self, mtype: MsgType, coalition: int, sender: int) -> bytes:
        return (
            push_header(mtype, coalition, sender)
            + _PART.pack(self.round, self.index, self.count)
            + self.payload
        )


def pull_part(body: bytes) -> Part:
    if len(body) < HEADER.size + _PART.size:
        raise malformed("short part")
    rnd, index, count = _PART.unpack_from(body, HEADER.size)
    if count == 0 or index >= count:
        raise malformed(f"part {index} of {count}")
    return Part(rnd, index, count, body[HEADER.size + _PART.size :])


@dataclass(frozen=True, slots=True)
class OutputHead:
    """Signed summary of round output: members check each part against its digest."""

    round: int
    leader_ms: int
    nentries: int
    nslots: int
    digests: tuple[bytes, ...]

    def encode(self, coalition: int, sender: int) -> bytes:
        return (
            push_header(MsgType.OUTPUT_HEAD, coalition, sender)
            + _HEAD.pack(self.round, self.leader_ms, self.nentries, self.nslots, len(self.digests))
            + b"".join(self.digests)
        )


def pull_output_head(body: bytes) -> OutputHead:
    if len(body) < HEADER.size + _HEAD.size:
        raise malformed("short OUTPUT_HEAD")
    rnd, leader_ms, nentries, nslots, nparts = _HEAD.unpack_from(body, HEADER.size)
    start = HEADER.size + _HEAD.size
    if nparts == 0 or len(body) != start + nparts * DIGEST_LEN:
        raise malformed("OUTPUT_HEAD digest list does not match its count")
    digests = tuple(
        body[start + i * DIGEST_LEN : start + (i + 1) * DIGEST_LEN] for i in range(nparts)
    )
    return OutputHead(rnd, leader_ms, nentries, nslots, digests)


@dataclass(frozen=True, slots=True)
class Abort:
    round: int
    reason: AbortReason
    missing: frozenset[int]
    nmembers: int

    def encode(self, coalition: int, sender: int) -> bytes:
        return (
            push_header(MsgType.ABORT, coalition, sender)
            + _ABORT.pack(self.round, self.reason, self.nmembers)
            + bitmap_encode(self.missing, self.nmembers)
        )


def pull_abort(body: bytes) -> Abort:
    if len(body) < HEADER.size + _ABORT.size:
        raise malformed("short ABORT")
    rnd, reason, nmembers = _ABORT.unpack_from(body, HEADER.size)
    try:
        why = AbortReason(reason)
    except ValueError:
        raise malformed(f"abort reason {reason}") from None
    missing = bitmap_decode(body[HEADER.size + _ABORT.size :], nmembers)
    return Abort(rnd, why, missing, nmembers)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One part of a packet that arrived from the Internet for flow `tag`."""

    seq: int  # strictly increasing per gateway, across restarts (wall-clock based)
    tag: int
    index: int
    count: int
    payload: bytes

    def encode(self, coalition: int, sender: int) -> bytes:
        return (
            push_header(MsgType.INBOUND, coalition, sender)
            + _INBOUND.pack(self.seq, self.tag, self.index, self.count)
            + self.payload
        )


def peek_inbound_tag(body: bytes) -> int:
    """The flow tag of an INBOUND frame, read before any costly check."""
    if len(body) < HEADER.size + _INBOUND.size:
        raise malformed("short INBOUND")
    return int.from_bytes(body[HEADER.size + 8 : HEADER.size + 16], "big")


def pull_inbound(body: bytes) -> Inbound:
    if len(body) < HEADER.size + _INBOUND.size:
        raise malformed("short INBOUND")
    seq, tag, index, count = _INBOUND.unpack_from(body, HEADER.size)
    if count == 0 or index >= count:
        raise malformed(f"inbound part {index} of {count}")
    return Inbound(seq, tag, index, count, body[HEADER.size + _INBOUND.size :])


@dataclass(frozen=True, slots=True)
class Hello:
    """A member asks to be in the roster; the fingerprint proves we share one coalition file."""

    wall_ms: int
    fingerprint: bytes

    def encode(self, coalition: int, sender: int) -> bytes:
        return push_header(MsgType.HELLO, coalition, sender) + _HELLO.pack(
            self.wall_ms, self.fingerprint
        )


def pull_hello(body: bytes) -> Hello:
    if len(body) != HEADER.size + _HELLO.size:
        raise malformed("HELLO of wrong size")
    wall_ms, fingerprint = _HELLO.unpack_from(body, HEADER.size)
    return Hello(wall_ms, fingerprint)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A gateway is alive; which anonymous addresses it holds; whether it leads rounds."""

    seq: int
    round: int  # the last round it led or saw
    leader: bool
    held: frozenset[int]  # indices into the coalition's sorted anonymous address list
    naddresses: int

    def encode(self, coalition: int, sender: int) -> bytes:
        return (
            push_header(MsgType.HEARTBEAT, coalition, sender)
            + _HEARTBEAT.pack(self.seq, self.round, 1 if self.leader else 0, self.naddresses)
            + bitmap_encode(self.held, self.naddresses)
        )


def pull_heartbeat(body: bytes) -> Heartbeat:
    if len(body) < HEADER.size + _HEARTBEAT.size:
        raise malformed("short HEARTBEAT")
    seq, rnd, flags, naddresses = _HEARTBEAT.unpack_from(body, HEADER.size)
    held = bitmap_decode(body[HEADER.size + _HEARTBEAT.size :], naddresses)
    return Heartbeat(seq, rnd, bool(flags & 1), held, naddresses)


def split_vector(vector: bytes, part_size: int) -> list[bytes]:
    """Cut a vector into parts of at most part_size bytes (the last may be shorter)."""
    return [vector[i : i + part_size] for i in range(0, len(vector), part_size)] or [b""]


def part_count(vector_len: int, part_size: int) -> int:
    return max(1, -(-vector_len // part_size))
