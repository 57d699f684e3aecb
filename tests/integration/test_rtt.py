"""The benchmark's RTT probe (lab/rtt.py): echoes at random gaps, each answered one timed.

A namespace of its own, only its loopback: nothing leaves it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lanon.common.packet import checksum
from lanon.lab.rtt import echo
from tests.integration.conftest import require_root_lab

pytestmark = pytest.mark.root


def test_an_echo_is_well_formed() -> None:
    packet = echo(0x1234, 7)
    assert packet[0] == 8 and packet[4:8] == bytes.fromhex("12340007")
    assert checksum(packet) == 0  # a correct ICMP checksum sums to zero


def test_the_probe_times_each_echo_in_a_namespace() -> None:
    require_root_lab()
    ns = f"lanon-t{os.getpid() % 100000}-rtt"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        probe = [sys.executable, "-m", "lanon.lab.rtt", "127.0.0.1", "5", "0", "0.002"]
        r = subprocess.run(
            ["ip", "netns", "exec", ns, *probe],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stderr
        times = [float(x) for x in r.stdout.split()]
        assert len(times) == 5 and all(0 < t < 1000 for t in times), r.stdout
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
