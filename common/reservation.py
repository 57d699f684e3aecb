"""The reservation vector: which members send in the next round's data slots.

Each round's vector begins with `nentries` entries of 8 bytes. A member that wants k slots
writes a claim (a random nonzero 4-byte nonce and its 4-byte BLAKE2b check) into k entries
chosen at random. In the XOR of all vectors an entry is empty (zero), one claim (its check
holds) or a collision (two or more claims: the check fails, with probability 1 - 2^-32).
The valid entries, in index order, are granted the next round's data slots 0, 1, ... up to
max_slots; valid entries beyond that are deferred. Every member computes the same tally from
the round output; only the claimant recognises its own nonce.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

ENTRY_LEN = 8
_EMPTY = bytes(ENTRY_LEN)


def _check(nonce: bytes) -> bytes:
    return hashlib.blake2b(nonce, digest_size=4, person=b"lanon-resv").digest()


def make_claim(nonce: bytes) -> bytes:
    """A claim entry from 4 random bytes (a zero nonce is replaced: zero means empty)."""
    if nonce == b"\x00\x00\x00\x00":
        nonce = b"\x00\x00\x00\x01"
    return nonce + _check(nonce)


@dataclass(frozen=True, slots=True)
class Tally:
    granted: tuple[int, ...]  # entry indices, in slot order: granted[s] holds slot s
    collisions: int  # entries where claims collided
    deferred: tuple[int, ...]  # valid entries beyond max_slots: retry without backoff


def tally(area: bytes, nentries: int, max_slots: int) -> Tally:
    valid = []
    collisions = 0
    for i in range(nentries):
        entry = area[i * ENTRY_LEN : (i + 1) * ENTRY_LEN]
        if entry == _EMPTY:
            continue
        if _check(entry[:4]) == entry[4:]:
            valid.append(i)
        else:
            collisions += 1
    return Tally(tuple(valid[:max_slots]), collisions, tuple(valid[max_slots:]))


def write_claims(nentries: int, claims: dict[int, bytes]) -> bytearray:
    area = bytearray(nentries * ENTRY_LEN)
    for index, entry in claims.items():
        area[index * ENTRY_LEN : (index + 1) * ENTRY_LEN] = entry
    return area
