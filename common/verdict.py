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

Verify = Callable[[bytes, bytes, bytes], bool]  # (public, message, signature)

_HEAD = struct.Struct("!QIH")
_LEN = struct.Struct("!H")


def attest_root(digests: list[bytes] | tuple[bytes, ...]) -> bytes:
    """What a member's ATTEST signs: the digest of its parts' digests, in order."""
    return digest16(b"".join(digests))


@dataclass(frozen=True, slots=True)
class Evidence:
    round: int
    bit: int
    opened: bytes  # the round's OPEN body (roster, epoch, keys): every ATTEST signs its digest
    attests: dict[int, bytes]  # member -> its ATTEST frame, signed (no MAC)
    digests: dict[int, tuple[bytes, ...]]  # member -> every part's digest16
    parts: dict[int, bytes]  # member -> its part that holds the bit
    reveals: dict[int, bytes]  # member -> its REVEAL frame, signed (absent: silent)
    proofs: tuple[bytes, ...]  # PROOF frames, signed
    named: frozenset[int]  # whom the leader excludes

    @property
    def open(self) -> wire.Open:
        return wire.pull_open(self.opened)

    def encode(self) -> bytes:
        o = self.open
        out = [
            _HEAD.pack(self.round, self.bit, o.nmembers),
            _blob(self.opened),
            wire.bitmap_encode(self.named, o.nmembers),
        ]
        for m in sorted(o.roster):
            digests = self.digests.get(m, ())
            out += [_blob(self.attests.get(m, b"")), _LEN.pack(len(digests)), *digests]
            out += [_blob(self.parts.get(m, b"")), _blob(self.reveals.get(m, b""))]
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
    rnd, bit, nmembers = _HEAD.unpack(r.take(_HEAD.size))
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
        parts[m] = r.blob()
        reveal = r.blob()
        if reveal:
            reveals[m] = reveal
    proofs = tuple(r.blob() for _ in range(r.count()))
    if r.at != len(data):
        raise wire.malformed("evidence with bytes past its end")
    return Evidence(rnd, bit, opened, attests, digests, parts, reveals, proofs, named)


@dataclass(frozen=True, slots=True)
class Finding:
    outcome: Outcome
    named: frozenset[int] = frozenset()  # DISRUPTOR: who wrote or lied
    silent: frozenset[int] = frozenset()  # revealed nothing, or proved nothing it was asked to
    disputes: frozenset[tuple[int, int]] = frozenset()  # pads to prove (DISPUTED)
    detail: str = ""

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


def _contribution_bit(c: Coalition, ev: Evidence, rd: _Round, m: int, verify: Verify) -> int | None:
    """Member m's contribution bit at the accused bit, from its own signature; None if the
    evidence does not prove it."""
    index, offset = divmod(ev.bit, c.part_size * 8)
    body = _signed_body(c, ev.attests.get(m, b""), wire.MsgType.ATTEST, m, verify)
    if body is None or index >= len(rd.lens):
        return None
    try:
        attest = wire.pull_attest(body)
    except RemoteProtocolError:
        return None
    digests, part = ev.digests.get(m, ()), ev.parts.get(m, b"")
    if (
        attest.round != ev.round
        or attest.opened != rd.opened
        or attest.nparts != len(rd.lens)
        or len(digests) != len(rd.lens)
        or attest_root(digests) != attest.root
        or len(part) != rd.lens[index]
        or digest16(part) != digests[index]
        or offset >= len(part) * 8
    ):
        return None
    return bit_of(part, offset)


def _reveal(c: Coalition, ev: Evidence, rd: _Round, m: int, verify: Verify) -> Reveal | None:
    body = _signed_body(c, ev.reveals.get(m, b""), wire.MsgType.REVEAL, m, verify)
    if body is None:
        return None
    try:
        msg = wire.pull_reveal(body)
    except RemoteProtocolError:
        return None
    if (msg.round, msg.bit, msg.opened) != (ev.round, ev.bit, rd.opened):
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
        if p.round == ev.round and p.bit == ev.bit:
            out.append((ExchangeProof(sender, p.public, p.peer_public, p.shared, p.proof), p.peer))
    return out


def judge(c: Coalition, ev: Evidence, verify: Verify) -> Finding:
    """Who the evidence shows wrote into the accused bit, or lied about a pad there; who it
    shows nothing of (silent); which disputed pads are still to be proven."""
    rd = _round_of(c, ev)
    if rd is None:
        return Finding(Outcome.INCOMPLETE, detail="an OPEN that does not fit the coalition")
    contributions = {}
    for m in sorted(rd.open.roster):
        b = _contribution_bit(c, ev, rd, m, verify)
        if b is None:
            return Finding(Outcome.INCOMPLETE, detail=f"no signed contribution of #{m}")
        contributions[m] = b
    reveals = {m: r for m in rd.open.roster if (r := _reveal(c, ev, rd, m, verify)) is not None}
    v = trace(rd.open.roster, c.edges, contributions, reveals)
    named = set(v.members) if v.outcome is Outcome.DISRUPTOR else set()
    silent = set(v.silent)
    proofs = _proofs(c, ev, verify)
    unsettled = set()
    for a, b in sorted(v.disputes):
        shown = [p for p, peer in proofs if {p.member, peer} == {a, b}]
        who = settle((a, b), ev.round, rd.open.epoch, ev.bit, reveals, shown)
        if who is None:
            unsettled.add((a, b))
        else:
            named |= who
    if named:
        return Finding(Outcome.DISRUPTOR, frozenset(named), frozenset(silent))
    if unsettled:
        return Finding(
            Outcome.DISPUTED,
            silent=frozenset(silent),
            disputes=frozenset(unsettled),
            detail=f"disputed pads not proven: {sorted(unsettled)}",
        )
    if silent:
        return Finding(Outcome.INCOMPLETE, silent=frozenset(silent), detail="silent members")
    return Finding(v.outcome)
