"""The benchmark's frame rate: a lab interface's segmentation offloads go off and come back
(`lanon.lab.offload`), in a namespace of its own with a veth pair."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lanon.lab.offload import SEGMENTATION
from tests.integration.conftest import require_root_lab

pytestmark = pytest.mark.root

SHOW = (
    "from pyroute2.ethtool import Ethtool; from lanon.lab.offload import SEGMENTATION; "
    "f = Ethtool().get_features('va').features; "
    "print(' '.join(n for n in SEGMENTATION if n in f and f[n].enable))"
)


def test_segmentation_goes_off_and_comes_back() -> None:
    require_root_lab()
    ns = f"lanon-t{os.getpid() % 100000}-gso"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ip = ["ip", "-n", ns, "link"]
        subprocess.run([*ip, "add", "va", "type", "veth", "peer", "name", "vb"], check=True)

        def run(*argv: str) -> list[str]:
            r = subprocess.run(
                ["ip", "netns", "exec", ns, sys.executable, *argv],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert r.returncode == 0, r.stdout + r.stderr
            return r.stdout.split()

        on = run("-c", SHOW)
        assert "tx-tcp-segmentation" in on  # a veth's default
        assert sorted(run("-m", "lanon.lab.offload", "va", "off")) == sorted(on)
        assert run("-c", SHOW) == []
        assert run("-m", "lanon.lab.offload", "va", "off") == []  # nothing left to change
        assert sorted(run("-m", "lanon.lab.offload", "va", "on")) == sorted(on)
        assert run("-c", SHOW) == on
        assert set(on) <= set(SEGMENTATION)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
