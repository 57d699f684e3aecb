"""The gateway's reassembly of Internet fragments: bounded, cheap, and never raises."""

from __future__ import annotations

import random
import struct
import time

from lanon.common import packet as pk
from lanon.common.events import FragmentDrop
from lanon.gateway.defrag import MAX_DATAGRAM, Defragmenter
from tests.packets import checksums_ok, udp


def frag(
    offset: int, data: bytes, more: bool, ident: int = 1, options: bytes = b"", df: bool = False
) -> bytes:
    ihl = 20 + len(options)
    hdr = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl // 4,
            0,
            ihl + len(data),
            ident,
            (0x4000 if df else 0) | (0x2000 if more else 0) | offset // 8,
            64,
            17,
            0,
            bytes((203, 0, 113, 10)),
            bytes((198, 18, 0, 193)),
        )
    )
    return bytes(hdr) + options + data


def test_a_datagram_past_65535_bytes_is_dropped_not_fatal() -> None:
    d = Defragmenter()
    options = bytes(40)  # the first fragment's header is 60 bytes long
    size = 65515  # what a 20-byte header allows: with 60, the datagram is 65,575 bytes
    pieces = [
        frag(
            off,
            bytes(min(1480, size - off)),
            off + 1480 < size,
            options=options if not off else b"",
        )
        for off in range(0, size, 1480)
    ]
    assert all(d.add(p, 0.0) is None for p in pieces)
    assert d.drops[FragmentDrop.TOO_LARGE] == 1 and len(d) == 0 and d.bytes_pending == 0
    assert d.add(frag(65528, bytes(16), False, ident=2), 0.0) is None  # past 65,535 at once
    assert d.drops[FragmentDrop.TOO_LARGE] == 2


def test_the_largest_datagram_is_put_together() -> None:
    d = Defragmenter()
    size = MAX_DATAGRAM - 20
    out = None
    for off in range(0, size, 1480):
        out = d.add(frag(off, bytes(min(1480, size - off)), off + 1480 < size), 0.0)
    assert out is not None and len(out) == MAX_DATAGRAM


def test_overlapping_fragments_drop_their_datagram_and_repeats_do_not() -> None:
    d = Defragmenter()
    assert d.add(frag(0, b"a" * 16, True), 0.0) is None
    assert d.add(frag(0, b"a" * 16, True), 0.0) is None  # the same again
    assert len(d) == 1 and d.dropped == 0
    assert d.add(frag(8, b"b" * 16, False), 0.0) is None  # rewrites bytes 8..15
    assert d.drops[FragmentDrop.OVERLAP] == 1 and len(d) == 0
    d.add(frag(16, b"c" * 8, False, ident=3), 0.0)
    assert d.add(frag(0, b"d" * 24, True, ident=3), 0.0) is None
    assert d.drops[FragmentDrop.OVERLAP] == 2


def test_fragments_that_disagree_on_the_end_drop_their_datagram() -> None:
    d = Defragmenter()
    d.add(frag(0, bytes(16), True), 0.0)
    d.add(frag(32, bytes(8), False), 0.0)
    d.add(frag(48, bytes(8), False), 0.0)  # a second, different end
    assert d.drops[FragmentDrop.INCONSISTENT] == 1 and len(d) == 0
    d.add(frag(40, bytes(8), True, ident=2), 0.0)
    d.add(frag(16, bytes(8), False, ident=2), 0.0)  # an end before bytes already held
    assert d.drops[FragmentDrop.INCONSISTENT] == 2 and len(d) == 0


def test_malformed_fragments_are_counted() -> None:
    d = Defragmenter()
    for bad in (b"", b"\x45", bytes(20), frag(0, bytes(12), True), frag(0, b"", True)):
        assert d.add(bad, 0.0) is None
    truncated = bytearray(frag(0, bytes(16), True))
    truncated[2:4] = struct.pack("!H", 100)  # longer than it is
    assert d.add(bytes(truncated), 0.0) is None
    assert d.drops[FragmentDrop.MALFORMED] == 6 and len(d) == 0


def test_fragments_per_datagram_are_bounded() -> None:
    d = Defragmenter(max_fragments=64)
    for i in range(64):
        d.add(frag(16 * i, bytes(8), True), 0.0)
    assert len(d) == 1 and d.dropped == 0
    d.add(frag(16 * 64, bytes(8), True), 0.0)
    assert d.drops[FragmentDrop.TOO_MANY_FRAGMENTS] == 1 and len(d) == 0


def test_memory_is_bounded_in_datagrams_and_bytes() -> None:
    d = Defragmenter(max_pending=10, max_bytes=20_000)
    for ident in range(100):
        d.add(frag(0, bytes(1480), True, ident=ident), 0.0)
        assert len(d) <= 10 and d.bytes_pending <= 20_000
    assert d.drops[FragmentDrop.EVICTED] == 90
    whole = [frag(0, b"x" * 1480, True, ident=500), frag(1480, b"y" * 20, False, ident=500)]
    assert d.add(whole[0], 0.0) is None
    out = d.add(whole[1], 0.0)  # the newest datagram is not the one given up
    assert out is not None and len(out) == 20 + 1500


def test_expiry_is_counted_and_oldest_first() -> None:
    d = Defragmenter(timeout=1.0)
    d.add(frag(0, bytes(8), True, ident=1), 0.0)
    d.add(frag(0, bytes(8), True, ident=2), 0.8)
    assert d.expire(1.5) == 1 and len(d) == 1 and d.drops[FragmentDrop.TIMEOUT] == 1
    d.add(frag(0, bytes(8), True, ident=3), 5.0)  # a new datagram sweeps the stale ones
    assert len(d) == 1 and d.drops[FragmentDrop.TIMEOUT] == 2


def test_any_order_gives_the_datagram_and_its_checksums_right() -> None:
    big = bytearray(udp(payload=bytes(range(256)) * 20))
    big[6] = 0
    pieces = pk.fragment(bytes(big), 576)
    random.Random(3).shuffle(pieces)
    d = Defragmenter()
    outs = [d.add(p, 0.0) for p in pieces]
    assert outs[:-1] == [None] * (len(pieces) - 1)
    assert outs[-1] == bytes(big) and checksums_ok(outs[-1])


def test_a_fragment_costs_the_same_with_many_pending() -> None:
    """Today's bound: 64 fragments a datagram, 256 datagrams; each fragment is a binary search."""
    d = Defragmenter()
    rng = random.Random(1)

    def feed(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            d.add(
                frag(8 * rng.randrange(0, 8000, 2), bytes(8), True, ident=rng.randrange(300)), 0.0
            )
        return (time.perf_counter() - start) / n

    feed(20_000)  # fill every bound
    assert len(d) <= d.max_pending
    assert feed(5000) < 100e-6  # was 0.9 ms a fragment with 5,000 pending


def test_drops_are_taken_once_for_events_and_metrics() -> None:
    d = Defragmenter()
    d.add(b"", 0.0)
    d.add(frag(65528, bytes(16), False), 0.0)
    assert d.take_drops() == {FragmentDrop.MALFORMED: 1, FragmentDrop.TOO_LARGE: 1}
    assert not d.take_drops()
    d.add(b"", 0.0)
    assert d.take_drops() == {FragmentDrop.MALFORMED: 1} and d.dropped == 3
