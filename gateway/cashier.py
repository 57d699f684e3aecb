"""The provider's till (sans-IO but for its ledger): payment tokens sold openly and taken back
anonymously, flows metered against what they paid, and rating credentials issued one per member
and period (seed 001; common/tokens.py has the messages, gateway/ledger.py the books).

* `Cashier.sell` answers a member's BUY with blind signatures under the operator's token key,
  at most `monthly` a member in 30 days; a request asked again gets the same answer, counted once.
* `Cashier.redeem` takes a token spent in a flow's cell: good signature, never spent before
  (by any member, through any gateway of the operator: they all read the same outputs), and the
  flow may move `mb_per_token` more MB. It never learns who spent it.
* `Meter.charge` counts what a flow moves through an address of the operator (both ways, on the
  gateway that holds the address); beyond `free_mb` plus what tokens paid, packets are dropped.
* `CredentialIssuer` holds the rating issuer's key for each period (made off the loop by the
  daemon) and signs one credential per member and period.
"""

from __future__ import annotations

import contextlib
import hashlib

from lanon.common import blindrsa
from lanon.common.tokens import Buy, Issue, Refusal, Token, TokenKind
from lanon.gateway.flows import GatewayFlow
from lanon.gateway.ledger import Ledger, Sale

MB = 1_000_000
MONTH = 30 * 86400.0
KEPT_PERIODS = 3  # credential keys kept: the current period's, and the two before


def _refuse(buy: Buy, member: int, why: Refusal) -> Issue:
    return Issue(buy.kind, member, buy.request, why, ())


def _asked(buy: Buy) -> bytes:
    return hashlib.blake2b(b"".join(buy.blinded), digest_size=16, person=b"lanon-buy").digest()


def _sign(key: blindrsa.PrivateKey, buy: Buy, member: int) -> Issue:
    size = key.public_key.modulus_len
    if any(len(b) != size for b in buy.blinded):
        return _refuse(buy, member, Refusal.BAD_REQUEST)
    try:
        sigs = tuple(blindrsa.blind_sign(key, b) for b in buy.blinded)
    except blindrsa.BlindRSAError:
        return _refuse(buy, member, Refusal.BAD_REQUEST)
    return Issue(buy.kind, member, buy.request, Refusal.NONE, sigs)


def _again(before: Sale, buy: Buy, member: int) -> Issue:
    """A request asked again (its answer was lost): the answer it got, if it asks the same;
    nothing if it asks for other messages under the same id."""
    if before.asked != _asked(buy):
        return _refuse(buy, member, Refusal.BAD_REQUEST)
    n = len(buy.blinded)
    size = len(before.answer) // n
    sigs = tuple(before.answer[i * size : (i + 1) * size] for i in range(n))
    return Issue(buy.kind, member, buy.request, Refusal.NONE, sigs)


def _record(ledger: Ledger, name: str, buy: Buy, period: int, issue: Issue, wall: float) -> None:
    sale = Sale(_asked(buy), b"".join(issue.signatures))
    ledger.sell(name, buy.kind, buy.request, period, len(buy.blinded), wall, sale)


