"""A member in the providers' market (seed 001), beside its choice (member/choice.py): it buys
tokens openly, pays anonymously from inside its flows, gets one rating credential a period, and
publishes and hears anonymous ratings.

* **Buying.** With `keep_tokens` set, when fewer than half are left for the provider it uses,
  it sends a BUY (signed: the provider knows who buys) to one of the provider's gateways, with
  blinded messages, and unblinds the ISSUE's signatures into tokens (common/blindrsa.py).
* **Paying.** It counts what each flow moves, both ways; when a flow through a provider that
  takes tokens comes within `PAY_AHEAD` of what it may move (its free allowance and what it
  paid), it spends a token in the flow: sealed under the flow's key like its packets, in cells
  like any other, so no gateway can tell which member paid.
* **Credentials.** Each rating period, it asks the issuer's gateway for one credential for that
  period (openly: one per member), blinded: the issuer cannot tell later whose it is.
* **Rating.** At a random moment of the period, well after the credential came (the issuer knows
  when it answered), it publishes its rating of the providers it used (0 to 100, from its own
  measurements) and its choice, in cells of tag RATING_TAG. The leading gateway relays ratings
  it sees to everyone; each member checks the credential, takes one rating per credential, and
  averages what it hears over this period and the last. Agencies' signed ratings count too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lanon.common import blindrsa, wire
from lanon.common.cell import encode_cell
from lanon.common.clock import wall_ms
from lanon.common.coalition import GatewayPeer
from lanon.common.crypto import Verifier, decode_public_key
from lanon.common.engine import signed
from lanon.common.events import SaveWallet, WalletChanged
from lanon.common.guard import GATEWAY
from lanon.common.offers import Offer
from lanon.common.tokens import (
    MAX_PER_FRAME,
    RATING_TAG,
    Buy,
    Rating,
    RatingKind,
    Refusal,
    Token,
    TokenKind,
    agency_signed,
    credential_message,
    pull_agency,
    pull_issue,
    pull_rating,
    pull_relay,
    spend_message,
)
from lanon.member.choice import Provider
from lanon.member.flows import MemberFlow
from lanon.member.wallet import Wallet

if TYPE_CHECKING:
    from lanon.member.engine import MemberEngine

MB = 1_000_000
PAY_AHEAD = 500_000  # bytes before a flow's allowance runs out at which a token is spent
RETRY = 5.0  # seconds before a BUY unanswered is asked again (the same request)
TRIES = 3
REFUSED_PAUSE = 60.0  # seconds before buying again from a provider that refused
KEPT_PERIODS = 3


@dataclass
class PendingBuy:
    kind: TokenKind
    operator: str
    key: blindrsa.PublicKey
    gateway: int
    prepared: list[bytes]
    states: list[blindrsa.BlindState]
    blinded: tuple[bytes, ...]
    period: int
    asked: float = float("-inf")
    tries: int = 0


def _public(data: bytes) -> blindrsa.PublicKey | None:
    try:
        return blindrsa.PublicKey.from_bytes(data) if data else None
    except blindrsa.BlindRSAError:
        return None


class Market:
    def __init__(self, engine: MemberEngine, wallet: Wallet, rng: random.Random) -> None:
        self.e = engine
        self.wallet = wallet
        self.rng = rng
        self.verifier = Verifier()
        self.pending: dict[int, PendingBuy] = {}
        self.paused: dict[tuple[TokenKind, str], float] = {}  # refused: until when
        self.cred_keys: dict[int, blindrsa.PublicKey] = {}  # period -> the issuer's key
        self.rate_at: dict[int, float] = {}  # period -> when we publish our rating
        self.rated: set[int] = set()  # periods we rated in
        self.heard: dict[int, dict[bytes, Rating]] = {}  # period -> credential id -> rating
        self.agencies: dict[tuple[bytes, int], Rating] = {}  # (agency key, period) -> rating

    # --- what the member hears --------------------------------------------------------------

    @property
    def period_seconds(self) -> float:
        return self.e.c.providers.rating_period

    def period(self, now: float) -> int:
        return int(wall_ms(now, self.e.wall_offset) / 1000 // self.period_seconds)

    def offer_heard(self, gateway: int, offer: Offer) -> None:
        """The issuer's first gateway's offer carries its credential key for the period."""
        if gateway != self.issuer_gateway() or not offer.cred_key:
            return
        key = _public(offer.cred_key)
        if key is not None:
            self.cred_keys[offer.cred_period] = key
            for old in sorted(self.cred_keys)[:-KEPT_PERIODS]:
                del self.cred_keys[old]

    def issuer_gateway(self) -> int | None:
        """Credentials come from the issuer operator's first gateway (one key a period)."""
        issuer = self.e.c.providers.issuer
        found = [g.index for g in self.e.c.gateways if g.operator == issuer]
        return min(found) if issuer and found else None

    def receive_issue(self, gateway: GatewayPeer, src: bytes, frame: bytes, now: float) -> None:
        body = self.e.verified((GATEWAY, gateway.index), src, gateway.public, frame, now)
        issue = pull_issue(body)
        buy = self.pending.get(issue.request)
        if buy is None or buy.gateway != gateway.index or issue.member != self.e.me.index:
            return  # answered already, or not ours
        del self.pending[issue.request]
        if issue.refusal is not Refusal.NONE:
            self.paused[(buy.kind, buy.operator)] = now + REFUSED_PAUSE
            self._changed(buy.operator, f"refused: {issue.refusal.name.lower()}")
            return
        try:
            if len(issue.signatures) != len(buy.prepared):
                raise blindrsa.BlindRSAError("a signature per message expected")
            tokens = [
                Token(m, blindrsa.finalize(buy.key, m, s, st))
                for m, s, st in zip(buy.prepared, issue.signatures, buy.states, strict=True)
            ]
        except blindrsa.BlindRSAError as exc:  # a gateway that signs wrong: not its tokens
            self.paused[(buy.kind, buy.operator)] = now + REFUSED_PAUSE
            self._changed(buy.operator, f"bad signatures: {exc}")
            return
        if buy.kind is TokenKind.CREDENTIAL:
            self.wallet.credentials[buy.period] = tokens[0]
            # publish at a random moment the issuer cannot tell from when it answered
            wall = wall_ms(now, self.e.wall_offset) / 1000
            t = self.period_seconds
            start = max(wall + 0.1 * t, (buy.period + 0.1) * t)
            end = (buy.period + 0.95) * t
            if start < end:
                self.rate_at[buy.period] = now + self.rng.uniform(start, end) - wall
            return
        self.wallet.add(blindrsa.key_id(buy.key).hex(), buy.operator, tokens)
        self._changed(buy.operator, f"bought {len(tokens)}")

    def receive_rating(self, gateway: GatewayPeer, src: bytes, frame: bytes, now: float) -> None:
        body = self.e.verified((GATEWAY, gateway.index), src, gateway.public, frame, now)
        relay = pull_relay(body)
        try:
            if relay.kind is RatingKind.AGENCY:
                self._agency(relay.rating)
            else:
                self._anonymous(relay.rating)
        except ValueError:
            return  # malformed inside: nothing learnt
        self._apply(now)

    def _anonymous(self, data: bytes) -> None:
        r = pull_rating(data)
        key = self.cred_keys.get(r.period)
        cred = r.credential
        if key is None or cred is None or r.credential_period != r.period:
            return
        seen = self.heard.setdefault(r.period, {})
        if cred.id in seen or not blindrsa.verify(key, cred.prepared, cred.signature):
            return  # one rating a credential (the first heard)
        seen[cred.id] = r
        for old in sorted(self.heard)[:-KEPT_PERIODS]:
            del self.heard[old]

    def _agency(self, data: bytes) -> None:
        rating, raw, key, sig = pull_agency(data)
        agencies = {decode_public_key(k, "agency") for k in self.e.c.providers.agencies}
        if key in agencies and self.verifier.verify(key, agency_signed(raw, key), sig):
            self.agencies[(key, rating.period)] = rating

    def _apply(self, now: float) -> None:
        """What this period and the last say, into the choice's providers."""
        p = self.period(now)
        periods = (p - 1, p)
        scores: dict[str, list[int]] = {}
        crowd: dict[int, dict[str, int]] = {q: {} for q in periods}
        for q in periods:
            for r in self.heard.get(q, {}).values():
                for name, score in r.scores:
                    scores.setdefault(name, []).append(score)
                if r.choice:
                    crowd[q][r.choice] = crowd[q].get(r.choice, 0) + 1
        for (_key, q), r in self.agencies.items():
            if q in periods:
                for name, score in r.scores:
                    scores.setdefault(name, []).append(score)
        counted = any(crowd[q] for q in periods)
        for prov in self.e.choice.providers.values():
            got = scores.get(prov.operator, [])
            prov.rating = sum(got) / len(got) / 100 if got else None
            prov.ratings = len(got)
            if counted:
                prov.crowd = max(crowd[q].get(prov.operator, 0) for q in periods)

    # --- what the member does ---------------------------------------------------------------

    def housekeeping(self, now: float) -> None:
        self._retry(now)
        chosen = self.e.choice.chosen
        if chosen is not None and self.e.priorities.keep_tokens:
            self._stock(chosen, now)
        self._credential(now)
        self._rate(now)

    def _retry(self, now: float) -> None:
        for request, buy in list(self.pending.items()):
            if now - buy.asked < RETRY:
                continue
            if buy.tries >= TRIES:
                del self.pending[request]
                self._changed(buy.operator, "no answer to our BUY")
                continue
            self._send_buy(request, buy, now)

    def _stock(self, prov: Provider, now: float) -> None:
        offer = prov.offer
        key = _public(offer.token_key) if offer else None
        if key is None or now < self.paused.get((TokenKind.PAYMENT, prov.operator), 0.0):
            return
        if any(
            b.operator == prov.operator and b.kind is TokenKind.PAYMENT
            for b in self.pending.values()
        ):
            return
        keep = self.e.priorities.keep_tokens
        held = self.wallet.held(blindrsa.key_id(key).hex())
        if held * 2 >= keep:
            return
        count = min(keep - held, MAX_PER_FRAME)
        self._buy(
            TokenKind.PAYMENT, prov, key, [self.rng.randbytes(32) for _ in range(count)], 0, now
        )

    def _credential(self, now: float) -> None:
        p = self.period(now)
        key = self.cred_keys.get(p)
        issuer = self.issuer_gateway()
        if key is None or issuer is None or p in self.wallet.credentials:
            return
        if any(b.kind is TokenKind.CREDENTIAL for b in self.pending.values()):
            return
        prov = self.e.choice.providers[self.e.c.gateways[issuer].operator]
        if now < self.paused.get((TokenKind.CREDENTIAL, prov.operator), 0.0):
            return
        self._buy(
            TokenKind.CREDENTIAL, prov, key, [credential_message(p, self.rng.randbytes(16))], p, now
        )

    def _buy(
        self,
        kind: TokenKind,
        prov: Provider,
        key: blindrsa.PublicKey,
        messages: list[bytes],
        period: int,
        now: float,
    ) -> None:
        heard = self.e.choice.gateway_src
        gateway = (
            self.issuer_gateway()
            if kind is TokenKind.CREDENTIAL
            else min((g for g in prov.gateways if g in heard), default=None)
        )
        if gateway is None or gateway not in heard:
            return  # none of its gateways heard: no address to ask
        prepared = [blindrsa.prepare(m, self.rng.randbytes) for m in messages]
        blinds = [blindrsa.blind(key, m, self.rng.randbytes) for m in prepared]
        buy = PendingBuy(
            kind,
            prov.operator,
            key,
            gateway,
            prepared,
            [st for _b, st in blinds],
            tuple(b for b, _st in blinds),
            period,
        )
        request = self.rng.getrandbits(63)
        self.pending[request] = buy
        self._send_buy(request, buy, now)

    def _send_buy(self, request: int, buy: PendingBuy, now: float) -> None:
        buy.asked, buy.tries = now, buy.tries + 1
        frame = Buy(buy.kind, buy.gateway, request, buy.period, buy.blinded)
        dst = self.e.choice.gateway_src.get(buy.gateway, wire.BROADCAST)
        self.e.send(dst, signed(self.e.key, frame.encode(self.e.c.id, self.e.me.index)))

    def _rate(self, now: float) -> None:
        p = self.period(now)
        due = self.rate_at.get(p)
        cred = self.wallet.credentials.get(p)
        if due is None or cred is None or now < due or p in self.rated:
            return
        self.rated.add(p)
        scores = tuple(
            (prov.operator, round(100 * prov.own))
            for prov in self.e.choice.market(now)
            if prov.quality.flows  # only what this member used
        )
        chosen = self.e.choice.chosen
        rating = Rating(p, scores, chosen.operator if chosen else "", cred)
        data = rating.encode()
        chunks = wire.split_vector(data, self.e.c.cell_data)
        packet_id = self.rng.getrandbits(32)
        cs = self.e.c.coalition.cell_size
        cells = [
            encode_cell(cs, RATING_TAG, packet_id, i, len(chunks), c) for i, c in enumerate(chunks)
        ]
        self.e._queue_cells(cells, now)
        for old in [q for q in self.wallet.credentials if q < p - KEPT_PERIODS]:
            del self.wallet.credentials[old]

    def moved(self, flow: MemberFlow, nbytes: int, now: float) -> None:
        """A packet of `flow` went out or came in: pay ahead of its allowance running out."""
        flow.moved += nbytes
        prov = self.e.choice.by_address.get(flow.anon)
        offer = prov.offer if prov is not None else None
        if offer is None or not offer.token_key or not flow.answered:
            return
        if flow.moved < offer.free_mb * MB + flow.paid - PAY_AHEAD:
            return
        key = _public(offer.token_key)
        token = self.wallet.take(blindrsa.key_id(key).hex()) if key else None
        if token is None:
            flow.paid += offer.mb_per_token * MB  # (none to spend: do not try again at once)
            assert prov is not None
            self._changed(prov.operator, "no token to pay with: the flow may stall")
            return
        flow.paid += offer.mb_per_token * MB
        cells = self.e._seal(flow, spend_message(token), False, now)
        self.e._queue_cells(cells, now, first=True)
        assert prov is not None
        self._changed(prov.operator, "spent 1")

    def _changed(self, operator: str, detail: str) -> None:
        row = self.wallet.status().get(operator, {"held": 0, "spent": 0})
        self.e.event(WalletChanged(operator, row["held"], row["spent"], detail))
        self.e.command(SaveWallet(self.wallet.dump()))

    def status(self, now: float) -> dict[str, Any]:
        p = self.period(now)
        return {
            "tokens": self.wallet.status(),
            "pending_buys": len(self.pending),
            "period": p,
            "credential": p in self.wallet.credentials,
            "rated": p in self.rated,
            "ratings_heard": {q: len(v) for q, v in self.heard.items()},
        }
