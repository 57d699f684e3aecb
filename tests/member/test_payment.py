"""Anonymous payment and ratings, in memory (member/market.py, gateway/cashier.py): a member buys
tokens openly and pays from inside its flows, a flow without payment stops at its allowance, and
members publish ratings with one credential each a period, which everybody checks."""

from __future__ import annotations

import json

import pytest

from lanon.common import blindrsa, wire
from lanon.common.events import InboundDelivered, PacketDropped, TokenRedeemed, TokensIssued
from lanon.common.tokens import Rating, RatingKind, Relay, pull_buy, pull_relay
from lanon.gateway import cashier as cashier_mod
from lanon.gateway import egress as egress_mod
from lanon.gateway.cashier import Cashier, CredentialIssuer, Meter
from lanon.gateway.ledger import Ledger
from lanon.lab.packets import udp
from lanon.lab.sim import Lan
from lanon.member import market as market_mod
from lanon.member.choice import Priorities
from tests.member.test_providers import CHEAP, PRICE_FIRST, market

UNIT = 1000  # bytes the tests' "MB" stands for: allowances run out in a few packets


@pytest.fixture(autouse=True)
def small_units(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cashier_mod, "MB", UNIT)
    monkeypatch.setattr(market_mod, "MB", UNIT)
    monkeypatch.setattr(market_mod, "PAY_AHEAD", 300)
    monkeypatch.setattr(market_mod, "RESTOCK_MEAN", 2.0)  # looks at its stock often
    monkeypatch.setattr(market_mod, "RESTOCK_MIN", 0.0)
    monkeypatch.setattr(egress_mod, "METER_AFTER", 0.0)  # meters from the first output


@pytest.fixture(scope="module")
def token_key() -> blindrsa.PrivateKey:
    return blindrsa.generate(1024)


def selling(lan: Lan, key: blindrsa.PrivateKey, issuer: bool = False) -> Cashier:
    """gateway1 ('cheap') takes tokens: 1 unit free a flow, 10 a token; it may issue credentials."""
    cheap = frozenset(
        a.packed for g in lan.c.gateways if g.operator == "cheap" for a in g.addresses
    )
    till = Cashier(key, Ledger(), Meter(cheap, 1, 10), 100)
    offer = CHEAP.__class__(0, CHEAP.price, 0, None, 1, 10)
    creds = CredentialIssuer(Ledger(), lan.c.providers.rating_period) if issuer else None
    lan.gateway("gateway1").provide(offer, till, creds)
    return till


def exchange(lan: Lan, member: str, n: int, size: int = 400) -> int:
    """`n` UDP exchanges of one flow of `member`'s with the echo host; answers delivered."""
    src = f"198.18.0.{10 + int(member.removeprefix('member'))}"
    before = len(lan.events(member, InboundDelivered))
    for _ in range(n):
        lan.submit(member, udp(src=src, sport=33000, payload=b"p" * size))
        lan.run(0.3)
    return len(lan.events(member, InboundDelivered)) - before


def test_a_member_buys_tokens_pays_from_inside_its_flow_and_an_unpaid_flow_stops(
    token_key: blindrsa.PrivateKey,
) -> None:
    keep = Priorities(**{**PRICE_FIRST.__dict__, "keep_tokens": 4, "explore": 0.0})
    none = Priorities(**{**PRICE_FIRST.__dict__, "explore": 0.0})
    lan = market({"member1": keep, "member2": none})
    till = selling(lan, token_key)
    lan.run(8.0)  # the offer with the token key; member1 buys
    sold = lan.events("gateway1", TokensIssued)
    assert [(e.member, e.count) for e in sold] == [("member1", 4)]  # the provider knows who
    assert lan.member("member1").wallet.status()["cheap"]["held"] == 4

    assert exchange(lan, "member1", 8) == 8  # 8 x 2 x 428 bytes: over the free unit, paid
    redeemed = [e.outcome for e in lan.events("gateway1", TokenRedeemed)]
    assert redeemed.count("accepted") >= 1 and "double_spent" not in redeemed
    wallet = json.loads(lan.host("member1").wallet)  # on disk: nothing bought is lost
    assert sum(p["spent"] for p in wallet["purses"].values()) == redeemed.count("accepted")

    got = exchange(lan, "member2", 8)  # no token: its flow stops at the free unit
    assert got < 3
    unpaid = [e for e in lan.events("gateway1", PacketDropped) if e.reason.value == "unpaid"]
    assert unpaid
    assert till.ledger.totals() == (4, 0, redeemed.count("accepted"))


