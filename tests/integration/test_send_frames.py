"""A gateway sends a packet's INBOUND frames in one system call (`LinkSocket.send_frames`,
sendmmsg in common/native.c): on the wire they are what a call a frame sent, in order, each
whole, however many (past one call's SEND_BATCH) and whatever their lengths, compiled or not;
a frame the kernel refuses is counted, and the others still go.

A namespace of its own with a veth pair: frames are sent on one end and read on the other.
"""

from __future__ import annotations

import textwrap

import pytest

from tests.integration.conftest import require_root_lab, run_probe, veth_namespace

pytestmark = pytest.mark.root

PROBE = textwrap.dedent(
    """
    import time
    from lanon.common import rawsock, wire
    from lanon.common.rawsock import SEND_BATCH, LinkSocket

    assert rawsock._send_frames is not None, "the compiled module has no lanon_send_frames"
    tx = LinkSocket("va", wire.ETHERTYPE)
    rx = LinkSocket("vb", wire.ETHERTYPE, rcvbuf=16 << 20)
    payloads = [bytes([i % 251]) * (46 + (i * 37) % 1450) + i.to_bytes(4, "big")
                for i in range(SEND_BATCH + 44)]

    def received():
        time.sleep(0.2)
        got = []
        while True:
            batch = list(rx.receive())
            if not batch:
                return got
            got += batch

    # compiled: one call a SEND_BATCH, the same frames as one call a frame, in order
    assert tx.send_frames(wire.BROADCAST, payloads) == 0 and tx.send_errors == 0
    assert received() == [(tx.mac, p) for p in payloads]
    rawsock._send_frames = None  # (a module built from an older source)
    assert tx.send_frames(wire.BROADCAST, payloads[:50]) == 0
    assert received() == [(tx.mac, p) for p in payloads[:50]]

    # a frame too long for the link: refused and counted, and the others still go
    rawsock._send_frames = rawsock._native.lib.lanon_send_frames
    failed = tx.send_frames(wire.BROADCAST, [b"first", bytes(3000), b"after", bytes(4000)])
    assert failed == 2 and tx.send_errors == 2, failed
    assert received() == [(tx.mac, b"first"), (tx.mac, b"after")]
    assert tx.send_frames(wire.BROADCAST, [b"next"]) == 0  # the socket goes on
    assert received() == [(tx.mac, b"next")]
    """
)


def test_frames_sent_together_arrive_as_frames_sent_one_by_one() -> None:
    require_root_lab()
    with veth_namespace("sendmmsg") as ns:
        run_probe(ns, PROBE)
