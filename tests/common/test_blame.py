"""Blame's tracing (common/blame.py), played on whole rounds' bits: every member's real
vector and pads, a jammer, a jammer that lies about its pads, members that reveal nothing,
and an accuser that lies."""

from __future__ import annotations

import dataclasses
import os
import random

from lanon.common import blame, keygraph
from lanon.common.blame import ExchangeProof, Outcome, Reveal
from lanon.common.crypto import Ephemeral, apply_pads, epoch_key, pad_bit
from lanon.common.reservation import make_claim, proves_claim

EPOCH, ROUND = 7, 1234
SHAPE = (1, 4)  # the round's slots and entries (pads depend on them)
SLOT = 512  # bytes: where the owner's slot starts in the vector


class Round:
    """n members with real ephemeral keys on a key graph; member 0 owns the slot."""

    def __init__(self, n: int, edges: list[tuple[int, int]] | None = None) -> None:
        self.n = n
        self.edges = edges or [(a, b) for a in range(n) for b in range(a + 1, n)]
        self.eph = [Ephemeral() for _ in range(n)]
        self.keys: dict[tuple[int, int], bytes] = {}
        for a, b in self.edges:
            shared = self.eph[a].exchange(self.eph[b].public)
            assert shared is not None
            self.keys[(a, b)] = self.keys[(b, a)] = epoch_key(EPOCH, shared)
        self.vectors = [bytearray(SLOT + 64) for _ in range(n)]

    def neighbours(self, m: int) -> list[int]:
        return keygraph.neighbours(self.edges, m)

    def contributions(self) -> list[bytes]:
        return [
            apply_pads(bytes(v), [self.keys[(m, j)] for j in self.neighbours(m)], ROUND, *SHAPE)
            for m, v in enumerate(self.vectors)
        ]

    def output(self) -> bytes:
        out = bytearray(SLOT + 64)
        for c in self.contributions():
            for i, x in enumerate(c):
                out[i] ^= x
        return bytes(out)

    def reveal(self, m: int, bit: int) -> Reveal:
        neighbours = self.neighbours(m)
        pads = {j: pad_bit(self.keys[(m, j)], ROUND, bit, *SHAPE) for j in neighbours}
        return Reveal(m, pads, self.eph[m].public, {j: self.eph[j].public for j in neighbours})

    def trace(
        self,
        bit: int,
        silent: frozenset[int] = frozenset(),
        lies: dict[int, dict[int, int]] | None = None,
    ) -> tuple[blame.Verdict, dict[int, Reveal]]:
        contributions = {m: blame.bit_of(c, bit) for m, c in enumerate(self.contributions())}
        reveals = {m: self.reveal(m, bit) for m in range(self.n) if m not in silent}
        for m, pads in (lies or {}).items():
            reveals[m] = dataclasses.replace(reveals[m], pads={**reveals[m].pads, **pads})
        return blame.trace(range(self.n), self.edges, contributions, reveals), reveals


def owner_and_jammer(n: int = 5, jammer: int = 3) -> tuple[Round, int]:
    r = Round(n)
    cell = bytes(random.Random(1).randbytes(64))
    r.vectors[0][SLOT:] = cell  # the owner's cell
    r.vectors[jammer][SLOT:] = os.urandom(64)  # the jammer writes junk over it
    emerged = r.output()[SLOT:]
    assert emerged != cell
    bit = blame.choose_bit(cell, emerged)
    assert bit is not None
    assert blame.bit_of(cell, bit) == 0 and blame.bit_of(emerged, bit) == 1
    return r, SLOT * 8 + bit


def test_choose_bit_finds_a_bit_written_0_that_emerged_1() -> None:
    assert blame.choose_bit(b"\xff\x0f", b"\xff\x4f") == 9
    assert blame.choose_bit(b"\xff", b"\x00") is None  # only 1s were cleared: nothing to show


def test_one_jammer_is_named_and_nobody_else() -> None:
    r, bit = owner_and_jammer()
    verdict, _ = r.trace(bit)
    assert verdict.outcome is Outcome.DISRUPTOR and verdict.members == {3}


def test_the_accusers_reveal_looks_like_everyone_elses() -> None:
    """Every honest member's own bit is 0 at the accused bit, the owner's included."""
    r, bit = owner_and_jammer()
    _, reveals = r.trace(bit)
    contributions = r.contributions()
    own = {m: reveals[m].own_bit(blame.bit_of(contributions[m], bit)) for m in range(r.n)}
    assert own == {0: 0, 1: 0, 2: 0, 3: 1, 4: 0}


def test_a_jammer_that_lies_about_a_pad_is_disputed_and_the_proofs_name_it() -> None:
    r, bit = owner_and_jammer()
    true = r.reveal(3, bit).pads[4]
    verdict, reveals = r.trace(bit, lies={3: {4: true ^ 1}})  # its own bit would read 0
    assert verdict.outcome is Outcome.DISPUTED and verdict.disputes == {(3, 4)}
    proofs = []
    for m, other in ((3, 4), (4, 3)):
        proven = r.eph[m].prove(r.eph[other].public)
        assert proven is not None
        proofs.append(ExchangeProof(m, r.eph[m].public, r.eph[other].public, *proven))
    for shown in (proofs, proofs[:1], proofs[1:]):  # either end's proof alone settles it
        assert blame.settle((3, 4), ROUND, EPOCH, bit, reveals, shown, SHAPE) == {3}


