"""A wall clock stepped after the daemons started (NTP at boot, or by hand): stamps follow it.

Every OPEN, HELLO and KEYS frame carries its sender's wall clock, and the others refuse it when
it is too far from theirs. A daemon measured the wall clock against its loop's clock once, at
start: a member started before NTP set the clock kept stamping with the old time, and took part
in no round until it was restarted. The daemon now measures again as it runs and moves the
engine's offset, which every part of the engine reads from the engine.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from lanon.common import daemon as daemon_mod
from lanon.common.clock import wall_us
from lanon.common.daemon_config import load
from lanon.common.events import CellDelivered, RefuseReason, RoundRefused
from lanon.common.templates import write_coalition
from lanon.member.config import MemberSettings
from lanon.member.daemon import MemberDaemon
from tests.harness import running_lan
from tests.packets import udp


def test_a_member_with_a_wrong_wall_clock_takes_part_once_its_offset_follows_the_clock() -> None:
    lan = running_lan(3)
    eng = lan.member("member1")
    right = eng.wall_offset
    eng.wall_offset = right - 3600  # its daemon measured the clock before NTP set it
    assert eng.keys.wall_offset == eng.wall_offset  # the parts read the engine's
    lan.run(2.0)
    lan.submit("member1", udp(payload=b"an hour late"))
    lan.run(2.0)
    refused = [e.reason for e in lan.events("member1", RoundRefused)]
    assert RefuseReason.CLOCK in refused and not lan.events("member1", CellDelivered)
    eng.wall_offset = right  # the daemon's next look at the clock
    lan.run_until(lambda: bool(lan.events("member1", CellDelivered)), limit=10)


def test_the_daemon_follows_a_stepped_wall_clock_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write_coalition(
        tmp_path, "test", "198.18.0.0/24", [("gateway1", "198.18.0.192/30")], ["m1", "m2", "m3"]
    )
    settings, loaded = load(MemberSettings, tmp_path / "m1.toml", "member")
    d = MemberDaemon(settings, loaded, CollectorRegistry())
    now = d.reactor.clock()
    start = d.engine.wall_offset
    assert start == d.wall_offset
    d.follow_wall_clock(now)  # the same clock a moment later: jitter, nothing moves
    assert d.engine.wall_offset == start
    real = daemon_mod.time.time
    monkeypatch.setattr(daemon_mod.time, "time", lambda: real() + 3600.0)
    with caplog.at_level(logging.WARNING):
        d.follow_wall_clock(d.reactor.clock())
    assert d.engine.wall_offset == pytest.approx(start + 3600.0, abs=0.05)
    assert d.wall_offset == d.engine.wall_offset and d.engine.keys.wall_offset == d.wall_offset
    assert "the wall clock moved by +3600" in caplog.text


def test_a_leader_started_with_its_clock_ahead_leads_again_once_ntp_sets_it_back() -> None:
    """It takes everyone's stamps for an hour old, and they its; its rounds are numbered from
    its clock, above any that members take: set back, it counts from the clock it has now, and
    no inbound sequence number goes back."""
    lan = running_lan(3)
    lan.restart("gateway1", clock_ahead=3600.0)
    lan.run(2.0)
    lan.submit("member1", udp(payload=b"to a leader an hour ahead"))
    lan.run(2.0)
    assert not lan.events("member1", CellDelivered)  # (it takes members' stamps for stale)
    gw = lan.gateway()
    seq = gw.ingress.seq
    gw.set_wall_offset(gw.wall_offset - 3600.0, lan.now)  # NTP sets its clock
    gw.apply(gw.c, lan.now)  # (a version: the parts are built again)
    assert gw.ingress.seq >= seq  # AEAD nonces under flows' keys: never again
    lan.run_until(lambda: bool(lan.events("member1", CellDelivered)), limit=10)


def test_a_clock_set_forward_takes_a_gateways_inbound_sequence_numbers_with_it() -> None:
    """They start at the wall clock so that a restart starts above the last run (they are
    nonces): a gateway that booted with its clock far behind catches up when NTP sets it."""
    lan = running_lan(3)
    gw = lan.gateway()
    gw.set_wall_offset(gw.wall_offset + 3600.0, lan.now)
    assert gw.ingress.seq >= wall_us(lan.now, gw.wall_offset)
