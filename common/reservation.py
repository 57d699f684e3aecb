"""The reservation vector: which members send in the next round's data slots.

Each round's vector begins with `nentries` entries of 16 bytes. A member that wants k slots
writes a claim into k entries chosen at random: a 12-byte commitment to a secret only the
claimant knows (BLAKE2b-96 of 16 random bytes) and its 4-byte BLAKE2b check, so
that it can later prove, to anyone, that the slot the claim was granted was its own (blame:
only a slot's owner may say its cell was corrupted) without saying so before. In the XOR of all
vectors an entry is empty (zero), one claim (its check holds) or a collision (two or more
claims: the check fails, with probability 1 - 2^-32). The valid entries, in index order, are
granted the next round's data slots 0, 1, ... up to max_slots; valid entries beyond that are
deferred. Every member computes the same tally from the round output; only the claimant
recognises its own claim.

A round whose area holds more than its roster may write (`overflowed`) was flooded: its grants
are void (nobody sends in them), and blame traces who wrote which entries (gateway/tracer.py).

The area is as large as the last round's claims ask (`entries_for`): SPREAD entries a claim,
in powers of two, from MIN_ENTRIES up to `[rounds] reservation_entries`. A quiet round's
vector then fits one frame with the member's ATTEST; demand is coalition-wide and public in the
output, so the size says nothing of whose it is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

ENTRY_LEN = 16
NONCE_LEN = 12
SECRET_LEN = 16
_EMPTY = bytes(ENTRY_LEN)
MIN_ENTRIES = 4  # a quiet round's area (64 bytes)
SPREAD = 16  # entries per claim seen in the last round (64 for 4: as many as before)


def _check(nonce: bytes) -> bytes:
    return hashlib.blake2b(nonce, digest_size=4, person=b"lanon-resv").digest()


def make_claim(secret: bytes) -> bytes:
    """The claim entry of a secret of SECRET_LEN random bytes: its commitment and the check."""
    if len(secret) != SECRET_LEN:
        raise ValueError(f"a claim's secret is {SECRET_LEN} bytes")
    nonce = hashlib.blake2b(secret, digest_size=NONCE_LEN, person=b"lanon-claim").digest()
    return nonce + _check(nonce)


def proves_claim(secret: bytes, entry: bytes) -> bool:
    """Whether `secret` is the one the claim `entry` commits to (its claimant's proof)."""
    return len(secret) == SECRET_LEN and make_claim(secret) == entry


@dataclass(frozen=True, slots=True)
class Tally:
    granted: tuple[int, ...]  # entry indices, in slot order: granted[s] holds slot s
    collisions: int  # entries where claims collided
    deferred: tuple[int, ...]  # valid entries beyond max_slots: retry without backoff


def tally(area: bytes, nentries: int, max_slots: int) -> Tally:
    if area.count(0) == len(area):  # nobody claimed (most rounds): at C speed
        return _NOTHING
    valid = []
    collisions = 0
    for i in range(nentries):
        entry = area[i * ENTRY_LEN : (i + 1) * ENTRY_LEN]
        if entry == _EMPTY:
            continue
        if _check(entry[:NONCE_LEN]) == entry[NONCE_LEN:]:
            valid.append(i)
        else:
            collisions += 1
    return Tally(tuple(valid[:max_slots]), collisions, tuple(valid[max_slots:]))


_NOTHING = Tally((), 0, ())


def entries_for(claims: int, most: int) -> int:
    """The next area's entries after a round with `claims` claims (a collision counts two):
    none, MIN_ENTRIES; else room for SPREAD times as many (a claim then collides with
    another about one time in SPREAD), in powers of two, at most `most`."""
    want = MIN_ENTRIES
    while want < SPREAD * claims:
        want *= 2
    return max(min(want, most), min(MIN_ENTRIES, most))


def claims_in(t: Tally) -> int:
    """Claims an area held: a valid entry holds one, a collision at least two."""
    return len(t.granted) + len(t.deferred) + 2 * t.collisions


def overflowed(t: Tally, writers: int, max_claims: int) -> bool:
    """Whether an area holds more than `writers` members may write: each writes at most
    `max_claims` entries, a valid entry holds one claim and a collision at least two. Honest
    members never make this true: someone claimed beyond its share (blame traces it)."""
    return claims_in(t) > writers * max_claims


def flood_bits(area: bytes) -> tuple[int, ...]:
    """A bit of each written entry of an area (its first bit set, so that some writer's own
    bit is 1 there): what blame traces of a flooded one."""
    bits = []
    for e in range(len(area) // ENTRY_LEN):
        entry = area[e * ENTRY_LEN : (e + 1) * ENTRY_LEN]
        j = next((j for j, byte in enumerate(entry) if byte), None)
        if j is not None:
            bits.append((e * ENTRY_LEN + j) * 8 + 8 - entry[j].bit_length())
    return tuple(bits)


def write_claims(nentries: int, claims: dict[int, bytes]) -> bytearray:
    area = bytearray(nentries * ENTRY_LEN)
    for index, entry in claims.items():
        area[index * ENTRY_LEN : (index + 1) * ENTRY_LEN] = entry
    return area
