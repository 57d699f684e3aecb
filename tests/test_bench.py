"""The benchmark's quick sections run on the coalition files this version writes (a change of
default, such as the cell size, once stopped `./run bench` at its first section unnoticed).
Each measured call runs once here: figures are the benchmark's business, not the tests'."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import bench.__main__ as bench


def once(fn: Callable[[], object], seconds: float = 0.3) -> float:
    fn()
    return 1.0


def test_the_per_packet_and_per_round_sections_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "per_call", once)
    bench.per_packet()
    bench.per_round()
    out = capsys.readouterr().out
    assert "gateway: round output cell -> packet emitted" in out
    assert "32 members, 17 slots" in out


def test_a_labs_failed_downloads_are_said_and_a_bound_without_a_plain_download_is_none(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import math

    from bench import lab

    nan = float("nan")
    row = lab.LabFigures(8, "star", "full", 0.1, 3.9, 45.0, nan, 20.0, (19.0, 21.0), nan, 30.0,
                         3, 0.01, 0.03, 120.0, nan, nan, nan)  # fmt: skip
    lab.table([row])
    assert "3 downloads of this lab failed" in capsys.readouterr().out
    assert math.isnan(lab.dcnet_bound(None, nan, 100.0))
    assert lab._done([nan, 2.0, nan]) == [2.0] and math.isnan(lab._done([nan])[0])


def test_the_blaster_refuses_outside_a_lab_hosts_namespace(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its frames must stay on a lab's bridge: in the machine's own namespace it sends none."""
    from lanon.lab import blast

    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(blast, "in_lab_namespace", lambda: False)
    monkeypatch.setattr(blast, "blast", lambda *a: sent.append(a) or (1, 1.0))
    assert blast.main(["eth0", "02:1a:00:01:00:01", "1", "1514"]) == 2
    assert sent == [] and "namespace" in capsys.readouterr().err
    assert blast.main(["eth0", "02:1a", "1", "1514"]) == 2  # (not an address)
    assert not blast.in_lab_namespace()  # (the tests run in the machine's own)
