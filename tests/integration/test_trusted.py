"""Trusted-gateway mode in the lab (issue 14.2): the core lab tests of DC-net mode pass
unchanged (they are imported and run here against a lab with `mode = "trusted"`), and a
member's service answers at its endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lanon.common.coalition import load
from lanon.lab.lab import Lab
from tests.integration.conftest import running_lab
from tests.integration.test_end_to_end import (
    test_a_stopped_member_sends_nothing_with_its_own_address,
    test_idle_and_busy_members_send_the_same_frames_per_round,
    test_ping_dns_and_udp,
    test_the_internet_sees_only_anonymous_addresses,
    test_three_members_fetch_5mb_at_once_and_get_it_intact,
)
from tests.integration.test_services import endpoint, fetch

__all__ = [  # the DC-net lab's tests, collected here again with this module's `lab`
    "test_a_stopped_member_sends_nothing_with_its_own_address",
    "test_idle_and_busy_members_send_the_same_frames_per_round",
    "test_ping_dns_and_udp",
    "test_the_internet_sees_only_anonymous_addresses",
    "test_three_members_fetch_5mb_at_once_and_get_it_intact",
]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """4 members (one can stop and the lanon goes on), 1 gateway, trusted mode, and a web
    server on member2 at an anonymous endpoint."""
    yield from running_lab("t", members=4, gateways=1, mode="trusted", serve=("member2:8000",))


def test_the_lab_runs_in_trusted_mode(lab: Lab) -> None:
    assert load(lab.dir / "coalition.toml").trusted
    st = lab.leader_status()
    assert st["leading"] and len(st["members_present"]) == 4


def test_a_service_answers_at_its_endpoint(lab: Lab) -> None:
    page = fetch(lab, f"http://{endpoint(lab, 'member2')}/")
    assert page == (lab.service_root("member2", 8000) / "index.html").read_text()
