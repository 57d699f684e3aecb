"""The member's part in blame (sans-IO): it reveals what the leader asks for when an accusation
holds up, and checks the verdict itself (common/blame.py says what blame is).

    BLAME, REVEAL   its pad bit with each neighbour of the round at the accused bit (one
                    keystream bit says nothing of a key), signed: a REVEAL frame
    BLAME, PROVE    its epoch exchange with a neighbour it disputes a pad with, and the proof
                    that the exchange is right: a PROOF frame
    VERDICT         the evidence, piece by piece; once whole, `verdict.judge` says whom it
                    shows, and whether the leader named them (`VerdictChecked`)

It reveals only at a bit of a reserved slot, in a round it answered, and in a reserved slot of
its own only at the bit it accused itself: a gateway knows every claim's secret and could
otherwise ask at a bit the owner wrote 1 in, and the trace would point at the owner.
"""

from __future__ import annotations

from collections import OrderedDict

from lanon.common import wire
from lanon.common.blame import Outcome
from lanon.common.coalition import Coalition, GatewayPeer
from lanon.common.crypto import HostKey, pad_bit
from lanon.common.engine import EngineBase, signed
from lanon.common.errors import RemoteProtocolError
from lanon.common.events import BlameAnswered, VerdictChecked
from lanon.common.guard import GATEWAY
from lanon.common.reservation import ENTRY_LEN
from lanon.common.verdict import distinct_entries, judge, pull_evidence
from lanon.member.contributor import Answered, Contributor
from lanon.member.pads import PadKeys

ASSEMBLING = 4  # verdicts being pieced together at once
ANSWERS_KEPT = 16  # BLAMEs answered, with what we sent: asked again, we send it again
ANSWER_AGAIN = 0.05  # seconds: a BLAME repeated sooner (a replay) gets nothing


