"""Decoders are bounded by their buffer and raise only their codec's error (issue 9, point 2):
the inputs that crashed daemons, and their kin."""

from __future__ import annotations

import hashlib
import struct
import time

import pytest

from lanon.common import cell, wire
from lanon.common import packet as pk
from lanon.common.errors import RejectReason, RemoteProtocolError
from tests.packets import tcp, udp

CID = 0xDEADBEEF


def syn_ack(options: bytes, data_offset: int, extra: bytes = b"") -> bytearray:
    """A SYN-ACK whose TCP header claims `data_offset` words, carrying `options` (and `extra`
    after them), its IP total length the bytes it really has."""
    buf = bytearray(tcp(flags="SA") + options + extra)
    buf[2:4] = struct.pack("!H", len(buf))
    buf[32] = data_offset << 4
    return buf


@pytest.mark.parametrize(
    "options",
    [
        b"\x01\x01\x02",  # an MSS kind at the last byte: no length byte
        b"\x01\x02\x04",  # MSS kind and length, no value
        b"\x02\x04\x05",  # half a value
        b"\x01\x01\x01\x03",  # window scale without its length
        b"\x08\x0a\x00",  # a timestamp option cut short
        b"\x02\xff\x05\xb4",  # a length far past the end
        b"\x01" * 39,  # an odd number of bytes, all padding
    ],
)
def test_clamp_mss_stays_within_a_syn_ack_that_claims_more_options_than_it_has(
    options: bytes,
) -> None:
    buf = syn_ack(options, 15)  # 40 bytes of options claimed
    before = bytes(buf)
    assert pk.clamp_mss(buf, 20, 1336) is False
    assert bytes(buf) == before


def test_clamp_mss_ignores_what_lies_past_the_ip_total_length_and_the_data_offset() -> None:
    buf = syn_ack(b"\x01\x01\x01\x01", 6, b"\x02\x04\xff\xff")  # MSS after the header: data
    assert not pk.clamp_mss(buf, 20, 1000)
    buf = syn_ack(b"\x02\x04\xff\xff", 6)
    buf[2:4] = struct.pack("!H", 42)  # the IP packet ends in the middle of the option
    assert not pk.clamp_mss(buf, 20, 1000)
    assert not pk.clamp_mss(bytearray(10), 20, 1000)
    assert not pk.clamp_mss(syn_ack(b"", 6), 200, 1000)  # a header length beyond the buffer


def test_clamp_mss_of_an_mss_ending_the_packet_at_an_odd_offset() -> None:
    """The last word of an odd-length segment counts padded with zero, in the checksum and in
    its incremental update."""
    buf = syn_ack(b"\x01\x02\x04\x05\xb4", 7)  # MSS at 41..44, the packet ends at 45
    assert len(buf) == 45
    p = pk.Parsed(pk.Flow(pk.TCP, bytes(buf[12:16]), 0, bytes(buf[16:20]), 0), 20, 0x12, False)
    pk.fill_l4_checksum(buf, p)
    assert pk.clamp_mss(buf, 20, 1000)
    assert buf[43:45] == struct.pack("!H", 1000)
    fresh = bytearray(buf)
    pk.fill_l4_checksum(fresh, p)
    assert fresh == buf


def test_parse_refuses_a_tcp_header_longer_than_its_packet() -> None:
    with pytest.raises(pk.PacketError) as info:
        pk.parse(syn_ack(b"\x01\x01\x02", 15))
    assert info.value.reason is pk.Unsupported.TRUNCATED
    with pytest.raises(pk.PacketError):
        pk.parse(syn_ack(b"", 4))  # shorter than a TCP header


def test_parse_reads_headers_within_the_ip_total_length_only() -> None:
    buf = bytearray(udp(payload=b""))
    buf[2:4] = struct.pack("!H", 24)  # says the UDP header is cut short; bytes follow anyway
    with pytest.raises(pk.PacketError):
        pk.parse(buf)


def test_rewrites_of_a_parsed_packet_never_leave_it() -> None:
    buf = bytearray(tcp(flags="S"))
    p = pk.parse(buf)
    with pytest.raises(pk.PacketError):
        pk.set_source(buf[:30], p, b"\1\2\3\4", 5)  # the buffer lost its TCP header
    with pytest.raises(pk.PacketError):
        pk.normalize_for_emission(bytearray(10), 7)
    with pytest.raises(pk.PacketError):
        pk.fill_l4_checksum(buf[:30], p)
    with pytest.raises(pk.PacketError):
        pk.restore_icmp_error(buf, p, b"\1\2\3\4", 5)  # not an ICMP error


