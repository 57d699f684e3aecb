"""Tracing an accused bit to whoever wrote it, and keeping that member out (sans-IO).

When an accusation holds up (gateway/accusations.py), or a round's reservation area holds
more claims than its roster may write (`reservation.overflowed`: someone claimed beyond its
share; `start_flood` traces a bit of each written entry), the gateway that led the round
traces it. It kept what every roster member sent in that round, signed (`Kept`: the OPEN body,
every ATTEST, the parts), so it alone can:

    REVEALING   BLAME(reveal) to all; each roster member answers with its signed pad bits at
                the bit and the keys it used (member/revealer.py). Asked again once.
    PROVING     only if nobody is named yet and neighbours disagree on a pad: BLAME(prove) to
                each end of such an edge, with the other end's REVEAL; an end that sees the
                dispute answers with its epoch exchange and its proof. That exposes the pair's
                pads for the epoch: the leader moves to the next epoch (`rotate`).
    concluded   the evidence (common/verdict.py) goes out in signed VERDICT pieces, and
                `verdict.judge`, the computation every member repeats, decides: the members it
                shows wrote there, or lied, are excluded until an operator readmits them
                (`lanon readmit`). Members that revealed nothing (or did not prove a disputed
                pad) are named by nobody; they stay out of rosters for the rest of the round's
                epoch, whose keys they had to keep (an honest member that crashed meanwhile
                loses nothing: it had lost the epoch's keys anyway).

One trace at a time; accusations that come meanwhile, or about rounds before the last one
traced, wait for the jammer to jam again (it must, to do harm). Exclusions live in the
gateways: each heartbeat carries the list and when it last changed (`Exclusions.adopt`: the
newest wins), so an exclusion or a readmission made on any gateway reaches the others and
survives a failover or a gateway's restart. A coalition whose gateways all restart at once
forgets them; a jammer that comes back is traced again in well under a second.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from lanon.common import wire
from lanon.common.accusation import Accusation
from lanon.common.blame import Outcome
from lanon.common.clock import wall_us
from lanon.common.coalition import Coalition
from lanon.common.crypto import HostKey, digest16
from lanon.common.engine import EngineBase, EnginePart, signed
from lanon.common.errors import RejectReason, RemoteProtocolError
from lanon.common.events import MemberExcluded, MemberReadmitted, TraceEnded, TraceStarted
from lanon.common.guard import MEMBER
from lanon.common.reservation import flood_bits
from lanon.common.verdict import Evidence, Finding, judge

REVEAL_WAIT = 0.25  # seconds for every reveal (or proof) to come
ASK_AGAIN = 0.06  # BLAME once more after this, for frames lost on the way


@dataclass(slots=True)
class Kept:
    """A star round, as the leader collected it: what blame shows of it."""

    round: int
    epoch: int
    started: float  # when it opened
    opened: bytes  # its OPEN body, as sent (every ATTEST signs its digest)
    roster: frozenset[int]
    parts: dict[int, list[bytes]] = field(default_factory=dict)
    attests: dict[int, bytes] = field(default_factory=dict)  # signed ATTEST frames


class Exclusions:
    """Who is out of the rosters after blame, and who only for the rest of an epoch."""

    def __init__(self) -> None:
        self.members: dict[int, int] = {}  # member -> round of the verdict that named it
        self.held: dict[int, int] = {}  # member -> epoch it stays out of (silent in blame)
        self.version = 0  # when `members` last changed (wall clock, µs): the newest list wins

    def out(self, member: int, epoch: int) -> bool:
        return member in self.members or self.held.get(member) == epoch

    def adopt(self, excluded: frozenset[int], version: int) -> tuple[set[int], set[int]]:
        """Another gateway's heartbeat says who is out, as of `version`: taken if newer than
        ours (a gateway that restarted has version 0 and takes the others'); (added, removed)."""
        if version <= self.version:
            return set(), set()
        self.version = version
        added = set(excluded) - set(self.members)
        removed = set(self.members) - set(excluded)
        for m in added:
            self.members[m] = 0
        for m in removed:
            del self.members[m]
        return added, removed

    def remapped(self, old: Coalition, new: Coalition) -> Exclusions:
        """The same exclusions in a new version's member indices (by public key)."""
        index = {m.public: m.index for m in new.members}
        out = Exclusions()
        out.version = self.version
        for table, into in ((self.members, out.members), (self.held, out.held)):
            for m, v in table.items():
                j = index.get(old.members[m].public)
                if j is not None:
                    into[j] = v
        return out

    def forget_held(self, epoch: int) -> None:
        """A new epoch: members held for an earlier one are back."""
        self.held = {m: e for m, e in self.held.items() if e >= epoch}


class Phase(enum.Enum):
    REVEALING = "revealing"
    PROVING = "proving"


@dataclass(slots=True)
class Tracing:
    round: int
    bits: tuple[int, ...]  # the accused bit; or a bit of each entry of a flooded area
    flood: bool
    kept: Kept
    started: float
    deadline: float
    ask_again: float
    phase: Phase = Phase.REVEALING
    reveals: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (member, bit)
    proofs: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (member, peer)
    edges: frozenset[tuple[int, int]] = frozenset()
    at: tuple[tuple[tuple[int, int], int], ...] = ()  # each disputed edge, and a bit of it

    @property
    def bit(self) -> int:
        return self.bits[0]

    def blame(self) -> wire.Blame:
        if self.flood:
            return wire.Blame(self.round, self.bit, wire.BlamePhase.FLOOD, bits=self.bits)
        return wire.Blame(self.round, self.bit, wire.BlamePhase.REVEAL)


class Tracer(EnginePart):
    def __init__(
        self,
        engine: EngineBase,
        coalition: Coalition,
        index: int,
        key: HostKey,
        kept: Mapping[int, Kept],
        exclusions: Exclusions,
        *,
        rotate: Callable[[], None],
    ) -> None:
        self.e = engine
        self.c = coalition
        self.index = index
        self.key = key
        self.kept = kept  # the leader's store of the rounds it collected
        self.exclusions = exclusions  # shared with the leader, which keeps them out
        self.rotate = rotate  # the leader moves to the next epoch (after pads were proven)
        self.active: Tracing | None = None
        self.last_traced = 0
        self.outcomes: dict[str, int] = {}
        self.last_exclusion: float | None = None  # seconds from the accused round to it

    def start(self, a: Accusation, now: float, leading: bool = False) -> None:
        """An accusation held up: trace it, if we led its round and nothing else is traced."""
        if self.active is not None or a.round <= self.last_traced:
            return
        kept = self.kept.get(a.round)
        if kept is None:  # another gateway led it (it traces), or the round is no longer kept
            if leading:  # nobody will: say so (the jammer's next corruption is traced)
                self.last_traced = a.round
                self._count("unkept")
                self.e.event(TraceEnded(a.round, a.bit, "unkept", (), (), 0.0, 0.0))
            return
        self.last_traced = a.round
        self._begin(Tracing(a.round, (a.bit,), False, kept, now, now + REVEAL_WAIT, now), now)

    def start_flood(self, rnd: int, area: bytes, now: float) -> None:
        """Round `rnd`'s reservation area (`area`, as it emerged) held more than its roster may
        write (its grants were void): trace who wrote which entries, a bit of each."""
        kept = self.kept.get(rnd)
        if self.active is not None or rnd <= self.last_traced or kept is None:
            return
        bits = flood_bits(area)[: wire.MAX_FLOOD_BITS]
        if not bits:
            return
        self.last_traced = rnd
        self._begin(Tracing(rnd, bits, True, kept, now, now + REVEAL_WAIT, now), now)

    def _begin(self, t: Tracing, now: float) -> None:
        t.ask_again = now + ASK_AGAIN
        self.active = t
        self._ask(t.blame())
        self.e.event(TraceStarted(t.round, t.bit))

    def untraceable(self, a: Accusation) -> None:
        """Schedule "tree": no member's own contribution reaches the leader, so none is kept."""
        if a.round > self.last_traced:
            self.last_traced = a.round
            self._count("untraceable")
            self.e.event(TraceEnded(a.round, a.bit, "untraceable", (), (), 0.0, 0.0))

    def _ask(self, blame: wire.Blame) -> None:
        self.e.send(wire.BROADCAST, signed(self.key, blame.encode(self.c.id, self.index)))

    # --- answers ------------------------------------------------------------------------------

    def _check_answer(
        self, sender: int, src: bytes, frame: bytes, now: float, rnd: int, bit: int
    ) -> Tracing:
        """The trace in progress, if `frame` is a signed answer to it from a member of its
        round."""
        t = self.active
        member = self.c.member_at(sender)
        if t is None or rnd != t.round or bit not in t.bits:
            raise RemoteProtocolError(RejectReason.STALE, f"blame answer for round {rnd}")
        if sender not in t.kept.roster:
            raise RemoteProtocolError(RejectReason.NOT_IN_ROSTER, f"#{sender} not in round")
        self.e.verified((MEMBER, sender), src, member.public, frame, now, False)
        return t

    def receive_reveal(self, sender: int, src: bytes, frame: bytes, now: float) -> None:
        msg = wire.pull_reveal(wire.split_auth(frame, wire.SIG_LEN)[0])
        if self.active is not None and (sender, msg.bit) in self.active.reveals:
            return  # asked twice, answered twice: no signature to check
        t = self._check_answer(sender, src, frame, now, msg.round, msg.bit)
        if t.phase is not Phase.REVEALING:
            return
        t.reveals[(sender, msg.bit)] = frame
        if len(t.reveals) == len(t.kept.roster) * len(t.bits):
            self._revealed(now)

    def receive_proof(self, sender: int, src: bytes, frame: bytes, now: float) -> None:
        msg = wire.pull_proof(wire.split_auth(frame, wire.SIG_LEN)[0])
        t = self._check_answer(sender, src, frame, now, msg.round, msg.bit)
        edge = (min(sender, msg.peer), max(sender, msg.peer))
        if t.phase is not Phase.PROVING or edge not in t.edges:
            return
        t.proofs.setdefault((sender, msg.peer), frame)
        # One valid proof settles an edge; a bogus one (a liar's, sent first) settles nothing:
        # wait on for the other end's, or the deadline.
        proven = all((a, b) in t.proofs or (b, a) in t.proofs for a, b in t.edges)
        if proven and self._judge(t).outcome is not Outcome.DISPUTED:
            self._proven(now)

    # --- timers -------------------------------------------------------------------------------

    def get_timer(self) -> float:
        t = self.active
        return float("inf") if t is None else min(t.deadline, t.ask_again)

    def handle_timer(self, now: float) -> None:
        t = self.active
        if t is None:
            return
        if now >= t.deadline:
            if t.phase is Phase.REVEALING:
                self._revealed(now)
            else:
                self._proven(now)
        elif now >= t.ask_again:
            t.ask_again = float("inf")
            if t.phase is Phase.REVEALING:
                self._ask(t.blame())
            else:
                self._ask_proofs(t)

    # --- conclusions --------------------------------------------------------------------------

    def _revealed(self, now: float) -> None:
        """Every reveal is in (or the wait is over): a verdict, or proofs for disputed pads."""
        t = self.active
        assert t is not None
        finding = self._judge(t)
        if finding.outcome is Outcome.DISPUTED:
            t.phase, t.edges, t.at = Phase.PROVING, finding.disputes, finding.at
            t.deadline, t.ask_again = now + REVEAL_WAIT, now + ASK_AGAIN
            self._ask_proofs(t)
            return
        self._conclude(now, finding)

    def _ask_proofs(self, t: Tracing) -> None:
        """Each end of a disputed edge is asked to prove its pad, shown the other end's REVEAL
        (a member proves only a pad it sees disputed: a proof opens the pair's pads)."""
        for (a, b), bit in t.at:
            for end, other in ((a, b), (b, a)):
                if (end, other) not in t.proofs:
                    reveal = t.reveals[(other, bit)]
                    self._ask(wire.Blame(t.round, bit, wire.BlamePhase.PROVE, (a, b), reveal))

    def _proven(self, now: float) -> None:
        """The proofs are in (or the wait is over). They exposed the pairs' pads for the
        epoch: the leader moves to the next one."""
        self.rotate()
        t = self.active
        assert t is not None
        finding = self._judge(t)
        if finding.outcome is Outcome.DISPUTED:  # unproven: nobody named, the ends held
            ends = frozenset(m for edge in finding.disputes for m in edge)
            finding = Finding(Outcome.INCOMPLETE, silent=finding.silent | ends)
        self._conclude(now, finding)

    def _judge(self, t: Tracing) -> Finding:
        return judge(self.c, self._evidence(t, frozenset()), self.e.verifier.verify)

    def _evidence(self, t: Tracing, named: frozenset[int]) -> Evidence:
        k = t.kept
        shown = {bit // (self.c.part_size * 8) for bit in t.bits}
        return Evidence(
            k.round,
            t.bits,
            t.flood,
            k.opened,
            k.attests,
            {m: tuple(map(digest16, parts)) for m, parts in k.parts.items()},
            {(m, i): parts[i] for m, parts in k.parts.items() for i in shown if i < len(parts)},
            dict(t.reveals),
            tuple(t.proofs.values()),
            named,
        )

    def _conclude(self, now: float, finding: Finding) -> None:
        t = self.active
        assert t is not None
        self.active = None
        named = finding.named if finding.outcome is Outcome.DISRUPTOR else frozenset()
        ev = self._evidence(t, named)
        self._publish(ev)
        for m in sorted(named):
            if m not in self.exclusions.members:
                self.exclusions.members[m] = t.kept.round
                self.exclusions.version = max(
                    self.exclusions.version + 1, wall_us(now, self.wall_offset)
                )
                self.e.event(MemberExcluded(self.c.members[m].name, t.kept.round))
        for m in finding.silent:
            self.exclusions.held[m] = t.kept.epoch
        if named:  # accusations of rounds up to now are explained: no need to trace them
            self._settled()
            self.last_exclusion = now - t.kept.started
        self._count(finding.outcome.value)
        self.e.event(
            TraceEnded(
                t.kept.round,
                t.bit,
                finding.outcome.value,
                tuple(self.c.members[m].name for m in sorted(named)),
                tuple(self.c.members[m].name for m in sorted(finding.silent)),
                now - t.started,
                now - t.kept.started,
                t.flood,
            )
        )

    def _publish(self, ev: Evidence) -> None:
        data = ev.encode()
        size = self.c.coalition.lan_mtu - wire.VERDICT_OVERHEAD
        pieces = wire.split_vector(data, size)
        for i, chunk in enumerate(pieces):
            piece = wire.VerdictPiece(ev.round, ev.bit, i, len(pieces), chunk)
            self.e.send(wire.BROADCAST, signed(self.key, piece.encode(self.c.id, self.index)))

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def _settled(self) -> None:
        self.last_traced = max(self.last_traced, max(self.kept, default=0))

    def readmit(self, member: int, now: float) -> bool:
        """An operator lets `member` back in; accusations of rounds before now are not traced
        (they would name it again for what it was excluded for)."""
        if self.exclusions.members.pop(member, None) is None:
            return False
        self.exclusions.held.pop(member, None)
        self.exclusions.version = max(self.exclusions.version + 1, wall_us(now, self.wall_offset))
        self._settled()
        self.e.event(MemberReadmitted(self.c.members[member].name))
        return True
