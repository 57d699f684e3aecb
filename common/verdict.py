"""A trace's evidence, and the verdict anyone draws from it (sans-IO, pure).

The leader that traced an accused bit (gateway/tracer.py) broadcasts the evidence in signed
VERDICT pieces; every gateway and every member runs `judge` on it, the leader too before it
excludes anyone: one computation, so that nobody has to take the leader's word.

    round, bit                       which bit of which round
    the round's OPEN body            roster, epoch, keys, layout: every ATTEST and REVEAL signs
                                     its digest, so the leader cannot change whose round it was
    per roster member                its signed ATTEST (what it sent: the root of its parts'
                                     digests), every part's digest, the part holding the bit,
                                     and its signed REVEAL (pad bits and the keys it used; none
                                     if it stayed silent)
    proofs                           signed PROOFs: disputed pads' exchanges (blame.settle)
    named                            whom the leader names: they are excluded

A member's contribution bit comes from its own signature (the leader holds every MAC key and
could forge a MACed part, not a signed one); its pad bits from its own signed REVEAL. What the
verdict needs and cannot show (a member silent, a dispute nobody proves) names nobody.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from lanon.common import wire
from lanon.common.blame import ExchangeProof, Outcome, Reveal, settle, trace
from lanon.common.coalition import Coalition
from lanon.common.crypto import bit_of, digest16
from lanon.common.errors import RemoteProtocolError
from lanon.common.reservation import ENTRY_LEN

Verify = Callable[[bytes, bytes, bytes], bool]  # (public, message, signature)

_HEAD = struct.Struct("!QBHH")
_LEN = struct.Struct("!H")
_BIT = struct.Struct("!I")


def distinct_entries(bits: tuple[int, ...], nentries: int) -> bool:
    """Whether a flood trace's bits lie in the reservation area, each in an entry of its own
    (a member writes at most max_claims entries: two bits of one would count it twice)."""
    entries = [bit // (ENTRY_LEN * 8) for bit in bits]
    return len(set(entries)) == len(entries) and all(0 <= e < nentries for e in entries)


def in_reserved_slot(c: Coalition, bit: int, o: wire.Open) -> bool:
    """Whether `bit` lies in one of the round's reserved slots (the only ones accused)."""
    base = o.nentries * ENTRY_LEN * 8
    return base <= bit < base + (o.nslots - c.rounds.express_slots) * c.coalition.cell_size * 8


def attest_root(digests: list[bytes] | tuple[bytes, ...]) -> bytes:
    """What a member's ATTEST signs: the digest of its parts' digests, in order."""
    return digest16(b"".join(digests))


@dataclass(frozen=True, slots=True)
class Evidence:
    round: int
    bits: tuple[int, ...]  # the accused bit; or (flood) a bit of each entry traced
    flood: bool  # a flooded reservation area: who wrote more entries than its share
    opened: bytes  # the round's OPEN body (roster, epoch, keys): every ATTEST signs its digest
    attests: dict[int, bytes]  # member -> its ATTEST frame, signed (no MAC)
    digests: dict[int, tuple[bytes, ...]]  # member -> every part's digest16
    parts: dict[tuple[int, int], bytes]  # (member, part index) -> the parts holding the bits
    reveals: dict[tuple[int, int], bytes]  # (member, bit) -> its REVEAL frame, signed
    proofs: tuple[bytes, ...]  # PROOF frames, signed
    named: frozenset[int]  # whom the leader excludes

    @property
    def open(self) -> wire.Open:
        return wire.pull_open(self.opened)

    @property
    def bit(self) -> int:
        return self.bits[0]

    def encode(self) -> bytes:
        o = self.open
        out = [
            _HEAD.pack(self.round, self.flood, o.nmembers, len(self.bits)),
            *(_BIT.pack(b) for b in self.bits),
            _blob(self.opened),
            wire.bitmap_encode(self.named, o.nmembers),
        ]
        for m in sorted(o.roster):
            digests = self.digests.get(m, ())
            out += [_blob(self.attests.get(m, b"")), _LEN.pack(len(digests)), *digests]
            shown = sorted(i for (who, i) in self.parts if who == m)
            out += [_LEN.pack(len(shown))]
            out += [_LEN.pack(i) + _blob(self.parts[(m, i)]) for i in shown]
            out += [_blob(self.reveals.get((m, b), b"")) for b in self.bits]
        out += [_LEN.pack(len(self.proofs)), *map(_blob, self.proofs)]
        return b"".join(out)


def _blob(data: bytes) -> bytes:
    return _LEN.pack(len(data)) + data


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise wire.malformed("evidence cut short")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def count(self) -> int:
        return int(_LEN.unpack(self.take(_LEN.size))[0])

    def blob(self) -> bytes:
        return self.take(self.count())


