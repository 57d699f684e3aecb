"""The lab's Internet server sends with its own TCP congestion control, CUBIC (Linux's
default), whatever this machine's default: a lab's downloads then compare across machines.
A request may ask for another of a few for its connection; any other name, or one the kernel
lacks, is refused (400), never served silently with the default.

A namespace of its own: the server on its loopback, curl beside it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import require_root_lab, veth_namespace

pytestmark = pytest.mark.root


def _get(ns: str, path: str) -> tuple[int, str]:
    r = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "curl",
            "-sS",
            "-m",
            "5",
            "-w",
            "\n%{http_code}",
            f"http://127.0.0.1:8080{path}",
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body.strip()


def test_the_server_sends_with_cubic_or_with_what_a_request_asks(tmp_path: Path) -> None:
    require_root_lab()
    (tmp_path / "f.bin").write_bytes(b"x" * 100_000)
    with veth_namespace("cc") as ns:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                "-m",
                "lanon.lab.internet",
                "--address",
                "127.0.0.1",
                "--port",
                "8080",
                "--no-echo",
                "--root",
                str(tmp_path),
                "--log",
                str(tmp_path / "log"),
            ],
        )
        try:
            for _ in range(50):
                if _get(ns, "/congestion")[0] == 200:
                    break
                time.sleep(0.1)
            assert _get(ns, "/congestion") == (200, "cubic")
            assert _get(ns, "/congestion?congestion=reno") == (200, "reno")
            assert _get(ns, "/congestion?congestion=nonesuch")[0] == 400
            assert _get(ns, "/congestion?congestion=%E2%82%AC")[0] == 400  # (not Latin-1)
            assert _get(ns, "/congestion?congestion=htcp")[0] == 400  # not one it offers
            assert _get(ns, "/f.bin?congestion=reno") == (200, "x" * 100_000)
            assert _get(ns, "/f.bin?congestion=nonesuch")[0] == 400
        finally:
            server.terminate()
            server.wait(timeout=10)
