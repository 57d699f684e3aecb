"""The lanon frame codec: Ethernet payloads of EtherType 0x88B5 (IEEE local experimental).

Every frame starts with the same 8-byte header (version, type, coalition id, sender index),
then a type-specific body, then its authenticator:

    OPEN         leader -> all      round, epoch, leader clock, slot plan, roster     MAC table + Ed25519
    CONTRIB      member -> leader   one part of the member's padded vector            MAC16
    OUTPUT_HEAD  leader -> all      round, slot plan, digest of every output part     MAC table + Ed25519
    OUTPUT_PART  leader -> all      one part of the XOR of all contributions          (digest in head)
    ABORT        leader -> all      round given up, who was missing                   Ed25519
    INBOUND      gateway -> all     one part of an inbound packet for a flow tag      flow key AEAD
    HELLO        member -> all      asks to join the roster, with config fingerprint  Ed25519
    HEARTBEAT    gateway -> all     liveness, addresses held, leadership, epoch       Ed25519
    KEYS         member -> all      its ephemeral keys (Ed25519 curve) for epochs     Ed25519
    REFUSE       member -> leader   it will not take part in this round, and why      MAC16
    TREE_PART    member -> parent   one part of the XOR of a subtree's vectors        MAC16
                 (schedule "tree"; the root sends to the leader)
    FLOWS        leader -> gateway  flow table records, for a gateway that just came   Ed25519
    ATTEST       member -> leader   its signature on its contribution (rounds with     Ed25519 + MAC16
                                    reserved slots): what blame shows of what it sent
    BLAME        leader -> all      reveal your pads at this bit of this round (or      Ed25519
                                    prove your exchange with these neighbours)
    REVEAL       member -> leader   its pad bit with each neighbour at that bit         Ed25519
    PROOF        member -> leader   its epoch exchange with a neighbour, and its proof  Ed25519
    VERDICT      leader -> all      one piece of a trace's evidence and verdict         Ed25519
                 (blame: common/blame.py, common/verdict.py)
    COALITION    gateway -> all     one chunk of the current coalition file             (signed
                                    (common/versions.py)                                inside)
    JOIN         host -> all        asks to be added: name and public key (or a new     Ed25519
                                    key for its name: signed by the old one too)        (1 or 2)

OPEN, HELLO and HEARTBEAT say which version of the coalition file their sender runs: a member
answers only rounds of its own version, and status shows who runs which.

OPEN and OUTPUT_HEAD, a member's two frames of every round, end with a MAC table before the
signature: one MAC16 per coalition member, in index order, over the body, under the key that
member shares with the leader. A member checks its own entry (a microsecond) instead of the
signature (60 µs); gateways check the signature, which covers body and table.

INBOUND carries its part sealed under the flow's key (common/flowkey.py): the frame up to the
payload is its associated data, the payload ends with the AEAD tag. Only the flow's member and
the gateways can read or forge one; it needs no signature.

Integers are big-endian. Decoders read only within the frame and raise RemoteProtocolError and
nothing else: MALFORMED on anything short or inconsistent (counts that disagree with the length,
bitmaps with bits past their width, empty rosters, rounds and epochs whose successor would not
encode: a receiver adopts them and sends the next), FOREIGN on another protocol version.
Authenticity is checked by the engines, which hold the keys. tests/common/test_fuzz.py drives
every decoder.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

from lanon.common.errors import RejectReason, RemoteProtocolError

ETHERTYPE = 0x88B5
VERSION = 12  # 2: REFUSE says the round and epoch expected; 3: MAC tables in OPEN and head;
# 4: per-flow keys (INBOUND sealed under the flow key, not signed; sealed packets in cells);
# 5: ephemeral keys on the Ed25519 curve, epoch keys from their exchange alone (common/crypto.py)
# 6: blame (ATTEST, BLAME, REVEAL, PROOF, VERDICT); heartbeats say who is excluded
# 7: coalition versions (COALITION, JOIN; the version in OPEN, HELLO and HEARTBEAT)
# 8: services' endpoints (REGISTER in cells with the SERVICE flag, endpoints in FLOWS records);
#    trusted mode (answers sealed for the leader, outputs sized by their head)
# 9: providers (OFFER; payment tokens and ratings in cells)
# 10: a member's ATTEST rides at the end of its last CONTRIB part where it fits (one frame less)
# 11: pads keyed by the round's shape too (common/crypto.py: shape_key); reservation areas sized
#     by the last round's claims
# 12: the tree's order an affine permutation of the sorted roster (common/tree.py: Shuffle)
BROADCAST = b"\xff" * 6
SIG_LEN = 64
MAC_LEN = 16
AEAD_TAG_LEN = 16  # ChaCha20-Poly1305 and AES-256-GCM alike (common/flowkey.py)
DIGEST_LEN = 16
FINGERPRINT_LEN = 16
MAX_EPOCH = 2**32 - 2  # the highest epoch a host keeps keys for: epoch + 1 must still encode
MAX_ROUND = 2**64 - 1
MAX_SEQ = 2**64 - 1  # an INBOUND frame's number (8 bytes): a nonce under its flow's key


class MsgType(enum.IntEnum):
    OPEN = 1
    CONTRIB = 2
    OUTPUT_HEAD = 3
    OUTPUT_PART = 4
    ABORT = 5
    INBOUND = 6
    HELLO = 7
    HEARTBEAT = 8
    KEYS = 9
    REFUSE = 10
    TREE_PART = 11
    FLOWS = 12
    ATTEST = 13
    BLAME = 14
    REVEAL = 15
    PROOF = 16
    VERDICT = 17
    COALITION = 18
    JOIN = 19
    OFFER = 20  # a provider's prices, signed by one of its gateways (common/offers.py)
    BUY = 21  # a member buys tokens or asks for a rating credential (common/tokens.py)
    ISSUE = 22  # a gateway's blind signatures for a BUY
    RATING = 23  # a rating heard in the outputs, or an agency's, relayed by a gateway


_TYPES = {t.value: t for t in MsgType}  # (a lookup: MsgType(value) costs each frame a microsecond)


class AbortReason(enum.IntEnum):
    DEADLINE = 1  # a roster member's contribution did not arrive in time
    LEADER_CHANGE = 2
    # 3 was SHUTDOWN, never sent: an ABORT that names it is malformed
    REFUSED = 4  # a roster member declined the round (e.g. it lacks a neighbour's key)


HEADER = struct.Struct("!BBIH")
_OPEN = struct.Struct("!QIQHHHI")
_PART = struct.Struct("!QHH")
_HEAD = struct.Struct("!QQHHH")
_ABORT = struct.Struct("!QBH")
_INBOUND = struct.Struct("!QQBB")
_INBOUND_FRAME = struct.Struct("!BBIHQQBB")  # HEADER and _INBOUND
_HELLO = struct.Struct("!Q16sI")
_HEARTBEAT = struct.Struct("!QQIBQHI16s")
_KEYS = struct.Struct("!QB")
_KEY_ENTRY = struct.Struct("!I32s")
_REFUSE = struct.Struct("!QBQI")
_TREE = struct.Struct("!QHHH")
_FLOWS = struct.Struct("!QHH")
_ATTEST = struct.Struct("!QH16s16s")
_BLAME = struct.Struct("!QIBHHH")
_REVEAL = struct.Struct("!QIH16s32s")
_PROOF = struct.Struct("!QIH32s32s32s64s")
_VERDICT = struct.Struct("!QIHH")
KEY_ID = struct.Struct("!I")
_EXCLUDED = struct.Struct("!QH")
_COALITION = struct.Struct("!I16sBB")
_JOIN = struct.Struct("!Q32s32sB")
MAX_NAME = 32

# Fixed overheads, used to size parts so that every frame fits the LAN MTU.
CONTRIB_OVERHEAD = HEADER.size + _PART.size + MAC_LEN
ATTEST_LEN = HEADER.size + _ATTEST.size + SIG_LEN  # a signed ATTEST, as kept for blame
OUTPUT_PART_OVERHEAD = HEADER.size + _PART.size


FLOWS_OVERHEAD = HEADER.size + _FLOWS.size + AEAD_TAG_LEN + SIG_LEN
VERDICT_OVERHEAD = HEADER.size + _VERDICT.size + SIG_LEN
MAX_VERDICT_PIECES = 256


def tree_part_overhead(nmembers: int) -> int:
    return HEADER.size + _TREE.size + (nmembers + 7) // 8 + MAC_LEN


INBOUND_HEAD = HEADER.size + _INBOUND.size  # an INBOUND frame's associated data


def output_head_overhead(nmembers: int) -> int:
    """An OUTPUT_HEAD's bytes but its digests: header, body, a MAC per member, a signature."""
    return HEADER.size + _HEAD.size + MAC_LEN * nmembers + SIG_LEN


