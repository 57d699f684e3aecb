"""The member's part in the rounds (sans-IO): OPEN in, one contribution out, output checked.

    OUTSIDE ──a round names us──▶ ANSWERING ──answer_at──▶ SENT ──output or abort──▶ READY
       ▲  ◀──a round without us, or no round for a while── (READY, ANSWERING, SENT)      │
       │                              ▲                                                  │
       └── says HELLO meanwhile       └──────────────── the next round ───────────────────┘

`in_roster` is the phase: every phase but OUTSIDE. A refused round leaves the member READY.

Constant-time answers. A switch observer sees when each member's contribution leaves after
the OPEN. It leaves at `answer_at` = the OPEN's arrival (the kernel's receive stamp, passed in
as `now`) + `rounds.answer_delay`, the same for every member and every round, whatever this
member's queue, flows or load: the work (pads, cells, claims, MACs) is done when the OPEN
arrives, and the frames are handed over at once with their moment (`SendFrame.at`): the
daemon's pacer, a process that does nothing else, sends them then (`member.pacer`). An answer
that left late (an overloaded host) is counted (`late`, from `answers_late`).

Every contribution has the same frames, of the same sizes, whatever it carries: claims for
queued cells in the reservation area, cells in the slots granted by the last output, zeros
elsewhere, all XORed with one pad per key-graph neighbour in the roster.

Safety rules (each prevents reuse of a pad, which would reveal a member's message):
- it never contributes twice to one round number (rounds only increase);
- pads also depend on ephemeral keys made by this process: a round recorded before a restart
  names keys the member no longer has, so a replayed OPEN can never reuse a pad.
"""

from __future__ import annotations

import enum
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lanon.common import wire
from lanon.common.accusation import Accusation
from lanon.common.blame import choose_bit
from lanon.common.coalition import Coalition, Schedule
from lanon.common.crypto import answer_key, apply_pads, digest16, mac_key
from lanon.common.engine import EngineBase, check_mac, maced, signed
from lanon.common.errors import LocalProtocolError, RejectReason, RemoteProtocolError
from lanon.common.events import (
    AnswerLate,
    CellDelivered,
    CellRetried,
    Contributed,
    OutputSeen,
    RefuseReason,
    RetryReason,
    RoundRefused,
    RoundVetoed,
    SendFrame,
    SlotCorrupted,
)
from lanon.common.output import OutputAssembler
from lanon.common.reservation import (
    ENTRY_LEN,
    SECRET_LEN,
    make_claim,
    overflowed,
    tally,
    write_claims,
)
from lanon.common.roster import RosterCheck
from lanon.common.tree import forward_by, place
from lanon.common.trusted import NONCE_LEN, seal_answer
from lanon.common.verdict import attest_root
from lanon.member.keys import KeyRing
from lanon.member.pacer import LATE_AFTER
from lanon.member.relay import Relay
from lanon.member.veto import Verdict, Veto

MAX_BACKOFF_EXP = 5
# An answer this far past its moment is late (beyond the loop's timer precision).
HISTORY = 512  # rounds with reserved slots remembered, for blame (a few seconds of them)


class Phase(enum.Enum):
    OUTSIDE = "outside"  # not in the roster: HELLO until a round names this member
    READY = "ready"  # in the roster, between rounds
    ANSWERING = "answering"  # a round accepted: its contribution leaves at `answer_at`
    SENT = "sent"  # contributed: waiting for the round's output


_TRANSITIONS = {
    Phase.OUTSIDE: {Phase.ANSWERING, Phase.READY},
    Phase.READY: {Phase.ANSWERING, Phase.READY, Phase.OUTSIDE},
    Phase.ANSWERING: {Phase.SENT, Phase.READY, Phase.OUTSIDE},
    Phase.SENT: {Phase.READY, Phase.OUTSIDE},
}


@dataclass(slots=True)
class Pending:
    cell: bytes
    queued: float
    taken: bool = False  # put into a round once: its cell is fixed from then on
    accuses: bool = False  # a cell of an accusation of ours (common/accusation.py)


def _into_round(queue: deque[Pending]) -> Pending:
    pending = queue.popleft()
    pending.taken = True
    return pending


