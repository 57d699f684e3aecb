"""The benchmark's server's view (bench/serverview.py) on the real kernel: a download traced
through `tcp_probe` in a tracing instance of its own gives its figures, and leaves the
machine's tracing as it was (the instance removed, the global event untouched, tracefs mounted
for the download only where it was not).

A namespace of its own: a server on its loopback sends 4 MB to a client there. (The tracing
is done from here: `ip netns exec` mounts a /sys of the namespace's, without tracefs.)
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bench import serverview
from tests.integration.conftest import require_root_lab, run_probe, veth_namespace

pytestmark = pytest.mark.root

PORT = 8080
TRANSFER = textwrap.dedent(
    f"""
    import socket, subprocess, threading

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    SIZE = 4 << 20
    server = socket.create_server(("127.0.0.1", {PORT}))

    def serve():
        conn, _ = server.accept()
        conn.recv(100)
        conn.sendall(bytes(SIZE))
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    with socket.create_connection(("127.0.0.1", {PORT})) as c:
        c.sendall(b"GET")
        got = 0
        while chunk := c.recv(1 << 16):
            got += len(chunk)
    assert got == SIZE, got
    """
)


def _traced(tracing: Path) -> tuple[float, serverview.ServerView | None]:
    with veth_namespace("sv") as ns:

        def download() -> float:
            run_probe(ns, TRANSFER)
            return 1.0

        return serverview.record(download, PORT, tracing)


def _check(speed: float, view: serverview.ServerView | None) -> None:
    assert speed == 1.0
    assert view is not None, "no probes traced"
    assert view.seconds > 0 and 0 <= view.first_half_share <= 1, view
    assert view.second_half_mbs > 0 and 0 <= view.window_full <= 1, view
    assert "MB/s" in serverview.describe(view, speed)


def test_a_download_traced_gives_its_view_and_leaves_tracing_as_it_was() -> None:
    require_root_lab()
    tracing = serverview.TRACING
    mounted = (tracing / "events").is_dir()  # (a machine may not have mounted it)
    event = tracing / serverview.EVENT
    was = (event / "enable").read_text() if mounted else ""
    _check(*_traced(tracing))
    assert (tracing / "events").is_dir() == mounted
    if mounted:
        assert not (tracing / "instances" / serverview.INSTANCE).exists()
        assert (event / "enable").read_text() == was


def test_where_tracefs_is_not_mounted_it_is_for_the_download_only(tmp_path: Path) -> None:
    """A machine that has not mounted tracefs (not every one does at boot): the view is had
    all the same, and nothing stays mounted."""
    require_root_lab()
    tracing = tmp_path / "tracing"
    tracing.mkdir()
    _check(*_traced(tracing))
    assert not (tracing / "events").exists()
    assert list(tracing.iterdir()) == []
