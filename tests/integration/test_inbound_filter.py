"""Members with `filter_inbound` (their kernels drop other members' INBOUND frames, by flow
tag) in a real lab: concurrent downloads arrive intact, and new flows' replies (pings, DNS)
reach them, the filter following each flow as it starts. The filter itself, in the kernel:
test_source_filter.py."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lanon.lab import topology
from lanon.lab.lab import DNS_NAME, Lab
from tests.integration.conftest import running_lab

pytestmark = pytest.mark.root

URL = f"http://{topology.INTERNET_HOST}"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab("i", members=3, gateways=1, filter_inbound=True)


def digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def test_filtering_members_download_at_once_and_get_it_intact(lab: Lab, tmp_path: Path) -> None:
    assert "filter_inbound = true" in (lab.dir / "member1.toml").read_text()
    procs = {
        m.name: lab.popen(
            m.name,
            ["curl", "-sS", "--max-time", "120", "-o", str(tmp_path / m.name), f"{URL}/5mb.bin"],
            stderr=subprocess.PIPE,
        )
        for m in lab.members
    }
    want = digest(lab.www / "5mb.bin")
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=150)
        assert proc.returncode == 0, f"{name}: {err.decode()}"
        assert digest(tmp_path / name) == want, f"{name}: the file differs"


def test_new_flows_are_answered_ping_dns_and_udp(lab: Lab) -> None:
    for _ in range(3):  # each a new flow (a new ICMP id, query port): the filter follows
        r = lab.run("member1", ["ping", "-c", "2", "-i", "0.2", "-W", "5", topology.INTERNET_HOST])
        assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout + r.stderr
        r = lab.run("member2", ["dig", "+short", "+time=5", "+tries=2", f"www.{DNS_NAME}"])
        assert r.stdout.strip() == topology.INTERNET_HOST, r.stdout + r.stderr
