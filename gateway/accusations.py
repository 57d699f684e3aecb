"""Judging slot owners' accusations (sans-IO): does an accusation hold up? (common/accusation.py
says what an accusation holds.) PROVEN means the accuser owns the slot and the bit emerged as
1: someone wrote there, or the owner itself did and lies; tracing that bit tells which (an
owner that lies has its own bit 1 there and names itself: common/blame.py).

A gateway keeps the last KEPT round outputs. An accusation about round R's slot S at bit B,
with secret X, is proven when:

- the outputs of R and R - 1 are both kept (reserved slots are granted by the output of the
  round just before: a member uses a grant in round R - 1 + 1 only);
- S is one of R's reserved slots, and R - 1's reservation area granted S to a claim that
  commits to X (`reservation.proves_claim`): the accuser is the slot's owner;
- B lies inside S in R's vector, and emerged as 1 there (the owner wrote 0 there: it chose
  the bit with `blame.choose_bit`; were it lying, tracing that bit would point at itself);
- no accusation about (R, S) was proven before (one is enough to trace).

Anything else is refused, with the reason.
"""

from __future__ import annotations

import enum
from collections import OrderedDict

from lanon.common.accusation import Accusation, open_accusation
from lanon.common.coalition import Coalition
from lanon.common.crypto import HostKey, bit_of
from lanon.common.output import RoundOutput
from lanon.common.reservation import ENTRY_LEN, proves_claim, tally

KEPT = 128  # outputs kept: an accusation comes within a few rounds of the corruption
PROVEN_KEPT = 1024  # (round, slot) pairs proven, kept against repeats


class Judgement(enum.Enum):
    PROVEN = "proven"
    UNKNOWN_ROUND = "unknown_round"  # R's or R - 1's output not kept (too old, or missed)
    NOT_GRANTED = "not_granted"  # S is no slot R - 1's reservation granted
    WRONG_SECRET = "wrong_secret"  # the claim granted S commits to another secret
    OUTSIDE = "outside"  # B is not a bit of S
    NOT_SET = "not_set"  # B emerged as 0: nothing was written there
    REPEATED = "repeated"  # (R, S) was proven already
    UNREADABLE = "unreadable"  # a cell of tag 0 that is no accusation sealed to us


class Accusations:
    def __init__(self, coalition: Coalition, key: HostKey, index: int) -> None:
        self.c = coalition
        self.key = key  # our host key: accusations are sealed to the gateways
        self.index = index  # ours among the gateways
        self.outputs: OrderedDict[int, RoundOutput] = OrderedDict()
        self.proven: OrderedDict[tuple[int, int], None] = OrderedDict()
        self.judged = dict.fromkeys(Judgement, 0)

    def record(self, out: RoundOutput) -> None:
        """An output, as it came (the leader's own, or one followed)."""
        if out.round in self.outputs:
            return
        self.outputs[out.round] = out
        while len(self.outputs) > KEPT:
            self.outputs.popitem(last=False)

    def receive(self, data: bytes) -> tuple[Accusation | None, Judgement]:
        """An accusation cell's data, as it emerged in an output: opened, then judged."""
        a = open_accusation(self.key, self.index, len(self.c.gateways), data)
        if a is None:
            self.judged[Judgement.UNREADABLE] += 1
            return None, Judgement.UNREADABLE
        return a, self.judge(a)

    def judge(self, a: Accusation) -> Judgement:
        verdict = self._judge(a)
        self.judged[verdict] += 1
        if verdict is Judgement.PROVEN:
            self.proven[(a.round, a.slot)] = None
            while len(self.proven) > PROVEN_KEPT:
                self.proven.popitem(last=False)
        return verdict

    def _judge(self, a: Accusation) -> Judgement:
        grant, out = self.outputs.get(a.round - 1), self.outputs.get(a.round)
        if grant is None or out is None:
            return Judgement.UNKNOWN_ROUND
        area = grant.vector[: grant.nentries * ENTRY_LEN]
        granted = tally(area, grant.nentries, self.c.rounds.max_slots).granted
        reserved = out.nslots - self.c.rounds.express_slots
        if a.slot >= min(len(granted), reserved):
            return Judgement.NOT_GRANTED
        entry = granted[a.slot]
        if not proves_claim(a.secret, area[entry * ENTRY_LEN : (entry + 1) * ENTRY_LEN]):
            return Judgement.WRONG_SECRET
        cs = self.c.coalition.cell_size
        start = (out.nentries * ENTRY_LEN + a.slot * cs) * 8
        if not start <= a.bit < start + cs * 8 or a.bit >= len(out.vector) * 8:
            return Judgement.OUTSIDE
        if not bit_of(out.vector, a.bit):
            return Judgement.NOT_SET
        if (a.round, a.slot) in self.proven:
            return Judgement.REPEATED
        return Judgement.PROVEN
