"""No configuration can hijack the LAN: what `lanon config check` (and every daemon's start)
refuses about gateway shares, and what it warns about."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lanon.common import coalition
from lanon.common.errors import ConfigError
from lanon.common.templates import write_coalition
from tests.harness import coalition_dict, make_coalition

_, KEYS = make_coalition(3, 2)
PATH = Path("c.toml")


def raw(
    shares: list[str],
    router: str = "",
    gateway: str = "",
    members: tuple[str, ...] = ("", "", ""),
    **sections: dict[str, Any],
) -> dict[str, Any]:
    r = coalition_dict(
        [(f"member{i}", KEYS[f"member{i}"]) for i in (1, 2, 3)],
        [("gateway1", KEYS["gateway1"], shares)],
        **sections,
    )
    if router:
        r["coalition"]["router"] = router
    if gateway:
        r["gateways"][0]["address"] = gateway
    for m, address in zip(r["members"], members, strict=True):
        if address:
            m["address"] = address
    return r


@pytest.mark.parametrize(
    "kw,message",
    [
        (  # the case: a share from the bottom of the LAN
            {"shares": ["198.18.0.0/28"]},
            r"\[\[gateways\]\] gateway1: addresses = '198.18.0.0/28' contains 198.18.0.0, the "
            r"LAN's network address; expected a prefix of unused host addresses",
        ),
        (
            {"shares": ["198.18.0.252/30"]},
            r"addresses = '198.18.0.252/30' contains 198.18.0.255, the LAN's broadcast address",
        ),
        (
            {"shares": ["198.18.0.0/25", "198.18.0.192/30"]},
            r"contains 198.18.0.0, the LAN's network address",
        ),
        (
            {"shares": ["198.18.0.1/32", "198.18.0.192/30"], "router": "198.18.0.1"},
            r"gateway1: addresses = '198.18.0.1/32' contains 198.18.0.1, the address of the "
            r"border router \(\[coalition\] router = '198.18.0.1'\); expected a share of unused",
        ),
        (
            {"shares": ["198.18.0.8/29"], "members": ("198.18.0.11", "198.18.0.12", "")},
            r"contains 198.18.0.11, the address of member member1 \(\[\[members\]\] member1: "
            r"address = '198.18.0.11'\)",
        ),
        (
            {"shares": ["198.18.0.2/31"], "gateway": "198.18.0.2"},
            r"contains 198.18.0.2, the address of gateway gateway1",
        ),
        (
            {"shares": ["198.18.0.192/30"], "router": "10.0.0.1"},
            r"\[coalition\] router = '10.0.0.1': expected a host address of lan 198.18.0.0/24",
        ),
        (
            {"shares": ["198.18.0.192/30"], "router": "198.18.0.255"},
            r"router = '198.18.0.255': expected a host address of lan",
        ),
        (
            {"shares": ["198.18.0.192/30"], "router": "198.18.0.1", "gateway": "198.18.0.1"},
            r"LAN address '198.18.0.1' appears twice",
        ),
        (
            {"shares": ["198.18.0.192/30"], "router": "router"},
            r"router = 'router': expected an IPv4 address such as .*, or '' for none",
        ),
    ],
)
def test_shares_that_would_take_a_hosts_address_are_refused(
    kw: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        coalition.parse(raw(**kw), PATH)
    assert str(info.value).startswith("c.toml: ")


def test_a_fully_described_lan_passes_without_warnings() -> None:
    c = coalition.parse(
        raw(
            ["198.18.0.192/30"],
            router="198.18.0.1",
            gateway="198.18.0.2",
            members=("198.18.0.11", "198.18.0.12", "198.18.0.13"),
        ),
        PATH,
    )
    assert coalition.warnings(c) == []
    assert c.gateways[0].address == "198.18.0.2" and c.members[0].address == "198.18.0.11"


def test_what_cannot_be_checked_is_warned_about() -> None:
    c = coalition.parse(raw(["198.18.0.192/30"], gateway="198.18.0.2"), PATH)
    (w,) = coalition.warnings(c)
    assert "no LAN address given for the router ([coalition] router), member1, member2" in w
    assert "probe every anonymous address before claiming it" in w


def test_allow_entries_without_effect_are_warned_about() -> None:
    c = coalition.parse(
        raw(
            ["198.18.0.192/30"],
            router="198.18.0.1",
            gateway="198.18.0.2",
            members=("198.18.0.11", "198.18.0.12", "198.18.0.13"),
            egress={"allow": ["8.8.8.0/24", "0.0.0.0/0", "10.0.0.0/8"]},
        ),
        PATH,
    )
    warnings = coalition.warnings(c)
    assert len(warnings) == 2
    assert "allow = '8.8.8.0/24' has no effect" in warnings[0]
    assert "allow = '0.0.0.0/0' overlaps the LAN or addresses gateways never emit to" in warnings[1]


def test_the_router_and_host_addresses_enter_no_fingerprint_unless_set() -> None:
    plain = coalition.parse(raw(["198.18.0.192/30"]), PATH)
    hosts = coalition.parse(raw(["198.18.0.192/30"], gateway="198.18.0.2"), PATH)
    assert hosts.fingerprint == plain.fingerprint  # hosts' addresses are for checks only
    router = coalition.parse(raw(["198.18.0.192/30"], router="198.18.0.1"), PATH)
    assert router.fingerprint != plain.fingerprint


def lanon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lanon.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_config_check_refuses_and_warns(tmp_path: Path) -> None:
    write_coalition(
        tmp_path, "test", "198.18.0.0/24", [("gateway1", "198.18.0.192/30")], ["a", "b", "c"]
    )
    path = tmp_path / "coalition.toml"
    r = lanon("config", "check", str(path))
    assert r.returncode == 0, r.stderr
    assert "warning: " in r.stderr and "[coalition] router" in r.stderr
    text = path.read_text()
    path.write_text(
        text.replace('addresses = ["198.18.0.192/30"]', 'addresses = ["198.18.0.0/28"]')
    )
    r = lanon("config", "check", str(path))
    assert r.returncode == 2
    assert "addresses = '198.18.0.0/28' contains 198.18.0.0, the LAN's network address" in r.stderr
    path.write_text(text.replace('# router = ""', 'router = "198.18.0.193"'))
    r = lanon("config", "check", str(path))
    assert r.returncode == 2 and "the address of the border router" in r.stderr
    r = lanon("config", "keys")
    assert "[egress] allow = []" in r.stdout and "[coalition] router = ''" in r.stdout
    assert "[[members]] address = ''" in r.stdout
