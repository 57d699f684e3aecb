"""Which provider a member's new flows leave through (seed 001), scored by its own priorities.

A provider is an operator of gateways. What the member knows of each, all of it its own:

* its **offer** (common/offers.py): the price in force, and a change to come;
* **latency**: the time from a flow's first packet to its first answer, for flows through the
  provider's addresses (a moving average);
* **loss**: the share of flows that got no answer at all within `LOSS_AFTER` seconds, which is
  also the honesty check a member can make alone: its cells emerged but nothing came back;
* **availability**: the share of the last minutes in which one of the provider's gateways was
  heard (takeovers of its addresses by another operator's gateway are counted and shown);
* **ratings**: what it hears from other members (anonymous, one per member and period) and
  from rating agencies (member/ratings.py feeds them in), on a scale of 0 to 1;
* the **crowd**: how many members chose each provider in the last rating period (their
  anonymous ratings say), which is what an unusual choice costs in anonymity.

Each feature scores 0 to 1 (0.5 while unknown): price and latency relative to the best
provider's (the best scores 1), loss, availability and ratings as they are (shares already);
the score is their mean weighted by the member's `[providers]` priorities. New flows leave through
the best provider's addresses, except a share `explore` of them that try another (how the
member learns the quality of the providers it does not use). The choice moves only when
another provider beats it by `switch_margin`, so it does not flap. Without any offer heard,
there is no market: flows leave through every allowed address at random, as before, but for
the addresses of operators the member excludes.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lanon.common.coalition import Coalition
from lanon.common.offers import OFFER_TIMEOUT, Offer
from lanon.common.settings import between, opt

LOSS_AFTER = 5.0  # seconds a new flow may wait for its first answer before it counts as lost
AVAILABILITY_HALF_LIFE = 120.0  # seconds: how fast availability forgets
RTT_WEIGHT = 0.2  # of a new sample in the latency average
LOSS_WEIGHT = 0.1  # of a new flow in the loss average
HEARD_EVERY = 1.0  # seconds: one heartbeat per gateway is checked this often (member engine)
UNKNOWN = 0.5  # a feature's score while nothing is known of it


@dataclass(frozen=True)
class Priorities:
    """A member's `[providers]` table: how it weighs providers, and what it refuses."""

    price: float = opt(1.0, "weight of the price", between(0, 1000))
    latency: float = opt(
        1.0, "weight of the latency measured on this member's flows", between(0, 1000)
    )
    loss: float = opt(1.0, "weight of the share of flows never answered", between(0, 1000))
    availability: float = opt(
        1.0, "weight of the provider's gateways being there", between(0, 1000)
    )
    ratings: float = opt(1.0, "weight of other members' and agencies' ratings", between(0, 1000))
    gb_per_month: float = opt(
        10.0,
        "the traffic this member expects a month: what weighs per-GB against monthly prices",
        between(0, 1e6),
    )
    exclude: list[str] = opt([], "operators never to use")
    max_per_gb: float = opt(-1.0, "refuse providers dearer per GB (-1: no cap)", between(-1, 1e9))
    max_per_month: float = opt(
        -1.0, "refuse providers dearer per month (-1: no cap)", between(-1, 1e9)
    )
    min_crowd: int = opt(
        0,
        "refuse a provider fewer members than this chose in the last rating period (an "
        "unusual choice makes one's flows stand out); 0: no minimum",
        between(0, 4096),
    )
    explore: float = opt(
        0.1, "share of new flows sent through another provider, to measure it", between(0, 1)
    )
    switch_margin: float = opt(
        0.05, "how much better (in score) another provider must be to move to it", between(0, 1)
    )
    keep_tokens: int = opt(
        0,
        "payment tokens to keep of the provider in use: below half, buy more (openly: the "
        "provider bills this member); 0: buy none (flows stop at its free allowance)",
        between(0, 1000),
    )


