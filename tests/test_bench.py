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


def _probe_line(t: float, una: int, nxt: int, cwnd: int, wnd: int, cookie: str = "101b") -> str:
    return (
        f"          python-432     [001] ..s2. {t:.6f}: tcp_probe: family=AF_INET "
        f"src=203.0.113.10:80 dest=198.18.0.192:52404 mark=0x0 data_len=0 snd_nxt={nxt:#x} "
        f"snd_una={una:#x} snd_cwnd={cwnd} ssthresh=2147483647 snd_wnd={wnd} srtt=4000 "
        f"rcv_wnd=65536 sock_cookie={cookie} skbaddr=0000000080ebd1e0 skaddr=00000000a6ca0f80"
    )


def test_the_servers_view_splits_a_download_at_half_its_time() -> None:
    """From the server's probes (each its state before the ACK it takes in): how much the
    first half of the time delivered, and the second half's rate. The connection with the
    most probes is the download's (not the one before, whose last ACK came first), and
    sequence numbers that wrap are no trouble."""
    from bench import serverview

    base = 0xFFFF0000  # (the sequence numbers wrap past 2**32)
    rows = [  # seconds, acked, sent, cwnd, receiver's window
        (10.000, 0, 10_000, 10, 64_000),
        (10.004, 0, 10_000, 10, 64_000),  # acknowledges 10,000
        (10.010, 10_000, 50_000, 20, 40_000),  # a full window; acknowledges up to 100,000
        (10.012, 100_000, 1_000_000, 80, 2_000_000),  # after the middle (10.010)
        (10.020, 900_000, 1_000_000, 80, 2_000_000),
    ]
    lines = [_probe_line(t, (base + a) & 0xFFFFFFFF, (base + n) & 0xFFFFFFFF, c, w)
             for t, a, n, c, w in rows]  # fmt: skip
    lines.insert(2, _probe_line(10.005, 5, 99, 10, 10, cookie="ffff"))  # another connection
    lines.insert(0, _probe_line(9.999, 7, 8, 10, 10, cookie="eeee"))  # the last one's last ACK
    probes = serverview.parse("# tracer: nop\n" + "\n".join(lines))
    assert [p.acked for p in probes] == [0, 0, 10_000, 100_000, 900_000]
    view = serverview.summarize(probes)
    assert view is not None
    assert abs(view.seconds - 0.020) < 1e-9
    assert view.first_half_share == 100_000 / 1_000_000
    assert abs(view.second_half_mbs - 0.9 / 0.010) < 1e-6  # 900,000 bytes in 10 ms
    assert view.window_full == 1 / 4 and view.srtt_end == 0.004
    assert "delivered 10% of it" in serverview.describe(view, 50.0)
    assert serverview.summarize(probes[:2]) is None
