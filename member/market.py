"""A member in the providers' market (seed 001), beside its choice (member/choice.py): it buys
tokens openly, pays anonymously from inside its flows, gets one rating credential a period, and
publishes and hears anonymous ratings.

* **Buying.** With `keep_tokens` set, it looks at its stock at random moments (every
  `RESTOCK_MEAN` seconds on average, never right after a spend: a BUY that followed the spend
  that emptied a wallet would tie the spend's flow to the buyer) and, below half, sends a BUY
  (signed: the provider knows who buys) to one of the provider's gateways heard lately, with
  blinded messages, and unblinds the ISSUE's signatures into tokens (common/blindrsa.py). What
  it needs to unblind is in the wallet file until the answer comes, and asking again gets the
  same answer: a purchase is never lost.
* **Paying.** It counts what each flow moves, both ways; when a flow through a provider that
  takes tokens comes within `pay_ahead` of what it may move (its free allowance and what it
  paid), it spends a token in the flow: sealed under the flow's key like its packets, in cells
  like any other, so no gateway can tell which member paid. Without a token, the flow waits for
  the next purchase and pays then.
* **Credentials.** Each rating period, at a random moment of its first tenth, it asks the
  issuer's gateway for one credential for that period (openly: one per member), blinded; the
  credential names a key made for this period alone, which signs the rating: a copy of the
  credential with other scores does not hold.
* **Rating.** At a random moment of the period, well after the credential came (the issuer knows
  when it answered), it publishes its rating of the providers it used (0 to 100, from its own
  measurements) and its choice, in cells of tag RATING_TAG. The leading gateway relays ratings
  it sees to everyone; each member checks the credential and the rating's signature, takes one
  rating per credential, and averages what it hears over this period and the last. Agencies'
  signed ratings count too.
"""

from __future__ import annotations

import functools
import random
from typing import TYPE_CHECKING, Any

