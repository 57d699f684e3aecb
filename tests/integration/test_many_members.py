"""Eight members at once in a real lab: contention, a member lost mid-transfer, large packets."""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lanon.lab import topology
from lanon.lab.lab import Lab
from tests.integration.conftest import running_lab
from tests.integration.test_end_to_end import Capture

pytestmark = pytest.mark.root

URL = f"http://{topology.INTERNET_HOST}"


@pytest.fixture(scope="module")
def lab8() -> Iterator[Lab]:
    yield from running_lab("m", members=8, gateways=1)


def fetch_all(
    lab: Lab, names: list[str], tmp: Path, rate: str = ""
) -> dict[str, tuple[Path, subprocess.Popen[bytes]]]:
    limit = ["--limit-rate", rate] if rate else []
    return {
        n: (
            tmp / f"{n}.bin",
            lab.popen(
                n,
                [
                    "curl",
                    "-sS",
                    "--max-time",
                    "150",
                    *limit,
                    "-o",
                    str(tmp / f"{n}.bin"),
                    f"{URL}/5mb.bin",
                ],
                stderr=subprocess.PIPE,
            ),
        )
        for n in names
    }


def check_all(lab: Lab, fetches: dict[str, tuple[Path, subprocess.Popen[bytes]]]) -> None:
    want = hashlib.blake2b((lab.www / "5mb.bin").read_bytes(), digest_size=16).digest()
    for name, (out, proc) in fetches.items():
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"{name}: {err.decode()}"
        assert hashlib.blake2b(out.read_bytes(), digest_size=16).digest() == want, (
            f"{name}: file differs"
        )


def collisions(status: dict[str, Any]) -> int:
    """Collisions a leader counted, of claims and of express cells."""
    return status["reservation_collisions"] + status["data_collisions"]


def test_eight_members_fetch_at_once_and_collisions_are_resolved(lab8: Lab, tmp_path: Path) -> None:
    before = lab8.leader_status()
    # (each 5 MB at 1.2 MB/s at most: longer than an epoch however fast the lab runs)
    check_all(lab8, fetch_all(lab8, [m.name for m in lab8.members], tmp_path, rate="1200k"))
    after = lab8.leader_status()
    # contention happened: claims collided in a reservation entry, or cells in the express
    # slot (a run may keep clear of one kind; `lanon status` counts both)
    assert collisions(after) > collisions(before)
    assert after["epoch"] > before["epoch"]  # keys rotated during the transfers, unnoticed


def test_a_member_lost_mid_transfer_costs_one_round_and_comes_back(
    lab8: Lab, tmp_path: Path
) -> None:
    others = [m.name for m in lab8.members[:7]]
    fetches = fetch_all(lab8, others, tmp_path, rate="800k")
    time.sleep(2.0)
    before = lab8.leader_status()
    lab8.stop_daemon("member8", signal.SIGKILL)
    time.sleep(1.5)
    during = lab8.leader_status()
    log = lab8.log_path("gateway1").read_text()
    assert len(re.findall(r"aborted \(deadline\), missing: [^\n]*member8", log)) == 1  # one round
    assert "member8" not in during["members_present"]
    assert during["rounds_completed"] - before["rounds_completed"] > 20  # the others went on
    check_all(lab8, fetches)
    lab8.start_daemon("member8")
    deadline = time.monotonic() + 20
    while "member8" not in lab8.leader_status()["members_present"] and time.monotonic() < deadline:
        time.sleep(0.2)
    r = lab8.run("member8", ["curl", "-sS", "--max-time", "20", f"{URL}/whoami"])
    assert r.returncode == 0, r.stderr


def test_large_udp_and_large_pings(lab8: Lab) -> None:
    echo = (
        "import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(5)\n"
        "for n in (1400, 3000):\n"
        "    data = bytes(range(256)) * (n // 256) + bytes(n % 256)\n"
        f"    s.sendto(data, ('{topology.INTERNET_HOST}', 7)); assert s.recvfrom(65535)[0] == data, n\n"
        "print('ok')"
    )
    r = lab8.run("member1", [sys.executable, "-c", echo])
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    for size in (1472, 3000):
        r = lab8.run(
            "member2", ["ping", "-c", "2", "-W", "5", "-s", str(size), topology.INTERNET_HOST]
        )
        assert " 0% packet loss" in r.stdout, (size, r.stdout + r.stderr)
    # too large for NFQUEUE to copy whole: the kernel's answer, not silence
    r = lab8.run("member3", ["ping", "-c", "1", "-W", "3", "-s", "6000", topology.INTERNET_HOST])
    assert "Frag needed" in r.stdout and "mtu = 1500" in r.stdout, r.stdout + r.stderr


def test_a_resigning_member_causes_no_burst_of_resets(lab8: Lab, tmp_path: Path) -> None:
    slow = fetch_all(lab8, ["member5"], tmp_path, rate="30k")
    more = [
        lab8.popen(
            "member5", ["curl", "-s", "--limit-rate", "30k", "-o", "/dev/null", f"{URL}/5mb.bin"]
        )
        for _ in range(3)
    ]
    time.sleep(2.0)
    cap = Capture(
        lab8, "internet", ["-i", "eth0", "tcp[tcpflags] & tcp-rst != 0"], tmp_path / "rst.pcap"
    )
    lab8.stop_daemon("member5", signal.SIGKILL)
    time.sleep(4.0)
    assert cap.stop() == []  # no RST from the lanon for the member's open connections
    for p in [*more, slow["member5"][1]]:
        p.kill()
        p.communicate()
    lab8.start_daemon("member5")
