"""Daemon files: every documented key with its default; bad inputs named with file, key, value."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from lanon.common.daemon_config import load
from lanon.common.errors import ConfigError
from lanon.common.templates import set_keys, toml_value, write_coalition
from lanon.gateway.config import GatewaySettings
from lanon.member.config import MemberSettings


@pytest.fixture
def files(tmp_path: Path) -> Path:
    write_coalition(
        tmp_path,
        "test",
        "198.18.0.0/24",
        [("gateway1", "198.18.0.192/30")],
        ["member1", "member2", "member3"],
    )
    return tmp_path


def with_values(path: Path, values: dict[str, Any]) -> Path:
    path.write_text(set_keys(path.read_text(), values))
    return path


@pytest.mark.parametrize(
    "cls,role,host",
    [(MemberSettings, "member", "member1"), (GatewaySettings, "gateway", "gateway1")],
)
def test_every_documented_key_with_its_default(
    files: Path, cls: type, role: str, host: str
) -> None:
    defaults = {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if f.default is not None and not dataclasses.is_dataclass(f.default)  # [tables] apart
    }
    path = with_values(files / f"{host}.toml", defaults)
    settings, loaded = load(cls, path, role)
    for key, value in defaults.items():
        assert getattr(settings, key) == value, key
    assert loaded.coalition.coalition.name == "test"


BAD: list[tuple[str, Any, str]] = [
    ("queue", -1, "queue = -1: expected a number from 0 to 65535"),
    ("queue", "0", "queue = '0': expected an integer"),
    (
        "tun",
        "a-very-long-interface-name",
        "tun = 'a-very-long-interface-name': expected an interface name of 1 to 15 characters",
    ),
    ("metrics", "localhost", "metrics = 'localhost': expected 'ADDRESS:PORT'"),
    (
        "private_metrics",
        "1.2.3.4:99999",
        "private_metrics = '1.2.3.4:99999': expected 'ADDRESS:PORT'",
    ),
    (
        "log_level",
        "loud",
        "log_level = 'loud': expected one of 'debug', 'info', 'warning', 'error'",
    ),
    ("manage_rules", "yes", "manage_rules = 'yes': expected true or false"),
    ("gateways", "gateway1", "gateways = 'gateway1': expected a list of strings"),
    ("name", "gateway1", "name = 'gateway1': expected the name of a member of"),
    ("private_key", "keys/member2.key", "this key is not member member1's"),
    (
        "colour",
        "blue",
        "unknown key 'colour'; expected one of: coalition, control_socket, dhcp_server, filter_inbound, gateways",
    ),
]


@pytest.mark.parametrize("key,value,message", BAD, ids=[f"{k}={v!r}"[:30] for k, v, _ in BAD])
def test_bad_member_files(files: Path, key: str, value: Any, message: str) -> None:
    path = files / "member1.toml"
    path.write_text(
        path.read_text() + f"\n{key} = {toml_value(value)}\n"
        if key == "colour"
        else set_keys(path.read_text(), {key: value})
    )
    with pytest.raises(ConfigError) as info:
        load(MemberSettings, path, "member")
    assert message in str(info.value)
    assert str(path) in str(info.value) or "keys/member2.key" in str(info.value)


def test_bad_gateway_file(files: Path) -> None:
    path = with_values(files / "gateway1.toml", {"promiscuous": 1})
    with pytest.raises(
        ConfigError, match=r"gateway1\.toml: promiscuous = 1: expected true or false"
    ):
        load(GatewaySettings, path, "gateway")


def test_a_preference_for_an_unknown_gateway_is_refused(files: Path) -> None:
    from lanon.member.daemon import MemberDaemon

    path = with_values(files / "member1.toml", {"gateways": ["gateway9"]})
    settings, loaded = load(MemberSettings, path, "member")
    with pytest.raises(
        ConfigError, match=r"gateways = \['gateway9'\]: expected gateway names or operators"
    ):
        MemberDaemon(settings, loaded)


def test_a_members_providers_and_a_gateways_offer_are_tables(files: Path) -> None:
    member = files / "member1.toml"
    member.write_text(
        member.read_text()
        + '\n[providers]\nprice = 2\nlatency = 0.5\nexclude = ["dear"]\nmin_crowd = 3\n'
    )
    settings, _ = load(MemberSettings, member, "member")
    assert settings.providers.price == 2.0 and settings.providers.exclude == ["dear"]
    assert settings.providers.min_crowd == 3 and settings.providers.loss == 1.0
    gateway = files / "gateway1.toml"
    plain, _ = load(GatewaySettings, gateway, "gateway")
    assert plain.offer is None
    gateway.write_text(
        gateway.read_text()
        + '\n[offer]\nper_gb = 0.5\nper_month = 3\nnext_at = "2027-01-01T00:00:00Z"\n'
        + "next_per_gb = 0.25\n"
    )
    settings_g, _ = load(GatewaySettings, gateway, "gateway")
    assert settings_g.offer is not None and settings_g.offer.per_gb == 0.5
    assert settings_g.offer.next_at_ms() == 1798761600000


@pytest.mark.parametrize(
    "table,text,message",
    [
        ("providers", "price = -1", "[providers]: price = -1.0: expected a number from 0 to 1000"),
        ("providers", "weight = 1", "[providers]: unknown key 'weight'"),
        ("offer", 'next_at = "tomorrow"', "next_at = 'tomorrow': expected an RFC 3339 time"),
        ("offer", 'next_at = "2027-01-01T00:00:00"', "expected a time with its zone"),
        ("offer", "per_gb = true", "[offer]: per_gb = True: expected a number"),
    ],
)
def test_bad_provider_tables_are_refused_with_the_key(
    files: Path, table: str, text: str, message: str
) -> None:
    host, cls, role = (
        ("member1", MemberSettings, "member")
        if table == "providers"
        else ("gateway1", GatewaySettings, "gateway")
    )
    path = files / f"{host}.toml"
    path.write_text(path.read_text() + f"\n[{table}]\n{text}\n")
    with pytest.raises(ConfigError) as exc:
        load(cls, path, role)
    assert message in str(exc.value)
