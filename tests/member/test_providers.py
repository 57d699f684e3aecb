"""Providers compete (seed 001), in memory: signed offers, the quality each member measures, and
the choice each makes by its own priorities (member/choice.py, common/offers.py)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from lanon.common import coalition as coalition_mod
from lanon.common import wire
from lanon.common.crypto import HostKey
from lanon.common.errors import RemoteProtocolError
from lanon.common.events import OutputSeen
from lanon.common.offers import Offer, Price, pull_offer
from lanon.lab.packets import echo_internet, udp
from lanon.lab.sim import WALL, Lan, coalition_dict
from lanon.member.choice import Priorities

CHEAP = Offer(0, Price(0.1, 1.0))
DEAR = Offer(0, Price(1.0, 10.0))
PRICE_FIRST = Priorities(price=1.0, latency=0.1, loss=0.1, availability=0.1, ratings=0.1)
QUALITY_FIRST = Priorities(price=0.05, latency=1.0, loss=1.0, availability=1.0, ratings=0.1)


def market(
    priorities: dict[str, Priorities] | None = None, members: int = 3, **sections: object
) -> Lan:
    """Two operators, 'cheap' (gateway1) and 'fast' (gateway2), each with its offer; rounds
    run, and every member has heard both offers."""
    rng = random.Random(5)
    keys = {f"member{i + 1}": HostKey(rng.randbytes(32)) for i in range(members)}
    gkeys = {f"gateway{j + 1}": HostKey(rng.randbytes(32)) for j in range(2)}
    raw = coalition_dict(
        list(keys.items()),
        [(n, k, [f"198.18.0.{192 + 4 * j}/30"]) for j, (n, k) in enumerate(gkeys.items())],
        rounds={"linger": 0.0, "idle_interval": 0.05},
        **sections,
    )
    raw["gateways"][0]["operator"] = "cheap"
    raw["gateways"][1]["operator"] = "fast"
    c = coalition_mod.parse(raw, Path("test-coalition.toml"))
    lan = Lan(c, {**keys, **gkeys}, internet=echo_internet, priorities=priorities)
    lan.gateway("gateway1").offer = CHEAP
    lan.gateway("gateway2").offer = DEAR
    lan.run_until(lambda: len(lan.all_events(OutputSeen)) >= 3 * members)
    lan.run(6.0)  # an OFFER from each gateway
    return lan


def choice(lan: Lan, member: str) -> str | None:
    return lan.member(member).choice.status(lan.now, 0)["choice"]


def provider(lan: Lan, member: str, operator: str) -> dict[str, object]:
    rows = lan.member(member).choice.status(lan.now, 0)["providers"]
    return next(r for r in rows if r["operator"] == operator)


def browse(lan: Lan, seconds: float, members: tuple[str, ...], every: float = 0.25) -> None:
    """Each member opens a new flow (a UDP exchange) every `every` seconds."""
    port = 20000 + int(lan.now * 10) % 20000
    end = lan.now + seconds
    while lan.now < end:
        for i, m in enumerate(members):
            src = f"198.18.0.{11 + int(m.removeprefix('member')) - 1}"
            lan.submit(m, udp(src=src, sport=port + i))
        port += len(members)
        lan.run(every)


def test_an_offer_round_trips_and_malformed_ones_are_refused() -> None:
    offer = Offer(1234, Price(0.5, 3.0), 99_000, Price(0.4, 2.0), 10, 100, b"k" * 40)
    frame = offer.encode(7, 1)
    assert pull_offer(frame) == offer
    assert offer.price_at(98_999) == Price(0.5, 3.0) and offer.price_at(99_000) == Price(0.4, 2.0)
    nan = Offer(1, Price(math.nan, 1.0)).encode(7, 1)
    for bad in (frame[:20], frame[:-1], frame + b"x", nan, Offer(1, Price(-1, 0)).encode(7, 1)):
        with pytest.raises(RemoteProtocolError):
            pull_offer(bad)
    assert frame[1] == wire.MsgType.OFFER


def test_without_offers_there_is_no_market_and_flows_use_every_address() -> None:
    lan = market()
    for g in ("gateway1", "gateway2"):
        lan.gateway(g).offer = None
    for m in ("member1", "member2", "member3"):
        eng = lan.member(m)
        eng.choice.providers["cheap"].offer = eng.choice.providers["fast"].offer = None
        eng.choice.choose(lan.now, 0)
        assert choice(lan, m) is None
    used = {lan.member("member1")._choose_address() for _ in range(200)}
    assert used == set(lan.member("member1").anonymous)


def test_members_choose_by_their_own_priorities_and_a_slow_provider_loses_those_who_care() -> None:
    lan = market({"member1": PRICE_FIRST, "member2": QUALITY_FIRST})
    browse(lan, 12.0, ("member1", "member2", "member3"))
    assert choice(lan, "member1") == "cheap"
    assert choice(lan, "member2") == "cheap"  # alike in quality: the cheaper one
    anons = {a.packed for g in lan.c.gateways if g.operator == "cheap" for a in g.addresses}
    flows = list(lan.member("member1").flows._by_key.values())
    assert sum(f.anon in anons for f in flows) > 0.7 * len(flows)  # the rest: exploring

    lan.slow["gateway1"] = 0.15  # the cheap provider's uplink gets slow
    browse(lan, 40.0, ("member1", "member2", "member3"))
    assert choice(lan, "member2") == "fast"  # it weighs quality: it moved
    assert choice(lan, "member1") == "cheap"  # it weighs price: it stays
    slow, fast = provider(lan, "member2", "cheap"), provider(lan, "member2", "fast")
    assert slow["rtt_ms"] > 100 > fast["rtt_ms"]  # type: ignore[operator]
    assert fast["chosen"] and not slow["chosen"]


def test_a_provider_that_never_answers_counts_as_lossy() -> None:
    lan = market({"member1": QUALITY_FIRST})
    lan.slow["gateway1"] = 30.0  # its replies never come in time
    browse(lan, 30.0, ("member1",))
    lossy = provider(lan, "member1", "cheap")
    assert lossy["unanswered"] > 0 and lossy["loss"] > 0.3  # type: ignore[operator]
    assert choice(lan, "member1") == "fast"


def test_limits_exclude_and_price_caps_refuse_providers() -> None:
    lan = market(
        {
            "member1": Priorities(exclude=["cheap"]),
            "member2": Priorities(max_per_gb=0.5),
            "member3": Priorities(max_per_month=0.5),
        }
    )
    lan.run(11.0)
    assert choice(lan, "member1") == "fast"
    assert provider(lan, "member1", "cheap")["refused"] == "excluded"
    assert choice(lan, "member2") == "cheap"
    assert "max_per_gb" in str(provider(lan, "member2", "fast")["refused"])
    assert choice(lan, "member3") is None  # both too dear a month
    eng = lan.member("member3")
    used = {eng._choose_address() for _ in range(100)}
    assert used == set(eng.anonymous)  # refused them all: no market for it


def test_an_announced_price_change_moves_price_minded_members_when_it_takes_effect() -> None:
    lan = market({"member1": PRICE_FIRST})
    assert choice(lan, "member1") == "cheap"
    at_ms = int((WALL - 100.0 + lan.now + 20.0) * 1000)  # (the sim's wall clock)
    lan.gateway("gateway2").offer = Offer(0, Price(1.0, 10.0), at_ms, Price(0.01, 0.1))
    lan.run(7.0)
    assert choice(lan, "member1") == "cheap"  # announced, not in force
    row = lan.member("member1").choice.status(lan.now, 0)["providers"][1]
    assert row["offer"]["next"]["per_gb"] == 0.01
    lan.run(25.0)
    assert choice(lan, "member1") == "fast"


def test_availability_falls_while_a_providers_gateway_is_gone() -> None:
    lan = market({"member1": QUALITY_FIRST})
    lan.run(5.0)
    assert provider(lan, "member1", "fast")["availability"] == 1.0
    lan.kill("gateway2")
    lan.run(60.0)
    gone = provider(lan, "member1", "fast")
    assert gone["availability"] < 0.9 and gone["takeovers"] > 0  # type: ignore[operator]
    assert choice(lan, "member1") == "cheap"


def test_a_forged_offer_is_refused_and_a_replayed_one_changes_nothing() -> None:
    lan = market()
    m = lan.member("member1")
    before = m.choice.providers["fast"].offer
    forged = Offer(10**12, Price(0.0, 0.0)).encode(lan.c.id, 1) + bytes(64)
    m.receive_frame(lan.host("gateway2").mac, forged, lan.now + 2)
    assert m.choice.providers["fast"].offer == before
    old = next(
        f for src, _d, f in lan.frames(wire.MsgType.OFFER) if src == lan.host("gateway2").mac
    )
    m.receive_frame(lan.host("gateway2").mac, old, lan.now + 4)
    assert m.choice.providers["fast"].offer == before


def test_an_offer_from_the_future_is_refused_and_each_gateway_has_its_own_clock() -> None:
    lan = market()
    choice = lan.member("member1").choice
    wall = int((WALL - 100.0 + lan.now) * 1000)
    hour = Offer(wall + 3_600_000, Price(0.0, 0.0))
    assert not choice.fresh_offer(1, hour, wall, lan.now)  # a wrong clock, or a replay later
    behind = Offer(wall - 8_000, Price(1.0, 10.0))  # another gateway, 8 s behind: still taken
    choice.offer_seen.pop(0, None)
    assert choice.fresh_offer(0, behind, wall, lan.now)
    assert not choice.fresh_offer(1, Offer(choice.offer_seen[1][0], DEAR.price), wall, lan.now)


def test_gateways_of_one_operator_that_offer_otherwise_are_told() -> None:
    from lanon.common.events import OfferMismatch

    rng = random.Random(5)
    keys = {f"member{i + 1}": HostKey(rng.randbytes(32)) for i in range(3)}
    gkeys = {f"gateway{j + 1}": HostKey(rng.randbytes(32)) for j in range(2)}
    raw = coalition_dict(
        list(keys.items()),
        [(n, k, [f"198.18.0.{192 + 4 * j}/30"]) for j, (n, k) in enumerate(gkeys.items())],
    )
    for g in raw["gateways"]:
        g["operator"] = "one"
    c = coalition_mod.parse(raw, Path("test-coalition.toml"))
    lan = Lan(c, {**keys, **gkeys}, internet=echo_internet)
    lan.gateway("gateway1").offer = CHEAP
    other = Offer(0, CHEAP.price, 0, None, CHEAP.free_mb, CHEAP.mb_per_token, b"another key")
    lan.gateway("gateway2").offer = other
    lan.run(12.0)
    said = {(e.gateway, e.what) for e in lan.events("gateway1", OfferMismatch)}
    assert said == {("gateway2", "token key")}
    assert len(lan.events("gateway1", OfferMismatch)) == 1  # once a minute, not per offer