INBOUND_OVERHEAD = INBOUND_HEAD + AEAD_TAG_LEN


def malformed(detail: str) -> RemoteProtocolError:
    return RemoteProtocolError(RejectReason.MALFORMED, detail)


# Decoders refuse numbers whose successor would not encode: whoever adopts a round or an epoch
# from the network must be able to send round + 1 (8 bytes) or epoch + 1 (4 bytes).


def _round(rnd: int) -> int:
    if rnd >= MAX_ROUND:
        raise malformed(f"round {rnd}")
    return rnd


def _epoch(epoch: int) -> int:
    if epoch > MAX_EPOCH:
        raise malformed(f"epoch {epoch}")
    return epoch


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
    kind = _TYPES.get(mtype)
    if kind is None:
        raise malformed(f"unknown type {mtype}")
    return Header(version, kind, coalition, sender)


def push_header(mtype: MsgType, coalition: int, sender: int) -> bytes:
    return HEADER.pack(VERSION, mtype, coalition, sender)


def split_auth(frame: bytes, length: int) -> tuple[bytes, bytes]:
    """Split a frame into the authenticated bytes and the trailing authenticator."""
    if len(frame) < HEADER.size + length:
        raise malformed("frame too short for its authenticator")
    return frame[:-length], frame[-length:]


