"""The benchmark's server's view (bench/serverview.py) on the real kernel: a download traced
through `tcp_probe` in a tracing instance of its own gives its figures, and leaves the
machine's tracing as it was (the instance removed, the global event untouched).

A namespace of its own: a server on its loopback sends 4 MB to a client there. (The tracing
is done from here: `ip netns exec` mounts a /sys of the namespace's, without tracefs.)
"""

from __future__ import annotations

import textwrap

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


def test_a_download_traced_gives_its_view_and_leaves_tracing_as_it_was() -> None:
    require_root_lab()
    event = serverview.TRACING / serverview.EVENT
    was = (event / "enable").read_text()
    with veth_namespace("sv") as ns:

        def download() -> float:
            run_probe(ns, TRANSFER)
            return 1.0

        speed, view = serverview.record(download, PORT)
    assert speed == 1.0
    assert view is not None, "no probes traced"
    assert view.seconds > 0 and 0 <= view.first_half_share <= 1, view
    assert view.second_half_mbs > 0 and 0 <= view.window_full <= 1, view
    assert not (serverview.TRACING / "instances" / serverview.INSTANCE).exists()
    assert (event / "enable").read_text() == was
    assert "MB/s" in serverview.describe(view, speed)
