"""The round leader (sans-IO): opens rounds, XORs contributions, publishes the output.

    STOPPED ──start──▶ WAITING ◀──output published, or ABORT (deadline, refusal, pause)───┐
                          │                                                               │
                          ├──open───────────────────────────────────────────▶ COLLECTING ─┘
                          │                                                       ▲
                          └──open: roster too small ──▶ DISBANDED ──open: the ────┘
                             or key graph < 2-connected             roster may run

    stop, from any phase ──▶ STOPPED (a round being collected is aborted first)

A deadline aborts the round and forgives the late members (out of the roster until their next
HELLO); the transitions are `_TRANSITIONS`, enforced by `_to`.

Rounds follow each other at once while members have data (granted slots, used slots or
deferred claims) and for `linger` seconds after, and at `idle_interval` otherwise: the round
rate follows the coalition's demand (public in the outputs), never one member's. The leader is not a DC-net member: it
knows no pad, only the per-member MAC keys that authenticate contributions.

Rounds only move forward, lanon-wide, whoever leads: a round is numbered above `floor`, the
lowest round nobody can have answered yet as far as this leader knows. The floor rises with
every round this gateway sees another lead (`follow`), with a member's STALE_ROUND refusal
(which says the round it expects), and to the wall clock in microseconds when this leader
opens nothing for longer than a gateway timeout (it paused, was partitioned or disbanded).
Epochs move forward the same way: a leader adopts a later epoch it sees or a member names.
"""

from __future__ import annotations

import enum
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from lanon.common import wire
from lanon.common.clock import wall_ms, wall_us
from lanon.common.coalition import Coalition, Schedule
from lanon.common.crypto import HostKey, MacTable, answer_key, digest16, key_id, mac_key
from lanon.common.engine import EngineBase, EnginePart, check_mac, sealed, signed
from lanon.common.errors import LocalProtocolError, RejectReason, RemoteProtocolError
from lanon.common.events import (
    EpochChanged,
    LanonDisbanded,
    LanonResumed,
    MemberChanged,
    MemberState,
    RoundAborted,
    RoundCompleted,
    RoundOpened,
)
from lanon.common.guard import MEMBER
from lanon.common.output import RoundOutput, SlotStats
from lanon.common.reservation import (
    ENTRY_LEN,
    claims_in,
    entries_for,
    overflowed,
    tally,
)
from lanon.common.roster import RosterCheck
from lanon.common.tree import place, root
from lanon.common.trusted import open_answer
from lanon.common.vectorsum import VectorSum
from lanon.common.verdict import attest_root
from lanon.gateway.tracer import Exclusions, Kept

ROTATION_GRACE = 2.0  # seconds a due rotation waits for every present member's next key
KEPT_ROUNDS = 64  # rounds with reserved slots whose contributions are kept, for blame
P = TypeVar("P", wire.Part, wire.TreePart)


class Phase(enum.Enum):
    STOPPED = "stopped"  # not the leader
    WAITING = "waiting"
    COLLECTING = "collecting"
    DISBANDED = "disbanded"


_TRANSITIONS = {
    Phase.STOPPED: {Phase.WAITING},
    Phase.WAITING: {Phase.COLLECTING, Phase.DISBANDED, Phase.STOPPED},
    Phase.COLLECTING: {Phase.WAITING, Phase.STOPPED},
    Phase.DISBANDED: {Phase.COLLECTING, Phase.DISBANDED, Phase.STOPPED},
}


@dataclass(slots=True)
class MemberRecord:
    state: MemberState = MemberState.RESIGNED  # nobody is present until it says HELLO
    absent_since: int = 0
    last_hello_ms: int = 0