@dataclass(slots=True)
class RoundView:
    """The round this member takes part in, until its output is seen or it is lost."""

    round: int
    gateway: int
    opened: float
    nslots: int
    nentries: int
    slots: dict[int, Pending]
    claims: dict[int, tuple[bytes, bytes]]  # entry -> (claim written, the secret it commits to)
    secrets: dict[int, bytes]  # reserved slot -> the secret of the claim it was granted to
    output: OutputAssembler
    writers: int  # the roster's size: how many members may write claims


@dataclass(frozen=True, slots=True)
class Answered:
    """A round with reserved slots we answered, as blame asks about it (member/revealer.py)."""

    epoch: int
    roster: frozenset[int]
    key_of: Mapping[int, int]
    nslots: int
    nentries: int
    own: frozenset[int]  # reserved slots we wrote a cell in
    opened: bytes  # the digest of the OPEN body: what our ATTEST and REVEAL sign


@dataclass(frozen=True, slots=True)
class Grant:
    round: int  # the round the granted slots are in
    slots: tuple[int, ...]
    nslots: int
    secrets: tuple[bytes, ...]  # per slot, the secret its winning claim committed to


class Contributor:
    def __init__(
        self,
        engine: EngineBase,
        coalition: Coalition,
        index: int,
        keys: KeyRing,
        veto: Veto,
        rng: random.Random,
        accuse: Callable[[Accusation, float], None] | None = None,
    ) -> None:
        self.e = engine
        self.accuse = accuse  # where a proven corruption of our slot goes (the engine)
        self.c = coalition
        self.index = index
        self.keys = keys
        self.veto = veto
        self.roster_check = RosterCheck(coalition)
        self.rng = rng
        self.mac_keys = {g.index: mac_key(keys.key, g.public) for g in coalition.gateways}
        # Trusted mode (common/trusted.py): our cells go to the leader sealed, no pads.
        self.trusted = coalition.trusted
        self.answer_keys = (
            {g.index: answer_key(keys.key, g.public) for g in coalition.gateways}
            if self.trusted
            else {}
        )
        # In a tree, parent and children change every round: every member becomes one sooner or
        # later. Their MAC keys (an X25519 exchange each, ~90 µs) are made now, not while a round
        # waits for our answer.
        self._member_macs: dict[int, bytes] = (
            {m.index: mac_key(keys.key, m.public) for m in coalition.members if m.index != index}
            if coalition.rounds.schedule is Schedule.TREE
            else {}
        )
        self.phase = Phase.OUTSIDE
        self.queue: deque[Pending] = deque()  # cells waiting for a slot, oldest first
        self.accusation: deque[Pending] = deque()  # our latest accusation's cells, waiting
        self.last_round = 0  # the highest round answered or refused: never answered again
        self.current: RoundView | None = None
        self.grant: Grant | None = None
        self.claim_after = 0  # no claims before this round (backoff after collisions)
        self.collisions = 0
        self.express_after = 0  # no express slot before this round (after a collision there)
        self.express_collisions = 0  # in a row: the backoff grows with them
        self.answer_at = float("inf")
        self._answer: list[tuple[bytes, bytes]] = []  # a relay's (destination, frame)
        self.relay: Relay | None = None  # our place in this round's tree (schedule "tree")
        self._tree_dst: tuple[bytes, bytes] = (b"", b"")
        self.answered = 0  # answers handed over (star schedule)
        self.late = 0  # of them, those that left after answer_at: this host was too slow
        self.corrupted = 0  # reserved slots of ours that emerged other than we wrote them
        self.history: OrderedDict[int, Answered] = OrderedDict()  # for blame
        self.accused: OrderedDict[tuple[int, int], int] = OrderedDict()  # (round, slot) -> bit
        self.flooded: OrderedDict[int, None] = OrderedDict()  # rounds whose grants were void

    def _to(self, phase: Phase) -> None:
        if phase not in _TRANSITIONS[self.phase]:
            raise LocalProtocolError(f"contributor: {self.phase.value} -> {phase.value}")
        self.phase = phase

    @property
    def in_roster(self) -> bool:
        return self.phase is not Phase.OUTSIDE

    # --- a round opens --------------------------------------------------------------------

    def receive_open(
        self, o: wire.Open, gateway: int, src: bytes, now: float, body: bytes = b""
    ) -> None:
        """An authenticated, fresh OPEN above every round we answered (the engine checked);
        `body` is its body as it came (what blame's signatures name)."""
        self.lose()  # a new round: the last one's output will not come any more
        express = self.c.rounds.express_slots
        grant, self.grant = self.grant, None
        if grant is not None and (grant.round != o.round or grant.nslots != o.nslots - express):
            for _ in grant.slots:  # the cells are still queued: they will be claimed again
                self.e.event(CellRetried(RetryReason.ROUND_LOST, 0))
            grant = None
        if self.index not in o.roster:
            self.last_round = max(self.last_round, o.round)
            if self.phase is not Phase.OUTSIDE:
                self._to(Phase.OUTSIDE)
            return
        refusal = self._check(o)
        keys: list[bytes] | None = [] if self.trusted else None  # trusted: no pads
        key_of = o.key_of()
        if refusal is None and not self.trusted:
            keys, why = self.keys.round_keys(o, key_of)
            if keys is None:
                refusal = RefuseReason.MISSING_KEY, why
                self.keys.announce(now)
        if refusal is not None or keys is None:
            reason, detail = refusal or (RefuseReason.MISSING_KEY, "")
            self.last_round = o.round  # never answer this round later
            self.refuse(gateway, src, o.round, reason, detail)
            self._to(Phase.READY)
            return
        self.keys.adopt(o.epoch, now)
        verdict = self.veto.judge(o.roster, now)
        if verdict.reason is not None:  # an idle vector: the cells wait for a better round
            self.e.event(RoundVetoed(o.round, verdict.reason, verdict.size, verdict.k))
            if grant is not None:
                for _ in grant.slots:
                    self.e.event(CellRetried(RetryReason.VETOED, 0))
                grant = None
        slots: dict[int, Pending] = {}
        if self.trusted:
            self._answer_trusted(o, gateway, src, verdict, now)
            return
        go_express = express and verdict.reason is None and o.round >= self.express_after
        if go_express and self.accusation:
            # An accusation goes in express slots only: a jammer that writes into reserved
            # slots would jam it in one of those (and one that writes into every slot jams
            # every accusation: a limit of accusing in cells).
            slots[o.nslots - express + self.rng.randrange(express)] = _into_round(self.accusation)
            go_express = False
        for s in grant.slots if grant else ():
            if self.queue:
                slots[s] = _into_round(self.queue)
        if go_express and not slots and self.queue:  # straight into an express slot
            slots[o.nslots - express + self.rng.randrange(express)] = _into_round(self.queue)
        if slots:
            self.veto.sent_with(verdict)
        claims: dict[int, tuple[bytes, bytes]] = {}
        if o.round >= self.claim_after and self.queue and verdict.reason is None:
            # (a quiet round's small area: a quarter of it each, so that a burst of two
            # members does not collide for certain)
            count = min(self.c.rounds.max_claims, len(self.queue), max(1, o.nentries // 4))
            for entry in self.rng.sample(range(o.nentries), count):
                secret = self.rng.randbytes(SECRET_LEN)
                claims[entry] = make_claim(secret), secret
        vector = self._vector(o, slots, claims)
        padded = apply_pads(bytes(vector), keys, o.round, o.nslots, o.nentries)
        parts = wire.split_vector(padded, self.c.part_size)
        self.answer_at = now + self.c.rounds.answer_delay
        if self.c.rounds.schedule is Schedule.TREE:
            self._start_relay(o, gateway, src, parts, now)
        else:
            # Handed over now, to leave at answer_at: the daemon's pacer keeps the moment.
            frames = self._contrib_frames(o.round, parts)
            # Sign what we sent: blame may show it to everyone (an accused slot, a flooded
            # reservation area: common/verdict.py). At the end of the last part where it fits.
            opened = digest16(body)
            attest = self._attest(o.round, parts, opened)
            if self.c.attest_rides(len(parts[-1])):
                frames[-1] += attest
            else:
                frames.append(attest)
            self._remember(o, slots, opened, key_of)
            mkey = self.mac_keys[gateway]
            self._hand_over([(src, maced(mkey, f)) for f in frames], o.round)
        self.last_round = o.round
        self.keys.forget_others(now)  # forward secrecy: other epochs' keys are gone
        part_lens = self.c.part_lens(o.nslots, o.nentries)
        self.current = RoundView(
            o.round,
            gateway,
            now,
            o.nslots,
            o.nentries,
            slots,
            claims,
            dict(zip(grant.slots, grant.secrets, strict=True)) if grant else {},
            OutputAssembler(o.round, part_lens, o.nslots, o.nentries),
            len(o.roster),
        )
        self._to(Phase.ANSWERING)
        self.e.event(Contributed(o.round, len(parts), len(padded), bool(slots or claims)))

    def _answer_trusted(
        self, o: wire.Open, gateway: int, src: bytes, verdict: Verdict, now: float
    ) -> None:
        """Trusted mode: `trusted_cells` cells, ours or zeros, sealed for the leader; the
        same frames at the same moment whatever they carry."""
        cs, count = self.c.coalition.cell_size, self.c.rounds.trusted_cells
        slots: dict[int, Pending] = {}
        while verdict.reason is None and self.queue and len(slots) < count:
            slots[len(slots)] = _into_round(self.queue)
        if slots:
            self.veto.sent_with(verdict)
        cells = b"".join(slots[i].cell if i in slots else bytes(cs) for i in range(count))
        nonce = self.rng.randbytes(NONCE_LEN)  # random: never the round (common/trusted.py)
        sealed = seal_answer(self.answer_keys[gateway], o.round, self.index, cells, nonce)
        parts = wire.split_vector(sealed, self.c.part_size)
        self.answer_at = now + self.c.rounds.answer_delay
        mkey = self.mac_keys[gateway]
        frames = self._contrib_frames(o.round, parts)
        self._hand_over([(src, maced(mkey, f)) for f in frames], o.round)
        self.last_round = o.round
        self.current = RoundView(
            o.round,
            gateway,
            now,
            o.nslots,
            o.nentries,
            slots,
            {},
            {},
            OutputAssembler.up_to(
                o.round, min(o.nslots, self.c.trusted_output_cells), self.c.part_lens
            ),
            len(o.roster),
        )
        self._to(Phase.ANSWERING)
        self.e.event(Contributed(o.round, len(parts), len(sealed), bool(slots)))

    def _contrib_frames(self, rnd: int, parts: list[bytes]) -> list[bytes]:
        return [
            wire.Part(rnd, i, len(parts), payload).encode(
                wire.MsgType.CONTRIB, self.c.id, self.index
            )
            for i, payload in enumerate(parts)
        ]

    def _attest(self, rnd: int, parts: list[bytes], opened: bytes) -> bytes:
        """Our signature on what we send: blame shows it to everyone (common/verdict.py)."""
        root = attest_root([digest16(p) for p in parts])
        attest = wire.Attest(rnd, len(parts), root, opened)
        return signed(self.keys.key, attest.encode(self.c.id, self.index))

    def _remember(
        self, o: wire.Open, slots: dict[int, Pending], opened: bytes, key_of: Mapping[int, int]
    ) -> None:
        reserved = o.nslots - self.c.rounds.express_slots
        own = frozenset(s for s in slots if s < reserved)
        self.history[o.round] = Answered(
            o.epoch, o.roster, key_of, o.nslots, o.nentries, own, opened
        )
        while len(self.history) > HISTORY:
            self.history.popitem(last=False)

    def _vector(
        self, o: wire.Open, slots: dict[int, Pending], claims: dict[int, tuple[bytes, bytes]]
    ) -> bytearray:
        """Our vector before the pads: claims in the reservation area, our cells in their
        slots, zeros elsewhere."""
        cs = self.c.coalition.cell_size
        vector = write_claims(o.nentries, {e: claim for e, (claim, _) in claims.items()})
        vector += b"".join(slots[s].cell if s in slots else bytes(cs) for s in range(o.nslots))
        return vector

    def _check(self, o: wire.Open) -> tuple[RefuseReason, str] | None:
        """Refuse rounds that would weaken anonymity (the clock was checked before)."""
        problem = self.roster_check(o.roster)
        return None if problem is None else (problem.reason, problem.detail)

    def refuse(self, gateway: int, src: bytes, rnd: int, reason: RefuseReason, detail: str) -> None:
        code = wire.RefuseCode[reason.name]
        refuse = wire.Refuse(rnd, code, self.last_round + 1, max(self.keys.epoch, 0))
        self.e.send(src, maced(self.mac_keys[gateway], refuse.encode(self.c.id, self.index)))
        self.e.event(RoundRefused(rnd, reason, detail))

    # --- the answer -------------------------------------------------------------------------

    def get_timer(self) -> float:
        if self.phase is Phase.ANSWERING:
            if self.relay is None:
                return self.answer_at
            if not self.relay.sent:
                t = self.relay.forward_at
                return min(t, self.answer_at) if self.relay.complete else t
        return float("inf")

    def handle_timer(self, now: float) -> None:
        if self.phase is not Phase.ANSWERING or now < self.answer_at:
            return
        relay = self.relay
        if relay is None:
            self._to(Phase.SENT)  # the answer left (the pacer says if late: `answers_late`)
        elif not relay.sent and (relay.complete or now >= relay.forward_at):
            self._forward(relay, now)  # a silent child is left out: the leader will see

    def answers_late(self, count: int, rnd: int, late_by: float) -> None:
        """`count` answers left late (the daemon's pacer says, at most every REPORT_EVERY),
        the last of them round `rnd`'s, `late_by` seconds after its moment."""
        self.late += count
        self.e.event(AnswerLate(rnd, late_by, count))

    def _send_answer(self, now: float) -> None:
        """A relay's answer (schedule "tree"), sent now."""
        if now - self.answer_at > LATE_AFTER:
            self.late += 1
            self.e.event(
                AnswerLate(self.current.round if self.current else 0, now - self.answer_at)
            )
        self.answered += 1
        for dst, frame in self._answer:
            self.e.send(dst, frame)
        self._answer = []
        self._to(Phase.SENT)

    # --- the reduction tree (schedule "tree") -----------------------------------------------

    def _start_relay(
        self, o: wire.Open, gateway: int, src: bytes, parts: list[bytes], now: float
    ) -> None:
        if len(o.ethernet) != len(o.roster):
            raise RemoteProtocolError(RejectReason.MALFORMED, "a tree round's OPEN without MACs")
        p = place(o.roster, o.round, self.index, self.c.rounds.tree_fanout)
        if p.parent is None:  # the root: its parent is the leader
            self._tree_dst = (src, self.mac_keys[gateway])
        else:
            self._tree_dst = (o.ethernet_of()[p.parent], self._member_mac(p.parent))
        forward_at = max(forward_by(now, self.c.rounds.deadline, p), self.answer_at)
        self.relay = Relay(o.round, p, self.index, parts, forward_at)
        if self.relay.complete:  # a leaf: its answer is ready, for the pacer like a star's
            self._forward(self.relay, now, paced=True)

    def _member_mac(self, other: int) -> bytes:
        key = self._member_macs.get(other)
        if key is None:
            key = self._member_macs[other] = mac_key(self.keys.key, self.c.members[other].public)
        return key

    def receive_tree_part(self, sender: int, frame: bytes, now: float) -> None:
        relay = self.relay
        self.c.member_at(sender, self.index)
        part = wire.pull_tree_part(check_mac(self._member_mac(sender), frame))
        if (
            relay is None
            or relay.sent
            or part.round != relay.round
            or self.phase is not Phase.ANSWERING
        ):
            raise RemoteProtocolError(RejectReason.STALE, f"tree part of round {part.round}")
        if part.nmembers != len(self.c.members):
            raise RemoteProtocolError(RejectReason.MALFORMED, "tree part of another coalition size")
        relay.add(sender, part)
        if relay.complete and now >= self.answer_at:
            self._forward(relay, now)

    def _forward(self, relay: Relay, now: float, paced: bool = False) -> None:
        """Send our subtree's sum up: to our parent, or to the leader if we are the root; a
        leaf's (`paced`) is handed over at once, to leave at `answer_at`."""
        relay.sent = True
        dst, key = self._tree_dst
        parts = relay.parts()
        members = frozenset(relay.contributors)
        self._answer = [
            (
                dst,
                maced(
                    key,
                    wire.TreePart(
                        relay.round, i, len(parts), members, len(self.c.members), payload
                    ).encode(self.c.id, self.index),
                ),
            )
            for i, payload in enumerate(parts)
        ]
        if paced:
            self._hand_over(self._answer, relay.round)
            self._answer = []
            return
        self._send_answer(now)

    def _hand_over(self, frames: list[tuple[bytes, bytes]], rnd: int) -> None:
        """An answer made when its round opened: to the daemon's pacer, to leave at answer_at."""
        for dst, frame in frames:
            self.e.command(SendFrame(dst, frame, self.answer_at, rnd))
        self.answered += 1

    # --- the output ---------------------------------------------------------------------------

    def expects(self, rnd: int) -> bool:
        """Whether the output of round `rnd` is awaited (its head has not come yet)."""
        cur = self.current
        return cur is not None and cur.round == rnd and cur.output.head is None

    def receive_output_head(self, head: wire.OutputHead, gateway: int, now: float) -> None:
        cur = self.current
        if cur is None or head.round != cur.round:
            return  # a round we did not take part in
        if gateway != cur.gateway:  # only the round's leader publishes its output
            raise RemoteProtocolError(RejectReason.UNEXPECTED, "an output head of another gateway")
        cur.output.add_head(head)
        self._maybe_complete(now)

    def receive_output_part(self, part: wire.Part, now: float) -> None:
        cur = self.current
        if cur is None or part.round != cur.round:
            return
        cur.output.add_part(part)
        self._maybe_complete(now)

    def _maybe_complete(self, now: float) -> None:
        cur = self.current
        assert cur is not None
        vector = cur.output.vector()
        if vector is None:
            return
        self.current = None
        self.relay = None
        self._answer = []  # (an output can only come before our answer if it went without it)
        self._to(Phase.READY)
        if self.trusted:
            self._trusted_output(cur, vector, now)
            return
        area = vector[: cur.nentries * ENTRY_LEN]
        t = tally(area, cur.nentries, self.c.rounds.max_slots)
        # A flooded area's grants are void: nothing of ours goes in them, so that blame can
        # open who wrote its entries without linking anyone to a cell.
        flooded = overflowed(t, cur.writers, self.c.rounds.max_claims)
        if flooded:
            self.flooded[cur.round] = None
            while len(self.flooded) > HISTORY:
                self.flooded.popitem(last=False)
        slot_of = {} if flooded else {entry: s for s, entry in enumerate(t.granted)}
        granted: dict[int, bytes] = {}  # slot -> the secret of our claim it was granted to
        collided, deferred = 0, 0
        for entry, (value, secret) in cur.claims.items():
            if area[entry * ENTRY_LEN : (entry + 1) * ENTRY_LEN] != value:
                collided += 1
            elif entry in slot_of:
                granted[slot_of[entry]] = secret
            else:
                deferred += 1
        if granted:
            order = tuple(sorted(granted))
            secrets = tuple(granted[s] for s in order)
            self.grant = Grant(cur.round + 1, order, len(t.granted), secrets)
        if collided:
            self.collisions += 1
            backoff = self.rng.randrange(2 ** min(self.collisions, MAX_BACKOFF_EXP))
            self.claim_after = cur.round + 1 + backoff
            for _ in range(collided):
                self.e.event(CellRetried(RetryReason.RESERVATION_COLLISION, backoff))
        elif granted:
            self.collisions = 0
        for _ in range(deferred):
            self.e.event(CellRetried(RetryReason.DEFERRED, 0))

        base = cur.nentries * ENTRY_LEN
        cs = self.c.coalition.cell_size
        express = cur.nslots - self.c.rounds.express_slots  # the first express slot
        lost = []
        for s in sorted(cur.slots):
            pending = cur.slots[s]
            emerged = vector[base + s * cs : base + (s + 1) * cs]
            if emerged == pending.cell:
                self.e.event(CellDelivered(now - pending.queued))
                if s >= express:
                    self.express_collisions = 0
                continue
            if pending.accuses:  # an express collision: it goes again, unless a fresh one
                self.accusation.appendleft(pending)  # replaces it (engine: `_queue_accusation`)
            else:
                lost.append(pending)
            if s < express:  # reserved for us alone: someone wrote into it
                bit = choose_bit(pending.cell, emerged)
                at = None if bit is None else (base + s * cs) * 8 + bit
                self.corrupted += 1
                self.e.event(SlotCorrupted(cur.round, s, at, cur.secrets[s]))
                if at is not None and self.accuse is not None:
                    self.accused[(cur.round, s)] = at  # the one bit of it we reveal at
                    while len(self.accused) > HISTORY:
                        self.accused.popitem(last=False)
                    self.accuse(Accusation(cur.round, s, at, cur.secrets[s]), now)
                self.e.event(CellRetried(RetryReason.CORRUPTED, 0))
                continue
            # an express slot: someone else had a new packet too: reserve for a while
            self.express_collisions += 1
            exp = min(self.express_collisions, MAX_BACKOFF_EXP)
            backoff = 1 + self.rng.randrange(2**exp)  # at least the next round reserves
            self.express_after = cur.round + 1 + backoff
            self.e.event(CellRetried(RetryReason.DATA_COLLISION, backoff))
        self.queue.extendleft(reversed(lost))
        self.e.event(OutputSeen(cur.round, now - cur.opened, cur.nslots))

    def _trusted_output(self, cur: RoundView, vector: bytes, now: float) -> None:
        """Trusted mode: the leader put every cell of the round in the output, in a random
        order; ours that are not there go again."""
        cs = self.c.coalition.cell_size
        emerged = {vector[s * cs : (s + 1) * cs] for s in range(cur.nslots)}
        lost = []
        for s in sorted(cur.slots):
            pending = cur.slots[s]
            if pending.cell in emerged:
                self.e.event(CellDelivered(now - pending.queued))
            else:
                lost.append(pending)
                self.e.event(CellRetried(RetryReason.ROUND_LOST, 0))
        self.queue.extendleft(reversed(lost))
        self.e.event(OutputSeen(cur.round, now - cur.opened, cur.nslots))

    def receive_abort(self, abort: wire.Abort) -> None:
        if self.current is not None and self.current.round == abort.round:
            self.lose()

    def lose(self) -> None:
        """The current round will not produce an output: its cells go back to the queue front.
        An answer handed over leaves anyway, at its moment: every member's does, so an abort
        does not show which members took it up before their moment (a busy one may not)."""
        cur, self.current = self.current, None
        self.relay = None
        self._answer = []
        self.answer_at = float("inf")
        if cur is None:
            return
        lost = [cur.slots[s] for s in sorted(cur.slots)]
        for _ in lost:
            self.e.event(CellRetried(RetryReason.ROUND_LOST, 0))
        self.accusation.extendleft(reversed([p for p in lost if p.accuses]))
        self.queue.extendleft(reversed([p for p in lost if not p.accuses]))
        if self.phase in (Phase.ANSWERING, Phase.SENT):
            self._to(Phase.READY)

    def carry(self, old: Contributor) -> None:
        """A new version of the coalition: the cells waiting and what rounds taught us (the
        last round answered, backoffs, counts) go on; we are outside the roster until a round
        of the new version names us."""
        self.queue, self.accusation = old.queue, old.accusation
        self.last_round = old.last_round
        self.claim_after, self.collisions = old.claim_after, old.collisions
        self.express_after, self.express_collisions = old.express_after, old.express_collisions
        self.answered, self.late, self.corrupted = old.answered, old.late, old.corrupted

    def leave(self) -> None:
        """No round has named us for a while: we are out of the roster until one does."""
        self.lose()
        if self.phase is not Phase.OUTSIDE:
            self._to(Phase.OUTSIDE)