class Revealer:
    def __init__(
        self,
        engine: EngineBase,
        coalition: Coalition,
        index: int,
        key: HostKey,
        rounds: Contributor,
        pads: PadKeys,
    ) -> None:
        self.e = engine
        self.c = coalition
        self.index = index
        self.key = key
        self.rounds = rounds
        self.pads = pads
        self.pieces: OrderedDict[tuple[int, int, int, int], dict[int, bytes]] = OrderedDict()
        self.checked: OrderedDict[tuple[int, int], bool] = OrderedDict()  # (round, bit) -> agrees
        self.excluded: dict[int, int] = {}  # member -> the round of the verdict that named it
        self.tally: dict[str, int] = {}  # verdicts checked: "agreed", "refuted"
        self.answers: OrderedDict[bytes, tuple[float, list[bytes]]] = OrderedDict()

    # --- BLAME ------------------------------------------------------------------------------

    def receive_blame(self, gateway: GatewayPeer, src: bytes, frame: bytes, now: float) -> None:
        body = wire.split_auth(frame, wire.SIG_LEN)[0]
        sent = self.answers.get(body)
        if sent is not None:  # asked again (a lost answer), or a replay: no new work
            at, frames = sent
            if now - at >= ANSWER_AGAIN:
                self.answers[body] = (now, frames)
                for f in frames:
                    self.e.send(src, f)
            return
        # fresh=False: anybody can replay a BLAME; it must not make us trust its source
        self.e.verified((GATEWAY, gateway.index), src, gateway.public, frame, now, False)
        b = wire.pull_blame(body)
        self.answers[body] = (now, [])
        while len(self.answers) > ANSWERS_KEPT:
            self.answers.popitem(last=False)
        phase = b.phase.name.lower()
        seen = self.rounds.history.get(b.round)
        bits = b.bits if b.phase is wire.BlamePhase.FLOOD else (b.bit,)
        if seen is None:
            why = "not a round we answered"
        elif len(bits) > 1 and not distinct_entries(bits, seen.nentries):
            why = "flood bits outside the area, or two in one entry"
        else:
            why = next((w for bit in bits if (w := self._refusal(b, bit, seen))), "")
        if why or seen is None:
            self.e.event(BlameAnswered(b.round, b.bit, phase, why))
            return
        keys, missing = self.pads.pair_keys(seen.epoch, seen.roster, seen.key_of)
        if keys is None:
            self.e.event(BlameAnswered(b.round, b.bit, phase, f"keys gone: {missing}"))
            return
        if b.phase is wire.BlamePhase.PROVE:
            pads = {
                j: pad_bit(k, b.round, b.bit, seen.nslots, seen.nentries) for j, k in keys.items()
            }
            self._prove(b, seen, pads, src, self.answers[body][1])
            return
        own, publics = self.pads.publics(seen.epoch, seen.roster, seen.key_of)
        frames = self.answers[body][1]
        for bit in bits:
            pads = {
                j: pad_bit(k, b.round, bit, seen.nslots, seen.nentries) for j, k in keys.items()
            }
            msg = wire.RevealMsg(b.round, bit, len(self.c.members), seen.opened, own, pads, publics)
            frames.append(signed(self.key, msg.encode(self.c.id, self.index)))
            self.e.send(src, frames[-1])
        self.e.event(BlameAnswered(b.round, b.bit, phase, ""))

    def _prove(
        self, b: wire.Blame, seen: Answered, pads: dict[int, int], src: bytes, frames: list[bytes]
    ) -> None:
        if b.reveal[6:8] == self.index.to_bytes(2, "big"):
            return  # our own REVEAL: the other end is asked to prove, not us
        peer, why = self._disputed(b, seen, pads)
        proven = None if why else self.pads.prove(seen.epoch, peer, seen.key_of)
        if proven is None:
            self.e.event(BlameAnswered(b.round, b.bit, "prove", why or "keys gone"))
            return
        msg = wire.ProofMsg(b.round, b.bit, peer, *proven)
        frames.append(signed(self.key, msg.encode(self.c.id, self.index)))
        self.e.send(src, frames[-1])
        self.e.event(BlameAnswered(b.round, b.bit, "prove", ""))

    def _disputed(self, b: wire.Blame, seen: Answered, pads: dict[int, int]) -> tuple[int, str]:
        """The neighbour whose signed REVEAL (in the BLAME) disputes our pad with it, or why
        we prove nothing: proving opens the pair's pads for the epoch, so only a pad shown to
        be disputed is proven."""
        a, z = b.edge
        if self.index not in (a, z) or a == z:
            return 0, "not an end of the edge"
        peer = z if a == self.index else a
        try:
            header = wire.pull_header(b.reveal)
            body, sig = wire.split_auth(b.reveal, wire.SIG_LEN)
            theirs = wire.pull_reveal(body)
        except RemoteProtocolError:
            return peer, "no readable REVEAL of the other end"
        if (
            header.type is not wire.MsgType.REVEAL
            or header.sender != peer
            or peer not in pads
            or not self.e.verifier.verify(self.c.members[peer].public, body, sig)
        ):
            return peer, "no REVEAL signed by a neighbour of ours"
        own, publics = self.pads.publics(seen.epoch, seen.roster, seen.key_of)
        if (theirs.round, theirs.bit, theirs.opened) != (b.round, b.bit, seen.opened):
            return peer, "a REVEAL of another round"
        if theirs.keys.get(self.index) != own or theirs.own != publics.get(peer):
            return peer, "a REVEAL with other keys than ours: nothing a proof can settle"
        if theirs.pads.get(self.index) == pads[peer]:
            return peer, "no dispute: its pad bit is ours"
        return peer, ""

    def _refusal(self, b: wire.Blame, bit: int, seen: Answered) -> str:
        """Why we will not reveal at this bit ('' if we will): a bit of a reserved slot (in a
        slot of ours, only the one we accused at), or of the reservation area of a round we
        saw flooded (its grants were void: its claims carry nobody's cell)."""
        base = seen.nentries * ENTRY_LEN * 8
        if 0 <= bit < base:  # the area: only to trace a flood, whose grants were void
            if b.phase is wire.BlamePhase.REVEAL:
                return "the bit is in the reservation area, and this is no flood trace"
            return "" if b.round in self.rounds.flooded else "not a round we saw flooded"
        if b.phase is wire.BlamePhase.FLOOD:
            return "the bit is outside the reservation area"
        cs = self.c.coalition.cell_size
        slot = (bit - base) // (cs * 8) if bit >= base else -1
        if not 0 <= slot < seen.nslots - self.c.rounds.express_slots:
            return "the bit is in no reserved slot"
        if slot in seen.own and self.rounds.accused.get((b.round, slot)) != bit:
            return "the bit is in a slot of ours, not the one we accused at"
        return ""

    # --- VERDICT ----------------------------------------------------------------------------

    def receive_verdict(self, gateway: GatewayPeer, src: bytes, frame: bytes, now: float) -> None:
        piece = wire.pull_verdict(wire.split_auth(frame, wire.SIG_LEN)[0])
        if (piece.round, piece.bit) in self.checked:
            return  # checked already: no signature to check
        self.e.verified((GATEWAY, gateway.index), src, gateway.public, frame, now, False)
        key = (gateway.index, piece.round, piece.bit, piece.count)
        got = self.pieces.setdefault(key, {})
        got[piece.index] = piece.data
        while len(self.pieces) > ASSEMBLING:
            self.pieces.popitem(last=False)
        if len(got) < piece.count:
            return
        del self.pieces[key]
        try:
            ev = pull_evidence(b"".join(got[i] for i in range(piece.count)))
        except RemoteProtocolError as exc:
            self.e.event(VerdictChecked(piece.round, piece.bit, "unreadable", (), False, str(exc)))
            return
        finding = judge(self.c, ev, self.e.verifier.verify)
        agrees = finding.agrees(ev) and (ev.round, ev.bit) == (piece.round, piece.bit)
        self.checked[(piece.round, piece.bit)] = agrees
        word = "agreed" if agrees else "refuted"
        self.tally[word] = self.tally.get(word, 0) + 1
        while len(self.checked) > 64:
            self.checked.popitem(last=False)
        named = tuple(self.c.members[m].name for m in sorted(ev.named))
        if agrees and finding.outcome is Outcome.DISRUPTOR:
            for m in ev.named:
                self.excluded[m] = ev.round
        outcome = finding.outcome.value
        self.e.event(VerdictChecked(ev.round, ev.bit, outcome, named, agrees, finding.detail))

    def readmitted(self, excluded: frozenset[int]) -> None:
        """The leader's heartbeat says who is out: whoever it let back in is."""
        for m in [m for m in self.excluded if m not in excluded]:
            del self.excluded[m]

    @property
    def we_are_excluded(self) -> bool:
        return self.index in self.excluded
