"""A LAN socket read through its receive ring (rxring.RxRing) gets what a system call a frame
got: others' frames in order, each once, with the kernel's arrival time, never this host's
own; a full ring drops what does not fit and reads on in step; a frame longer than a slot is
counted and dropped, not cut; a read stops at MAX_BATCH and the socket stays readable; a
look at the ring says whether a frame waits, as a poll does.

A namespace of its own with a veth pair: frames are sent on one end and read on the other.
"""

from __future__ import annotations

import textwrap

import pytest

from lanon.common.rxring import slot_size
from tests.integration.conftest import require_root_lab, run_probe, veth_namespace

pytestmark = pytest.mark.root

PROBE = textwrap.dedent(
    """
    import select, socket, subprocess, time
    from lanon.common import wire
    from lanon.common.rawsock import MAX_BATCH, PACKET_IGNORE_OUTGOING, SOL_PACKET, LinkSocket

    OTHER = bytes.fromhex("02666c6f6f64")
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind(("va", 0))

    def send(body, n=1):
        for i in range(n):
            tx.send(b"\\xff" * 6 + OTHER + b"\\x88\\xb5" + body + i.to_bytes(4, "big"))

    def readable(s):
        return bool(select.select([s], [], [], 0)[0])

    rx = LinkSocket("vb", wire.ETHERTYPE, ring=64)
    assert rx._ring is not None and rx.ring_refused is None, rx.ring_refused
    slots = rx._ring.count
    assert 64 <= slots < 128, slots

    # in order, each once, stamped with the kernel's time of arrival
    before = time.time()
    send(b"abc", 3)
    time.sleep(0.1)
    got = list(rx.receive_stamped())
    assert [(s, p) for s, p, _ in got] == [(OTHER, b"abc" + i.to_bytes(4, "big")) for i in range(3)], got
    stamps = [t for _, _, t in got]
    assert before <= stamps[0] <= stamps[1] <= stamps[2] <= time.time(), (before, stamps)
    assert not list(rx.receive()) and not readable(rx)

    # `waiting` looks at the ring (no system call) as a poll would, with or without a ring
    plain = LinkSocket("vb", wire.ETHERTYPE)
    assert not rx.waiting() and not plain.waiting()
    send(b"wait")
    time.sleep(0.1)
    assert rx.waiting() and plain.waiting()
    assert len(list(rx.receive_unstamped())) == 1 and len(list(plain.receive_unstamped())) == 1
    assert not rx.waiting() and not plain.waiting()
    plain.close()

    # never this host's own, whether the kernel leaves them out or the ring's slot says so
    rx.send(b"\\xff" * 6, b"own")
    rx.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 0)
    rx.send(b"\\xff" * 6, b"own")
    send(b"theirs")
    time.sleep(0.1)
    assert [p for _, p in rx.receive()] == [b"theirs" + bytes(4)]

    # a full ring: the first are kept, the rest dropped, and it reads on in step
    send(b"flood", 200)
    time.sleep(0.2)
    got = [p[5:] for _, p in rx.receive()]
    assert got == [i.to_bytes(4, "big") for i in range(slots)], (len(got), slots, got[:3], got[-3:])
    send(b"after", 3)
    time.sleep(0.1)
    assert [p for _, p in rx.receive()] == [b"after" + i.to_bytes(4, "big") for i in range(3)]

    # at most MAX_BATCH a read; the socket stays readable until the ring is empty
    big = LinkSocket("vb", wire.ETHERTYPE, ring=1024)
    send(b"many", MAX_BATCH + 44)
    time.sleep(0.2)
    assert len(list(big.receive())) == MAX_BATCH and readable(big)
    assert len(list(big.receive())) == 44 and not readable(big)

    # the kind's filter holds with a ring, and the checksum flag reads from the slot
    inbound = LinkSocket("vb", wire.ETHERTYPE, kind=(frozenset({wire.MsgType.INBOUND}), True), ring=64)
    for t in (wire.MsgType.OPEN, wire.MsgType.INBOUND):
        send(bytes([wire.VERSION, t]))
    time.sleep(0.1)
    assert [p[1] for _, p in inbound.receive()] == [wire.MsgType.INBOUND]
    while list(rx.receive()) or list(big.receive()):
        pass  # (rx got the frames sent to the others too)
    send(b"checked")
    time.sleep(0.1)
    assert list(rx.receive_checked()) == [(b"checked" + bytes(4), True)]

    # the link down and up: the error the kernel leaves on the socket is taken, so it does not
    # stay readable (the daemon's loop would spin), and frames come as before
    for updown in ("down", "up"):
        subprocess.run(["ip", "link", "set", "vb", updown], check=True)
    time.sleep(0.5)
    list(rx.receive())
    assert not readable(rx)
    send(b"back")
    time.sleep(0.1)
    assert [p for _, p in rx.receive()] == [b"back" + bytes(4)]

    # the MTU raised after the ring was made: a frame longer than a slot is counted, not cut
    for dev in ("va", "vb"):
        subprocess.run(["ip", "link", "set", dev, "mtu", "4000"], check=True)
    send(b"x" * 3000)
    send(b"small")
    time.sleep(0.1)
    assert [p for _, p in rx.receive()] == [b"small" + bytes(4)]
    assert rx.take_truncated() == 1 and rx.take_truncated() == 0
    rx.close()
    """
)


def test_slots_hold_a_whole_frame_of_the_mtu() -> None:
    # the kernel puts the Ethernet header 66 bytes into a slot; 4 bytes spare for a VLAN tag
    assert slot_size(1500) == 1584
    assert slot_size(1501) == 1600  # a multiple of 16 (TPACKET_ALIGNMENT)
    assert slot_size(9000) == 9088


def test_a_ring_reads_what_a_system_call_a_frame_read() -> None:
    require_root_lab()
    with veth_namespace("ring") as ns:
        run_probe(ns, PROBE)
