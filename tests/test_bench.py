"""The benchmark's quick sections run on the coalition files this version writes (a change of
default, such as the cell size, once stopped `./run bench` at its first section unnoticed).
Each measured call runs once here: figures are the benchmark's business, not the tests'."""

from __future__ import annotations

from collections.abc import Callable

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
