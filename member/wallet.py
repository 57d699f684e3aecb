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
from lanon.common.tokens import MAX_PER_FRAME, MAX_PREPARED, MAX_REQUEST, MAX_SIG, Token, TokenKind

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
    gateway: str  # its name (versions may renumber gateways)
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
    prepared, sig = bytes.fromhex(pair[0]), bytes.fromhex(pair[1])
    if len(pair) != 2 or len(prepared) > MAX_PREPARED or len(sig) > MAX_SIG:
        raise ValueError("a token of the wrong shape")
    return Token(prepared, sig)


def _count(v: object) -> int:
    if not isinstance(v, int) or not 0 <= v < 1 << 62:
        raise ValueError(f"count {v!r}")
    return v


def _request(v: int) -> int:
    if not 0 <= v < MAX_REQUEST:
        raise ValueError(f"request {v}")
    return v


def _bytes(text: str, length: int) -> bytes:
    raw = bytes.fromhex(text)
    if len(raw) != length:
        raise ValueError(f"{len(raw)} bytes, expected {length}")
    return raw


def _pending(b: dict[str, Any]) -> PendingBuy:
    prepared = [bytes.fromhex(m) for m in b["prepared"]]
    inverses = [int(i, 16) for i in b["inverses"]]
    blinded = tuple(bytes.fromhex(m) for m in b["blinded"])
    if not 0 < len(prepared) == len(inverses) == len(blinded) <= MAX_PER_FRAME:
        raise ValueError("a purchase of the wrong shape")
    key = blindrsa.PublicKey.from_bytes(bytes.fromhex(b["key"]))
    if any(len(m) != key.modulus_len for m in blinded):
        raise ValueError("a purchase whose messages do not fit its key")
    seed = bytes.fromhex(b["seed"])
    if len(seed) not in (0, 32):
        raise ValueError("a rating key's seed of the wrong length")
    return PendingBuy(
        TokenKind(b["kind"]),
        str(b["operator"]),
        key,
        str(b["gateway"]),
        prepared,
        inverses,
        blinded,
        _count(b["period"]),
        seed,
    )


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
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"format, expected {FORMAT}")
            for kid, p in data["purses"].items():
                tokens = [_token(t) for t in p["tokens"]]
                self.purses[str(kid)] = Purse(
                    str(p["operator"]), tokens, _count(p["spent"]), _count(p["bought"])
                )
            for period, c in data.get("credentials", {}).items():
                self.credentials[_count(int(period))] = Credential(
                    _token(c["token"]), _bytes(c["seed"], 32)
                )
            for request, b in data.get("pending", {}).items():
                self.pending[_request(int(request))] = _pending(b)
        except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
            raise ValueError(f"not a lanon wallet ({FORMAT}): {exc}") from None
        except (OverflowError, RecursionError, blindrsa.BlindRSAError) as exc:
            raise ValueError(f"not a lanon wallet ({FORMAT}): {exc!r}") from None

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
