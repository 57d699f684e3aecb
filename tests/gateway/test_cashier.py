"""The provider's till (gateway/cashier.py, gateway/ledger.py): tokens sold within a member's
allowance, taken once, flows metered; rating credentials one per member and period."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from lanon.common import blindrsa
from lanon.common.flowstate import FlowState
from lanon.common.tokens import Buy, Refusal, Token, TokenKind, credential_message
from lanon.gateway.cashier import MB, Cashier, CredentialIssuer, Meter
from lanon.gateway.flows import GatewayFlow, ReplayWindow
from lanon.gateway.ledger import Ledger

OURS = bytes([198, 18, 0, 193])
THEIRS = bytes([198, 18, 0, 197])


@pytest.fixture(scope="module")
def key() -> blindrsa.PrivateKey:
    return blindrsa.generate(1024)


def flow(anon: bytes = OURS) -> GatewayFlow:
    f = GatewayFlow(1, 17, anon, 4000, bytes(4), 7, FlowState(17, 0.0), bytes(32), ReplayWindow())
    f.metered = True  # seen from its first packet
    return f


def buy_tokens(
    cashier: Cashier, key: blindrsa.PrivateKey, n: int, request: int = 1, member: str = "member1"
) -> tuple[list[Token], Refusal]:
    pk = key.public_key
    rng = random.Random(request)
    prepared = [blindrsa.prepare(rng.randbytes(32), rng.randbytes) for _ in range(n)]
    blinds = [blindrsa.blind(pk, m, rng.randbytes) for m in prepared]
    buy = Buy(TokenKind.PAYMENT, 0, request, 0, tuple(b for b, _ in blinds))
    issue = cashier.sell(member, 0, buy, 1000.0)
    tokens = [
        Token(m, blindrsa.finalize(pk, m, s, st))
        for m, s, (_b, st) in zip(prepared, issue.signatures, blinds, strict=False)
    ]
    return tokens, issue.refusal


def till(key: blindrsa.PrivateKey, monthly: int = 10, ledger: Ledger | None = None) -> Cashier:
    return Cashier(key, ledger or Ledger(), Meter(frozenset({OURS}), 1, 100), monthly)


def test_tokens_bought_are_good_once_and_pay_for_their_flow(key: blindrsa.PrivateKey) -> None:
    cashier = till(key)
    tokens, why = buy_tokens(cashier, key, 3)
    assert why is Refusal.NONE and len(tokens) == 3
    f = flow()
    assert cashier.redeem(f, tokens[0], 1.0) == "accepted"
    assert f.paid == 100 * MB
    assert cashier.redeem(flow(), tokens[0], 2.0) == "double_spent"  # by anyone, anywhere
    forged = Token(tokens[1].prepared, bytes(len(tokens[1].signature)))
    assert cashier.redeem(flow(), forged, 3.0) == "bad"
    assert cashier.redeem(flow(THEIRS), tokens[1], 4.0) == ""  # not our address: not ours
    assert cashier.redeem(flow(), tokens[1], 5.0) == "accepted"  # (the pass above kept it)
    assert cashier.ledger.totals() == (3, 0, 2)


def test_a_member_buys_within_its_monthly_allowance_and_a_repeated_request_counts_once(
    key: blindrsa.PrivateKey,
) -> None:
    cashier = till(key, monthly=4)
    assert buy_tokens(cashier, key, 3, request=1)[1] is Refusal.NONE
    again, why = buy_tokens(cashier, key, 3, request=1)  # its answer lost: asked again
    assert why is Refusal.NONE and len(again) == 3
    assert buy_tokens(cashier, key, 2, request=2)[1] is Refusal.TOO_MANY
    assert buy_tokens(cashier, key, 2, request=3, member="member2")[1] is Refusal.NONE
    assert cashier.ledger.totals()[0] == 5


def test_a_blinded_message_of_the_wrong_size_is_refused(key: blindrsa.PrivateKey) -> None:
    cashier = till(key)
    n = key.public_key.modulus_len
    for blinded in (b"x" * (n - 1), b"\xff" * n):  # short; not below the modulus
        issue = cashier.sell("m", 0, Buy(TokenKind.PAYMENT, 0, 9, 0, (blinded,)), 1.0)
        assert issue.refusal is Refusal.BAD_REQUEST and issue.signatures == ()


def test_the_meter_lets_a_flow_move_its_allowance_and_what_it_paid() -> None:
    meter = Meter(frozenset({OURS}), 1, 2)
    grace = meter.grace  # what the member cannot have counted: sent, lost on the way
    f = flow()
    assert meter.charge(f, MB + grace) and not meter.charge(f, 1)  # the free MB, then nothing
    f.paid += 2 * MB
    assert meter.charge(f, 2 * MB) and not meter.charge(f, 1)
    other = flow(THEIRS)
    assert meter.charge(other, 50 * MB)  # another operator's address: not ours to meter


def test_spent_tokens_stay_spent_across_a_restart(key: blindrsa.PrivateKey, tmp_path: Path) -> None:
    path = tmp_path / "spent.sqlite"
    first = till(key, ledger=Ledger(path))
    tokens, _ = buy_tokens(first, key, 1)
    assert first.redeem(flow(), tokens[0], 1.0) == "accepted"
    first.ledger.close()
    again = till(key, ledger=Ledger(path))
    assert again.redeem(flow(), tokens[0], 2.0) == "double_spent"


def test_one_rating_credential_per_member_and_period(key: blindrsa.PrivateKey) -> None:
    issuer = CredentialIssuer(Ledger(), 100.0)
    assert issuer.wanted(1020.0) == 10 and issuer.wanted(1020.0) is None  # asked once
    assert issuer.wanted(1060.0) == 11  # half-way through: the next, ready when it begins
    issuer.add(10, key)
    pk = key.public_key

    def ask(request: int, period: int = 10, member: str = "member1") -> Refusal:
        rng = random.Random(request)  # asked again: the same messages
        m = blindrsa.prepare(credential_message(period, bytes([request]) * 32), rng.randbytes)
        blinded, _ = blindrsa.blind(pk, m, rng.randbytes)
        buy = Buy(TokenKind.CREDENTIAL, 0, request, period, (blinded,))
        return issuer.issue(member, 0, buy, 1050.0).refusal

    assert ask(1) is Refusal.NONE
    assert ask(1) is Refusal.NONE  # the same request again: its answer was lost
    assert ask(2) is Refusal.ONE_PER_PERIOD
    assert ask(3, member="member2") is Refusal.NONE
    assert ask(4, period=11, member="member3") is Refusal.WRONG_PERIOD
    for p in (11, 12, 13):
        issuer.add(p, key)
    assert sorted(issuer.keys) == [11, 12, 13]  # old periods' keys are let go
    restarted = CredentialIssuer(issuer.ledger, 100.0)  # the period's key survives a restart
    assert 13 in restarted.keys and restarted.wanted(1320.0) is None


def test_the_meter_meters_only_flows_it_saw_begin() -> None:
    meter = Meter(frozenset({OURS}), 1, 2)
    f = flow()
    f.metered = False  # learnt from another gateway, or after a restart: what it paid is unknown
    assert meter.charge(f, 50 * MB)


def test_a_ledger_is_the_owners_alone_and_another_schema_is_refused(tmp_path: Path) -> None:
    import sqlite3
    import stat as stat_mod

    from lanon.common.errors import ConfigError

    path = tmp_path / "ledger.sqlite"
    Ledger(path).close()
    assert stat_mod.S_IMODE(path.stat().st_mode) == 0o600
    old = tmp_path / "old.sqlite"
    db = sqlite3.connect(old)
    db.execute("CREATE TABLE spent (token BLOB PRIMARY KEY, at REAL NOT NULL)")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="schema 0"):
        Ledger(old)
