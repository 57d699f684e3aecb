"""Integration tests: the real kernel, in namespaces the lab creates (root; run in CI).

They are never skipped silently: without root or a needed tool they fail and say what is
missing. (LANON_SKIP_ROOT_TESTS=1 skips them explicitly, for a developer without root.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from lanon.lab.lab import Lab, LabSpec

TOOLS = ("ip", "iptables", "curl", "ping", "tcpdump", "dig", "dnsmasq")
EPOCH_SECONDS = 3.0  # test labs rotate keys often, so that every transfer crosses rotations


def require_root_lab() -> None:
    if os.environ.get("LANON_SKIP_ROOT_TESTS") == "1":
        pytest.skip("LANON_SKIP_ROOT_TESTS=1: root integration tests skipped on request")
    if os.geteuid() != 0:
        pytest.fail(
            "integration tests need root (namespaces, iptables, NFQUEUE): run 'sudo ./run test'"
        )
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"integration tests need {', '.join(missing)}: './run test' installs them")


@contextlib.contextmanager
def veth_namespace(tag: str) -> Iterator[str]:
    """A namespace of its own with a veth pair, va and vb, both up; removed after."""
    ns = f"lanon-t{os.getpid() % 100000}-{tag}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ip = ["ip", "-n", ns, "link"]
        subprocess.run([*ip, "add", "va", "type", "veth", "peer", "name", "vb"], check=True)
        for dev in ("va", "vb"):
            subprocess.run([*ip, "set", dev, "up"], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def run_probe(ns: str, code: str) -> None:
    """`code` run by this Python in namespace `ns`; it fails the test if it fails."""
    r = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def lab_name(tag: str) -> str:
    return f"t{os.getpid() % 100000}{tag}"


def running_lab(tag: str, **spec: Any) -> Iterator[Lab]:
    """A module's lab (keys rotating every EPOCH_SECONDS), always torn down."""
    require_root_lab()
    lab = Lab(lab_name(tag))
    lab.up(LabSpec(lab.name, epoch_seconds=EPOCH_SECONDS, **spec))
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """A lab with 4 members (one can stop and the lanon goes on) and 1 gateway."""
    yield from running_lab("a", members=4, gateways=1)


@contextlib.contextmanager
def reaped(*procs: subprocess.Popen[bytes]) -> Iterator[None]:
    """Whatever happens in the block, the processes end and their pipes close (a failed test
    must not leave a running curl whose warning would fail a later test)."""
    try:
        yield
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()


@pytest.fixture(autouse=True)
def no_capture_left() -> Iterator[None]:
    """A capture a failed test left running is ended with the test, not garbage-collected
    (with a ResourceWarning, an error here) in the middle of the next one."""
    yield
    from tests.integration.test_end_to_end import Capture

    while Capture.running:
        proc = Capture.running.pop().proc
        if proc.returncode is None:  # stop() reaps it; this one was left behind
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
