"""Nothing from the LAN or the Internet stops or crashes the lanon (a real lab, as root).

Each test plays the one who would break it: a leader frozen by SIGSTOP (a long pause, a VM
migration), a LAN host flooding mutated, replayed and forged lanon frames, a hostile Internet
server answering with malformed SYN-ACKs and oversized fragments while flooding the anonymous
addresses. Afterwards every daemon is the same process and members fetch as before.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from lanon.common.coalition import load
from lanon.lab import topology
from lanon.lab.lab import Lab
from tests.integration.conftest import reaped, running_lab

pytestmark = pytest.mark.root

URL = f"http://{topology.INTERNET_HOST}"
FLOOD = [sys.executable, "-m", "lanon.lab.flood"]
HOSTILE = [sys.executable, "-m", "lanon.lab.hostile"]


@pytest.fixture(scope="module")
def lab2() -> Iterator[Lab]:
    yield from running_lab("r", members=4, gateways=2)


def alive_pids(lab: Lab) -> dict[str, int]:
    out = {}
    for name, pid in lab.pids.items():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        out[name] = pid
    return out


def fetch_within(lab: Lab, member: str, seconds: float) -> float | None:
    """Seconds until `member` fetched /whoami (tries again until `seconds` are over)."""
    start = time.monotonic()
    while (left := start + seconds - time.monotonic()) > 0:
        r = lab.run(member, ["curl", "-sS", "--max-time", f"{max(left, 0.5):.1f}", f"{URL}/whoami"])
        if r.returncode == 0:
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def rounds(lab: Lab) -> int:
    return int(lab.leader_status()["rounds_completed"])


def logs(lab: Lab) -> str:
    """Every daemon's log tail and what its status says now (a failure must say why)."""
    keys = ("state", "condition", "leading", "round", "rounds_completed", "epoch", "held")
    keys += ("gateways_alive", "members_present", "last_round", "in_roster", "flows")
    states = []
    for h in lab.gateways + lab.members:
        try:
            st = lab.status(h.name)
        except Exception as exc:  # a daemon that does not answer says so too
            states.append(f"{h.name}: {exc}")
            continue
        states.append(f"{h.name}: " + ", ".join(f"{k}={st[k]}" for k in keys if k in st))
    tails = "\n".join(lab.tail(h.name, 25) for h in lab.gateways + lab.members)
    return "\n".join(states) + "\n" + tails


def test_a_leader_frozen_three_times_in_a_row_never_stops_the_lanon(lab2: Lab) -> None:
    before = alive_pids(lab2)
    for i in range(3):
        leader = lab2.leader_status()["name"]
        pid = lab2.pids[leader]
        os.kill(pid, signal.SIGSTOP)
        time.sleep(1.5)
        os.kill(pid, signal.SIGCONT)
        took = fetch_within(lab2, "member1", 5.0)
        assert took is not None, f"freeze {i + 1} of {leader}: no fetch within 5 s\n{logs(lab2)}"
        start = rounds(lab2)
        time.sleep(1.0)
        assert rounds(lab2) > start + 10, f"freeze {i + 1}: rounds did not resume\n{logs(lab2)}"
        # No flapping: the one that took over keeps what it took; each address has one holder.
        held = {g.name: lab2.status(g.name)["held"] for g in lab2.gateways}
        assert held[leader] == [], f"freeze {i + 1}: {leader} took back {held[leader]}"
        assert sum(len(h) for h in held.values()) == 8, held
    assert alive_pids(lab2) == before  # no daemon needed a restart


def test_a_flood_of_mutated_replayed_and_forged_frames_only_slows_the_lanon(lab2: Lab) -> None:
    before = alive_pids(lab2)
    flood = lab2.popen(
        "lan",
        [*FLOOD, "--interface", "br0", "--count", "150000", "--seconds", "15", "--sample", "1.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with reaped(flood):
        time.sleep(2.5)  # sampled, and flooding now
        during = fetch_within(lab2, "member2", 12.0)
        out, err = flood.communicate(timeout=40)
    assert flood.returncode == 0, err.decode()
    figures = json.loads(out)
    assert figures["sent"] > 20_000 and figures["heard"] > 0, figures
    assert during is not None, f"no fetch during the flood {figures}\n{logs(lab2)}"
    assert alive_pids(lab2) == before
    after = fetch_within(lab2, "member3", 5.0)
    assert after is not None, f"no fetch after the flood {figures}\n{logs(lab2)}"
    rejected = sum(lab2.leader_status()["rejected"].values())
    assert rejected > 1000, lab2.leader_status()["rejected"]


def test_a_hostile_internet_server_crashes_nothing(lab2: Lab) -> None:
    before = alive_pids(lab2)
    anonymous = [str(a) for a in load(lab2.dir / "coalition.toml").anonymous]
    # the Internet host's own stack must not reset the connections the hostile server answers
    rst = ["OUTPUT", "-p", "tcp", "--sport", "8081", "--tcp-flags", "RST", "RST", "-j", "DROP"]
    lab2.run("internet", ["iptables", "-A", *rst], check=True)
    hostile = lab2.popen(
        "internet",
        [
            *HOSTILE,
            "--port",
            "8081",
            "--seconds",
            "12",
            "--flood",
            "30000",
            "--flood-to",
            *anonymous,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        with reaped(hostile):
            time.sleep(0.5)
            # every member at once, each given 4 s for its SYNs to reach the server through
            # the flood (one at a time with 2 s each, a member's SYNs once missed it)
            curls = [
                lab2.popen(
                    m.name,
                    ["curl", "-sS", "--max-time", "4", f"{URL}:8081/"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for m in lab2.members
            ]
            with reaped(*curls):
                for c in curls:
                    c.wait(timeout=10)
            during = fetch_within(lab2, "member4", 8.0)
            out, err = hostile.communicate(timeout=30)
    finally:
        lab2.run("internet", ["iptables", "-D", *rst])
    assert hostile.returncode == 0, err.decode()
    figures = json.loads(out)
    assert figures["syns"] >= 4 and figures["crafted"] > 100, f"{figures}\n{logs(lab2)}"
    assert during is not None, f"no fetch during the attack {figures}\n{logs(lab2)}"
    assert alive_pids(lab2) == before, logs(lab2)
    for m in lab2.members:
        assert fetch_within(lab2, m.name, 5.0) is not None, f"{m.name} after the attack"
