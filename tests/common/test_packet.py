import random
import struct
from collections.abc import Callable

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.packet import Raw

from lanon.common import packet as pk
from lanon.gateway.defrag import Defragmenter
from tests.packets import checksums_ok, ping, tcp, udp

ANON = bytes([198, 18, 0, 193])
REAL = bytes([198, 18, 0, 11])


def reference_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


BOTH = pytest.mark.parametrize(
    "checksum", [pk.checksum, pk.checksum_in_python], ids=["compiled", "python"]
)


def test_the_checksum_is_compiled() -> None:
    """`pip install` builds it (common/native.c): a gateway sums every 64 KiB packet a veth
    hands it unfinished."""
    assert pk._native is not None


@BOTH
def test_checksum_matches_reference(checksum: Callable[[bytes | bytearray], int]) -> None:
    rng = random.Random(2)
    for _ in range(5000):
        data = rng.randbytes(rng.randrange(0, 200))
        assert checksum(data) == reference_checksum(data)
        assert checksum(bytearray(data)) == reference_checksum(data)
    assert checksum(b"\xff\xff") == reference_checksum(b"\xff\xff")
    assert checksum(b"") == reference_checksum(b"")


@pytest.mark.parametrize("compiled", [True, False])
def test_a_checksum_after_a_pseudo_header_is_the_checksum_of_both(
    compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not compiled:
        monkeypatch.setattr(pk, "_native", None)
    rng = random.Random(4)
    for size in (0, 1, 2, 3, 1500, 65523):
        first, data = rng.randbytes(12), bytearray(rng.randbytes(size))
        want = reference_checksum(first + bytes(data))
        assert pk.checksum_after(first, memoryview(data)) == want
        assert pk.checksum_after(first, bytes(data)) == want
        assert pk.checksum(first + bytes(data)) == want


@BOTH
def test_checksum_of_long_packets_is_folded_right(
    checksum: Callable[[bytes | bytearray], int],
) -> None:
    """Up to a 64 KB packet, odd lengths, all ones (the sum that wraps most) and zeros after
    ones (in Python, past `_FOLD_ABOVE` bits the number is folded before its division)."""
    rng = random.Random(3)
    for size in (255, 256, 257, 1500, 9001, 65535):
        for data in (
            rng.randbytes(size),
            b"\xff" * size,
            b"\xff" * (size // 2) + bytes(size - size // 2),
        ):
            assert checksum(data) == reference_checksum(data), size


@pytest.mark.parametrize("make", [udp, tcp, ping])
def test_parse(make) -> None:  # type: ignore[no-untyped-def]
    p = pk.parse(make())
    assert p.flow.src == REAL and p.ihl == 20 and not p.icmp_error


@pytest.mark.parametrize(
    "make", [lambda: udp(payload=b"x" * 999), lambda: tcp(flags="PA", payload=b"y" * 1300), ping]
)
@pytest.mark.parametrize("port", [0, 1, 65535, 40123])
def test_set_source_keeps_checksums_right(make, port: int) -> None:  # type: ignore[no-untyped-def]
    buf = bytearray(make())
    p = pk.parse(buf)
    pk.set_source(buf, p, ANON, port)
    q = pk.parse(buf)
    assert q.flow.src == ANON and q.flow.sport == port
    assert checksums_ok(bytes(buf))


def test_set_destination_keeps_checksums_right() -> None:
    reply = bytes(
        IP(src="203.0.113.10", dst="198.18.0.193") / UDP(sport=7, dport=33333) / Raw(b"data" * 50)
    )
    buf = bytearray(reply)
    pk.set_destination(buf, pk.parse(buf), REAL, 40000)
    assert IP(bytes(buf))[UDP].dport == 40000
    assert checksums_ok(bytes(buf))


def test_udp_without_checksum_stays_without() -> None:
    raw = bytearray(udp())
    raw[26:28] = b"\0\0"
    pk.set_source(raw, pk.parse(raw), ANON, 5)
    assert raw[26:28] == b"\0\0"


def test_fill_l4_checksum() -> None:
    for make in (lambda: udp(payload=b"q" * 333), lambda: tcp(flags="PA", payload=b"z" * 77)):
        buf = bytearray(make())
        good = bytes(buf)
        p = pk.parse(buf)
        off = 20 + (16 if p.flow.proto == pk.TCP else 6)
        buf[off : off + 2] = b"\x12\x34"  # a partial (offloaded) checksum
        pk.fill_l4_checksum(buf, p)
        assert bytes(buf) == good


def test_clamp_mss() -> None:
    buf = bytearray(tcp(options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]))
    assert pk.clamp_mss(buf, 20, 1336)
    assert dict(IP(bytes(buf))[TCP].options)["MSS"] == 1336
    assert checksums_ok(bytes(buf))
    assert not pk.clamp_mss(buf, 20, 1400)  # already below
    assert not pk.clamp_mss(bytearray(tcp(flags="A")), 20, 1000)  # not a SYN


def test_clamp_mss_at_an_odd_offset() -> None:
    buf = bytearray(
        tcp(options=[("NOP", None), ("MSS", 1460), ("NOP", None), ("NOP", None), ("NOP", None)])
    )
    assert pk.clamp_mss(buf, 20, 1200)
    assert dict(IP(bytes(buf))[TCP].options)["MSS"] == 1200
    assert checksums_ok(bytes(buf))


@pytest.mark.parametrize(
    "raw,reason",
    [
        (b"\x45\x00", pk.Unsupported.TRUNCATED),
        (bytes(IP(version=6)), pk.Unsupported.NOT_IPV4),
        (bytes(IP(src="1.2.3.4", dst="5.6.7.8", proto=47) / Raw(b"gre")), pk.Unsupported.PROTOCOL),
        (bytes(IP(src="1.2.3.4", dst="5.6.7.8", flags="MF") / UDP()), pk.Unsupported.FRAGMENT),
        (udp()[:24], pk.Unsupported.TRUNCATED),
        (bytes(IP(src="1.2.3.4", dst="5.6.7.8") / ICMP(type=13)), pk.Unsupported.PROTOCOL),
    ],
)
def test_unsupported(raw: bytes, reason: pk.Unsupported) -> None:
    with pytest.raises(pk.PacketError) as info:
        pk.parse(raw)
    assert info.value.reason is reason


def test_icmp_error_about_our_udp_is_restored() -> None:
    sent = (
        IP(src="198.18.0.193", dst="203.0.113.10", id=9)
        / UDP(sport=33333, dport=53)
        / Raw(b"q" * 20)
    )
    err = (
        IP(src="203.0.113.10", dst="198.18.0.193")
        / ICMP(type=3, code=3)
        / IPerror(bytes(sent)[:28])
    )
    buf = bytearray(bytes(err))
    p = pk.parse(buf)
    assert p.icmp_error and p.flow.src == ANON and p.flow.sport == 33333
    pk.restore_icmp_error(buf, p, REAL, 40000)
    out = IP(bytes(buf))
    assert out.dst == "198.18.0.11"
    assert out[IPerror].src == "198.18.0.11" and out[UDPerror].sport == 40000
    assert checksums_ok(bytes(buf))
    inner = IPerror(bytes(out[IPerror]))
    del inner.chksum
    assert IPerror(bytes(inner)).chksum == out[IPerror].chksum


def test_fragment_and_defragment() -> None:
    big = bytearray(udp(payload=bytes(range(256)) * 12))  # 3100 bytes
    big[6] = 0  # no DF
    pieces = pk.fragment(bytes(big), 1500)
    assert len(pieces) == 3 and all(len(p) <= 1500 for p in pieces)
    d = Defragmenter()
    out = None
    for piece in reversed(pieces):  # any order
        out = d.add(piece, 0.0)
    assert out is not None
    assert IP(out)[UDP].load == IP(bytes(big))[UDP].load
    assert checksums_ok(out)


def test_defragmenter_forgets_incomplete() -> None:
    pieces = pk.fragment(udp(payload=b"a" * 3000), 1500)
    d = Defragmenter(timeout=1.0)
    assert d.add(pieces[0], 0.0) is None
    assert d.expire(5.0) == 1


def test_icmp_frag_needed() -> None:
    pkt = udp(payload=b"a" * 1600, flags="DF")
    err = pk.icmp_error(pkt, pk.UNREACH_FRAG_NEEDED, 1500)
    e = IP(err)
    assert e[ICMP].type == 3 and e[ICMP].code == 4 and e[ICMP].nexthopmtu == 1500
    assert checksums_ok(err)
    assert pk.parse(err).icmp_error


def test_normalize_for_emission() -> None:
    buf = bytearray(udp(ttl=128, id=1))
    pk.normalize_for_emission(buf, 4242)
    out = IP(bytes(buf))
    assert out.ttl == 64 and out.id == 4242
    assert checksums_ok(bytes(buf))


def test_tcp_flags_reported() -> None:
    assert pk.parse(tcp(flags="FA")).tcp_flags & pk.TCP_FIN
    assert pk.parse(tcp(flags="R")).tcp_flags & pk.TCP_RST
