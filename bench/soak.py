"""The soak: a lab of 8 members with mixed traffic for a long time, sampled as a table.

    ./run bench --soak 3600

Every member keeps fetching (small pages and a 1 MB file), resolving names, pinging and
exchanging UDP datagrams, a few at a time; at every sample the table shows, per kind of
daemon, resident memory, open files, flows, queued cells and the round rate. Flat columns
are the point: nothing grows without bound. Numbers, no pass or fail.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass

from lanon.common.errors import LanonError
from lanon.lab.lab import Lab, LabSpec

URL = "http://203.0.113.10"


@dataclass
class Sample:
    at: float
    gateway_rss_mb: float
    member_rss_mb: float  # the largest member's
    gateway_fds: int
    member_fds: int
    flows: int  # the leading gateway's flow table
    member_flows: int  # the largest member's
    queue_cells: int  # the longest member queue
    round_rate: float
    fetches: int
    failures: int


def _proc(pid: int) -> tuple[float, int]:
    """(resident MB, open files) of a process."""
    rss = 0.0
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = 0
    return rss, fds


def _traffic(lab: Lab, rng: random.Random) -> list[subprocess.Popen[bytes]]:
    """A few clients at once, on random members: web, a 1 MB file, DNS, ping, UDP."""
    echo = (
        "import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(3);"
        "s.sendto(b'soak', ('203.0.113.10', 7)); s.recvfrom(64)"
    )
    kinds = [
        ["curl", "-sS", "-o", "/dev/null", "--max-time", "20", f"{URL}/whoami"],
        ["curl", "-sS", "-o", "/dev/null", "--max-time", "30", f"{URL}/1mb.bin"],
        ["dig", "+short", "+time=3", "+tries=1", "www.lanon.test"],
        ["ping", "-c", "2", "-i", "0.2", "-W", "3", "203.0.113.10"],
        [sys.executable, "-c", echo],
    ]
    procs = []
    for _ in range(4):
        member = rng.choice(lab.members).name
        procs.append(
            lab.popen(
                member, rng.choice(kinds), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
    return procs


def _sample(lab: Lab, start: float, fetches: int, failures: int) -> Sample:
    gw = [_proc(lab.pids[g.name]) for g in lab.gateways if g.name in lab.pids]
    mem = [_proc(lab.pids[m.name]) for m in lab.members if m.name in lab.pids]
    leader: dict[str, object] = {}
    with contextlib.suppress(LanonError):
        leader = lab.leader_status()
    flows, queues = [], []
    for m in lab.members:
        with contextlib.suppress(LanonError):
            st = lab.status(m.name)
            flows.append(int(st.get("flows", 0)))
            queues.append(int(st.get("queue_cells", 0)))
    return Sample(
        time.monotonic() - start,
        max((r for r, _ in gw), default=0.0),
        max((r for r, _ in mem), default=0.0),
        max((f for _, f in gw), default=0),
        max((f for _, f in mem), default=0),
        int(leader.get("flows", 0)),  # type: ignore[call-overload]
        max(flows, default=0),
        max(queues, default=0),
        float(leader.get("round_rate", 0.0)),  # type: ignore[arg-type]
        fetches,
        failures,
    )


def _print(s: Sample) -> None:
    print(
        f"  {s.at / 60:6.1f} {s.gateway_rss_mb:8.1f} {s.member_rss_mb:8.1f} {s.gateway_fds:5d} "
        f"{s.member_fds:5d} {s.flows:7d} {s.member_flows:7d} {s.queue_cells:6d} "
        f"{s.round_rate:7.1f} {s.fetches:8d} {s.failures:6d}",
        flush=True,
    )


def soak(seconds: float, members: int = 8, samples: int = 12) -> list[Sample]:
    print(f"6. soak: {members} members, mixed traffic for {seconds:.0f} s")
    lab = Lab("soak")
    if lab.is_up():
        lab.down()
    lab.up(LabSpec(lab.name, members=members, gateways=2, epoch_seconds=120.0))
    (lab.www / "1mb.bin").write_bytes(os.urandom(1 << 20))
    rng = random.Random(1)
    out: list[Sample] = []
    fetches = failures = 0
    print("    min  gw MB  mem MB  gw fd mem fd  flows m.flows queue  rounds/s  clients  fails")
    try:
        start = time.monotonic()
        every = seconds / samples
        next_sample = start
        while time.monotonic() - start < seconds:
            if time.monotonic() >= next_sample:
                out.append(_sample(lab, start, fetches, failures))
                _print(out[-1])
                next_sample += every
            procs = _traffic(lab, rng)
            for p in procs:
                try:
                    code = p.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    p.kill()
                    code = p.wait()
                fetches += 1
                failures += code != 0
        out.append(_sample(lab, start, fetches, failures))
        _print(out[-1])
    finally:
        lab.down()
    first, last = out[0], out[-1]
    print(
        f"  memory: gateway {first.gateway_rss_mb:.1f} -> {last.gateway_rss_mb:.1f} MB, "
        f"largest member {first.member_rss_mb:.1f} -> {last.member_rss_mb:.1f} MB; "
        f"{failures} of {fetches} clients failed"
    )
    return out