def test_two_keys_under_one_name_settle_nothing() -> None:
    """A jammer that announced one key to its neighbour and proves with another: the keys the
    two ends signed in their reveals disagree, and nobody is named (not the honest end)."""
    r, bit = owner_and_jammer()
    true = r.reveal(3, bit).pads[4]
    _, reveals = r.trace(bit, lies={3: {4: true ^ 1}})
    other = Ephemeral()  # the jammer's second key
    reveals[3] = dataclasses.replace(reveals[3], own=other.public)
    proven = other.prove(r.eph[4].public)
    assert proven is not None
    proof = ExchangeProof(3, other.public, r.eph[4].public, *proven)
    assert blame.settle((3, 4), ROUND, EPOCH, bit, reveals, [proof], SHAPE) is None


def test_a_jammer_is_named_by_its_own_words_whatever_its_neighbours_say() -> None:
    """Two members that dispute a pad and prove nothing, or a silent member, shield nobody
    whose own signed contribution and pads add up to 1."""
    r, bit = owner_and_jammer()
    pads = r.reveal(2, bit).pads  # member 2 flips two pads: its own bit still reads 0
    verdict, _ = r.trace(bit, silent=frozenset({1}), lies={2: {0: pads[0] ^ 1, 4: pads[4] ^ 1}})
    assert verdict.outcome is Outcome.DISRUPTOR and verdict.members == {3}
    assert verdict.silent == {1} and verdict.disputes == {(0, 2), (2, 4)}


def test_a_forged_exchange_proves_nothing() -> None:
    r, bit = owner_and_jammer()
    true = r.reveal(3, bit).pads[4]
    _, reveals = r.trace(bit, lies={3: {4: true ^ 1}})
    stranger = Ephemeral()
    fake = stranger.prove(r.eph[4].public)  # valid, but for a key nobody signed
    assert fake is not None
    forged = ExchangeProof(3, stranger.public, r.eph[4].public, *fake)
    assert blame.settle((3, 4), ROUND, EPOCH, bit, reveals, [forged], SHAPE) is None
    bent = ExchangeProof(3, r.eph[3].public, r.eph[4].public, fake[0], fake[1])
    assert blame.settle((3, 4), ROUND, EPOCH, bit, reveals, [bent], SHAPE) is None


def test_members_that_reveal_nothing_are_never_blamed() -> None:
    r, bit = owner_and_jammer()
    verdict, _ = r.trace(bit, silent=frozenset({1, 3}))  # crashed, or their frames were lost
    assert verdict.outcome is Outcome.INCOMPLETE and verdict.members == {1, 3}


def test_an_accuser_that_lies_about_its_bit_names_itself() -> None:
    r = Round(4)
    r.vectors[0][SLOT:] = b"\x80" + bytes(63)  # the owner wrote 1 at the slot's first bit
    verdict, _ = r.trace(SLOT * 8)  # and claims it wrote 0 there
    assert verdict.outcome is Outcome.DISRUPTOR and verdict.members == {0}
    verdict, _ = r.trace(SLOT * 8 + 1)  # a bit nobody wrote: nothing to find
    assert verdict.outcome is Outcome.CLEAN


def test_a_regular_key_graph_traces_alike() -> None:
    n = 8
    r = Round(n, sorted(keygraph.harary(n, 4)))
    cell = bytes(64)
    r.vectors[5][SLOT:] = os.urandom(64)  # a jammer over an owner who wrote zeros
    bit = blame.choose_bit(cell, r.output()[SLOT:])
    assert bit is not None
    verdict, _ = r.trace(SLOT * 8 + bit)
    assert verdict.members == {5}


def test_a_reveal_that_does_not_name_its_neighbours_names_its_member() -> None:
    r, bit = owner_and_jammer()
    contributions = {m: blame.bit_of(c, bit) for m, c in enumerate(r.contributions())}
    reveals = {m: r.reveal(m, bit) for m in range(r.n)}
    reveals[2] = Reveal(2, {0: 1})
    verdict = blame.trace(range(r.n), r.edges, contributions, reveals)
    assert verdict.outcome is Outcome.DISRUPTOR and verdict.members == {2, 3}  # and the jammer


def test_only_the_claimant_can_show_a_claim_was_its_own() -> None:
    secret = os.urandom(16)
    entry = make_claim(secret)
    assert proves_claim(secret, entry) and not proves_claim(os.urandom(16), entry)


def test_no_bit_of_a_cell_can_be_foretold_so_blind_jamming_leaves_a_bit_to_accuse_at() -> None:
    """Cells are whitened by their random packet id: the same packet in 400 cells shows every
    bit that could be 1 both ways, and a jammer that always flips one chosen bit (one that would read 1 in an
    unwhitened count field) leaves its victim a bit to accuse at about half the time."""
    from lanon.common.cell import encode_cell

    rng = random.Random(5)
    cells = [encode_cell(64, 0x1234, rng.getrandbits(32), 0, 1, b"same") for _ in range(400)]
    for bit in range((8 + 4 + 12 + 4) * 8):  # check, packet id, header and data: all of it
        assert len({blame.bit_of(c, bit) for c in cells}) == 2, bit
    assert all(c[28:] == bytes(36) for c in cells)  # the padding: 0, nothing to clear
    target = (8 + 4 + 8 + 1) * 8 + 7  # where count = 1 sat before whitening
    accusable = 0
    for c in cells:
        jammed = bytearray(c)
        jammed[target // 8] ^= 0x80 >> (target % 8)
        accusable += blame.choose_bit(c, bytes(jammed)) is not None
    assert 140 <= accusable <= 260, accusable