@pytest.mark.parametrize("data", [b"", b"\x45", bytes(19), b"\x4f" + bytes(30)])
def test_fragment_and_icmp_error_of_garbage_are_packet_errors(data: bytes) -> None:
    with pytest.raises(pk.PacketError):
        pk.fragment(data, 1500)
    if len(data) < 20:
        with pytest.raises(pk.PacketError):
            pk.icmp_error(data, pk.UNREACH_PROHIBITED)


def test_fragments_of_a_fragment_keep_its_offset() -> None:
    big = bytearray(udp(payload=bytes(3000)))
    big[6:8] = struct.pack("!H", 0x2000 | 100)  # a fragment at 800, more to come
    pieces = pk.fragment(bytes(big), 1500)
    offsets = [(struct.unpack_from("!H", p, 6)[0] & 0x1FFF) * 8 for p in pieces]
    assert offsets == [800, 800 + 1480, 800 + 2960]
    assert all(p[6] & 0x20 for p in pieces)  # every piece says more follow: the original did
    with pytest.raises(ValueError):
        pk.fragment(bytes(big), 20)


# --- wire -------------------------------------------------------------------------------------


def malformed(fn, body: bytes) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RemoteProtocolError) as info:
        fn(body)
    assert info.value.reason is RejectReason.MALFORMED


def keys_frame(*epochs: int) -> bytes:
    return wire.Keys(1, tuple((e, bytes(32)) for e in epochs)).encode(CID, 0)


def test_an_epoch_whose_successor_cannot_be_sent_is_refused_at_decoding() -> None:
    last = wire.MAX_EPOCH
    assert wire.pull_keys(keys_frame(0, last)).keys[1][0] == last
    struct.pack("!I", last + 1)  # its successor encodes
    for epoch in (last + 1, 2**32 - 1):
        malformed(wire.pull_keys, keys_frame(5, epoch))
        hb = wire.Heartbeat(1, 2, epoch, True, frozenset({0}), 4).encode(CID, 0)
        malformed(wire.pull_heartbeat, hb)
        o = wire.Open(1, epoch, 0, 0, 4, frozenset({0}), 3, (7,)).encode(CID, 0)
        malformed(wire.pull_open, o)
        refuse = wire.Refuse(1, wire.RefuseCode.STALE_ROUND, 2, epoch).encode(CID, 0)
        malformed(wire.pull_refuse, refuse)


def test_a_round_whose_successor_cannot_be_sent_is_refused_at_decoding() -> None:
    top = wire.MAX_ROUND  # 2**64 - 1: no round after it
    assert wire.pull_part(wire.Part(top - 1, 0, 1, b"").encode(wire.MsgType.CONTRIB, CID, 0))
    malformed(wire.pull_part, wire.Part(top, 0, 1, b"").encode(wire.MsgType.CONTRIB, CID, 0))
    malformed(wire.pull_output_head, wire.OutputHead(top, 0, 4, 0, (bytes(16),)).encode(CID, 0))
    malformed(wire.pull_heartbeat, wire.Heartbeat(1, top, 0, True, frozenset(), 4).encode(CID, 0))
    refuse = wire.Refuse(1, wire.RefuseCode.STALE_ROUND, top, 0).encode(CID, 0)
    malformed(wire.pull_refuse, refuse)  # a leader adopting it could not open the next round


def test_bitmaps_with_no_or_huge_widths() -> None:
    assert wire.bitmap_decode(b"", 0) == frozenset()
    assert wire.bitmap_decode(bytes(8192), 65535) == frozenset()
    assert wire.bitmap_decode(b"\xff" * 8192, 65536) == frozenset(range(65536))
    malformed(lambda b: wire.bitmap_decode(b, 13), b"\x00\x0f")  # bits 13..15 set: padding
    malformed(lambda b: wire.bitmap_decode(b, -1), b"")
    empty = wire.Open(1, 2, 0, 0, 4, frozenset(), 0, ()).encode(CID, 0)
    malformed(wire.pull_open, empty)  # nobody to contribute
    hb = wire.Heartbeat(1, 2, 3, True, frozenset(), 0).encode(CID, 0)
    malformed(wire.pull_heartbeat, hb)
    tp = wire.TreePart(1, 0, 1, frozenset(), 0, b"x").encode(CID, 0)
    malformed(wire.pull_tree_part, tp)
    short = wire.TreePart(1, 0, 1, frozenset({3}), 65535, b"").encode(CID, 0)[:40]
    malformed(wire.pull_tree_part, short)