@dataclass
class Quality:
    """What this member measured of one provider."""

    rtt: float | None = None  # seconds, moving average
    rtt_samples: int = 0
    loss: float | None = None  # share of flows never answered, moving average
    flows: int = 0
    lost: int = 0
    availability: float | None = None
    takeovers: int = 0  # times its addresses were seen held by another operator's gateway
    last_tick: float = 0.0

    def answered(self, rtt: float) -> None:
        self.rtt = rtt if self.rtt is None else self.rtt + RTT_WEIGHT * (rtt - self.rtt)
        self.rtt_samples += 1
        self._flow(False)

    def unanswered(self) -> None:
        self.lost += 1
        self._flow(True)

    def _flow(self, lost: bool) -> None:
        self.flows += 1
        x = 1.0 if lost else 0.0
        self.loss = x if self.loss is None else self.loss + LOSS_WEIGHT * (x - self.loss)

    def tick(self, up: bool, now: float) -> None:
        """One availability sample: whether the provider was there at `now`."""
        x = 1.0 if up else 0.0
        if self.availability is None:
            self.availability = x
        else:
            w = 1 - math.pow(0.5, (now - self.last_tick) / AVAILABILITY_HALF_LIFE)
            self.availability += w * (x - self.availability)
        self.last_tick = now


@dataclass
class Provider:
    operator: str
    gateways: frozenset[int]  # indices of its gateways
    addresses: tuple[bytes, ...]  # their shares (within what the member allows)
    offer: Offer | None = None
    heard: float = float("-inf")  # its offer, last
    quality: Quality = field(default_factory=Quality)
    rating: float | None = None  # 0..1, from ratings heard (member/ratings.py)
    ratings: int = 0
    crowd: int | None = None  # members that chose it in the last rating period
    score: float = 0.0
    own: float = 0.0  # its quality alone, as this member measured it (what it rates it)
    refused: str = ""  # why it may not be chosen, if it may not