def pull_evidence(data: bytes) -> Evidence:
    r = _Reader(data)
    rnd, flood, nmembers, nbits = _HEAD.unpack(r.take(_HEAD.size))
    if not 0 < nbits <= wire.MAX_FLOOD_BITS or (nbits > 1 and not flood) or flood > 1:
        raise wire.malformed("evidence of no bit, or of several bits outside a flood")
    bits = tuple(int(_BIT.unpack(r.take(_BIT.size))[0]) for _ in range(nbits))
    opened = r.blob()
    o = wire.pull_open(opened)
    if o.nmembers != nmembers or o.round != rnd:
        raise wire.malformed("evidence of another round than its OPEN")
    named = wire.bitmap_decode(r.take((nmembers + 7) // 8), nmembers)
    if not named <= o.roster:
        raise wire.malformed("evidence names members outside its roster")
    attests, digests, parts, reveals = {}, {}, {}, {}
    for m in sorted(o.roster):
        attests[m] = r.blob()
        digests[m] = tuple(r.take(wire.DIGEST_LEN) for _ in range(r.count()))
        for _ in range(r.count()):
            index = r.count()
            parts[(m, index)] = r.blob()
        for b in bits:
            reveal = r.blob()
            if reveal:
                reveals[(m, b)] = reveal
    proofs = tuple(r.blob() for _ in range(r.count()))
    if r.at != len(data):
        raise wire.malformed("evidence with bytes past its end")
    return Evidence(rnd, bits, bool(flood), opened, attests, digests, parts, reveals, proofs, named)


@dataclass(frozen=True, slots=True)
class Finding:
    outcome: Outcome
    named: frozenset[int] = frozenset()  # DISRUPTOR: who wrote (or flooded), or lied
    silent: frozenset[int] = frozenset()  # showed nothing: revealed nothing, or signed nothing
    disputes: frozenset[tuple[int, int]] = frozenset()  # pads to prove (DISPUTED)
    detail: str = ""
    at: tuple[tuple[tuple[int, int], int], ...] = ()  # (edge, a bit its valid reveals dispute)

    def agrees(self, ev: Evidence) -> bool:
        """Whether the leader's `named` is what the evidence shows."""
        return ev.named == (self.named if self.outcome is Outcome.DISRUPTOR else frozenset())


def _signed_body(
    c: Coalition, frame: bytes, kind: wire.MsgType, member: int, verify: Verify
) -> bytes | None:
    """`frame`'s body if it is a `kind` frame of our coalition signed by `member`."""
    try:
        header = wire.pull_header(frame)
        body, sig = wire.split_auth(frame, wire.SIG_LEN)
    except RemoteProtocolError:
        return None
    if header.type is not kind or header.coalition != c.id or header.sender != member:
        return None
    if member >= len(c.members) or not verify(c.members[member].public, body, sig):
        return None
    return body


@dataclass(frozen=True, slots=True)
class _Round:
    """What the evidence's OPEN says, once checked against the coalition."""

    open: wire.Open
    opened: bytes  # its digest, which every ATTEST and REVEAL signs
    lens: list[int]


def _round_of(c: Coalition, ev: Evidence) -> _Round | None:
    try:
        o = ev.open
    except RemoteProtocolError:
        return None
    r = c.rounds
    if (
        o.round != ev.round
        or o.nmembers != len(c.members)
        or not r.express_slots <= o.nslots <= r.max_slots + r.express_slots
        or o.nentries > r.reservation_entries
    ):
        return None
    return _Round(o, digest16(ev.opened), c.part_lens(o.nslots, o.nentries))


def _contribution(
    c: Coalition, ev: Evidence, rd: _Round, m: int, verify: Verify
) -> dict[int, int] | None:
    """Member m's contribution bit at each traced bit, from its own signature; None if the
    evidence does not prove them."""
    body = _signed_body(c, ev.attests.get(m, b""), wire.MsgType.ATTEST, m, verify)
    if body is None:
        return None
    try:
        attest = wire.pull_attest(body)
    except RemoteProtocolError:
        return None
    digests = ev.digests.get(m, ())
    if (
        attest.round != ev.round
        or attest.opened != rd.opened
        or attest.nparts != len(rd.lens)
        or len(digests) != len(rd.lens)
        or attest_root(digests) != attest.root
    ):
        return None
    bits = {}
    for bit in ev.bits:
        index, offset = divmod(bit, c.part_size * 8)
        part = ev.parts.get((m, index), b"")
        if (
            index >= len(rd.lens)
            or len(part) != rd.lens[index]
            or digest16(part) != digests[index]
            or offset >= len(part) * 8
        ):
            return None
        bits[bit] = bit_of(part, offset)
    return bits


def _reveal(
    c: Coalition, ev: Evidence, rd: _Round, m: int, bit: int, verify: Verify
) -> Reveal | None:
    body = _signed_body(c, ev.reveals.get((m, bit), b""), wire.MsgType.REVEAL, m, verify)
    if body is None:
        return None
    try:
        msg = wire.pull_reveal(body)
    except RemoteProtocolError:
        return None
    if (msg.round, msg.bit, msg.opened) != (ev.round, bit, rd.opened):
        return None
    if msg.nmembers != len(c.members):
        return None
    return Reveal(m, msg.pads, msg.own, msg.keys)


def _proofs(c: Coalition, ev: Evidence, verify: Verify) -> list[tuple[ExchangeProof, int]]:
    out = []
    for frame in ev.proofs:
        try:
            sender = wire.pull_header(frame).sender
        except RemoteProtocolError:
            continue
        body = _signed_body(c, frame, wire.MsgType.PROOF, sender, verify)
        if body is None:
            continue
        try:
            p = wire.pull_proof(body)
        except RemoteProtocolError:
            continue
        if p.round == ev.round and p.bit in ev.bits:
            out.append((ExchangeProof(sender, p.public, p.peer_public, p.shared, p.proof), p.peer))
    return out


def judge(c: Coalition, ev: Evidence, verify: Verify) -> Finding:
    """Who the evidence shows wrote into the accused bit (or, for a flooded reservation area,
    into more entries than a member may), or lied about a pad there; who it shows nothing of
    (silent); which disputed pads are still to be proven."""
    rd = _round_of(c, ev)
    if rd is None:
        return Finding(Outcome.INCOMPLETE, detail="an OPEN that does not fit the coalition")
    roster = rd.open.roster
    if ev.flood and not distinct_entries(ev.bits, rd.open.nentries):
        return Finding(Outcome.INCOMPLETE, detail="flood bits outside the area, or two in an entry")
    if not ev.flood and not in_reserved_slot(c, ev.bit, rd.open):
        return Finding(Outcome.INCOMPLETE, detail="an accused bit outside the reserved slots")
    contributions = {m: got for m in roster if (got := _contribution(c, ev, rd, m, verify))}
    unsigned = roster - contributions.keys()  # the leader could not show what it sent
    named: set[int] = set()
    silent: set[int] = set(unsigned)
    wrote: dict[int, int] = {}  # member -> bits it wrote (own bit 1)
    disputes: set[tuple[int, int]] = set()
    reveals_at: dict[int, dict[int, Reveal]] = {}
    for bit in ev.bits:
        reveals = {m: r for m in roster if (r := _reveal(c, ev, rd, m, bit, verify))}
        reveals_at[bit] = reveals
        v = trace(roster, c.edges, {m: got[bit] for m, got in contributions.items()}, reveals)
        named |= v.broken
        silent |= v.silent
        disputes |= v.disputes
        for m in v.wrote:
            wrote[m] = wrote.get(m, 0) + 1
    if ev.flood:  # writing a claim is no fault: writing more than a member's share is
        named |= {m for m, n in wrote.items() if n > c.rounds.max_claims}
    else:
        named |= wrote.keys()
    proofs = _proofs(c, ev, verify)
    unsettled = set()
    at: dict[tuple[int, int], int] = {}
    for a, b in sorted(disputes):
        shown = [p for p, peer in proofs if {p.member, peer} == {a, b}]
        for bit in ev.bits:
            reveals = reveals_at[bit]
            if (
                a not in reveals
                or b not in reveals
                or reveals[a].pads.get(b) == reveals[b].pads.get(a)
            ):
                continue
            shape = (rd.open.nslots, rd.open.nentries)
            who = settle((a, b), ev.round, rd.open.epoch, bit, reveals, shown, shape)
            if who is None:
                unsettled.add((a, b))
                at.setdefault((a, b), bit)
            else:
                named |= who
    silent -= named
    if named:
        return Finding(Outcome.DISRUPTOR, frozenset(named), frozenset(silent))
    if unsettled:
        return Finding(
            Outcome.DISPUTED,
            silent=frozenset(silent),
            disputes=frozenset(unsettled),
            detail=f"disputed pads not proven: {sorted(unsettled)}",
            at=tuple(sorted(at.items())),
        )
    if silent:
        return Finding(
            Outcome.INCOMPLETE, silent=frozenset(silent), detail="members showed nothing"
        )
    return Finding(Outcome.CLEAN)
