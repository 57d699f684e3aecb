"""The providers' tools on the command line: an operator's token key, a rating agency's signed
rating, and what a mistake says (no traceback)."""

from __future__ import annotations

import stat
from pathlib import Path

from lanon.common import coalition
from lanon.common.crypto import HostKey, Verifier, encode_key, write_private_key
from lanon.common.templates import write_coalition
from lanon.common.tokens import agency_signed, pull_agency
from lanon.gateway.provider import read_token_key
from tests.cli.test_cli import lanon


def test_an_operator_makes_its_token_key_once(tmp_path: Path) -> None:
    path = tmp_path / "tokens.key"
    r = lanon("provider", "keygen", str(path))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_token_key(path).public_key.bits == 2048
    again = lanon("provider", "keygen", str(path))
    assert again.returncode != 0 and "not overwriting" in again.stderr
    assert "Traceback" not in again.stderr


def test_an_agency_signs_a_rating_a_gateway_can_check(tmp_path: Path) -> None:
    agency = HostKey.generate()
    write_private_key(tmp_path / "agency.key", agency, "agency")
    write_coalition(
        tmp_path,
        "office",
        "198.18.0.0/24",
        [("gw1", "198.18.0.192/30"), ("gw2", "198.18.0.196/30")],
        ["a", "b", "c"],
        sections={"providers": {"agencies": [encode_key(agency.public)]}},
        operators={"gw1": "budget", "gw2": "premium"},
    )
    path = tmp_path / "coalition.toml"
    assert coalition.load(path).providers.agencies
    r = lanon(
        "agency",
        "rate",
        "budget=80",
        "premium=35",
        "--key",
        str(tmp_path / "agency.key"),
        "--coalition",
        str(path),
    )
    assert r.returncode == 0, r.stderr
    rating, raw, key, sig = pull_agency(bytes.fromhex(r.stdout.strip()))
    assert dict(rating.scores) == {"budget": 80, "premium": 35} and key == agency.public
    assert Verifier().verify(key, agency_signed(raw, key), sig)
    bad = lanon(
        "agency",
        "rate",
        "nobody=101",
        "--key",
        str(tmp_path / "agency.key"),
        "--coalition",
        str(path),
    )
    assert bad.returncode != 0 and "expected OPERATOR=SCORE" in bad.stderr
    assert "Traceback" not in bad.stderr