def test_no_gateway_can_link_a_spent_token_to_its_buyer(token_key: blindrsa.PrivateKey) -> None:
    """What the provider saw when it sold (blinded messages, from member1) shares nothing with
    what it takes back (tokens, from a flow): the blind signature hides the link."""
    keep = Priorities(**{**PRICE_FIRST.__dict__, "keep_tokens": 2, "explore": 0.0})
    lan = market({"member1": keep})
    selling(lan, token_key)
    lan.run(8.0)
    exchange(lan, "member1", 6)
    blinded = [
        b
        for _src, _dst, f in lan.frames(wire.MsgType.BUY)
        for b in pull_buy(wire.split_auth(f, wire.SIG_LEN)[0]).blinded
    ]
    tokens = [t for p in lan.member("member1").wallet.purses.values() for t in p.tokens]
    assert blinded and tokens
    for t in tokens:
        assert all(t.prepared not in b and t.signature not in b for b in blinded)
    # spent ones travel only inside sealed cells: no frame carries a token in the clear
    spent_ids = {e for e in lan.events("gateway1", TokenRedeemed)}
    assert spent_ids
    for _src, _dst, f in lan.wire_log:
        assert all(t.prepared not in f for t in tokens)


def test_members_rate_providers_once_a_period_and_hear_each_other(
    token_key: blindrsa.PrivateKey,
) -> None:
    lan = market(
        {"member1": PRICE_FIRST, "member2": PRICE_FIRST, "member3": PRICE_FIRST},
        providers={"issuer": "cheap", "rating_period": 10.0},
    )
    selling(lan, token_key, issuer=True)
    for _ in range(10):  # flows through both providers: something to rate
        for m in ("member1", "member2", "member3"):
            exchange(lan, m, 1, size=50)
    lan.run(35.0)
    relays = [
        pull_relay(wire.split_auth(f, wire.SIG_LEN)[0])
        for _s, _d, f in lan.frames(wire.MsgType.RATING)
    ]
    assert relays and all(r.kind is RatingKind.ANONYMOUS for r in relays)
    status = lan.member("member1").market.status(lan.now)
    assert max(status["ratings_heard"].values()) >= 2
    cheap = lan.member("member1").choice.providers["cheap"]
    assert cheap.crowd is not None and cheap.crowd >= 2  # the others chose it too
    assert cheap.rating is not None and cheap.ratings >= 1
    creds = [e for e in lan.events("gateway1", TokensIssued) if e.kind == "credential"]
    assert len({e.member for e in creds}) == 3  # openly, one each

    # a member that rates twice with one credential counts once
    m2 = lan.member("member2")
    before = {q: len(v) for q, v in m2.market.heard.items()}
    r = next(r for r in relays if r.kind is RatingKind.ANONYMOUS)
    from lanon.common.tokens import pull_rating

    twice = pull_rating(r.rating)
    stuffed = Rating(twice.period, (("fast", 0),), "fast", twice.credential, bytes(64))
    gw = lan.gateway("gateway1")
    frame = gw.key.sign(Relay(RatingKind.ANONYMOUS, stuffed.encode()).encode(lan.c.id, 0))
    body = Relay(RatingKind.ANONYMOUS, stuffed.encode()).encode(lan.c.id, 0)
    m2.receive_frame(lan.host("gateway1").mac, body + frame, lan.now)
    assert {q: len(v) for q, v in m2.market.heard.items()} == before
    # ... and a copy of a credential with other scores, heard first, does not count at all
    m3 = lan.member("member3")
    cred_id = twice.credential.id if twice.credential else b""
    m3.market.heard.get(twice.period, {}).pop(cred_id, None)
    m3.receive_frame(lan.host("gateway1").mac, body + frame, lan.now)
    assert cred_id not in m3.market.heard.get(twice.period, {})


def test_a_flow_that_found_no_token_pays_when_tokens_come(token_key: blindrsa.PrivateKey) -> None:
    keep = Priorities(**{**PRICE_FIRST.__dict__, "keep_tokens": 4, "explore": 0.0})
    lan = market({"member1": keep})
    selling(lan, token_key)
    m = lan.member("member1")
    m.market.next_look = lan.now + 1000  # it has not bought yet
    lan.run(6.0)
    exchange(lan, "member1", 3)  # over its allowance: nothing to pay with
    assert m.market.owing and m.wallet.status() == {}
    m.market.next_look = lan.now  # it buys now, at a moment of its own
    lan.run(3.0)
    assert m.wallet.status()["cheap"]["held"] == 4
    # not at once: the provider knows which flows it stopped, and whom it just sold to
    assert m.market.owing and not lan.events("gateway1", TokenRedeemed)
    lan.run(max(0.0, m.market.quiet_until - lan.now))
    exchange(lan, "member1", 2)  # its next packets: it pays, and the flow goes on
    assert not m.market.owing
    assert [e.outcome for e in lan.events("gateway1", TokenRedeemed)] == ["accepted"]
    assert exchange(lan, "member1", 4) == 4


