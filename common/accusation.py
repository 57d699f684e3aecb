"""A slot owner's accusation (sans-IO, pure): "someone wrote into my slot", with the proof that
the slot is mine, sealed so that only the gateways read it.

The owner of a reserved slot that emerged other than it wrote it (`SlotCorrupted`) sends, in a
cell of its own like any packet (so nobody can tell who accuses):

    round(8)  slot(2)  bit(4)  secret(16)

`round` is the round the slot was corrupted in, `bit` a bit of the round's vector (inside the
slot) where the owner wrote 0 and 1 emerged (`blame.choose_bit`), and `secret` what the claim
granted the slot in the reservation area of round `round - 1` committed to (a grant is for
the next round only: `reservation.proves_claim`). Only the claimant knows it, so nobody can
accuse on behalf of another member.

The cell's tag is 0, which no flow has (`flowkey.flow_tag` is never 0). The accusation is sealed
like a flow's first packet: a fresh key wrapped to every gateway (`flowkey.KeyWrapper`), then
ChaCha20-Poly1305 under it. Outputs are public: were the secret readable there, a disruptor
that saw it (or XORed its own junk out of a garbled accusation) could accuse at a bit the owner
wrote 1 in, and tracing that bit would point at the owner.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from lanon.common.crypto import HostKey
from lanon.common.flowkey import KeyWrapper, unwrap_key, wrap_len
from lanon.common.reservation import SECRET_LEN
from lanon.common.sodium import TAG_LEN, open_sealed, seal

ACCUSATION_TAG = 0  # the cell tag of accusations: no flow's
_BODY = struct.Struct(f"!QHI{SECRET_LEN}s")
_AAD = b"lanon-accusation-v1"
_NONCE = bytes(12)  # each accusation has a key of its own


@dataclass(frozen=True, slots=True)
class Accusation:
    round: int  # the round the slot was corrupted in (granted by round - 1's output)
    slot: int
    bit: int  # a bit of the round's vector, inside the slot: the owner wrote 0, 1 emerged
    secret: bytes  # what the granting claim committed to


def sealed_len(ngateways: int) -> int:
    return wrap_len(ngateways) + _BODY.size + TAG_LEN


def seal_accusation(a: Accusation, wrapper: KeyWrapper, rng: random.Random) -> bytes:
    key = rng.randbytes(32)
    wrap = wrapper.wrap(key, rng)
    body = _BODY.pack(a.round, a.slot, a.bit, a.secret)
    return wrap + seal(body, _AAD + wrap, _NONCE, key)


def open_accusation(host: HostKey, index: int, ngateways: int, data: bytes) -> Accusation | None:
    """Gateway `index`'s reading of an accusation cell's data; None if it is none (any other
    bytes: written by anyone into any slot)."""
    cut = wrap_len(ngateways)
    if len(data) != sealed_len(ngateways):
        return None
    wrap = data[:cut]
    key = unwrap_key(host, index, wrap)
    if key is None:
        return None
    body = open_sealed(data[cut:], _AAD + wrap, _NONCE, key)
    if body is None or len(body) != _BODY.size:
        return None
    return Accusation(*_BODY.unpack(body))
