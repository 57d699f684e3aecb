"""A provider's offer (seed 001): what an operator charges for its gateways, signed, on the LAN.

In lanon a provider is the operator of gateways (`operator` in the coalition file). Each of its
gateways broadcasts an OFFER every `OFFER_INTERVAL` seconds, signed with the gateway's host key,
so a member knows the offer is the operator's (the coalition file says whose gateway it is).

    OFFER = header | issued_ms Q | per_gb d | per_month d | next_at_ms Q | next_per_gb d
            | next_per_month d | free_mb I | mb_per_token I | token key: len H, bytes
            | credential period Q | credential key: len H, bytes | signature

Prices are in the coalition's unit (`[providers] unit`). A change takes effect at `next_at_ms`
(lanon wall clock, milliseconds; 0: none announced): members see it coming and score by the
price in force. The token key is the operator's RFC 9474 public key for its payment tokens
(empty: it takes no tokens, and serves every flow free). The credential key is the rating
issuer's (`[providers] issuer`) for the period named: members check ratings' credentials with it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from lanon.common import wire

OFFER_INTERVAL = 5.0  # seconds between a gateway's OFFERs
OFFER_TIMEOUT = 30.0  # a member forgets an operator's offer it has not heard for this long
MAX_PRICE = 1e9
MAX_TOKEN_KEY = 1024

_OFFER = struct.Struct("!QddQddII")
_KEY_LEN = struct.Struct("!H")
_PERIOD = struct.Struct("!Q")


@dataclass(frozen=True, slots=True)
class Price:
    per_gb: float
    per_month: float

    def cost(self, gb_per_month: float) -> float:
        """What a month costs a member that moves `gb_per_month`."""
        return self.per_month + self.per_gb * gb_per_month


@dataclass(frozen=True, slots=True)
class Offer:
    issued_ms: int
    price: Price
    next_at_ms: int = 0  # when `next_price` replaces `price` (0: no change announced)
    next_price: Price | None = None
    free_mb: int = 0  # unpaid traffic a flow may move (with a token key)
    mb_per_token: int = 100  # what one token pays for
    token_key: bytes = b""  # RFC 9474 public key (common/blindrsa.py); empty: no payment
    cred_period: int = 0  # the rating period `cred_key` signs credentials for
    cred_key: bytes = b""  # the issuer's only: its key for that period's rating credentials

    def price_at(self, wall_ms: int) -> Price:
        if self.next_price is not None and self.next_at_ms and wall_ms >= self.next_at_ms:
            return self.next_price
        return self.price

    def encode(self, coalition: int, sender: int) -> bytes:
        nxt = self.next_price or Price(0.0, 0.0)
        return (
            wire.push_header(wire.MsgType.OFFER, coalition, sender)
            + _OFFER.pack(
                self.issued_ms,
                self.price.per_gb,
                self.price.per_month,
                self.next_at_ms if self.next_price is not None else 0,
                nxt.per_gb,
                nxt.per_month,
                self.free_mb,
                self.mb_per_token,
            )
            + _KEY_LEN.pack(len(self.token_key))
            + self.token_key
            + _PERIOD.pack(self.cred_period)
            + _KEY_LEN.pack(len(self.cred_key))
            + self.cred_key
        )


def _price(per_gb: float, per_month: float) -> Price:
    for v in (per_gb, per_month):
        if not math.isfinite(v) or not 0 <= v <= MAX_PRICE:
            raise wire.malformed(f"OFFER with a price of {v!r}")
    return Price(per_gb, per_month)


def pull_offer(body: bytes) -> Offer:
    """An OFFER's body (its signature already split off and checked)."""
    start = wire.HEADER.size
    if len(body) < start + _OFFER.size:
        raise wire.malformed("short OFFER")
    issued, gb, month, next_at, next_gb, next_month, free_mb, per_token = _OFFER.unpack_from(
        body, start
    )
    key, at = _key(body, start + _OFFER.size, "token")
    if len(body) < at + _PERIOD.size:
        raise wire.malformed("OFFER without its credential period")
    (cred_period,) = _PERIOD.unpack_from(body, at)
    cred_key, at = _key(body, at + _PERIOD.size, "credential")
    if at != len(body):
        raise wire.malformed("OFFER with trailing bytes")
    if per_token == 0:
        raise wire.malformed("OFFER whose token pays for nothing")
    price = _price(gb, month)
    nxt = _price(next_gb, next_month) if next_at else None
    return Offer(issued, price, next_at, nxt, free_mb, per_token, key, cred_period, cred_key)


def _key(body: bytes, at: int, what: str) -> tuple[bytes, int]:
    if len(body) < at + _KEY_LEN.size:
        raise wire.malformed(f"OFFER without its {what} key")
    (n,) = _KEY_LEN.unpack_from(body, at)
    at += _KEY_LEN.size
    if n > MAX_TOKEN_KEY or len(body) < at + n:
        raise wire.malformed(f"OFFER with a {what} key of the wrong length")
    return body[at : at + n], at + n
