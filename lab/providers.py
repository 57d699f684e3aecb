"""The lab's market (`lanon lab up --gateways 2 --providers`, seed 001): two operators sell.

Odd gateways belong to 'budget' (cheap), even ones to 'premium' (dear). member1 weighs price
above all and tries no other provider (`explore` 0: a flow of its through 'premium', whose
tokens it does not buy, would stop at the free allowance, a download with it); member2 weighs
quality (latency, loss, availability) and tries others often; the others keep the defaults,
which weigh everything alike. `lanon lab slow GATEWAY --delay-ms N` makes one provider slow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lanon.common import blindrsa
from lanon.gateway.provider import write_token_key
from lanon.lab.topology import Host

PRICES = {"budget": (0.5, 2.0), "premium": (2.0, 8.0)}  # per GB, per month
# both take tokens: 1 MB free a flow, 10 MB a token; 'budget' issues the rating credentials
OFFER = {"free_mb": 1, "mb_per_token": 10, "monthly_tokens": 200}
COALITION = {"unit": "credits", "rating_period": 30.0, "issuer": "budget"}
KEEP_TOKENS = 4
PRIORITIES: dict[str, dict[str, Any]] = {
    "member1": {
        "price": 1.0,
        "latency": 0.1,
        "loss": 0.1,
        "availability": 0.1,
        "ratings": 0.1,
        "explore": 0.0,
    },
    "member2": {
        **{"price": 0.05, "latency": 1.0, "loss": 1.0, "availability": 1.0, "ratings": 0.1},
        "explore": 0.2,
    },
}
SLOW_QUEUE = 100  # NFQUEUE numbers of `lanon lab slow`, in the router: 100 + gateway index


def operator(gateway: Host) -> str:
    return "budget" if gateway.index % 2 else "premium"


def operators(gateways: list[Host]) -> dict[str, str]:
    return {g.name: operator(g) for g in gateways}


def _table(name: str, values: dict[str, Any]) -> str:
    lines = [f"\n[{name}]"]
    for k, v in values.items():
        lines.append(f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"')
    return "\n".join(lines) + "\n"


def write_configs(dest: Path, state: Path, gateways: list[Host], members: list[Host]) -> None:
    """Each operator's token key (in dest/keys), each gateway's [offer] with its ledger in
    `state`, each member's [providers] (at the end of their files)."""
    for name in sorted({operator(g) for g in gateways}):
        write_token_key(dest / "keys" / f"{name}-tokens.key", blindrsa.generate(2048), name)
    for g in gateways:
        per_gb, per_month = PRICES[operator(g)]
        offer: dict[str, Any] = {"per_gb": per_gb, "per_month": per_month, **OFFER}
        offer["token_key"] = f"keys/{operator(g)}-tokens.key"
        offer["ledger"] = str(state / f"{g.name}-ledger.sqlite")
        with (dest / f"{g.name}.toml").open("a") as f:
            f.write(_table("offer", offer))
    for m in members:
        with (dest / f"{m.name}.toml").open("a") as f:
            f.write(_table("providers", {**PRIORITIES.get(m.name, {}), "keep_tokens": KEEP_TOKENS}))
