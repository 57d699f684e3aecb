"""A member's tokens (seed 001): payment tokens per provider key, and rating credentials per
period, kept in its wallet file (JSON, mode 0600) so that nothing bought is lost to a restart.

Tokens are filed under their key's id (common/blindrsa.key_id): a provider that changes its key
leaves the old tokens unspendable, and they say so rather than vanish.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lanon.common.tokens import Token

FORMAT = 1


@dataclass
class Purse:
    operator: str
    tokens: list[Token] = field(default_factory=list)
    spent: int = 0
    bought: int = 0


class Wallet:
    def __init__(self, text: str = "") -> None:
        """`text`: the wallet file's (ValueError if it is not one)."""
        self.purses: dict[str, Purse] = {}  # key id (hex) -> tokens of that key
        self.credentials: dict[int, Token] = {}  # period -> this member's credential for it
        if text:
            self._load(text)

    def _load(self, text: str) -> None:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
            for kid, p in data["purses"].items():
                tokens = [Token(bytes.fromhex(a), bytes.fromhex(b)) for a, b in p["tokens"]]
                self.purses[kid] = Purse(p["operator"], tokens, int(p["spent"]), int(p["bought"]))
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a lanon wallet: {exc}") from None

    def dump(self) -> str:
        purses: dict[str, Any] = {
            kid: {
                "operator": p.operator,
                "tokens": [[t.prepared.hex(), t.signature.hex()] for t in p.tokens],
                "spent": p.spent,
                "bought": p.bought,
            }
            for kid, p in self.purses.items()
        }
        return json.dumps({"format": FORMAT, "purses": purses}, indent=1) + "\n"

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