def split_sealed(frame: bytes, nmembers: int) -> tuple[bytes, bytes, bytes]:
    """An OPEN or OUTPUT_HEAD: (body, member MAC table, signature over body and table)."""
    table = nmembers * MAC_LEN
    if len(frame) < HEADER.size + table + SIG_LEN:
        raise malformed("frame too short for its MAC table and signature")
    end = len(frame) - SIG_LEN
    return frame[: end - table], frame[end - table : end], frame[end:]


def table_entry(table: bytes, index: int) -> bytes:
    return table[index * MAC_LEN : (index + 1) * MAC_LEN]


def bitmap_encode(indices: Iterable[int], nbits: int) -> bytes:
    if isinstance(indices, frozenset):  # a roster: the same one every round
        return _roster_bitmap(indices, nbits)
    return _bitmap(indices, nbits)


@lru_cache(maxsize=64)
def _roster_bitmap(indices: frozenset[int], nbits: int) -> bytes:
    return _bitmap(indices, nbits)


def _bitmap(indices: Iterable[int], nbits: int) -> bytes:
    out = bytearray((nbits + 7) // 8)
    for i in indices:
        if not 0 <= i < nbits:
            raise ValueError(f"bit {i} outside 0..{nbits - 1}")
        out[i >> 3] |= 0x80 >> (i & 7)
    return bytes(out)


_BITS = tuple(tuple(k for k in range(8) if b & (0x80 >> k)) for b in range(256))


def bitmap_decode(data: bytes, nbits: int) -> frozenset[int]:
    """The set bits of a bitmap of `nbits` bits; its padding bits must be zero. Costs a step per
    byte and per set bit (a 65,535-bit bitmap of zeros is cheap)."""
    if nbits < 0 or len(data) != (nbits + 7) // 8:
        raise malformed("bitmap length does not match its bit count")
    if nbits & 7 and data[-1] & (0xFF >> (nbits & 7)):
        raise malformed("bitmap bits set past its bit count")
    # The same roster comes in every round's OPEN: a host's cost per round should not grow with
    # it, so a bitmap seen lately is a dictionary lookup (hashing its bytes, in C). Frames are
    # decoded before they are authenticated: what the cache holds is bounded in set bits, so
    # that forged bitmaps cost memory no more than the rosters of a large coalition.
    global _decoded_bits
    key = (bytes(data), nbits)
    bits = _decoded.get(key)
    if bits is None:
        bits = frozenset((j << 3) + k for j, b in enumerate(data) if b for k in _BITS[b])
        if len(_decoded) >= _DECODED or _decoded_bits + len(bits) > _DECODED_BITS:
            _decoded.clear()
            _decoded_bits = 0
        if len(bits) <= _DECODED_BITS:
            _decoded[key] = bits
            _decoded_bits += len(bits)
    return bits


_DECODED = 64  # bitmaps
_DECODED_BITS = 1 << 16  # set bits in all of them (a few MB at most)
_decoded: dict[tuple[bytes, int], frozenset[int]] = {}
_decoded_bits = 0


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
    key_ids: tuple[int, ...]  # ephemeral key id of each roster member, in index order
    ethernet: tuple[bytes, ...] = ()  # tree rounds: roster members' Ethernet addresses, in order
    version: int = 0  # of the coalition file: the roster's indices are that version's

    def encode(self, coalition: int, sender: int) -> bytes:
        return (
            push_header(MsgType.OPEN, coalition, sender)
            + _OPEN.pack(
                self.round,
                self.epoch,
                self.leader_ms,
                self.nslots,
                self.nentries,
                self.nmembers,
                self.version,
            )
            + bitmap_encode(self.roster, self.nmembers)
            + struct.pack(f"!{len(self.key_ids)}I", *self.key_ids)
            + b"".join(self.ethernet)
        )

    def ethernet_of(self) -> Mapping[int, bytes]:
        return ByMember(self.roster, self.ethernet)

    def key_of(self) -> Mapping[int, int]:
        """Member index -> the id of the ephemeral key it must use in this round."""
        return ByMember(self.roster, self.key_ids)


_T = TypeVar("_T")


@lru_cache(maxsize=64)
def roster_order(roster: frozenset[int]) -> tuple[int, ...]:
    """The roster's members in index order, the order of an OPEN's lists (and of the tree's
    shuffle). The same roster comes every round: it is sorted once, not at every OPEN."""
    return tuple(sorted(roster))


@lru_cache(maxsize=64)
def roster_positions(roster: frozenset[int]) -> dict[int, int]:
    """Member -> its place in `roster_order`."""
    return {m: i for i, m in enumerate(roster_order(roster))}


class ByMember(Mapping[int, _T]):
    """One of an OPEN's per-member lists by member index, read where asked (a member needs a
    few entries of it, not all)."""

    __slots__ = ("_at", "_values")

    def __init__(self, roster: frozenset[int], values: tuple[_T, ...]) -> None:
        if len(values) != len(roster):
            raise ValueError("one value per roster member")
        self._at = roster_positions(roster)
        self._values = values

    def __getitem__(self, member: int) -> _T:
        return self._values[self._at[member]]

    def __iter__(self) -> Iterator[int]:
        return iter(self._at)

    def __len__(self) -> int:
        return len(self._at)


def pull_open(body: bytes) -> Open:
    if len(body) < HEADER.size + _OPEN.size:
        raise malformed("short OPEN")
    rnd, epoch, leader_ms, nslots, nentries, nmembers, version = _OPEN.unpack_from(
        body, HEADER.size
    )
    _round(rnd)
    _epoch(epoch)
    start = HEADER.size + _OPEN.size
    nbytes = (nmembers + 7) // 8
    roster = bitmap_decode(body[start : start + nbytes], nmembers)
    if not roster:
        raise malformed("OPEN with an empty roster")
    ids = body[start + nbytes : start + nbytes + KEY_ID.size * len(roster)]
    rest = body[start + nbytes + KEY_ID.size * len(roster) :]
    if len(ids) != KEY_ID.size * len(roster) or len(rest) not in (0, 6 * len(roster)):
        raise malformed("OPEN key ids or MACs do not match its roster")
    key_ids = struct.unpack(f"!{len(roster)}I", ids)
    ethernet = tuple(rest[i * 6 : (i + 1) * 6] for i in range(len(rest) // 6))
    return Open(
        rnd, epoch, leader_ms, nslots, nentries, roster, nmembers, key_ids, ethernet, version
    )


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


@dataclass(frozen=True, slots=True)
class TreePart:
    """One part of the XOR of the vectors of `contributors` (a subtree), sent up the tree."""

    round: int
    index: int
    count: int
    contributors: frozenset[int]
    nmembers: int
    payload: bytes

    def encode(self, coalition: int, sender: int) -> bytes:
        return (
            push_header(MsgType.TREE_PART, coalition, sender)
            + _TREE.pack(self.round, self.index, self.count, self.nmembers)
            + bitmap_encode(self.contributors, self.nmembers)
            + self.payload
        )


def pull_tree_part(body: bytes) -> TreePart:
    if len(body) < HEADER.size + _TREE.size:
        raise malformed("short TREE_PART")
    rnd, index, count, nmembers = _TREE.unpack_from(body, HEADER.size)
    if count == 0 or index >= count:
        raise malformed(f"tree part {index} of {count}")
    _round(rnd)
    start = HEADER.size + _TREE.size
    nbytes = (nmembers + 7) // 8
    if len(body) < start + nbytes:
        raise malformed("short TREE_PART bitmap")
    contributors = bitmap_decode(body[start : start + nbytes], nmembers)
    if not contributors:
        raise malformed("TREE_PART without contributors")
    return TreePart(rnd, index, count, contributors, nmembers, body[start + nbytes :])


@dataclass(frozen=True, slots=True)
class Flows:
    """Fixed-size flow table records (their layout is the flow table's), sent by the leader to a
    gateway it has just started to hear, so that it holds every flow and can take over.

    The records hold flow keys: `sealed` is them sealed for that one gateway (the two
    gateways' pair key, common/flowkey.py), the frame up to it the associated data."""

    seq: int
    count: int
    size: int
    sealed: bytes

    def encode(self, coalition: int, sender: int) -> bytes:
        return self.head(coalition, sender) + self.sealed

    def head(self, coalition: int, sender: int) -> bytes:
        return push_header(MsgType.FLOWS, coalition, sender) + _FLOWS.pack(
            self.seq, self.count, self.size
        )

    def records(self, opened: bytes) -> list[bytes]:
        """The records of the opened `sealed`."""
        return [opened[i * self.size : (i + 1) * self.size] for i in range(self.count)]


def pull_flows(body: bytes) -> Flows:
    if len(body) < HEADER.size + _FLOWS.size:
        raise malformed("short FLOWS")
    seq, count, size = _FLOWS.unpack_from(body, HEADER.size)
    start = HEADER.size + _FLOWS.size
    if (count and not size) or len(body) != start + count * size + AEAD_TAG_LEN:
        raise malformed("FLOWS records do not match their count")
    return Flows(seq, count, size, body[start:])


def pull_part(body: bytes) -> Part:
    if len(body) < HEADER.size + _PART.size:
        raise malformed("short part")
    rnd, index, count = _PART.unpack_from(body, HEADER.size)
    if count == 0 or index >= count:
        raise malformed(f"part {index} of {count}")
    _round(rnd)
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
    _round(rnd)
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
    _round(rnd)
    try:
        why = AbortReason(reason)
    except ValueError:
        raise malformed(f"abort reason {reason}") from None
    missing = bitmap_decode(body[HEADER.size + _ABORT.size :], nmembers)
    return Abort(rnd, why, missing, nmembers)


@dataclass(slots=True)  # (not frozen: made for every INBOUND frame, and frozen costs 0.4 µs)
class Inbound:
    """One part of a packet that arrived from the Internet for flow `tag`; `payload` is the
    part sealed under the flow's key (the frame's first INBOUND_HEAD bytes its associated
    data)."""

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


INBOUND_SEQ_AT = HEADER.size  # where an INBOUND header's number, index and count are
INBOUND_INDEX_AT = INBOUND_HEAD - 2


def inbound_head(coalition: int, sender: int, tag: int) -> bytes:
    """An INBOUND frame's header for flow `tag`, its number, index and count still 0: each
    part's are set as it is sealed (flowkey.seal_parts)."""
    return _INBOUND_FRAME.pack(VERSION, MsgType.INBOUND, coalition, sender, 0, tag, 0, 0)


def peek_inbound_tag(body: bytes) -> int:
    """The flow tag of an INBOUND frame, read before any costly check."""
    if len(body) < HEADER.size + _INBOUND.size:
        raise malformed("short INBOUND")
    return int.from_bytes(body[HEADER.size + 8 : HEADER.size + 16], "big")


def pull_inbound(body: bytes) -> Inbound:
    if len(body) < HEADER.size + _INBOUND.size:
        raise malformed("short INBOUND")
    seq, tag, index, count = _INBOUND.unpack_from(body, HEADER.size)
    return _inbound(seq, tag, index, count, body[INBOUND_HEAD:])


def pull_inbound_frame(frame: bytes, coalition: int) -> tuple[int, Inbound]:
    """(sender, body) of an INBOUND frame of `coalition`: what `pull_header`, the coalition's
    check and `pull_inbound` would say, in their order, from one read (every member reads
    every INBOUND frame)."""
    if len(frame) < INBOUND_HEAD:
        pull_header(frame)  # (another version says so first)
        header_coalition = HEADER.unpack_from(frame)[2]
        if header_coalition != coalition:
            raise foreign_coalition(header_coalition, coalition)
        raise malformed("short INBOUND")
    version, _, theirs, sender, seq, tag, index, count = _INBOUND_FRAME.unpack_from(frame)
    if version != VERSION:
        raise RemoteProtocolError(RejectReason.FOREIGN, f"version {version}")
    if theirs != coalition:
        raise foreign_coalition(theirs, coalition)
    return sender, _inbound(seq, tag, index, count, frame[INBOUND_HEAD:])


def _inbound(seq: int, tag: int, index: int, count: int, payload: bytes) -> Inbound:
    if count == 0 or index >= count:
        raise malformed(f"inbound part {index} of {count}")
    return Inbound(seq, tag, index, count, payload)


def foreign_coalition(theirs: int, ours: int) -> RemoteProtocolError:
    """A frame of another coalition than ours."""
    return RemoteProtocolError(
        RejectReason.FOREIGN,
        f"coalition {theirs:08x}, ours {ours:08x}: do all hosts use the same coalition file?",
    )


@dataclass(frozen=True, slots=True)
class Hello:
    """A member asks to be in the roster; the fingerprint proves we share one coalition file."""

    wall_ms: int
    fingerprint: bytes
    version: int = 0  # of the coalition file

    def encode(self, coalition: int, sender: int) -> bytes:
        return push_header(MsgType.HELLO, coalition, sender) + _HELLO.pack(
            self.wall_ms, self.fingerprint, self.version
        )


def pull_hello(body: bytes) -> Hello:
    if len(body) != HEADER.size + _HELLO.size:
        raise malformed("HELLO of wrong size")
    wall_ms, fingerprint, version = _HELLO.unpack_from(body, HEADER.size)
    return Hello(wall_ms, fingerprint, version)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A gateway is alive; which anonymous addresses it holds; whether it leads rounds."""

    seq: int
    round: int  # the last round it led or saw
    epoch: int  # the key epoch of that round
    leader: bool
    held: frozenset[int]  # indices into the coalition's sorted anonymous address list
    naddresses: int
    leaving: bool = False  # a clean stop: take over now, do not wait for its silence
    started_ms: int = 0  # when this gateway process started: a change means it restarted
    excluded: frozenset[int] = frozenset()  # members out after blame (gateway/tracer.py)
    nmembers: int = 0
    excluded_version: int = 0  # when that list last changed (µs): the newest list wins
    version: int = 0  # of the coalition file this gateway runs
    text_digest: bytes = bytes(16)  # of that file's text: hosts behind take only that text

    def encode(self, coalition: int, sender: int) -> bytes:
        flags = (1 if self.leader else 0) | (2 if self.leaving else 0)
        return (
            push_header(MsgType.HEARTBEAT, coalition, sender)
            + _HEARTBEAT.pack(
                self.seq,
                self.round,
                self.epoch,
                flags,
                self.started_ms,
                self.naddresses,
                self.version,
                self.text_digest,
            )
            + bitmap_encode(self.held, self.naddresses)
            + _EXCLUDED.pack(self.excluded_version, self.nmembers)
            + bitmap_encode(self.excluded, self.nmembers)
        )


def pull_heartbeat(body: bytes) -> Heartbeat:
    if len(body) < HEADER.size + _HEARTBEAT.size:
        raise malformed("short HEARTBEAT")
    fields = _HEARTBEAT.unpack_from(body, HEADER.size)
    seq, rnd, epoch, flags, started_ms, naddresses, coalition_version, text_digest = fields
    _round(rnd)
    _epoch(epoch)
    if naddresses == 0:
        raise malformed("HEARTBEAT of a coalition without addresses")
    start = HEADER.size + _HEARTBEAT.size
    end = start + (naddresses + 7) // 8
    held = bitmap_decode(body[start:end], naddresses)
    if len(body) < end + _EXCLUDED.size:
        raise malformed("HEARTBEAT without its excluded members")
    version, nmembers = _EXCLUDED.unpack_from(body, end)
    excluded = bitmap_decode(body[end + _EXCLUDED.size :], nmembers)
    return Heartbeat(
        seq,
        rnd,
        epoch,
        bool(flags & 1),
        held,
        naddresses,
        bool(flags & 2),
        started_ms,
        excluded,
        nmembers,
        version,
        coalition_version,
        text_digest,
    )


_HEARTBEAT_VERSION = struct.Struct("!I")
_HEARTBEAT_VERSION_AT = HEADER.size + struct.calcsize("!QQIBQH")


def peek_heartbeat_version(frame: bytes) -> int:
    """The coalition version a HEARTBEAT says, unparsed (a member looks at every one)."""
    if len(frame) < _HEARTBEAT_VERSION_AT + _HEARTBEAT_VERSION.size:
        raise malformed("short HEARTBEAT")
    version: int = _HEARTBEAT_VERSION.unpack_from(frame, _HEARTBEAT_VERSION_AT)[0]
    return version


@dataclass(frozen=True, slots=True)
class Keys:
    """A member's ephemeral public keys (Ed25519 curve points), one per epoch (forward secrecy)."""

    wall_ms: int  # the newest announcement of a key for an epoch wins
    keys: tuple[tuple[int, bytes], ...]  # (epoch, public key)

    def encode(self, coalition: int, sender: int) -> bytes:
        return (
            push_header(MsgType.KEYS, coalition, sender)
            + _KEYS.pack(self.wall_ms, len(self.keys))
            + b"".join(_KEY_ENTRY.pack(e, k) for e, k in self.keys)
        )


def pull_keys(body: bytes) -> Keys:
    if len(body) < HEADER.size + _KEYS.size:
        raise malformed("short KEYS")
    wall_ms, n = _KEYS.unpack_from(body, HEADER.size)
    start = HEADER.size + _KEYS.size
    if n == 0 or len(body) != start + n * _KEY_ENTRY.size:
        raise malformed("KEYS entries do not match their count")
    entries = tuple(_KEY_ENTRY.unpack_from(body, start + i * _KEY_ENTRY.size) for i in range(n))
    for epoch, _key in entries:
        _epoch(epoch)
    return Keys(wall_ms, entries)


class RefuseCode(enum.IntEnum):
    """Why a member declines a round, as sent on the wire (explicit values: never reorder)."""

    ROSTER_TOO_SMALL = 1
    WEAK_KEY_GRAPH = 2
    CLOCK = 3  # the leader's clock is too far from ours: maybe a replayed OPEN
    MISSING_KEY = 4  # the round names an ephemeral key we do not have
    STALE_ROUND = 5  # the round (or its epoch) is at or below one we have answered: see `next`


@dataclass(frozen=True, slots=True)
class Refuse:
    """A member declines round `round`, so that the leader redoes it without waiting. With
    STALE_ROUND, `next_round` and `epoch` say where the lanon is: a leader that paused, or one
    that took over, adopts them (rounds only move forward, lanon-wide)."""

    round: int
    reason: RefuseCode
    next_round: int = 0  # the lowest round this member would answer
    epoch: int = 0  # the key epoch of the last round this member answered

    def encode(self, coalition: int, sender: int) -> bytes:
        return push_header(MsgType.REFUSE, coalition, sender) + _REFUSE.pack(
            self.round, self.reason, self.next_round, self.epoch
        )


def pull_refuse(body: bytes) -> Refuse:
    if len(body) != HEADER.size + _REFUSE.size:
        raise malformed("REFUSE of wrong size")
    rnd, reason, next_round, epoch = _REFUSE.unpack_from(body, HEADER.size)
    try:
        code = RefuseCode(reason)
    except ValueError:
        raise malformed(f"refusal reason {reason}") from None
    return Refuse(_round(rnd), code, _round(next_round), _epoch(epoch))


# --- blame (common/blame.py, common/verdict.py) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Attest:
    """A member signs what it sent in a round with reserved slots: `root` is the digest of its
    parts' digests (`verdict.attest_root`), `opened` the digest of the OPEN body it answered
    (which names the roster, epoch and keys). Sent with the parts, MACed to the leader, who
    keeps it: signed, it shows everyone what the member sent, where a MAC only shows the
    leader."""

    round: int
    nparts: int
    root: bytes
    opened: bytes

    def encode(self, coalition: int, sender: int) -> bytes:
        return push_header(MsgType.ATTEST, coalition, sender) + _ATTEST.pack(
            self.round, self.nparts, self.root, self.opened
        )


def pull_attest(body: bytes) -> Attest:
    if len(body) != HEADER.size + _ATTEST.size:
        raise malformed("ATTEST of wrong size")
    rnd, nparts, root, opened = _ATTEST.unpack_from(body, HEADER.size)
    if nparts == 0:
        raise malformed("ATTEST of no parts")
    return Attest(_round(rnd), nparts, root, opened)


class BlamePhase(enum.IntEnum):
    REVEAL = 1  # every roster member: your pad bits at `bit`
    PROVE = 2  # an end of `edge`: your epoch exchange with the other end, whose REVEAL this is
    FLOOD = 3  # every roster member: your pad bits at each of `bits` (a flooded area's entries)


@dataclass(frozen=True, slots=True)
class Blame:
    """The leader traces bit `bit` of round `round`, which an accusation proved corrupted. To
    PROVE, it names one disputed edge and carries the other end's signed REVEAL: a member
    proves only a pad it is shown to be disputed."""

    round: int
    bit: int  # FLOOD: the first of `bits`
    phase: BlamePhase
    edge: tuple[int, int] = (0, 0)
    reveal: bytes = b""  # PROVE: the other end's REVEAL frame, signed
    bits: tuple[int, ...] = ()  # FLOOD: a bit of each entry traced

    def encode(self, coalition: int, sender: int) -> bytes:
        return (
            push_header(MsgType.BLAME, coalition, sender)
            + _BLAME.pack(self.round, self.bit, self.phase, *self.edge, len(self.reveal))
            + self.reveal
            + _NBITS.pack(len(self.bits))
            + b"".join(KEY_ID.pack(b) for b in self.bits)
        )


_NBITS = struct.Struct("!H")
MAX_FLOOD_BITS = 64


def pull_blame(body: bytes) -> Blame:
    if len(body) < HEADER.size + _BLAME.size:
        raise malformed("short BLAME")
    rnd, bit, phase, a, b, n = _BLAME.unpack_from(body, HEADER.size)
    try:
        kind = BlamePhase(phase)
    except ValueError:
        raise malformed(f"blame phase {phase}") from None
    start = HEADER.size + _BLAME.size
    end = start + n
    if len(body) < end + _NBITS.size or (kind is BlamePhase.PROVE) != (n > 0):
        raise malformed("BLAME with a REVEAL that does not match its length or phase")
    (nbits,) = _NBITS.unpack_from(body, end)
    if len(body) != end + _NBITS.size + 4 * nbits or nbits > MAX_FLOOD_BITS:
        raise malformed("BLAME bits that do not match their count")
    if (kind is BlamePhase.FLOOD) != (nbits > 0):
        raise malformed("BLAME bits outside a FLOOD")
    bits = tuple(KEY_ID.unpack_from(body, end + _NBITS.size + 4 * i)[0] for i in range(nbits))
    if bits and (bits[0] != bit or len(set(bits)) != nbits):
        raise malformed("FLOOD bits that repeat, or do not start with its bit")
    return Blame(_round(rnd), bit, kind, (a, b), body[start:end], bits)


@dataclass(frozen=True, slots=True)
class RevealMsg:
    """A member's pad bit at `bit` of `round` with each neighbour in `pads` (its neighbours in
    that round's roster), the ephemeral keys it used (`own`, and each neighbour's in `keys`),
    and the digest of the OPEN it answered."""

    round: int
    bit: int
    nmembers: int
    opened: bytes
    own: bytes
    pads: dict[int, int]
    keys: dict[int, bytes]

    def encode(self, coalition: int, sender: int) -> bytes:
        named = sorted(self.pads)
        return (
            push_header(MsgType.REVEAL, coalition, sender)
            + _REVEAL.pack(self.round, self.bit, self.nmembers, self.opened, self.own)
            + bitmap_encode(named, self.nmembers)
            + bitmap_encode([j for j in named if self.pads[j]], self.nmembers)
            + b"".join(self.keys[j] for j in named)
        )


def pull_reveal(body: bytes) -> RevealMsg:
    if len(body) < HEADER.size + _REVEAL.size:
        raise malformed("short REVEAL")
    rnd, bit, nmembers, opened, own = _REVEAL.unpack_from(body, HEADER.size)
    start = HEADER.size + _REVEAL.size
    width = (nmembers + 7) // 8
    if len(body) < start + 2 * width:
        raise malformed("short REVEAL bitmaps")
    named = sorted(bitmap_decode(body[start : start + width], nmembers))
    ones = bitmap_decode(body[start + width : start + 2 * width], nmembers)
    keys = body[start + 2 * width :]
    if not ones <= set(named) or len(keys) != 32 * len(named):
        raise malformed("REVEAL pads or keys that do not match the neighbours it names")
    return RevealMsg(
        _round(rnd),
        bit,
        nmembers,
        opened,
        own,
        {j: int(j in ones) for j in named},
        {j: keys[32 * i : 32 * (i + 1)] for i, j in enumerate(named)},
    )


@dataclass(frozen=True, slots=True)
class ProofMsg:
    """A member's epoch exchange with `peer` in `round`'s epoch, made with its ephemeral key
    `public` and the peer's `peer_public`, and the proof that it is right."""

    round: int
    bit: int
    peer: int
    public: bytes
    peer_public: bytes
    shared: bytes
    proof: bytes

    def encode(self, coalition: int, sender: int) -> bytes:
        return push_header(MsgType.PROOF, coalition, sender) + _PROOF.pack(
            self.round, self.bit, self.peer, self.public, self.peer_public, self.shared, self.proof
        )


def pull_proof(body: bytes) -> ProofMsg:
    if len(body) != HEADER.size + _PROOF.size:
        raise malformed("PROOF of wrong size")
    rnd, bit, peer, public, peer_public, shared, proof = _PROOF.unpack_from(body, HEADER.size)
    return ProofMsg(_round(rnd), bit, peer, public, peer_public, shared, proof)


@dataclass(frozen=True, slots=True)
class VerdictPiece:
    """Piece `index` of `count` of a trace's evidence and verdict (common/verdict.py), each
    piece signed by the leader that traced."""

    round: int
    bit: int
    index: int
    count: int
    data: bytes

    def encode(self, coalition: int, sender: int) -> bytes:
        return (
            push_header(MsgType.VERDICT, coalition, sender)
            + _VERDICT.pack(self.round, self.bit, self.index, self.count)
            + self.data
        )


def pull_verdict(body: bytes) -> VerdictPiece:
    if len(body) < HEADER.size + _VERDICT.size:
        raise malformed("short VERDICT")
    rnd, bit, index, count = _VERDICT.unpack_from(body, HEADER.size)
    if not index < count <= MAX_VERDICT_PIECES:
        raise malformed(f"verdict piece {index} of {count}")
    return VerdictPiece(_round(rnd), bit, index, count, body[HEADER.size + _VERDICT.size :])


MAX_COALITION_CHUNKS = 64
COALITION_OVERHEAD = HEADER.size + _COALITION.size


@dataclass(frozen=True, slots=True)
class CoalitionChunk:
    """One chunk of a coalition file's text (UTF-8), `index` of `count`; `digest` is the
    BLAKE2b of the whole text: chunks of one text go together. The text carries the
    administrators' signatures: the frame needs none."""

    version: int
    digest: bytes
    index: int
    count: int
    data: bytes

    def encode(self, coalition: int, sender: int = 0) -> bytes:
        return (
            push_header(MsgType.COALITION, coalition, sender)
            + _COALITION.pack(self.version, self.digest, self.index, self.count)
            + self.data
        )


def pull_coalition(body: bytes) -> CoalitionChunk:
    if len(body) < HEADER.size + _COALITION.size:
        raise malformed("short COALITION")
    version, digest, index, count = _COALITION.unpack_from(body, HEADER.size)
    if not index < count <= MAX_COALITION_CHUNKS:
        raise malformed(f"coalition chunk {index} of {count}")
    return CoalitionChunk(version, digest, index, count, body[HEADER.size + _COALITION.size :])


@dataclass(frozen=True, slots=True)
class Join:
    """A host asks the administrators to add it: its name, its public key and, to replace the
    key its name has (a rotation), that old key, which signs too (common/versions.py)."""

    wall_ms: int
    name: str
    public: bytes
    old_public: bytes = b"\x00" * 32  # zeros: a new host

    @property
    def rotation(self) -> bool:
        return self.old_public != b"\x00" * 32

    def encode(self, coalition: int, sender: int = 0) -> bytes:
        name = self.name.encode()
        return (
            push_header(MsgType.JOIN, coalition, sender)
            + _JOIN.pack(self.wall_ms, self.public, self.old_public, len(name))
            + name
        )


def split_join(frame: bytes) -> tuple[bytes, list[bytes]]:
    """A JOIN: (body, signatures): one by its key, and by the old key for a rotation."""
    if len(frame) < HEADER.size + _JOIN.size:
        raise malformed("short JOIN")
    _, _, old, nlen = _JOIN.unpack_from(frame, HEADER.size)
    end = HEADER.size + _JOIN.size + nlen
    nsigs = 2 if old != b"\x00" * 32 else 1
    if len(frame) != end + nsigs * SIG_LEN:
        raise malformed("JOIN of wrong size")
    return frame[:end], [frame[end + i * SIG_LEN : end + (i + 1) * SIG_LEN] for i in range(nsigs)]


def pull_join(body: bytes) -> Join:
    if len(body) < HEADER.size + _JOIN.size:
        raise malformed("short JOIN")
    wall_ms, public, old, nlen = _JOIN.unpack_from(body, HEADER.size)
    raw = body[HEADER.size + _JOIN.size :]
    if not 0 < nlen <= MAX_NAME or len(raw) != nlen:
        raise malformed("JOIN name of wrong size")
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        raise malformed("JOIN name not ASCII") from None
    return Join(wall_ms, name, public, old)


def split_vector(vector: bytes, part_size: int) -> list[bytes]:
    """Cut a vector into parts of at most part_size bytes (the last may be shorter)."""
    return [vector[i : i + part_size] for i in range(0, len(vector), part_size)] or [b""]


def part_count(vector_len: int, part_size: int) -> int:
    return max(1, -(-vector_len // part_size))
