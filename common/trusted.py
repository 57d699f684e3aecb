"""Trusted-gateway mode (seed 000 §5.1, `[coalition] mode = "trusted"`): a member's answer.

In every round each member sends the leading gateway one answer of the same size: its
`trusted_cells` cells, data or zeros, sealed (ChaCha20-Poly1305) under a key it shares with
that gateway, the round number as nonce. The switch operator sees every member send the same
frames at the same moment, as in DC-net mode; the gateway opens each answer, so it knows who
sent what, and puts every cell of the round into the output in a random order (the output is
public: an order by member would tell the switch who sent each cell). No pads: a member's
cost is one seal a round, whatever the size of the coalition.

The key is derived from the pair's static exchange (`crypto.answer_key`); a member answers a
round number once, so a (key, nonce) pair is never used twice.
"""

from __future__ import annotations

import struct

from lanon.common.sodium import open_sealed, seal

_AAD = struct.Struct("!QH")  # round, member index


def _nonce(rnd: int) -> bytes:
    return b"\0\0\0\0" + rnd.to_bytes(8, "big")


def seal_answer(key: bytes, rnd: int, member: int, cells: bytes) -> bytes:
    return seal(cells, _AAD.pack(rnd, member), _nonce(rnd), key)


def open_answer(key: bytes, rnd: int, member: int, sealed: bytes) -> bytes | None:
    """The answer's cells, if it was sealed by `member` for round `rnd` under `key`."""
    return open_sealed(sealed, _AAD.pack(rnd, member), _nonce(rnd), key)
