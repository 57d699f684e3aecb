"""A trace's evidence, and the verdict anyone draws from it (sans-IO, pure).

The leader that traced an accused bit (gateway/tracer.py) broadcasts the evidence in signed
VERDICT pieces; every gateway and every member runs `judge` on it, the leader too before it
excludes anyone: one computation, so that nobody has to take the leader's word.

    round, bit, epoch, slot plan     which bit of which round (nslots, nentries: its layout)
    roster, key ids                  who took part, with which ephemeral keys (from the OPEN)
    per roster member                its signed ATTEST (what it sent: the root of its parts'
                                     digests), every part's digest, the part holding the bit,
                                     and its signed REVEAL (none if it stayed silent)
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

_HEAD = struct.Struct("!QIIHHH")
_LEN = struct.Struct("!H")
_ID = struct.Struct("!I")


def attest_root(digests: list[bytes] | tuple[bytes, ...]) -> bytes:
    """What a member's ATTEST signs: the digest of its parts' digests, in order."""
    return digest16(b"".join(digests))


@dataclass(frozen=True, slots=True)
class Evidence:
    round: int
    bit: int
    epoch: int
    nslots: int
    nentries: int
    roster: frozenset[int]
    key_ids: dict[int, int]
    attests: dict[int, bytes]  # member -> its ATTEST frame, signed (no MAC)
    digests: dict[int, tuple[bytes, ...]]  # member -> every part's digest16
    parts: dict[int, bytes]  # member -> its part that holds the bit
    reveals: dict[int, bytes]  # member -> its REVEAL frame, signed (absent: silent)
    proofs: tuple[bytes, ...]  # PROOF frames, signed
    named: frozenset[int]  # whom the leader excludes

    def encode(self, nmembers: int) -> bytes:
        members = sorted(self.roster)
        out = [
            _HEAD.pack(self.round, self.bit, self.epoch, self.nslots, self.nentries, nmembers),
            wire.bitmap_encode(self.roster, nmembers),
            wire.bitmap_encode(self.named, nmembers),
        ]
        out += [_ID.pack(self.key_ids[m]) for m in members]
        for m in members:
            out += [_blob(self.attests.get(m, b""))]
            digests = self.digests.get(m, ())
            out += [_LEN.pack(len(digests)), *digests]
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
    rnd, bit, epoch, nslots, nentries, nmembers = _HEAD.unpack(r.take(_HEAD.size))
    width = (nmembers + 7) // 8
    roster = wire.bitmap_decode(r.take(width), nmembers)
    named = wire.bitmap_decode(r.take(width), nmembers)
    if not roster or not named <= roster:
        raise wire.malformed("evidence names members outside its roster")
    members = sorted(roster)
    key_ids = {m: int(_ID.unpack(r.take(_ID.size))[0]) for m in members}
    attests, digests, parts, reveals = {}, {}, {}, {}
    for m in members:
        attests[m] = r.blob()
        digests[m] = tuple(r.take(wire.DIGEST_LEN) for _ in range(r.count()))
        parts[m] = r.blob()
        reveal = r.blob()
        if reveal:
            reveals[m] = reveal
    proofs = tuple(r.blob() for _ in range(r.count()))
    if r.at != len(data):
        raise wire.malformed("evidence with bytes past its end")
    return Evidence(
        rnd,
        bit,
        epoch,
        nslots,
        nentries,
        roster,
        key_ids,
        attests,
        digests,
        parts,
        reveals,
        proofs,
        named,
    )


@dataclass(frozen=True, slots=True)
class Finding:
    outcome: Outcome
    named: frozenset[int] = frozenset()  # DISRUPTOR: who wrote or lied
    silent: frozenset[int] = frozenset()  # INCOMPLETE: who revealed nothing
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


def _contribution_bit(c: Coalition, ev: Evidence, m: int, verify: Verify) -> int | None:
    """Member m's contribution bit at the accused bit, from its own signature; None if the
    evidence does not prove it."""
    lens = c.part_lens(ev.nslots, ev.nentries)
    index, offset = divmod(ev.bit, c.part_size * 8)
    body = _signed_body(c, ev.attests.get(m, b""), wire.MsgType.ATTEST, m, verify)
    if body is None or index >= len(lens):
        return None
    try:
        attest = wire.pull_attest(body)
    except RemoteProtocolError:
        return None
    digests, part = ev.digests.get(m, ()), ev.parts.get(m, b"")
    if (
        attest.round != ev.round
        or attest.nparts != len(lens)
        or len(digests) != len(lens)
        or attest_root(digests) != attest.root
        or len(part) != lens[index]
        or digest16(part) != digests[index]
        or offset >= len(part) * 8
    ):
        return None
    return bit_of(part, offset)


def _reveal(c: Coalition, ev: Evidence, m: int, verify: Verify) -> Reveal | None:
    body = _signed_body(c, ev.reveals.get(m, b""), wire.MsgType.REVEAL, m, verify)
    if body is None:
        return None
    try:
        msg = wire.pull_reveal(body)
    except RemoteProtocolError:
        return None
    if msg.round != ev.round or msg.bit != ev.bit or msg.nmembers != len(c.members):
        return None
    return Reveal(m, msg.pads)


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
    """Who the evidence shows wrote into the accused bit, or lied about a pad there."""
    contributions = {}
    for m in sorted(ev.roster):
        b = _contribution_bit(c, ev, m, verify)
        if b is None:
            return Finding(Outcome.INCOMPLETE, detail=f"no signed contribution of #{m}")
        contributions[m] = b
    reveals = {m: r for m in ev.roster if (r := _reveal(c, ev, m, verify)) is not None}
    v = trace(ev.roster, c.edges, contributions, reveals)
    if v.outcome is Outcome.INCOMPLETE:
        return Finding(Outcome.INCOMPLETE, silent=v.members, detail="members revealed nothing")
    if v.outcome is not Outcome.DISPUTED:
        return Finding(v.outcome, v.members)
    proofs = _proofs(c, ev, verify)
    liars: set[int] = set()
    unsettled = []
    for a, b in sorted(v.disputes):
        shown = [p for p, peer in proofs if {p.member, peer} == {a, b}]
        revealed = {a: reveals[a].pads[b], b: reveals[b].pads[a]}
        who = settle((a, b), ev.round, ev.epoch, ev.bit, revealed, shown, ev.key_ids)
        if who is None:
            unsettled.append((a, b))
        else:
            liars |= who
    if liars:
        return Finding(Outcome.DISRUPTOR, frozenset(liars))
    return Finding(Outcome.INCOMPLETE, detail=f"disputed pads nobody proved: {unsettled}")
