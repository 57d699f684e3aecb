"""A member's tokens (seed 001), kept in its wallet file (JSON, mode 0600) so that nothing
bought is lost to a restart: payment tokens per provider key, rating credentials per period
(with the key that signs that period's rating), and the purchases still unanswered (their
blinding factors: without them, an answer that comes after a restart would be worthless).

Tokens are filed under their key's id (common/blindrsa.key_id): a provider that changes its key
leaves the old tokens unspendable, and they say so rather than vanish.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lanon.common import blindrsa
from lanon.common.tokens import Token, TokenKind

FORMAT = 1


@dataclass
class Purse:
    operator: str
    tokens: list[Token] = field(default_factory=list)
    spent: int = 0
    bought: int = 0


@dataclass
class Credential:
    token: Token
    seed: bytes  # of the rating key the credential names (common/tokens.credential_message)


@dataclass
class PendingBuy:
    """A BUY sent and not answered yet: what is needed to unblind its answer."""

    kind: TokenKind
    operator: str
    key: blindrsa.PublicKey
    gateway: int
    prepared: list[bytes]
    inverses: list[int]
    blinded: tuple[bytes, ...]
    period: int = 0
    seed: bytes = b""  # CREDENTIAL: the rating key's
    asked: float = float("-inf")
    tries: int = 0

    def states(self) -> list[blindrsa.BlindState]:
        return [blindrsa.BlindState(inv) for inv in self.inverses]


def _token(pair: list[str]) -> Token:
    return Token(bytes.fromhex(pair[0]), bytes.fromhex(pair[1]))


def _pair(t: Token) -> list[str]:
    return [t.prepared.hex(), t.signature.hex()]


class Wallet:
    def __init__(self, text: str = "") -> None:
        """`text`: the wallet file's (ValueError if it is not one)."""
        self.purses: dict[str, Purse] = {}  # key id (hex) -> tokens of that key
        self.credentials: dict[int, Credential] = {}  # period -> this member's credential
        self.pending: dict[int, PendingBuy] = {}  # request id -> a BUY not answered yet
        if text:
            self._load(text)

    def _load(self, text: str) -> None:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
            for kid, p in data["purses"].items():
                tokens = [_token(t) for t in p["tokens"]]
                self.purses[kid] = Purse(p["operator"], tokens, int(p["spent"]), int(p["bought"]))
            for period, c in data.get("credentials", {}).items():
                self.credentials[int(period)] = Credential(
                    _token(c["token"]), bytes.fromhex(c["seed"])
                )
            for request, b in data.get("pending", {}).items():
                self.pending[int(request)] = PendingBuy(
                    TokenKind(b["kind"]),
                    b["operator"],
                    blindrsa.PublicKey.from_bytes(bytes.fromhex(b["key"])),
                    int(b["gateway"]),
                    [bytes.fromhex(m) for m in b["prepared"]],
                    [int(i, 16) for i in b["inverses"]],
                    tuple(bytes.fromhex(m) for m in b["blinded"]),
                    int(b["period"]),
                    bytes.fromhex(b["seed"]),
                )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a lanon wallet: {exc}") from None

    def dump(self) -> str:
        purses: dict[str, Any] = {
            kid: {
                "operator": p.operator,
                "tokens": [_pair(t) for t in p.tokens],
                "spent": p.spent,
                "bought": p.bought,
            }
            for kid, p in self.purses.items()
        }
        credentials = {
            str(period): {"token": _pair(c.token), "seed": c.seed.hex()}
            for period, c in self.credentials.items()
        }
        pending = {
            str(request): {
                "kind": int(b.kind),
                "operator": b.operator,
                "key": b.key.to_bytes().hex(),
                "gateway": b.gateway,
                "prepared": [m.hex() for m in b.prepared],
                "inverses": [f"{i:x}" for i in b.inverses],
                "blinded": [m.hex() for m in b.blinded],
                "period": b.period,
                "seed": b.seed.hex(),
            }
            for request, b in self.pending.items()
        }
        data = {"format": FORMAT, "purses": purses, "credentials": credentials, "pending": pending}
        return json.dumps(data, indent=1) + "\n"

    def held(self, kid: str) -> int:
        p = self.purses.get(kid)
        return len(p.tokens) if p else 0

    def add(self, kid: str, operator: str, tokens: list[Token]) -> None:
        p = self.purses.setdefault(kid, Purse(operator))
        p.operator = operator
        p.tokens.extend(tokens)
        p.bought += len(tokens)

    def take(self, kid: str) -> Token | None:
        """A token of that key, spent from now on (None: none held)."""
        p = self.purses.get(kid)
        if not p or not p.tokens:
            return None
        p.spent += 1
        return p.tokens.pop(0)

    def status(self) -> dict[str, dict[str, Any]]:
        """Per operator: tokens held and spent (all its keys)."""
        out: dict[str, dict[str, Any]] = {}
        for p in self.purses.values():
            row = out.setdefault(p.operator, {"held": 0, "spent": 0, "bought": 0})
            row["held"] += len(p.tokens)
            row["spent"] += p.spent
            row["bought"] += p.bought
        return out