class Meter:
    """What flows through the operator's addresses may move."""

    def __init__(self, metered: frozenset[bytes], free_mb: int, mb_per_token: int) -> None:
        self.metered = metered
        self.free = free_mb * MB
        self.per_token = mb_per_token * MB
        # what a flow may move beyond its allowance: the member counts what reached it, we
        # count what we sent (an INBOUND frame lost on the way is ours, not its)
        self.grace = max(MB // 2, self.per_token // 20)

    def charge(self, flow: GatewayFlow, nbytes: int) -> bool:
        """Count a packet of `flow`; False (do not carry it) once the flow is over what it may
        move. Services' endpoints, other operators' addresses, and flows this gateway did not
        see from their first packet (it restarted, took over, or learnt them from another
        gateway: what they paid is not known here) are not metered."""
        if not flow.metered or flow.endpoint or flow.anon not in self.metered:
            return True
        if flow.moved + nbytes > self.free + flow.paid + self.grace:
            return False
        flow.moved += nbytes
        return True


class Cashier:
    def __init__(
        self, key: blindrsa.PrivateKey, ledger: Ledger, meter: Meter, monthly: int
    ) -> None:
        self.key = key
        self.public = key.public_key
        self.ledger = ledger
        self.meter = meter
        self.monthly = monthly

    def sell(self, member_name: str, member: int, buy: Buy, wall: float) -> Issue:
        before = self.ledger.sale(member_name, buy.kind, buy.request)
        if before is not None:
            return _again(before, buy, member)  # no signing: a replay costs a lookup
        sold = self.ledger.sold_since(member_name, buy.kind, wall - MONTH)
        if sold + len(buy.blinded) > self.monthly:
            return _refuse(buy, member, Refusal.TOO_MANY)
        issue = _sign(self.key, buy, member)
        if issue.refusal is Refusal.NONE:
            _record(self.ledger, member_name, buy, 0, issue, wall)
        return issue

    def redeem(self, flow: GatewayFlow, token: Token, wall: float) -> str:
        """'accepted', 'double_spent', 'bad', or '' if the flow is not ours to meter."""
        if flow.anon not in self.meter.metered or flow.endpoint:
            return ""
        if not blindrsa.verify(self.public, token.prepared, token.signature):
            return "bad"
        if not self.ledger.spend(token.id, wall):
            return "double_spent"
        flow.paid += self.meter.per_token
        return "accepted"


class CredentialIssuer:
    def __init__(self, ledger: Ledger, period_seconds: float) -> None:
        self.ledger = ledger
        self.seconds = period_seconds
        self.keys: dict[int, blindrsa.PrivateKey] = {}
        for period, raw in ledger.period_keys().items():  # kept across a restart
            with contextlib.suppress(ValueError):
                self.keys[period] = blindrsa.PrivateKey.from_bytes(raw)
        self.asked: set[int] = set()  # periods whose key the daemon is making

    def period(self, wall: float) -> int:
        return int(wall // self.seconds)

    def wanted(self, wall: float) -> int | None:
        """A period whose key should be made now, if not made or asked: the current one, and
        from half-way through it the next (ready when the next begins)."""
        p = self.period(wall)
        ahead = wall - p * self.seconds >= self.seconds / 2
        for q in (p, p + 1) if ahead else (p,):
            if q not in self.keys and q not in self.asked:
                self.asked.add(q)
                return q
        return None

    def add(self, period: int, key: blindrsa.PrivateKey) -> None:
        self.keys[period] = key
        self.ledger.keep_key(period, key.to_bytes())
        self.asked.discard(period)
        for old in sorted(self.keys)[:-KEPT_PERIODS]:
            del self.keys[old]

    def current(self, wall: float) -> tuple[int, blindrsa.PrivateKey] | None:
        p = self.period(wall)
        key = self.keys.get(p)
        return None if key is None else (p, key)

    def issue(self, member_name: str, member: int, buy: Buy, wall: float) -> Issue:
        cur = self.current(wall)
        if cur is None or buy.period != cur[0]:
            return _refuse(buy, member, Refusal.WRONG_PERIOD)
        if len(buy.blinded) != 1:
            return _refuse(buy, member, Refusal.BAD_REQUEST)
        earlier = self.ledger.issued_for(member_name, TokenKind.CREDENTIAL, cur[0])
        if earlier is not None:
            before = self.ledger.sale(member_name, TokenKind.CREDENTIAL, buy.request)
            if earlier != buy.request or before is None:
                return _refuse(buy, member, Refusal.ONE_PER_PERIOD)
            return _again(before, buy, member)
        issue = _sign(cur[1], buy, member)
        if issue.refusal is Refusal.NONE:
            _record(self.ledger, member_name, buy, cur[0], issue, wall)
        return issue
