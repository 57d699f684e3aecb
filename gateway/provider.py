"""The gateway as its provider's (seed 001), put together from its `[offer]` table: the offer,
the till if the operator takes tokens (its token key, its ledger), and the rating credentials if
the coalition names its operator the issuer and this is that operator's first gateway.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path

from lanon.common import blindrsa
from lanon.common.coalition import Coalition, GatewayPeer
from lanon.common.crypto import read_secret_lines
from lanon.common.errors import ConfigError
from lanon.common.offers import Offer, Price
from lanon.common.settings import resolve
from lanon.gateway.cashier import Cashier, CredentialIssuer, Meter
from lanon.gateway.config import OfferSettings
from lanon.gateway.ledger import Ledger

TOKEN_KEY_BITS = 2048
CREDENTIAL_KEY_BITS = 2048


def offer_of(s: OfferSettings) -> Offer:
    """The offer this gateway broadcasts (stamped with the time at each sending)."""
    nxt = Price(s.next_per_gb, s.next_per_month) if s.next_at else None
    return Offer(0, Price(s.per_gb, s.per_month), s.next_at_ms(), nxt, s.free_mb, s.mb_per_token)


def write_token_key(path: Path, key: blindrsa.PrivateKey, comment: str) -> None:
    """Create `path` readable by its owner only; never overwrite an existing key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"# lanon token key: {comment}\n{base64.b64encode(key.to_bytes()).decode()}\n")


def read_token_key(path: Path) -> blindrsa.PrivateKey:
    lines = read_secret_lines(path, "the token key")
    try:
        return blindrsa.PrivateKey.from_bytes(base64.b64decode("".join(lines), validate=True))
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"{path}: not a lanon token key (make one with 'lanon provider keygen FILE')"
        ) from None


@dataclass
class Provision:
    offer: Offer
    cashier: Cashier | None
    issuer: CredentialIssuer | None
    ledger: Ledger | None


def provision(s: OfferSettings, base: Path, c: Coalition, me: GatewayPeer) -> Provision:
    """What this gateway needs to sell, from its [offer] (relative paths: to `base`)."""
    issues = c.credential_issuer == me
    ledger = Ledger(resolve(base, s.ledger)) if s.token_key or issues else None
    cashier = None
    if s.token_key:
        assert ledger is not None
        key = read_token_key(resolve(base, s.token_key))
        metered = frozenset(
            a.packed for g in c.gateways if g.operator == me.operator for a in g.addresses
        )
        cashier = Cashier(key, ledger, Meter(metered, s.free_mb, s.mb_per_token), s.monthly_tokens)
    issuer = CredentialIssuer(ledger, c.providers.rating_period) if issues and ledger else None
    return Provision(offer_of(s), cashier, issuer, ledger)


def issuer_needs_offer(c: Coalition, me: GatewayPeer, has_offer: bool) -> None:
    """The issuer's first gateway publishes credential keys in its offer: it must have one."""
    if c.credential_issuer == me and not has_offer:
        raise ConfigError(
            f"{c.path}: [providers] issuer = {me.operator!r}: this gateway, its operator's "
            "first, publishes the rating credentials' keys in its offer: give it an [offer] table"
        )