def test_a_stopped_flow_with_no_packet_left_pays_all_the_same(
    token_key: blindrsa.PrivateKey,
) -> None:
    """A download its provider stopped sends nothing more (its receiver has nothing to
    acknowledge): once tokens came, and after the same random wait, the flow pays anyway."""
    keep = Priorities(**{**PRICE_FIRST.__dict__, "keep_tokens": 4, "explore": 0.0})
    lan = market({"member1": keep})
    selling(lan, token_key)
    m = lan.member("member1")
    m.market.next_look = lan.now + 1000
    lan.run(6.0)
    exchange(lan, "member1", 3)
    assert m.market.owing
    m.market.next_look = lan.now
    lan.run(3.0)  # tokens bought; no packet of the flow from here on
    lan.run(max(0.0, m.market.quiet_until - lan.now) + 2.0)
    assert not m.market.owing
    assert [e.outcome for e in lan.events("gateway1", TokenRedeemed)] == ["accepted"]


def test_a_replayed_buy_gets_the_same_answer_and_sells_nothing_more(
    token_key: blindrsa.PrivateKey,
) -> None:
    keep = Priorities(**{**PRICE_FIRST.__dict__, "keep_tokens": 4, "explore": 0.0})
    lan = market({"member1": keep})
    till = selling(lan, token_key)
    lan.run(8.0)
    (_src, _dst, buy), *_ = lan.frames(wire.MsgType.BUY)
    answers = [f for _s, _d, f in lan.frames(wire.MsgType.ISSUE)]
    gw = lan.gateway("gateway1")
    foreign = bytes.fromhex("02aa00000099")
    for _ in range(20):  # from another host's port of the switch
        gw.receive_frame(foreign, buy, lan.now)
    replies = [c for c in gw.pop_commands() if getattr(c, "frame", b"")[1:2] == b"\x16"]
    assert replies and all(
        c.frame[: -wire.SIG_LEN] == answers[0][: -wire.SIG_LEN]  # type: ignore[attr-defined]
        for c in replies
    )
    assert till.ledger.totals()[0] == 4


def test_excluded_operators_stay_excluded_without_a_market() -> None:
    lan = market({"member1": Priorities(exclude=["cheap"])})
    m = lan.member("member1")
    for p in m.choice.providers.values():
        p.offer = None
    m.choice.choose(lan.now, 0)
    cheap = set(m.choice.providers["cheap"].addresses)
    assert m.choice.chosen is None
    assert not {m._choose_address() for _ in range(200)} & cheap


def test_an_agencys_signed_rating_counts_and_an_unknown_agencys_does_not() -> None:
    from lanon.common.crypto import HostKey, encode_key
    from lanon.common.tokens import agency_signed, agency_statement

    agency, stranger = HostKey(bytes([7]) * 32), HostKey(bytes([8]) * 32)
    lan = market(providers={"agencies": [encode_key(agency.public)]})
    period = lan.member("member1").market.period(lan.now)

    def statement(key: HostKey, score: int) -> bytes:
        rating = Rating(period, (("fast", score),))
        return agency_statement(
            rating, key.public, key.sign(agency_signed(rating.body(), key.public))
        )

    lan.gateway("gateway1").relay_agency(statement(stranger, 0))
    lan.run(0.5)
    assert lan.member("member1").choice.providers["fast"].rating is None
    lan.gateway("gateway1").relay_agency(statement(agency, 90))
    lan.run(0.5)
    for m in ("member1", "member2", "member3"):
        fast = lan.member(m).choice.providers["fast"]
        assert fast.rating == 0.9 and fast.ratings == 1


@pytest.mark.parametrize(
    "text",
    [
        '{"format": 1, "purses": {"k": {"operator": "x", "tokens": [], "spent": 1e400, "bought": 0}}}',
        "[" * 100_000 + "]" * 100_000,
        '{"format": 1, "purses": {}, "pending": {"5": {"kind": 1, "operator": "x", "key": "00",'
        ' "gateway": "g", "prepared": [], "inverses": [], "blinded": [], "period": 0, "seed": ""}}}',
        '{"format": 1, "purses": {}, "credentials": {"-3": {"token": ["00", "00"], "seed": "00"}}}',
        '{"format": 2, "purses": {}}',
        "not json",
    ],
)
def test_a_damaged_wallet_file_is_refused_with_a_reason(text: str) -> None:
    from lanon.member.wallet import Wallet

    with pytest.raises(ValueError, match="not a lanon wallet"):
        Wallet(text)


def test_a_wallet_keeps_tokens_credentials_and_unanswered_purchases(
    token_key: blindrsa.PrivateKey,
) -> None:
    keep = Priorities(**{**PRICE_FIRST.__dict__, "keep_tokens": 4, "explore": 0.0})
    lan = market({"member1": keep})
    selling(lan, token_key)
    lan.gateway("gateway1")._on_buy = lambda *args: None  # type: ignore[method-assign]
    lan.run(8.0)
    from lanon.member.wallet import Wallet

    saved = Wallet(lan.host("member1").wallet)
    assert len(saved.pending) == 1  # what it needs to unblind the answer, on disk
    (buy,) = saved.pending.values()
    assert buy.gateway == "gateway1" and len(buy.inverses) == 4
    assert Wallet(saved.dump()).dump() == saved.dump()