class ProviderChoice:
    def __init__(
        self,
        coalition: Coalition,
        allowed: tuple[bytes, ...],
        priorities: Priorities,
        rng: random.Random,
    ) -> None:
        self.c = coalition
        self.p = priorities
        self.rng = rng
        self.allowed = allowed
        allowed_set = set(allowed)
        self.providers: dict[str, Provider] = {}
        self.by_address: dict[bytes, Provider] = {}
        for g in coalition.gateways:
            prov = self.providers.get(g.operator)
            mine = tuple(a.packed for a in g.addresses if a.packed in allowed_set)
            if prov is None:
                prov = self.providers[g.operator] = Provider(g.operator, frozenset(), ())
            prov.gateways |= {g.index}
            prov.addresses += mine
            for a in mine:
                self.by_address[a] = prov
        self.gateway_heard: dict[int, float] = {}
        self.gateway_src: dict[int, bytes] = {}  # where each gateway's signed frames come from
        self.heartbeat_seq: dict[int, int] = {}  # the newest heartbeat checked, per gateway
        self.holders: dict[int, int] = {}  # address index -> the gateway last heard holding it
        self.offer_seen: dict[int, tuple[int, float]] = {}  # gateway -> (issued_ms, when)
        self.chosen: Provider | None = None
        self.others: list[Provider] = []  # the other eligible providers, at the last choice
        self.reason = "no offer heard: every allowed address, at random"
        self._new: deque[tuple[float, Any]] = deque()  # (due, flow) waiting for a first answer

    def carry(self, old: ProviderChoice) -> None:
        """A version came: what we learnt of the operators that stay goes on (gateways'
        indices may have moved: availability samples start again)."""
        for name, prov in self.providers.items():
            was = old.providers.get(name)
            if was is not None:
                prov.offer, prov.heard, prov.quality = was.offer, was.heard, was.quality
                prov.rating, prov.ratings, prov.crowd = was.rating, was.ratings, was.crowd
        self._new = old._new
        self.heartbeat_seq = dict(old.heartbeat_seq)  # (a replay stays a replay)
        self.offer_seen = dict(old.offer_seen)
        if old.chosen is not None:
            self.chosen = self.providers.get(old.chosen.operator)
            self.reason = old.reason

    # --- what the member hears and measures ------------------------------------------------

    def fresh_offer(self, gateway: int, offer: Offer, wall_ms: int, now: float) -> bool:
        """Whether an OFFER (not checked yet) is worth checking: newer than the last taken from
        that gateway (or that one is old), and not from the future."""
        tolerance = int(self.c.rounds.clock_tolerance * 1000)
        if offer.issued_ms > wall_ms + tolerance:
            return False
        last = self.offer_seen.get(gateway)
        return last is None or offer.issued_ms > last[0] or now - last[1] > OFFER_TIMEOUT

    def offer_heard(self, gateway: int, offer: Offer, now: float) -> bool:
        """A verified, fresh OFFER from one of the operator's gateways: the operator's offer
        now (its gateways' clocks may differ: each is compared with its own)."""
        self.offer_seen[gateway] = (offer.issued_ms, now)
        prov = self.providers[self.c.gateways[gateway].operator]
        changed = (
            prov.offer is None
            or prov.offer.price != offer.price
            or (prov.offer.token_key != offer.token_key)
        )
        prov.offer, prov.heard = offer, now
        return changed

    def heard_gateway(self, gateway: int, src: bytes, now: float) -> None:
        """A frame of `gateway`'s with a good signature, from `src`."""
        self.gateway_heard[gateway] = now
        self.gateway_src[gateway] = src

    def held_by(self, holder: int, addresses: frozenset[int]) -> None:
        """A heartbeat says gateway `holder` holds these (indices of the coalition's sorted
        anonymous addresses): another operator's addresses among them are a takeover."""
        operator = self.c.gateways[holder].operator
        for i in addresses:
            prov = self.by_address.get(self.c.anonymous[i].packed)
            if prov is not None and prov.operator != operator and self.holders.get(i) != holder:
                prov.quality.takeovers += 1  # (once a takeover, not once a heartbeat)
            self.holders[i] = holder

    def flow_opened(self, flow: Any, now: float) -> None:
        """A new flow (anything with `anon` and `answered`): judged at its first answer, or
        as lost LOSS_AFTER seconds on."""
        self._new.append((now + LOSS_AFTER, flow))

    def first_answer(self, anon: bytes, rtt: float) -> None:
        prov = self.by_address.get(anon)
        if prov is not None:
            prov.quality.answered(rtt)

    def sweep(self, now: float) -> None:
        """Flows that never got an answer count as lost; availability gets its sample."""
        while self._new and self._new[0][0] <= now:
            _due, flow = self._new.popleft()
            if not flow.answered:
                prov = self.by_address.get(flow.anon)
                if prov is not None:
                    prov.quality.unanswered()
        # (heartbeats are checked once a second per gateway: a second more of silence)
        timeout = self.c.rounds.gateway_timeout + HEARD_EVERY
        for prov in self.providers.values():
            up = any(
                now - self.gateway_heard.get(g, float("-inf")) <= timeout for g in prov.gateways
            )
            prov.quality.tick(up, now)

    # --- the choice --------------------------------------------------------------------------

    def market(self, now: float) -> list[Provider]:
        """Providers with an offer in force (heard lately)."""
        return [
            p
            for p in self.providers.values()
            if p.offer is not None and now - p.heard <= OFFER_TIMEOUT and p.addresses
        ]

    def choose(self, now: float, wall_ms: int) -> Provider | None:
        """Score every provider; move to the best if it beats the current choice by the margin."""
        market = self.market(now)
        self.others = []
        for p in self.providers.values():
            p.score, p.refused = 0.0, ""
        if not market:
            self.chosen = None
            self.reason = "no offer heard: every allowed address, at random"
            return None
        for p in market:
            p.refused = self._refusal(p, wall_ms)
        eligible = [p for p in market if not p.refused]
        self._score(market, wall_ms)
        if not eligible:
            self.chosen = None
            self.reason = "every provider refused by this member's [providers] limits"
            return None
        best = max(eligible, key=lambda p: (p.score, p.operator))
        current = self.chosen if self.chosen in eligible else None
        if current is None or best.score > current.score + self.p.switch_margin:
            if best is not current:
                self.reason = f"best score ({best.score:.2f})"
            self.chosen = best
        self.others = [p for p in eligible if p is not self.chosen]  # what new flows explore
        return self.chosen

    def _refusal(self, p: Provider, wall_ms: int) -> str:
        assert p.offer is not None
        price = p.offer.price_at(wall_ms)
        if p.operator in self.p.exclude:
            return "excluded"
        if 0 <= self.p.max_per_gb < price.per_gb:
            return f"{price.per_gb:g} per GB is over max_per_gb"
        if 0 <= self.p.max_per_month < price.per_month:
            return f"{price.per_month:g} per month is over max_per_month"
        if self.p.min_crowd and p.crowd is not None:
            others = p.crowd - (1 if p is self.chosen else 0)
            if others + 1 < self.p.min_crowd:
                return f"only {others} other members chose it (min_crowd {self.p.min_crowd})"
        return ""

    def _score(self, market: list[Provider], wall_ms: int) -> None:
        def relative(values: dict[str, float | None], lower_is_better: bool) -> dict[str, float]:
            known = [v for v in values.values() if v is not None]
            # (a tenth of the best non-zero value keeps a free provider from scoring every
            # other one 0, whatever the unit; a dear outlier changes nothing)
            positive = [v for v in known if v > 0]
            eps = min(positive) / 10 if positive else 1.0
            out: dict[str, float] = {}
            for name, v in values.items():
                if v is None:
                    out[name] = UNKNOWN
                elif lower_is_better:
                    best = min(known)
                    out[name] = 1.0 if v <= best else (best + eps) / (v + eps)
                else:
                    out[name] = v
            return out

        gb = self.p.gb_per_month
        cost = {p.operator: p.offer.price_at(wall_ms).cost(gb) if p.offer else None for p in market}
        features = [
            (self.p.price, relative(cost, True)),
            (self.p.latency, relative({p.operator: p.quality.rtt for p in market}, True)),
            (
                self.p.loss,
                relative(
                    {
                        p.operator: None if p.quality.loss is None else 1 - p.quality.loss
                        for p in market
                    },
                    False,
                ),
            ),
            (
                self.p.availability,
                relative({p.operator: p.quality.availability for p in market}, False),
            ),
            (self.p.ratings, relative({p.operator: p.rating for p in market}, False)),
        ]
        total = sum(w for w, _ in features) or 1.0
        for p in market:
            p.score = sum(w * f[p.operator] for w, f in features) / total
            p.own = sum(f[p.operator] for _w, f in features[1:4]) / 3

    def alive(self, prov: Provider, now: float) -> list[int]:
        """Its gateways heard lately (a signed frame within a gateway timeout and a second)."""
        timeout = self.c.rounds.gateway_timeout + HEARD_EVERY
        return [
            g
            for g in sorted(prov.gateways)
            if now - self.gateway_heard.get(g, float("-inf")) <= timeout
        ]

    def address(self) -> bytes:
        """An anonymous address for a new flow (by the last `choose`)."""
        chosen = self.chosen
        if chosen is None:
            excluded = {
                a for name in self.p.exclude if (p := self.providers.get(name)) for a in p.addresses
            }
            rest = [a for a in self.allowed if a not in excluded] or list(self.allowed)
            return rest[self.rng.randrange(len(rest))]
        others = self.others
        if others and self.rng.random() < self.p.explore:
            chosen = others[self.rng.randrange(len(others))]
        return chosen.addresses[self.rng.randrange(len(chosen.addresses))]

    # --- seeing it ---------------------------------------------------------------------------

    def status(self, now: float, wall_ms: int) -> dict[str, Any]:
        rows = []
        for p in sorted(self.providers.values(), key=lambda p: p.operator):
            q = p.quality
            price = p.offer.price_at(wall_ms) if p.offer else None
            nxt = (
                p.offer if p.offer and p.offer.next_price and p.offer.next_at_ms > wall_ms else None
            )
            rows.append(
                {
                    "operator": p.operator,
                    "offer": None
                    if price is None
                    else {
                        "per_gb": price.per_gb,
                        "per_month": price.per_month,
                        "next": None
                        if nxt is None or nxt.next_price is None
                        else {
                            "at_ms": nxt.next_at_ms,
                            "per_gb": nxt.next_price.per_gb,
                            "per_month": nxt.next_price.per_month,
                        },
                        "heard_s_ago": round(now - p.heard, 1),
                        "takes_tokens": bool(p.offer and p.offer.token_key),
                    },
                    "rtt_ms": None if q.rtt is None else round(q.rtt * 1000, 2),
                    "rtt_samples": q.rtt_samples,
                    "loss": None if q.loss is None else round(q.loss, 3),
                    "flows": q.flows,
                    "unanswered": q.lost,
                    "availability": None if q.availability is None else round(q.availability, 3),
                    "takeovers": q.takeovers,
                    "rating": None if p.rating is None else round(p.rating, 3),
                    "ratings": p.ratings,
                    "crowd": p.crowd,
                    "score": round(p.score, 3),
                    "refused": p.refused,
                    "chosen": p is self.chosen,
                }
            )
        return {
            "unit": self.c.providers.unit,
            "choice": None if self.chosen is None else self.chosen.operator,
            "reason": self.reason,
            "providers": rows,
        }
