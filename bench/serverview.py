"""A download as the lab's server saw it: the kernel's `tcp_probe` tracepoint, which fires on
every segment the server's TCP takes in (an ACK, for a download), with the sender's state as it
stood before taking it: what was in flight, the receiver's window, the smoothed RTT.

It says where a short download's time goes. A 5 MB download through the lanon is in two
parts: a start, where the server's window doubles once a round trip (and waits, now and then,
for the receiver's window to open), and a rest at the lanon's full rate. The benchmark prints
how much of the file the first half of the time delivered, and the rate of the second half.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import math
import re
import statistics
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

TRACING = Path("/sys/kernel/tracing")
EVENT = "events/tcp/tcp_probe"
INSTANCE = "lanon-bench"  # a tracing instance: a buffer and events of its own
MSS = 1448  # a segment's payload at most (MTU 1500, timestamps): less than that left is full

_LINE = re.compile(
    r" (?P<t>\d+\.\d+): tcp_probe: .*? snd_nxt=(?P<nxt>0x[0-9a-f]+) "
    r"snd_una=(?P<una>0x[0-9a-f]+) snd_cwnd=\d+ ssthresh=\d+ snd_wnd=(?P<wnd>\d+) "
    r"srtt=(?P<srtt>\d+) .*?sock_cookie=(?P<cookie>[0-9a-f]+)"
)


@dataclass(frozen=True)
class Probe:
    """One segment taken in by the server, and its state before it."""

    at: float  # seconds, the trace's clock
    acked: int  # bytes acknowledged before this segment (from the first probe's)
    in_flight: int  # bytes sent and not acknowledged
    window: int  # the receiver's window, bytes
    srtt: float  # seconds


@dataclass(frozen=True)
class ServerView:
    seconds: float  # from the request's arrival to the last ACK
    first_half_share: float  # of the bytes acknowledged, how much by half that time
    second_half_mbs: float  # MB/s acknowledged in the second half
    ack_gap: float  # seconds between ACKs, median
    window_full: float  # share of ACKs that found the receiver's window full
    srtt_end: float  # seconds: the server's smoothed RTT at the end


def parse(text: str) -> list[Probe]:
    """The probes of the connection with the most in a trace (`sock_cookie`: the download's,
    not a last ACK of the one before), in order; sequence numbers modulo 2**32 from its first
    probe's."""
    rows = [m for m in map(_LINE.search, text.splitlines()) if m is not None]
    if not rows:
        return []
    cookie = collections.Counter(m["cookie"] for m in rows).most_common(1)[0][0]
    rows = [m for m in rows if m["cookie"] == cookie]
    base = int(rows[0]["una"], 16)
    probes = []
    for m in rows:
        una = (int(m["una"], 16) - base) & 0xFFFFFFFF
        nxt = (int(m["nxt"], 16) - base) & 0xFFFFFFFF
        srtt = int(m["srtt"]) / 1e6
        probes.append(Probe(float(m["t"]), una, nxt - una, int(m["wnd"]), srtt))
    return probes


def summarize(probes: list[Probe]) -> ServerView | None:
    """The view of a download from its probes; None for fewer than three."""
    if len(probes) < 3:
        return None
    start, end = probes[0].at, probes[-1].at
    # everything sent was acknowledged by the end (a download that completed)
    total = max(p.acked + p.in_flight for p in probes)
    if end <= start or total <= 0:
        return None
    middle = start + (end - start) / 2
    # a probe shows the state before its segment: the first after the middle shows all that
    # the ACKs before it acknowledged
    by_middle = next(p.acked for p in probes if p.at > middle)
    gaps = [b.at - a.at for a, b in itertools.pairwise(probes)]
    full = sum(1 for p in probes[1:] if p.in_flight >= p.window - MSS)
    return ServerView(
        end - start,
        by_middle / total,
        (total - by_middle) / (end - middle) / 1e6,
        statistics.median(gaps),
        full / (len(probes) - 1),
        probes[-1].srtt,
    )


def record(
    download: Callable[[], float], port: int = 80, tracing: Path = TRACING
) -> tuple[float, ServerView | None]:
    """`download()` (MB/s) with the server's probes traced (root, tracefs), in a tracing
    instance of our own: the machine's trace buffer and whoever uses it are left alone, and
    the instance is removed whatever happens."""
    with tracefs(tracing):
        if not (tracing / EVENT).is_dir():
            raise OSError(f"no {tracing / EVENT} (a kernel without tcp_probe)")
        instance = tracing / "instances" / INSTANCE
        if instance.exists():
            instance.rmdir()  # (one a run before us left, killed)
        instance.mkdir()
        try:
            event = instance / EVENT
            (event / "filter").write_text(f"sport == {port}")
            (event / "enable").write_text("1")
            try:
                speed = download()
            finally:
                (event / "enable").write_text("0")
            text = (instance / "trace").read_text()
        finally:
            instance.rmdir()
    return speed, None if math.isnan(speed) else summarize(parse(text))


@contextlib.contextmanager
def tracefs(path: Path) -> Iterator[None]:
    """tracefs at `path` for the block: mounted there for it, and unmounted after, where the
    machine has not mounted it (not every one does at boot)."""
    if (path / "events").is_dir():
        yield
        return
    done = subprocess.run(
        ["mount", "-t", "tracefs", "nodev", str(path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise OSError(f"tracefs could not be mounted at {path}: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)  # (busy: left mounted)


def describe(view: ServerView | None, speed: float) -> str:
    if view is None:
        return f"{speed:.1f} MB/s (no server's view: too few ACKs traced)"
    return (
        f"{speed:.1f} MB/s, {view.seconds * 1000:.0f} ms from the request to the last ACK: "
        f"the first half of that time delivered {view.first_half_share:.0%} of it, the second "
        f"ran at {view.second_half_mbs:.1f} MB/s; ACKs {view.ack_gap * 1000:.1f} ms apart "
        f"(median), {view.window_full:.0%} of them found the receiver's window full; the "
        f"server's RTT at the end {view.srtt_end * 1000:.1f} ms"
    )