@dataclass(slots=True)
class Collecting:
    round: int
    epoch: int
    leader_ms: int
    opened: float
    deadline: float
    nslots: int
    nentries: int
    roster: frozenset[int]
    part_lens: list[int]
    sum: VectorSum
    got: dict[int, set[int]] = field(default_factory=dict)
    remaining: int = 0
    root: int | None = None  # schedule "tree": the member that sends the whole sum
    subtree: frozenset[int] | None = None  # tree: whose vectors the root's sum contains
    tree_got: set[int] = field(default_factory=set)  # tree: part indices received from the root
    # Star rounds can be traced (an accused reserved slot, a flooded reservation area): every
    # member's parts and signed ATTEST are kept, and a member is done only with both
    # (gateway/tracer.py shows them in blame). The signature is checked at once in rounds with
    # reserved slots (accusations come of them), else when a trace needs it.
    accountable: bool = False
    attest_rides: bool = False  # accountable, and each ATTEST ends its member's last part
    body: bytes = b""  # the OPEN body sent
    body_digest: bytes = b""  # what every ATTEST signs of it
    done: set[int] = field(default_factory=set)
    parts: dict[int, dict[int, bytes]] = field(default_factory=dict)
    attests: dict[int, bytes] = field(default_factory=dict)
    bad: set[int] = field(default_factory=set)  # sent an ATTEST (an answer) that did not hold
    cells: dict[int, bytes] = field(default_factory=dict)  # trusted mode: each member's cells