def test_a_huge_bitmap_costs_little() -> None:
    frame = wire.Heartbeat(1, 2, 3, True, frozenset(), 65535).encode(CID, 0)
    start = time.perf_counter()
    for _ in range(100):
        wire.pull_heartbeat(frame)
    assert (time.perf_counter() - start) / 100 < 0.002


def test_flows_of_empty_records_are_refused() -> None:
    frame = wire.push_header(wire.MsgType.FLOWS, CID, 0) + struct.pack("!QHH", 1, 65535, 0)
    malformed(wire.pull_flows, frame)
    empty = wire.Flows(1, 0, 0, bytes(wire.AEAD_TAG_LEN))  # no records: only the AEAD tag
    assert wire.pull_flows(empty.encode(CID, 0)).records(b"") == []
    malformed(wire.pull_flows, wire.Flows(1, 0, 0, b"").encode(CID, 0))  # no tag


# --- cells ------------------------------------------------------------------------------------


def test_decode_slot_of_short_or_lying_slots() -> None:
    for slot in (b"\x01", bytes(7) + b"\x01", b"\xff" * 15):
        assert cell.decode_slot(slot) == (cell.SlotState.GARBLED, None)
    rest = b"\x01\x02\x03"  # a check that matches a body too short for a cell header
    slot = hashlib.blake2b(rest, digest_size=8).digest() + rest
    assert cell.decode_slot(slot) == (cell.SlotState.GARBLED, None)


def test_encode_cell_refuses_what_no_cell_can_say() -> None:
    for index, count in ((0, 0), (3, 3), (0, 256)):
        with pytest.raises(ValueError):
            cell.encode_cell(200, 1, 1, index, count, b"x")


def cell_of(tag: int, pid: int, index: int, count: int, data: bytes = b"x" * 100) -> cell.Cell:
    return cell.Cell(tag, pid, index, count, data)


def test_reassembler_bounds_pending_packets_per_tag_and_in_bytes() -> None:
    r = cell.Reassembler(max_pending=8, max_per_tag=3, max_bytes=1000)
    for pid in range(10):
        assert r.add_cell(cell_of(7, pid, 0, 2), 0.0) is None
    assert len(r) == 3 and r.drops[cell.CellDrop.EVICTED] == 7  # the tag's oldest went first
    assert r.add_cell(cell_of(7, 9, 1, 2), 0.0) == b"x" * 200  # the newest still completes
    for tag in range(20):
        r.add_cell(cell_of(100 + tag, 0, 0, 3), 0.0)
    assert len(r) <= 8 and r.bytes_pending <= 1000


def test_reassembler_drops_a_packet_whose_cells_disagree() -> None:
    r = cell.Reassembler()
    r.add_cell(cell_of(1, 1, 0, 3), 0.0)
    assert r.add_cell(cell_of(1, 1, 1, 4), 0.0) is None  # another count
    assert len(r) == 0 and r.drops[cell.CellDrop.MISMATCH] == 1
    r.add_cell(cell_of(1, 2, 0, 2), 0.0)
    assert r.add_cell(cell_of(1, 2, 0, 2), 0.0) is None  # the same cell again: harmless
    assert r.add_cell(cell_of(1, 2, 0, 2, b"other"), 0.0) is None  # other data for it: dropped
    assert len(r) == 0 and r.drops[cell.CellDrop.MISMATCH] == 2
    for bad in (cell_of(1, 3, 5, 2), cell_of(1, 3, 0, 0)):
        assert r.add_cell(bad, 0.0) is None
    assert r.drops[cell.CellDrop.MALFORMED] == 2 and r.bytes_pending == 0


def test_reassembler_expires_oldest_first_and_counts_it() -> None:
    r = cell.Reassembler(timeout=1.0)
    r.add_cell(cell_of(1, 1, 0, 2), 0.0)
    r.add_cell(cell_of(1, 2, 0, 2), 0.5)
    assert r.expire(1.2) == 1 and len(r) == 1 and r.expired == 1
    assert r.expire(5.0) == 1 and r.bytes_pending == 0


def test_reassembler_drops_are_taken_once() -> None:
    r = cell.Reassembler(max_per_tag=1)
    r.add_cell(cell_of(1, 1, 0, 2), 0.0)
    r.add_cell(cell_of(1, 2, 0, 2), 0.0)
    r.add_cell(cell_of(1, 3, 0, 0), 0.0)
    assert r.take_drops() == {cell.CellDrop.EVICTED: 1, cell.CellDrop.MALFORMED: 1}
    assert not r.take_drops()