from lanon.common import blindrsa, wire
from lanon.common.cell import encode_cell
from lanon.common.clock import wall_ms
from lanon.common.coalition import GatewayPeer
from lanon.common.crypto import HostKey, Verifier, decode_public_key, verify_once
from lanon.common.engine import signed
from lanon.common.events import SaveWallet, WalletChanged
from lanon.common.guard import GATEWAY
from lanon.common.offers import Offer
from lanon.common.tokens import (
    MAX_PER_FRAME,
    MAX_RATED,
    MAX_REQUEST,
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
from lanon.member.wallet import Credential, PendingBuy, Wallet

if TYPE_CHECKING:
    from lanon.member.engine import MemberEngine

MB = 1_000_000
PAY_AHEAD = 500_000  # bytes before a flow's allowance runs out at which a token is spent
RETRY = 2.5  # seconds before a BUY unanswered is asked again (the same request), doubling
TRIES = 4  # asked this often, the member says so
RETRY_MAX = 600.0
REFUSED_PAUSE = 60.0  # seconds before buying again from a provider that refused
RESTOCK_MIN = 10.0  # seconds at least between looks at the stock of tokens...
RESTOCK_MEAN = 50.0  # ... and this much more on average (never right after a spend)
OWED_WAIT = (5.0, 30.0)  # seconds after a purchase before flows that waited for it pay
FIRST_LOOK = 10.0  # the first look: at a random moment this long after the start
KEPT_PERIODS = 3
MAX_OWING = 256  # flows waiting for a token


@functools.lru_cache(maxsize=16)
def _public(data: bytes) -> tuple[blindrsa.PublicKey | None, str]:
    """A key an offer carries, and its id (hex); (None, '') if it is none. Parsed once a key:
    the payment path asks for it with every packet."""
    try:
        key = blindrsa.PublicKey.from_bytes(data) if data else None
    except blindrsa.BlindRSAError:
        return None, ""
    return key, blindrsa.key_id(key).hex() if key else ""


class Market:
    def __init__(
        self, engine: MemberEngine, wallet: Wallet, rng: random.Random, now: float
    ) -> None:
        self.e = engine
        self.wallet = wallet
        self.rng = rng
        self.verifier = Verifier()
        self.paused: dict[tuple[TokenKind, str], float] = {}  # refused: until when
        self.cred_keys: dict[int, blindrsa.PublicKey] = {}  # period -> the issuer's key
        self.cred_at: dict[int, float] = {}  # period -> when we ask for its credential
        self.rate_at: dict[int, float] = {}  # period -> when we publish our rating
        self.rated: set[int] = set()  # periods we rated in
        self.heard: dict[int, dict[bytes, Rating]] = {}  # period -> credential id -> rating
        self.agencies: dict[tuple[bytes, int], Rating] = {}  # (agency key, period) -> rating
        self.owing: dict[int, MemberFlow] = {}  # flows waiting for a token, by tag
        self.next_look = now + rng.uniform(0, FIRST_LOOK)
        self.quiet_until = float("-inf")  # flows that waited for a token pay after this

    @property
    def pending(self) -> dict[int, PendingBuy]:
        return self.wallet.pending

    # --- what the member hears --------------------------------------------------------------

    @property
    def period_seconds(self) -> float:
        return self.e.c.providers.rating_period

    def _wall(self, now: float) -> float:
        return wall_ms(now, self.e.wall_offset) / 1000

    def period(self, now: float) -> int:
        return int(self._wall(now) // self.period_seconds)

    def offer_heard(self, gateway: int, offer: Offer, now: float) -> None:
        """The issuer's first gateway's offer carries its credential key for the period."""
        if gateway != self.issuer_gateway() or not offer.cred_key:
            return
        key = _public(offer.cred_key)[0]
        if key is None or offer.cred_period in self.cred_keys:
            return  # (a key, once heard, stays the period's: no per-member keys)
        self.cred_keys[offer.cred_period] = key
        for old in sorted(self.cred_keys)[:-KEPT_PERIODS]:
            del self.cred_keys[old]
        start = (offer.cred_period + 0.1) * self.period_seconds - self._wall(now)
        self.cred_at[offer.cred_period] = now + self.rng.uniform(0, max(start, 0.0))

    def issuer_gateway(self) -> int | None:
        issuer = self.e.c.credential_issuer
        return None if issuer is None else issuer.index

    def receive_issue(self, gateway: GatewayPeer, src: bytes, frame: bytes, now: float) -> None:
        issue = pull_issue(wire.split_auth(frame, wire.SIG_LEN)[0])
        buy = self.pending.get(issue.request)
        if buy is None or buy.gateway != gateway.name or issue.member != self.e.me.index:
            return  # answered already, or not ours: no signature checked for it
        self.e.verified((GATEWAY, gateway.index), src, gateway.public, frame, now, fresh=False)
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
                for m, s, st in zip(buy.prepared, issue.signatures, buy.states(), strict=True)
            ]
        except blindrsa.BlindRSAError as exc:  # a gateway that signs wrong: not its tokens
            self.paused[(buy.kind, buy.operator)] = now + REFUSED_PAUSE
            self._changed(buy.operator, f"bad signatures: {exc}")
            return
        if buy.kind is TokenKind.CREDENTIAL:
            self.wallet.credentials[buy.period] = Credential(tokens[0], buy.seed)
            # publish at a random moment the issuer cannot tell from when it answered
            wall, t = self._wall(now), self.period_seconds
            start = max(wall + 0.1 * t, (buy.period + 0.1) * t)
            end = (buy.period + 0.95) * t
            if start < end:
                self.rate_at[buy.period] = now + self.rng.uniform(start, end) - wall
            self.e.command(SaveWallet(self.wallet.dump()))
            return
        self.wallet.add(blindrsa.key_id(buy.key).hex(), buy.operator, tokens)
        self._changed(buy.operator, f"bought {len(tokens)}")
        # Flows that waited for a token pay at their next packet or housekeeping, and not
        # before a random while: the provider knows which flows it stopped, and whom it just
        # sold to.
        self.quiet_until = now + self.rng.uniform(*OWED_WAIT)

    def receive_rating(self, gateway: GatewayPeer, src: bytes, frame: bytes, now: float) -> None:
        body = self.e.verified(
            (GATEWAY, gateway.index), src, gateway.public, frame, now, fresh=False
        )
        relay = pull_relay(body)
        try:
            if relay.kind is RatingKind.AGENCY:
                self._agency(relay.rating)
            else:
                self._anonymous(relay.rating)
        except ValueError:
            return  # malformed inside: nothing learnt
        self.apply(now)

    def _anonymous(self, data: bytes) -> None:
        r = pull_rating(data)
        key = self.cred_keys.get(r.period)
        cred, rating_key = r.credential, r.rating_key
        if key is None or cred is None or rating_key is None:
            return
        seen = self.heard.setdefault(r.period, {})
        if cred.id in seen:
            return  # one rating a credential
        if not blindrsa.verify(key, cred.prepared, cred.signature):
            return  # (first: a junk rating names a key of its own, which is not kept)
        if not verify_once(rating_key, r.signed(), r.signature):
            return  # a copy of someone's credential with other scores
        seen[cred.id] = r
        for old in sorted(self.heard)[:-KEPT_PERIODS]:
            del self.heard[old]

    def _agency(self, data: bytes) -> None:
        rating, raw, key, sig = pull_agency(data)
        agencies = {decode_public_key(k, "agency") for k in self.e.c.providers.agencies}
        if key in agencies and self.verifier.verify(key, agency_signed(raw, key), sig):
            self.agencies[(key, rating.period)] = rating

    def apply(self, now: float) -> None:
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
            prov.crowd = max(crowd[q].get(prov.operator, 0) for q in periods) if counted else None

    # --- what the member does ---------------------------------------------------------------

    def housekeeping(self, now: float) -> None:
        for tag in [t for t in self.owing if self.e.flows.by_tag(t) is None]:
            del self.owing[tag]  # ended while it waited
        if now >= self.quiet_until:
            # A flow its provider stopped may have no packet left to pay at (a download's
            # receiver sends nothing while nothing comes): it pays here, after the same wait.
            for flow in list(self.owing.values()):
                self.moved(flow, 0, now)
        self._retry(now)
        if now >= self.next_look:
            self.next_look = now + RESTOCK_MIN + self.rng.expovariate(1 / RESTOCK_MEAN)
            chosen = self.e.choice.chosen
            if chosen is not None and self.e.priorities.keep_tokens:
                self._stock(chosen, now)
        self._credential(now)
        self._rate(now)
        self.apply(now)

    def _retry(self, now: float) -> None:
        """Ask again, less and less often, but never give up: the provider may have sold
        (and billed) it, and keeps the answer; without the request, that answer is lost."""
        for request, buy in list(self.pending.items()):
            if now - buy.asked < min(RETRY * 2 ** min(buy.tries, 10), RETRY_MAX):
                continue
            if buy.tries == TRIES:
                self._changed(buy.operator, "no answer to our BUY yet: asking again, less often")
            index = self._index(buy.gateway)
            if index is None or index not in self.e.choice.gateway_src:
                continue  # its gateway is away (or gone): the same request waits for it
            self._send_buy(request, buy, now)

    def _stock(self, prov: Provider, now: float) -> None:
        key, kid = _public(prov.offer.token_key) if prov.offer else (None, "")
        if key is None or now < self.paused.get((TokenKind.PAYMENT, prov.operator), 0.0):
            return
        if any(b.operator == prov.operator and b.tries < TRIES for b in self.pending.values()):
            return  # (one long unanswered does not stop the next purchase)
        keep = self.e.priorities.keep_tokens
        held = self.wallet.held(kid)
        if held * 2 >= keep:
            return
        count = min(keep - held, MAX_PER_FRAME)
        messages = [self.rng.randbytes(32) for _ in range(count)]
        self._buy(TokenKind.PAYMENT, prov, key, messages, 0, b"", now)

    def _credential(self, now: float) -> None:
        p = self.period(now)
        key, issuer = self.cred_keys.get(p), self.issuer_gateway()
        if key is None or issuer is None or p in self.wallet.credentials:
            return
        if now < self.cred_at.get(p, now):
            return
        if any(b.kind is TokenKind.CREDENTIAL for b in self.pending.values()):
            return
        prov = self.e.choice.providers[self.e.c.gateways[issuer].operator]
        if now < self.paused.get((TokenKind.CREDENTIAL, prov.operator), 0.0):
            return
        seed = self.rng.randbytes(32)
        message = credential_message(p, HostKey(seed).public)
        self._buy(TokenKind.CREDENTIAL, prov, key, [message], p, seed, now)

    def _gateway_for(self, kind: TokenKind, prov: Provider, now: float) -> int | None:
        """Whom to ask: the issuer's first gateway, or one of the provider's heard lately."""
        if kind is TokenKind.CREDENTIAL:
            return self.issuer_gateway()
        alive = self.e.choice.alive(prov, now)
        return min(alive) if alive else None

    def _buy(
        self,
        kind: TokenKind,
        prov: Provider,
        key: blindrsa.PublicKey,
        messages: list[bytes],
        period: int,
        seed: bytes,
        now: float,
    ) -> None:
        index = self._gateway_for(kind, prov, now)
        if index is None or index not in self.e.choice.gateway_src:
            return  # none of its gateways heard: nobody to ask
        gateway = self.e.c.gateways[index].name
        prepared = [blindrsa.prepare(m, self.rng.randbytes) for m in messages]
        blinds = [blindrsa.blind(key, m, self.rng.randbytes) for m in prepared]
        buy = PendingBuy(
            kind,
            prov.operator,
            key,
            gateway,
            prepared,
            [st.inv for _b, st in blinds],
            tuple(b for b, _st in blinds),
            period,
            seed,
        )
        request = self.rng.randrange(MAX_REQUEST)
        self.pending[request] = buy
        self.e.command(SaveWallet(self.wallet.dump()))  # before asking: never billed for nothing
        self._send_buy(request, buy, now)

    def _index(self, name: str) -> int | None:
        """A gateway's index in the coalition this member runs (versions may renumber)."""
        return next((g.index for g in self.e.c.gateways if g.name == name), None)

    def _send_buy(self, request: int, buy: PendingBuy, now: float) -> None:
        index = self._index(buy.gateway)
        if index is None:
            return  # no longer in the coalition
        buy.asked, buy.tries = now, buy.tries + 1
        frame = Buy(buy.kind, index, request, buy.period, buy.blinded)
        dst = self.e.choice.gateway_src.get(index, wire.BROADCAST)
        self.e.send(dst, signed(self.e.key, frame.encode(self.e.c.id, self.e.me.index)))

    def _rate(self, now: float) -> None:
        p = self.period(now)
        due = self.rate_at.get(p)
        cred = self.wallet.credentials.get(p)
        if due is None or cred is None or now < due or p in self.rated:
            return
        self.rated.add(p)
        used = [prov for prov in self.e.choice.market(now) if prov.quality.flows]
        scores = tuple(
            (prov.operator, round(100 * prov.own)) for prov in used[:MAX_RATED]
        )  # only what this member used
        chosen = self.e.choice.chosen
        unsigned = Rating(p, scores, chosen.operator if chosen else "", cred.token)
        signature = HostKey(cred.seed).sign(unsigned.signed())
        rating = Rating(p, scores, unsigned.choice, cred.token, signature)
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

    def pay_ahead(self, offer: Offer) -> int:
        return max(PAY_AHEAD, offer.mb_per_token * MB // 20)

    def moved(self, flow: MemberFlow, nbytes: int, now: float) -> None:
        """A packet of `flow` went out or came in: pay ahead of its allowance running out."""
        flow.moved += nbytes
        prov = self.e.choice.by_address.get(flow.anon)
        offer = prov.offer if prov is not None else None
        if prov is None or offer is None or not offer.token_key or not flow.answered:
            return
        if flow.moved < offer.free_mb * MB + flow.paid - self.pay_ahead(offer):
            return
        owed = flow.tag in self.owing
        if owed and now < self.quiet_until:
            return
        key, kid = _public(offer.token_key)
        token = self.wallet.take(kid) if key else None
        if token is None:
            if not owed:
                if len(self.owing) >= MAX_OWING:
                    self.owing.pop(next(iter(self.owing)))
                self.owing[flow.tag] = flow  # it pays when tokens come
                if len(self.owing) == 1:
                    self._changed(prov.operator, "no token to pay with: flows wait for one")
            return
        self.owing.pop(flow.tag, None)
        flow.paid += offer.mb_per_token * MB
        cells = self.e._seal(flow, spend_message(token), False, now)
        self.e._queue_cells(cells, now, first=True)
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
            "flows_waiting_for_a_token": len(self.owing),
            "period": p,
            "credential": p in self.wallet.credentials,
            "rated": p in self.rated,
            "ratings_heard": {q: len(v) for q, v in self.heard.items()},
        }
