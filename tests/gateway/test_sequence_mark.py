"""A gateway's inbound sequence numbers are nonces under flows' keys, which a restarted gateway
may take back from the others: a restart must start above every number its last run used,
whatever its clock says. The engine asks for a mark well above its numbers to be kept in the
sequence file before they come near the last one; a restart starts above the mark."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from lanon.common.clock import wall_us
from lanon.common.daemon_config import load
from lanon.common.errors import ConfigError
from lanon.common.events import KeepSequence, SendFrame
from lanon.common.templates import write_coalition
from lanon.gateway.config import GatewaySettings
from lanon.gateway.daemon import GatewayDaemon
from lanon.gateway.engine import SEQUENCE_BLOCK, GatewayEngine
from tests.harness import running_lan
from tests.packets import udp


def test_a_restart_starts_above_the_last_runs_mark_whatever_its_clock_says() -> None:
    lan = running_lan(3)
    gw = lan.gateway()
    mark = wall_us(lan.now, gw.wall_offset) + 10**12  # the last run's: the clock went back
    again = GatewayEngine(
        lan.c,
        "gateway1",
        lan.keys["gateway1"],
        gw.mac,
        now=lan.now,
        wall_offset=gw.wall_offset,
        rng=random.Random(1),
        sequence_mark=mark,
    )
    assert again.ingress.seq >= mark and again.hb_seq >= mark  # INBOUND and FLOWS nonces
    kept = [c.mark for c in again.pop_commands() if isinstance(c, KeepSequence)]
    assert kept and kept[-1] >= again.ingress.seq + SEQUENCE_BLOCK // 2


def test_a_new_mark_is_kept_before_the_numbers_come_near_the_last() -> None:
    lan = running_lan(3)
    gw = lan.gateway()
    ingress = gw.ingress
    gw.pop_commands()
    last = gw.marked
    gw.hb_seq = 0  # (the heartbeat's numbers, the other nonces the mark covers, set aside)
    ingress.seq = last - SEQUENCE_BLOCK // 2 - 1  # (a run that sent half a block)
    ingress.broadcast(bytes(32), 7, udp(payload=b"x" * 3000))  # three INBOUND frames
    commands = gw.pop_commands()
    assert isinstance(commands[0], KeepSequence)  # written before the frames leave
    assert commands[0].mark > last and all(isinstance(c, SendFrame) for c in commands[1:])
    assert ingress.seq < last  # every number used is still below the mark already kept


def daemon_files(tmp_path: Path) -> Path:
    write_coalition(
        tmp_path,
        "test",
        "198.18.0.0/24",
        [("gateway1", "198.18.0.192/30")],
        ["a", "b", "c"],
        daemon=lambda role, host: (
            {"sequence_file": "gateway1.sequence"} if role == "gateway" else {}
        ),
    )
    return tmp_path / "gateway1.toml"


def test_the_daemon_starts_above_its_file_and_keeps_the_engines_marks(tmp_path: Path) -> None:
    path = daemon_files(tmp_path)
    far = 1 << 62  # above any wall clock in µs for a long while (and below 2**63)
    (tmp_path / "gateway1.sequence").write_text(f"{far}\n")
    d = GatewayDaemon(*load(GatewaySettings, path, "gateway"), CollectorRegistry())
    assert d.sequence_mark == far  # (its engine, made in run(), starts above it: above)
    d._keep_sequence(KeepSequence(far + SEQUENCE_BLOCK))
    assert (tmp_path / "gateway1.sequence").read_text() == f"{far + SEQUENCE_BLOCK}\n"
    assert (tmp_path / "gateway1.sequence").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "content", [b"twelve\n", b"", "\u00b2\n".encode(), b"\xff\xfe12", str(1 << 63).encode()]
)
def test_a_sequence_file_that_is_not_a_mark_is_a_clear_error(
    tmp_path: Path, content: bytes
) -> None:
    path = daemon_files(tmp_path)
    (tmp_path / "gateway1.sequence").write_bytes(content)
    with pytest.raises(ConfigError, match="not a sequence mark"):
        GatewayDaemon(*load(GatewaySettings, path, "gateway"), CollectorRegistry())


def test_a_gateway_restarted_with_its_clock_an_hour_behind_uses_no_number_twice() -> None:
    lan = running_lan(3)
    lan.submit("member1", udp(payload=b"a reply comes back in INBOUND frames"))
    lan.run_until(lambda: bool(lan.host("member1").injected), limit=10)
    used = lan.gateway().ingress.seq
    lan.restart("gateway1", clock_ahead=-3600.0)  # (the simulated LAN keeps its file)
    assert lan.gateway().ingress.seq > used