class Leader(EnginePart):
    """Runs rounds for the gateway engine that owns it (sharing its outboxes)."""

    def __init__(
        self,
        engine: EngineBase,
        coalition: Coalition,
        index: int,
        key: HostKey,
        *,
        process: Callable[[RoundOutput], SlotStats],
        exclusions: Exclusions | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.e = engine
        self.rng = rng or random.SystemRandom()  # trusted mode: the output's order of cells
        self.exclusions = exclusions or Exclusions()  # members blame keeps out of rosters
        self.kept: OrderedDict[int, Kept] = OrderedDict()
        # rounds whose reservation area was flooded, with that area: to trace (the engine
        # takes them)
        self.flooded: list[tuple[int, bytes]] = []
        self.c = coalition
        self.index = index
        self.key = key
        self.process = process
        self.mac_keys = [mac_key(key, m.public) for m in coalition.members]
        self.mac_table = MacTable(self.mac_keys)
        # Trusted mode (common/trusted.py): members' answers are their cells, sealed for us.
        self.answer_keys = (
            [answer_key(key, m.public) for m in coalition.members] if coalition.trusted else []
        )
        self.members = [MemberRecord() for _ in coalition.members]
        self.phase = Phase.STOPPED
        self.round = 0
        self.floor = 0  # the next round opened is at least this
        self.opened = 0  # rounds this leader opened: counts rotation and forgiveness
        self._last_opened = float("-inf")
        self.epoch = 0
        self._epoch_opened = 0
        self._epoch_time = 0.0
        self.anchored = False  # the epoch is known (we led, or saw a leader), not guessed
        self.next_open = 0.0
        self.busy_until = float("-inf")  # rounds follow at once until then (demand lingers)
        self.next_nslots = 0
        # the next reservation area (entries_for): all of it until the demand is known
        self.next_nentries = coalition.rounds.reservation_entries
        self.collecting: Collecting | None = None
        self.roster_check = RosterCheck(coalition)
        # member -> epoch -> (announcement time, ephemeral public key): the newest wins
        self.ephemeral: list[dict[int, tuple[int, bytes]]] = [{} for _ in coalition.members]
        self.member_ethernet: dict[int, bytes] = {}  # Ethernet addresses, from verified HELLOs
        self._rotation_due: float | None = None

    def carry(self, old: Leader) -> None:
        """A new version of the coalition: members still in it (by public key: one with a
        new key starts over) keep their presence and ephemeral keys; round numbers and the
        epoch go on. The round `old` was collecting is given up (its roster is the old one's)."""
        index = {m.public: m.index for m in self.c.members}
        for m in old.c.members:
            j = index.get(m.public)
            if j is None:
                continue
            self.members[j] = old.members[m.index]
            self.ephemeral[j] = old.ephemeral[m.index]
            if m.index in old.member_ethernet:
                self.member_ethernet[j] = old.member_ethernet[m.index]
        self.floor = max(old.floor, old.round + 1)
        self.round, self.opened, self.epoch = old.round, old.opened, old.epoch
        self._epoch_opened, self._epoch_time = old._epoch_opened, old._epoch_time
        self.anchored = old.anchored
        self.busy_until = old.busy_until

    # --- state ----------------------------------------------------------------------------

    def _to(self, phase: Phase) -> None:
        if phase not in _TRANSITIONS[self.phase]:
            raise LocalProtocolError(f"leader: {self.phase.value} -> {phase.value}")
        self.phase = phase

    @property
    def present(self) -> frozenset[int]:
        return frozenset(i for i, m in enumerate(self.members) if m.state is MemberState.PRESENT)

    def start(self, now: float, after_round: int, epoch: int) -> None:
        """Begin leading; round numbers continue above any seen and above the wall clock (µs);
        the epoch continues the one seen, or the one members hold keys for."""
        self._to(Phase.WAITING)
        self.raise_floor(max(after_round + 1, wall_us(now, self.wall_offset)), now)
        if not self.anchored:  # a gateway that just came: the epoch most members hold keys for
            held = sorted(max(keys) - 1 for keys in self.ephemeral if keys)  # they send e, e+1
            epoch = max(epoch, held[len(held) // 2] if held else 0)
        self._set_epoch(max(epoch, self.epoch), now)
        self.anchored = True
        self._rotation_due = None
        self.next_open = now
        self.next_nslots = 0
        self.next_nentries = self.c.rounds.reservation_entries  # the demand is not known yet

    def raise_floor(self, next_round: int, now: float) -> None:
        """No round below `next_round` will be opened (someone answered the one before); at
        most up to where honest rounds can be: they start at a leader's wall clock in µs and
        grow far slower than it (a round beyond that would stall every member)."""
        bound = wall_us(now, self.wall_offset) + int(2e6 * self.c.rounds.clock_tolerance)
        self.floor = max(self.floor, min(next_round, bound, wire.MAX_ROUND))

    def clock_went_back(self, now: float) -> None:
        """The wall clock was stepped back (NTP, after a start with a clock ahead): rounds
        numbered from the old one are beyond what members take (no round above their wall
        clock), so count from ours again. Members never answer a round twice: one that
        answered a higher round says so (STALE), and the floor rises to it as far as honest
        rounds can be."""
        wall = wall_us(now, self.wall_offset)
        self.floor = min(self.floor, wall)
        self.round = min(self.round, wall)

    def follow(self, rnd: int, epoch: int, now: float) -> None:
        """Another gateway led round `rnd` of `epoch` (a verified OPEN or heartbeat)."""
        self.raise_floor(rnd + 1, now)
        self.anchored = True
        if epoch > self.epoch:
            self._set_epoch(epoch, now)

    def _set_epoch(self, epoch: int, now: float) -> None:
        if epoch == self.epoch:
            return
        self.epoch = epoch
        self._epoch_opened, self._epoch_time = self.opened, now
        self.exclusions.forget_held(epoch)
        for keys in self.ephemeral:  # past epochs' keys are of no use to anyone
            for e in [e for e in keys if e < epoch]:
                del keys[e]
        self.e.event(EpochChanged(epoch))

    def rotate_soon(self) -> None:
        """Blame exposed a pair's pads for this epoch: move to the next one at the next round
        (members hold its keys already; `_rotate` waits for them as usual)."""
        self._epoch_time = float("-inf")

    def paused(self, now: float) -> None:
        """This gateway was frozen: the round it was collecting is given up without forgiving
        anyone (their contributions are waiting, unread, in our socket), and opened anew."""
        if self.collecting is not None:
            self._abort(now, wire.AbortReason.LEADER_CHANGE, frozenset())

    def stop(self, now: float) -> None:
        if self.collecting is not None:
            self._abort(now, wire.AbortReason.LEADER_CHANGE, frozenset())
        if self.phase is not Phase.STOPPED:
            self._to(Phase.STOPPED)

    # --- timers -----------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        if self.phase is Phase.COLLECTING:
            assert self.collecting is not None
            return self.collecting.deadline
        if self.phase in (Phase.WAITING, Phase.DISBANDED):
            return self.next_open
        return None

    def handle_timer(self, now: float) -> None:
        if self.phase is Phase.COLLECTING:
            col = self.collecting
            assert col is not None
            if now >= col.deadline:
                if self.answer_keys and self._finish_without_missing(col, now):
                    return
                self._abort(now, wire.AbortReason.DEADLINE, self._missing(col))
        if self.phase in (Phase.WAITING, Phase.DISBANDED) and now >= self.next_open:
            self._open(now)

    # --- rounds -----------------------------------------------------------------------------

    def _rotate(self, now: float) -> None:
        """Move to the next epoch when due, once present members hold keys for it (or after a
        grace period, leaving out those that do not)."""
        r = self.c.rounds
        if (
            self.opened + 1 - self._epoch_opened < r.epoch_rounds
            and now - self._epoch_time < r.epoch_seconds
        ):
            return
        if self._rotation_due is None:
            self._rotation_due = now
        nxt = self.epoch + 1
        ready = all(nxt in self.ephemeral[i] for i in self.present)
        if (ready or now - self._rotation_due >= ROTATION_GRACE) and nxt <= wire.MAX_EPOCH:
            self._set_epoch(nxt, now)
            self._epoch_opened = self.opened + 1
            self._rotation_due = None

    def _missing(self, col: Collecting) -> frozenset[int]:
        """Who did not contribute in time: in a tree, whoever the root's sum leaves out (or the
        root itself, if nothing came from it)."""
        if col.root is None:
            return col.roster - col.done
        if col.subtree is None:
            return frozenset({col.root})
        # A silent member's subtree is lost with it: blame only those whose parent's sum came
        # (its children keep their place; the next round's tree is another one).
        absent = col.roster - col.subtree
        fanout = self.c.rounds.tree_fanout
        return frozenset(
            m
            for m in absent
            if (p := place(col.roster, col.round, m, fanout).parent) is None or p not in absent
        )

    def _open(self, now: float) -> None:
        self._rotate(now)
        tree = self.c.rounds.schedule is Schedule.TREE
        roster = frozenset(
            i
            for i in self.present
            if self.epoch in self.ephemeral[i]
            and (not tree or i in self.member_ethernet)
            and not self.exclusions.out(i, self.epoch)
        )
        problem = self.roster_check(roster)
        if problem is not None:
            detail = f"{problem.detail} (present with keys for the epoch)"
            if self.phase is not Phase.DISBANDED:
                self._to(Phase.DISBANDED)
                self.e.event(LanonDisbanded(len(roster), self.c.coalition.min_members, detail))
            self.next_open = now + self.c.rounds.idle_interval
            return
        if self.phase is Phase.DISBANDED:
            self.e.event(LanonResumed(len(roster)))
        self._to(Phase.COLLECTING)
        if now - self._last_opened > self.c.rounds.gateway_timeout:
            # Nothing opened for a while (paused, cut off, disbanded): others may have led.
            self.raise_floor(wall_us(now, self.wall_offset), now)
        self.round = max(self.round + 1, self.floor)
        self.opened += 1
        self._last_opened = now
        r = self.c.rounds
        nentries = min(self.next_nentries, r.reservation_entries)
        nslots = self.next_nslots + r.express_slots  # granted slots first, then express ones
        if self.c.trusted:  # every member's cells, no reservations
            nentries, nslots = 0, len(roster) * r.trusted_cells
        leader_ms = wall_ms(now, self.wall_offset)
        ids = tuple(key_id(self.ephemeral[i][self.epoch][1]) for i in sorted(roster))
        ethernet = tuple(self.member_ethernet[i] for i in sorted(roster)) if tree else ()
        o = wire.Open(
            self.round,
            self.epoch,
            leader_ms,
            nslots,
            nentries,
            roster,
            len(self.members),
            ids,
            ethernet,
            self.c.version,
        )
        body = o.encode(self.c.id, self.index)
        self.e.send(wire.BROADCAST, sealed(self.key, body, self.mac_table))
        part_lens = self.c.contrib_lens(nslots, nentries)
        self.collecting = Collecting(
            self.round,
            self.epoch,
            leader_ms,
            now,
            now + r.deadline,
            nslots,
            nentries,
            roster,
            part_lens,
            VectorSum(part_lens),
            {i: set() for i in roster},
            len(roster),
            root(roster, self.round) if tree else None,
            accountable=not tree and not self.c.trusted,
            attest_rides=not tree and not self.c.trusted and self.c.attest_rides(part_lens[-1]),
            body=body,
            body_digest=digest16(body),
        )
        self.e.event(RoundOpened(self.round, self.epoch, nslots, len(roster)))

    def _part_of_round(
        self, sender: int, frame: bytes, pull: Callable[[bytes], P]
    ) -> tuple[P, Collecting]:
        """A member's authenticated part of the round being collected, of the right shape
        (checked before its MAC, which is checked before anything is kept): the last one ends
        with the member's ATTEST where the round has room for it (star rounds only)."""
        self.c.member_at(sender)
        part = pull(wire.split_auth(frame, wire.MAC_LEN)[0])
        col = self.collecting
        if col is None or part.round != col.round:
            raise RemoteProtocolError(RejectReason.STALE, f"a part of round {part.round}")
        if part.count != len(col.part_lens):
            raise RemoteProtocolError(RejectReason.MALFORMED, "a part of the wrong shape")
        last = part.index == part.count - 1
        want = col.part_lens[part.index] + (wire.ATTEST_LEN if last and col.attest_rides else 0)
        if len(part.payload) != want:
            raise RemoteProtocolError(RejectReason.MALFORMED, "a part of the wrong shape")
        check_mac(self.mac_keys[sender], frame)
        return part, col

    def receive_tree_part(self, sender: int, frame: bytes, now: float) -> None:
        """Schedule "tree": the root's sum of every roster member's vector, part by part."""
        part, col = self._part_of_round(sender, frame, wire.pull_tree_part)
        if part.nmembers != len(self.members) or not part.contributors <= col.roster:
            raise RemoteProtocolError(RejectReason.MALFORMED, "tree part beyond the roster")
        if sender != col.root:
            raise RemoteProtocolError(
                RejectReason.UNEXPECTED, f"tree part from #{sender}, not the root"
            )
        if col.subtree is not None and part.contributors != col.subtree:
            raise RemoteProtocolError(
                RejectReason.MALFORMED, "tree parts disagree on their members"
            )
        if part.index in col.tree_got:
            raise RemoteProtocolError(RejectReason.REPLAY, "tree part already received")
        col.subtree = part.contributors
        col.tree_got.add(part.index)
        col.sum.set(part.index, part.payload)
        if len(col.tree_got) == len(col.part_lens):
            if col.subtree == col.roster:
                self._finish(now)
            else:  # someone's vector is not in the sum: the pads do not cancel, redo without
                self._abort(now, wire.AbortReason.DEADLINE, self._missing(col))

    def receive_contrib(self, sender: int, frame: bytes, now: float) -> None:
        part, col = self._part_of_round(sender, frame, wire.pull_part)
        got = col.got.get(sender)
        if got is None:
            raise RemoteProtocolError(RejectReason.NOT_IN_ROSTER, f"member #{sender} not in round")
        if part.index in got:
            raise RemoteProtocolError(RejectReason.REPLAY, "part already received")
        payload = part.payload
        if len(payload) > col.part_lens[part.index]:  # the last part, and the ATTEST after it
            payload, signed_attest = payload[: -wire.ATTEST_LEN], payload[-wire.ATTEST_LEN :]
            self._keep_attest(sender, col, signed_attest)
        got.add(part.index)
        if self.answer_keys:  # trusted mode: opened whole (`_complete`), never summed
            col.parts.setdefault(sender, {})[part.index] = payload
        else:
            col.sum.add(part.index, payload)
        if col.accountable:
            col.parts.setdefault(sender, {})[part.index] = payload
        if len(got) == len(col.part_lens):
            self._complete(sender, col, now)

    def receive_attest(self, sender: int, frame: bytes, now: float) -> None:
        """A member's signature on its contribution, in a frame of its own (the round's last
        part had no room for it)."""
        self.c.member_at(sender)
        # The round first (unauthenticated, and cheap): one of a round given up, say by a
        # version that renumbered the members, is stale, not forged.
        unchecked = wire.split_auth(wire.split_auth(frame, wire.MAC_LEN)[0], wire.SIG_LEN)[0]
        rnd = wire.pull_attest(unchecked).round
        col = self.collecting
        if col is None or rnd != col.round or not col.accountable:
            raise RemoteProtocolError(RejectReason.STALE, f"an ATTEST of round {rnd}")
        if col.attest_rides:
            raise RemoteProtocolError(RejectReason.MALFORMED, "an ATTEST outside its last part")
        signed_frame = check_mac(self.mac_keys[sender], frame)
        if sender not in col.got:
            raise RemoteProtocolError(RejectReason.NOT_IN_ROSTER, f"member #{sender} not in round")
        self._keep_attest(sender, col, signed_frame)
        if len(col.got[sender]) == len(col.part_lens):
            self._complete(sender, col, now)

    def _keep_attest(self, sender: int, col: Collecting, signed_frame: bytes) -> None:
        """A roster member's authenticated ATTEST (checked against its parts in `_complete`):
        its own header too, since one at the end of a part did not come through the engine's
        (blame shows it to everyone, who take it only as the member's own, of this coalition)."""
        if sender in col.attests or sender in col.bad:
            raise RemoteProtocolError(RejectReason.REPLAY, "ATTEST already received")
        body = signed_frame[: -wire.SIG_LEN]
        try:
            header, attest = wire.pull_header(body), wire.pull_attest(body)
            ours = (header.type, header.coalition, header.sender, attest.round)
        except RemoteProtocolError:
            ours = None
        if ours != (wire.MsgType.ATTEST, self.c.id, sender, col.round):
            col.bad.add(sender)  # missing at the deadline: the round is redone without it
            raise RemoteProtocolError(RejectReason.MALFORMED, "an ATTEST not of this round's")
        col.attests[sender] = signed_frame

    def _complete(self, sender: int, col: Collecting, now: float) -> None:
        """Member `sender`'s parts are in (and its ATTEST, where the round needs one)."""
        if self.answer_keys:
            self._open_answer(sender, col)
        if col.accountable:
            signed_frame = col.attests.get(sender)
            if signed_frame is None:
                return
            parts = col.parts[sender]
            body, sig = wire.split_auth(signed_frame, wire.SIG_LEN)
            attest = wire.pull_attest(body)
            root = attest_root([digest16(parts[i]) for i in range(len(col.part_lens))])
            if (
                attest.nparts != len(col.part_lens)
                or attest.root != root
                or attest.opened != col.body_digest
            ):
                del col.attests[sender]
                col.bad.add(sender)  # missing at the deadline: the round is redone without it
                raise RemoteProtocolError(RejectReason.MALFORMED, "ATTEST of other parts")
            reserved = col.nslots > self.c.rounds.express_slots
            if reserved and not self.e.verifier.verify(self.c.members[sender].public, body, sig):
                del col.attests[sender]
                col.bad.add(sender)
                raise RemoteProtocolError(RejectReason.BAD_AUTH, "ATTEST with a bad signature")
        col.done.add(sender)
        col.remaining -= 1
        if col.remaining == 0:
            self._finish(now)

    def _finish_without_missing(self, col: Collecting, now: float) -> bool:
        """Trusted mode: a member late or with a bad answer costs the others nothing; the
        round is published with the answers that came, if those members may run a round
        alone (the missing ones are forgiven, as after an abort, and send again)."""
        if not col.done or self.roster_check(frozenset(col.done)) is not None:
            return False
        for i in sorted(col.roster - col.done):
            rec = self.members[i]
            rec.state, rec.absent_since = MemberState.FORGIVEN, self.opened
            self.e.event(MemberChanged(self.c.members[i].name, MemberState.FORGIVEN))
        self._finish(now)
        return True

    def _open_answer(self, sender: int, col: Collecting) -> None:
        """Trusted mode: a member's answer opened; one that does not open is left out (the
        round is redone without it at the deadline)."""
        parts = col.parts.pop(sender)
        sealed = b"".join(parts[i] for i in range(len(col.part_lens)))
        cells = open_answer(self.answer_keys[sender], col.round, sender, sealed)
        if cells is None:
            col.bad.add(sender)
            raise RemoteProtocolError(RejectReason.BAD_AUTH, "an answer not sealed for us")
        col.cells[sender] = cells

    def _trusted_vector(self, col: Collecting) -> tuple[int, bytes, list[bytes]]:
        """The cells members sent (not their padding), in a random order: the output is
        public, and an order by member would tell the switch who sent each cell. How many
        there are is public as in DC-net mode (the slots used)."""
        cs = self.c.coalition.cell_size
        empty = bytes(cs)
        cells = [
            cell
            for a in col.cells.values()
            for i in range(0, len(a), cs)
            if (cell := a[i : i + cs]) != empty
        ]
        self.rng.shuffle(cells)
        del cells[self.c.trusted_output_cells :]  # what one head vouches for; the rest retry
        vector = b"".join(cells)
        lens = self.c.part_lens(len(cells), 0)
        at = [sum(lens[:i]) for i in range(len(lens))]
        return len(cells), vector, [vector[a : a + n] for a, n in zip(at, lens, strict=True)]

    def _finish(self, now: float) -> None:
        col = self.collecting
        assert col is not None
        nslots = col.nslots
        if self.answer_keys:
            nslots, vector, parts = self._trusted_vector(col)
        else:
            parts = col.sum.parts()
            vector = b"".join(parts)
        # The round's packets leave first: they are on their way to the Internet while the
        # output goes to the members, who only learn from it that their cells went out.
        stats = self.process(RoundOutput(col.round, col.leader_ms, col.nentries, nslots, vector))
        head = wire.OutputHead(
            col.round, col.leader_ms, col.nentries, nslots, tuple(map(digest16, parts))
        )
        self.e.send(
            wire.BROADCAST, sealed(self.key, head.encode(self.c.id, self.index), self.mac_table)
        )
        for i, payload in enumerate(parts):
            part = wire.Part(col.round, i, len(parts), payload)
            self.e.send(
                wire.BROADCAST, part.encode(wire.MsgType.OUTPUT_PART, self.c.id, self.index)
            )
        t = tally(vector[: col.nentries * ENTRY_LEN], col.nentries, self.c.rounds.max_slots)
        self.next_nslots = len(t.granted)
        # (an express slot garbled: two members or more will claim next)
        claims = claims_in(t) + 2 * min(stats.garbled, self.c.rounds.express_slots)
        self.next_nentries = entries_for(claims, self.c.rounds.reservation_entries)
        if overflowed(t, len(col.roster), self.c.rounds.max_claims):
            self.next_nslots = 0  # flooded: its grants are void (members void them too)
            if col.accountable:
                self.flooded.append((col.round, vector[: col.nentries * ENTRY_LEN]))
        self.e.event(
            RoundCompleted(
                col.round,
                now - col.opened,
                col.nslots,  # offered (trusted mode: every member's cells)
                stats.used,
                stats.garbled,
                len(t.granted) + len(t.deferred),
                t.collisions,
                len(t.deferred),
            )
        )
        r = self.c.rounds
        if self.next_nslots > 0 or stats.used > 0 or t.deferred or t.collisions:
            self.busy_until = now + r.linger
        if now <= self.busy_until:
            # Soon, and at once when the next round is as full as one member can fill it (its
            # `max_claims` slots granted; trusted mode: a member's cells used): rounds back to
            # back for a ping a second would take every host's CPU, and a host without a
            # spare cycle answers, and delivers, late. Demand is coalition-wide and public in
            # the output: the rate says nothing of whose it is.
            if self.c.trusted:
                load = min(1.0, stats.used / r.trusted_cells)
            else:
                load = min(1.0, self.next_nslots / r.max_claims)
            self.next_open = max(now, col.opened + r.busy_interval * (1 - load))
        else:
            self.next_open = max(now, col.opened + r.idle_interval)
        if col.accountable:
            self._keep(col)
        self.collecting = None
        self._to(Phase.WAITING)
        self._resign_absent()

    def _keep(self, col: Collecting) -> None:
        self.kept[col.round] = Kept(
            col.round,
            col.epoch,
            col.opened,
            col.body,
            col.roster,
            {m: [p[i] for i in range(len(col.part_lens))] for m, p in col.parts.items()},
            col.attests,
        )
        while len(self.kept) > KEPT_ROUNDS:
            self.kept.popitem(last=False)

    def _abort(self, now: float, reason: wire.AbortReason, missing: frozenset[int]) -> None:
        col = self.collecting
        assert col is not None
        abort = wire.Abort(col.round, reason, missing, len(self.members))
        self.e.send(wire.BROADCAST, signed(self.key, abort.encode(self.c.id, self.index)))
        for i in sorted(missing):
            rec = self.members[i]
            rec.state, rec.absent_since = MemberState.FORGIVEN, self.opened
            self.e.event(MemberChanged(self.c.members[i].name, MemberState.FORGIVEN))
        self.e.event(
            RoundAborted(col.round, reason, tuple(self.c.members[i].name for i in sorted(missing)))
        )
        self.collecting = None
        self.next_nslots = 0  # the reservations of a lost round never took effect
        self.next_open = now
        self._to(Phase.WAITING)

    def _resign_absent(self) -> None:
        limit = self.c.rounds.forgive_rounds
        for i, rec in enumerate(self.members):
            if rec.state is MemberState.FORGIVEN and self.opened - rec.absent_since > limit:
                rec.state = MemberState.RESIGNED
                self.e.event(MemberChanged(self.c.members[i].name, MemberState.RESIGNED))

    # --- membership -------------------------------------------------------------------------

    def receive_keys(self, sender: int, src: bytes, frame: bytes, now: float) -> None:
        """A member's ephemeral keys: only for the current epoch and the next are kept, and
        only what is new costs a signature check."""
        member = self.c.member_at(sender)
        table = self.ephemeral[sender]
        keys = wire.pull_keys(wire.split_auth(frame, wire.SIG_LEN)[0])
        limit = wall_ms(now + self.c.rounds.clock_tolerance, self.wall_offset)
        if keys.wall_ms > limit:
            raise RemoteProtocolError(RejectReason.STALE, "KEYS from the future")
        low, high = (self.epoch, self.epoch + 1) if self.anchored else (0, wire.MAX_EPOCH)
        new = [
            (e, k)
            for e, k in keys.keys
            if low <= e <= high and keys.wall_ms > table.get(e, (0, b""))[0]
        ]
        if all(table.get(e, (0, b""))[1] == k for e, k in new):
            return  # repeats, and epochs we do not keep, cost no signature check
        self.e.verified((MEMBER, sender), src, member.public, frame, now)
        if not self.anchored:  # not knowing the epoch yet, keep only the newest announcement
            table.clear()
        for epoch, public in new:
            table[epoch] = (keys.wall_ms, public)

    def receive_refuse(self, sender: int, frame: bytes, now: float) -> None:
        self.c.member_at(sender)
        refuse = wire.pull_refuse(check_mac(self.mac_keys[sender], frame))
        col = self.collecting
        if refuse.reason is wire.RefuseCode.STALE_ROUND:
            # The member answered a later round than ours (another led while we paused): move
            # above it, at most to where honest clocks can be, and redo the round at once.
            self.raise_floor(refuse.next_round, now)
            if refuse.epoch == self.epoch + 1:
                self._set_epoch(refuse.epoch, now)
            if col is not None and refuse.round == col.round:
                self._abort(now, wire.AbortReason.REFUSED, frozenset())
            return
        if col is None or refuse.round != col.round or sender not in col.got:
            raise RemoteProtocolError(RejectReason.STALE, f"refusal of round {refuse.round}")
        self._abort(now, wire.AbortReason.REFUSED, frozenset({sender}))

    def receive_hello(self, sender: int, frame: bytes, now: float, src: bytes = b"") -> None:
        """A member asks to be in the roster. Freshness and fingerprint are checked before the
        signature, and nothing (not even its Ethernet address) is kept before all three."""
        member = self.c.member_at(sender)
        hello = wire.pull_hello(wire.split_auth(frame, wire.SIG_LEN)[0])
        name = member.name
        rec = self.members[sender]
        ours = wall_ms(now, self.wall_offset)
        if hello.fingerprint != self.c.fingerprint:
            raise RemoteProtocolError(
                RejectReason.FOREIGN,
                f"{name}'s coalition file differs from ours (fingerprint "
                f"{hello.fingerprint.hex()[:16]} vs {self.c.fingerprint.hex()[:16]})",
            )
        if (
            abs(hello.wall_ms - ours) > self.c.rounds.clock_tolerance * 1000
            or hello.wall_ms <= rec.last_hello_ms
        ):
            raise RemoteProtocolError(RejectReason.REPLAY, f"HELLO from {name} is not fresh")
        self.e.verified((MEMBER, sender), src, member.public, frame, now)
        if src:
            self.member_ethernet[sender] = src
        rec.last_hello_ms = hello.wall_ms
        if rec.state is not MemberState.PRESENT:
            rec.state = MemberState.PRESENT
            self.e.event(MemberChanged(name, MemberState.PRESENT))
            if self.phase is Phase.DISBANDED:
                self.next_open = now
