"""Providers compete in the lab (issue 15): `lanon lab up --gateways 2 --providers`.

Two operators sell ('budget' on gateway1, 'premium' on gateway2). member1 weighs price, member2
quality. One provider made slow (`lanon lab slow`, the router holding its packets) loses the
member that weighs quality and keeps the one that weighs price; members buy tokens openly and
pay with them anonymously; ratings flow; and neither provider can tell which member paid or
rated."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lanon.lab.lab import Lab
from tests.integration.conftest import reaped, running_lab

URL = "http://203.0.113.10/"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab("p", members=3, gateways=2, providers=True)


def providers(lab: Lab) -> dict[str, dict[str, Any]]:
    """What `lanon providers --lab NAME --json` says, by member, as a user runs it."""
    r = subprocess.run(
        [sys.executable, "-m", "lanon.cli", "providers", "--lab", lab.name, "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    return {m["name"]: m for m in json.loads(r.stdout)}


def browsing(lab: Lab, member: str, seconds: int) -> subprocess.Popen[bytes]:
    """A new connection every 0.4 s for `seconds` (bounded): what the member measures."""
    n = int(seconds / 0.5)
    loop = f"for i in $(seq {n}); do curl -s -o /dev/null --max-time 3 {URL}; sleep 0.4; done"
    return lab.popen(member, ["sh", "-c", loop], stdout=subprocess.DEVNULL)


def wait_for(what: str, check: Any, within: float) -> Any:
    deadline = time.monotonic() + within
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {within:g} s"
        time.sleep(2)


def test_a_slow_provider_loses_the_member_that_weighs_quality_not_the_one_that_weighs_price(
    lab: Lab,
) -> None:
    lab.slow("gateway2", 40)  # premium is slow at first: both take budget
    procs = [browsing(lab, m, 150) for m in ("member1", "member2")]
    with reaped(*procs):
        wait_for(
            "both on budget",
            lambda: all(providers(lab)[m]["choice"] == "budget" for m in ("member1", "member2")),
            60,
        )
        lab.slow("gateway2", 0)
        lab.slow("gateway1", 80)  # now budget is the slow one
        view = wait_for(
            "member2 moves to premium",
            lambda: (v := providers(lab))["member2"]["choice"] == "premium" and v,
            100,
        )
    lab.slow("gateway1", 0)
    assert view["member1"]["choice"] == "budget"  # it weighs price: it stays
    budget = next(p for p in view["member2"]["providers"] if p["operator"] == "budget")
    premium = next(p for p in view["member2"]["providers"] if p["operator"] == "premium")
    assert budget["rtt_ms"] > premium["rtt_ms"]  # what it measured itself
    assert premium["chosen"] and premium["score"] > budget["score"]
    text = subprocess.run(
        [sys.executable, "-m", "lanon.cli", "providers", "--lab", lab.name],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    assert "member2: chose premium" in text and "credits/GB" in text


def test_tokens_are_bought_openly_and_spent_anonymously_from_inside_a_download(lab: Lab) -> None:
    # member1 weighs price: it stays with budget, whose tokens it buys
    held = wait_for(
        "member1 holds tokens",
        lambda: providers(lab)["member1"]["tokens"].get("budget", {}).get("held"),
        30,
    )
    assert providers(lab)["member1"]["choice"] == "budget"
    r = lab.run(
        "member1",
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            "--max-time",
            "60",
            URL + "5mb.bin",
        ],
        timeout=70,
    )
    if r.returncode != 0 or r.stdout != str(5 * 1024 * 1024):  # 1 MB free, then paid
        tails = "\n".join(lab.tail(h.name, 25) for h in lab.gateways + lab.members[:1])
        states = {h: lab.status(h).get("provider") for h in ("gateway1", "gateway2")}
        raise AssertionError(f"{r.stderr}\n{providers(lab)['member1']}\n{states}\n{tails}")
    tokens = providers(lab)["member1"]["tokens"]["budget"]
    assert tokens["spent"] >= 1 and tokens["held"] + tokens["spent"] >= held
    gw = lab.status("gateway1")["provider"]
    assert gw["tokens_spent"] >= tokens["spent"] and gw["tokens_sold"] >= 4

    # The provider's books: who bought (it bills them), and tokens taken, with nothing in
    # common: a spent token names no member, a sale names no token.
    db = sqlite3.connect(lab.run_dir / "gateway1-ledger.sqlite")
    spent_cols = [c[1] for c in db.execute("PRAGMA table_info(spent)")]
    sold_cols = [c[1] for c in db.execute("PRAGMA table_info(sold)")]
    assert spent_cols == ["token", "at"] and "token" not in sold_cols
    buyers = {row[0] for row in db.execute("SELECT member FROM sold")}
    assert "member1" in buyers and buyers <= {"member1", "member2", "member3"}
    # and nothing in gateway1's log ties a redemption to a member
    log = (lab.dir / "logs" / "gateway1.log").read_text()
    assert not any("redeem" in line and "member" in line for line in log.splitlines())


def test_ratings_flow_with_one_credential_per_member_and_period(lab: Lab) -> None:
    view = wait_for(
        "ratings heard",
        lambda: (
            (v := providers(lab)) and all(sum(v[m]["ratings_heard"].values()) >= 2 for m in v) and v
        ),
        75,
    )
    for m in view.values():
        crowd = {p["operator"]: p["crowd"] for p in m["providers"]}
        assert sum(c or 0 for c in crowd.values()) <= 3  # one choice per member at most
    metrics = lab.run(
        "gateway1", ["curl", "-s", f"http://{lab.host('gateway1').address}:9551/metrics"]
    )
    relayed = [
        float(line.split()[-1])
        for line in metrics.stdout.splitlines()
        if line.startswith("lanon_ratings_relayed_total")
    ]
    issued = [
        line
        for line in metrics.stdout.splitlines()
        if line.startswith('lanon_tokens_issued_total{kind="credential"')
    ]
    assert issued  # counted by kind: never by member
    samples = [ln for ln in metrics.stdout.splitlines() if ln.startswith("lanon_tokens_")]
    assert samples and not any("member" in ln for ln in samples)
    # the leader relays what it hears; gateway1 or gateway2 may lead
    other = lab.run(
        "gateway2", ["curl", "-s", f"http://{lab.host('gateway2').address}:9551/metrics"]
    )
    relayed += [
        float(line.split()[-1])
        for line in other.stdout.splitlines()
        if line.startswith("lanon_ratings_relayed_total")
    ]
    assert sum(relayed) >= 2
