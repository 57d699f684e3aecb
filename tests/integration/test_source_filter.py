"""The kernel filter a flooded daemon puts on its LAN socket lets only trusted hosts through,
and a member's two LAN sockets each get their kind of frame (the rounds', INBOUND), the
INBOUND one without this host's own frames.

A namespace of its own with a veth pair: frames from a trusted and an untrusted address are
sent on one end; the lanon socket on the other end sees only the trusted ones while the
filter is on, and all of them once it is off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.integration.conftest import require_root_lab

pytestmark = pytest.mark.root

PROBE = textwrap.dedent(
    """
    import socket, time
    from lanon.common import wire
    from lanon.common.rawsock import LinkSocket

    TRUSTED, OTHER = bytes.fromhex("020000000001"), bytes.fromhex("02666c6f6f64")
    rx = LinkSocket("vb", wire.ETHERTYPE)
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind(("va", 0))

    def burst():
        for src in (TRUSTED, OTHER, OTHER, TRUSTED):
            tx.send(b"\\xff" * 6 + src + b"\\x88\\xb5" + b"x" * 50)
        time.sleep(0.2)
        return [s.hex() for s, _ in rx.receive()]

    rx.allow_only(frozenset({TRUSTED}))
    on = burst()
    rx.allow_only(None)
    off = burst()
    print(on, off)
    assert on == [TRUSTED.hex()] * 2, on
    assert sorted(off) == sorted([TRUSTED.hex(), OTHER.hex()] * 2), off

    # one socket for the rounds' frames, one for INBOUND: neither waits behind the other
    rounds = LinkSocket("vb", wire.ETHERTYPE, kind=(wire.MsgType.INBOUND, False))
    inbound = LinkSocket("vb", wire.ETHERTYPE, kind=(wire.MsgType.INBOUND, True))
    inbound.allow_only(frozenset({TRUSTED}))  # the kind stays with the sources
    for src in (TRUSTED, OTHER):
        for t in (wire.MsgType.OPEN, wire.MsgType.INBOUND, wire.MsgType.OUTPUT_PART):
            tx.send(b"\\xff" * 6 + src + b"\\x88\\xb5" + bytes([wire.VERSION, t]) + b"x" * 50)
    time.sleep(0.2)
    got_rounds = sorted((s.hex(), p[1]) for s, p in rounds.receive())
    got_inbound = [(s.hex(), p[1]) for s, p in inbound.receive()]
    want = sorted(
        (src.hex(), t)
        for src in (TRUSTED, OTHER)
        for t in (wire.MsgType.OPEN, wire.MsgType.OUTPUT_PART)
    )
    assert got_rounds == want, got_rounds
    assert got_inbound == [(TRUSTED.hex(), wire.MsgType.INBOUND)], got_inbound

    # without stamps, one system call a frame: others' frames, never this host's own (the
    # kernel leaves them out: PACKET_IGNORE_OUTGOING)
    assert inbound._no_outgoing
    inbound.allow_only(None)
    own = LinkSocket("vb", wire.ETHERTYPE)
    own.send(b"\\xff" * 6, bytes([wire.VERSION, wire.MsgType.INBOUND]) + b"own")
    tx.send(b"\\xff" * 6 + OTHER + b"\\x88\\xb5" + bytes([wire.VERSION, wire.MsgType.INBOUND]) + b"x")
    time.sleep(0.2)
    got = [(s.hex(), p[2:], t) for s, p, t in inbound.receive_unstamped()]
    assert got == [(OTHER.hex(), b"x", 0.0)], got
    """
)


def test_only_trusted_sources_pass_while_filtered() -> None:
    require_root_lab()
    ns = f"lanon-t{os.getpid() % 100000}-bpf"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ip = ["ip", "-n", ns, "link"]
        subprocess.run([*ip, "add", "va", "type", "veth", "peer", "name", "vb"], check=True)
        for dev in ("va", "vb"):
            subprocess.run([*ip, "set", dev, "up"], check=True)
        r = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", PROBE],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
