"""Trusted-gateway mode (seed 000 §5.1, `[coalition] mode = "trusted"`): a member's answer.

In every round each member sends the leading gateway one answer of the same size: its
`trusted_cells` cells, data or zeros, sealed (ChaCha20-Poly1305) under a key it shares with
that gateway, with a random nonce that goes first in the answer (the round and the member are
associated data). The switch operator sees every member send the same
frames at the same moment, as in DC-net mode; the gateway opens each answer, so it knows who
sent what, and puts every cell of the round into the output in a random order (the output is
public: an order by member would tell the switch who sent each cell). No pads: a member's
cost is one seal a round, whatever the size of the coalition.

The key is derived from the pair's static exchange (`crypto.answer_key`), so it outlives a
restart of the member: the nonce is random (96 bits, drawn for every answer), never the round
number, which a replayed OPEN could make a restarted member use twice.

The leader publishes the cells members sent in a random order, at most as many as one
OUTPUT_HEAD can vouch for (`Coalition.trusted_output_cells`): the others are not published and
their members send them again, as after a lost round.
"""

from __future__ import annotations

import struct

from lanon.common.sodium import TAG_LEN, open_sealed, seal

_AAD = struct.Struct("!QH")  # round, member index


NONCE_LEN = 12
OVERHEAD = NONCE_LEN + TAG_LEN  # of an answer, beyond its cells


def seal_answer(key: bytes, rnd: int, member: int, cells: bytes, nonce: bytes) -> bytes:
    """`nonce`: NONCE_LEN random bytes (the engine's CSPRNG in the daemon), never reused."""
    return nonce + seal(cells, _AAD.pack(rnd, member), nonce, key)


def open_answer(key: bytes, rnd: int, member: int, answer: bytes) -> bytes | None:
    """The answer's cells, if it was sealed by `member` for round `rnd` under `key`."""
    nonce, sealed = answer[:NONCE_LEN], answer[NONCE_LEN:]
    return open_sealed(sealed, _AAD.pack(rnd, member), nonce, key)
