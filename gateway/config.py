"""The gateway daemon's configuration file."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from lanon.common.daemon_config import DaemonSettings
from lanon.common.settings import between, opt


@dataclass(frozen=True)
class GatewaySettings(DaemonSettings):
    promiscuous: bool = opt(
        False,
        "capture in promiscuous mode (needed where frames for a taken-over address still go to "
        "the lost gateway's MAC, e.g. a hub or a switch port mirror)",
    )
    manage_rules: bool = opt(
        True,
        "install the raw-table rules that keep this host's own stack away from anonymous "
        "addresses (no RST, no ICMP from it)",
    )
    sequence_file: str = opt(
        "/var/lib/lanon/inbound-sequence",
        "file that keeps a mark above this gateway's inbound sequence numbers, nonces under "
        "flows' keys, so that a restart starts above them whatever the clock says (relative to "
        "this file; '' for none: then the wall clock alone, and with inbound_cipher = "
        "'aes256-gcm' a number used twice, the clock set back across a restart, would let a LAN "
        "host forge that flow's replies)",
    )
    offer: OfferSettings | None = opt(
        None, "what this gateway's operator charges, as an [offer] table (none: no offer)"
    )


def _is_time(v: str) -> str | None:
    """'' or an RFC 3339 time with its zone, e.g. '2027-01-01T00:00:00Z'."""
    if v == "":
        return None
    try:
        t = datetime.datetime.fromisoformat(v)
    except ValueError:
        return "an RFC 3339 time such as '2027-01-01T00:00:00Z', or ''"
    return None if t.tzinfo is not None else "a time with its zone, e.g. a trailing 'Z'"


@dataclass(frozen=True)
class OfferSettings:
    """What this gateway's operator charges ([offer]; common/offers.py). Every gateway of an
    operator should say the same: members take the latest offer heard from any of them."""

    per_gb: float = opt(0.0, "price per GB, in the coalition's [providers] unit", between(0, 1e9))
    per_month: float = opt(0.0, "price per month, in the same unit", between(0, 1e9))
    next_at: str = opt(
        "",
        "when a new price takes effect (RFC 3339, e.g. '2027-01-01T00:00:00Z'); '' for none",
        _is_time,
    )
    next_per_gb: float = opt(0.0, "the price per GB from next_at", between(0, 1e9))
    next_per_month: float = opt(0.0, "the price per month from next_at", between(0, 1e9))
    token_key: str = opt(
        "",
        "path of the operator's token key (lanon provider keygen; relative to this file): members "
        "pay with tokens it signs blindly; '' takes no tokens and serves every flow free",
    )
    free_mb: int = opt(
        10, "MB a flow may move unpaid, when the operator takes tokens", between(1, 1 << 30)
    )
    mb_per_token: int = opt(100, "MB one token pays for", between(1, 1 << 30))
    monthly_tokens: int = opt(
        1000,
        "tokens one member may buy in 30 days (the provider bills it for them)",
        between(1, 1 << 30),
    )
    ledger: str = opt(
        "/var/lib/lanon/spent-tokens.sqlite",
        "SQLite file of the tokens spent at this gateway (relative to this file): a token is "
        "taken once",
    )

    def next_at_ms(self) -> int:
        if not self.next_at:
            return 0
        return int(datetime.datetime.fromisoformat(self.next_at).timestamp() * 1000)
