"""IPv4 packet parsing and in-place rewriting for the hot path: struct, bytearray, RFC 1624.

Members rewrite outbound packets to (anonymous address, port 0) before they enter a cell and
restore inbound ones; gateways put the allocated anonymous port in. Checksums are updated
incrementally, so the cost does not grow with the payload.

Packets come from applications and from the Internet: every read stays within the buffer and
the IP total length, whatever the headers claim, and a packet lanon cannot take raises
PacketError (a ValueError) and nothing else. `parse` checks the headers once; the rewrites of
a parsed packet rely on it and check only that they are given the buffer it parsed.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from lanon.common import compiled

ICMP = 1
TCP = 6
UDP = 17

ICMP_ECHO_REPLY = 0
ICMP_UNREACH = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11
ICMP_PARAM_PROBLEM = 12
ICMP_ERRORS = frozenset({ICMP_UNREACH, ICMP_TIME_EXCEEDED, ICMP_PARAM_PROBLEM})

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10
TIMESTAMP_OPTION = 8

_H = struct.Struct("!H")


_native, _ = compiled.load("common._native")  # (None in a checkout never installed)


class Unsupported(enum.Enum):
    """Why a packet cannot be carried; bounded, used as a metric label."""

    NOT_IPV4 = "not_ipv4"
    TRUNCATED = "truncated"
    FRAGMENT = "fragment"
    PROTOCOL = "protocol"  # neither TCP, UDP nor ICMP echo
    TOO_LARGE = "too_large"


class PacketError(ValueError):
    def __init__(self, reason: Unsupported, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Flow:
    """Addresses of a TCP/UDP packet or an ICMP echo (ports = the echo identifier)."""

    proto: int
    src: bytes
    sport: int
    dst: bytes
    dport: int


@dataclass(frozen=True, slots=True)
class Parsed:
    flow: Flow
    ihl: int  # IP header length in bytes
    tcp_flags: int  # 0 unless TCP
    icmp_error: bool  # an ICMP error: the flow is that of the packet it quotes


def carried(p: Parsed, packet: bytes | bytearray) -> bool:
    """Whether lanon carries this outbound packet: TCP, UDP and ICMP echo requests only (an
    ICMP error or echo reply from a member would answer something that came to it)."""
    proto = p.flow.proto
    if p.icmp_error:
        return False
    return proto != ICMP or packet[p.ihl] == ICMP_ECHO_REQUEST


def _ip_header(pkt: bytes | bytearray, partial: bool = False) -> int:
    if len(pkt) < 20:
        raise PacketError(Unsupported.TRUNCATED, "shorter than an IPv4 header")
    if pkt[0] >> 4 != 4:
        raise PacketError(Unsupported.NOT_IPV4)
    ihl = (pkt[0] & 0x0F) * 4
    total = (pkt[2] << 8) | pkt[3]
    if ihl < 20 or total < ihl or (total > len(pkt) and not partial) or len(pkt) < ihl:
        raise PacketError(Unsupported.TRUNCATED, f"header {ihl}, total {total}, have {len(pkt)}")
    if (pkt[6] & 0x20) or ((pkt[6] & 0x1F) << 8 | pkt[7]):
        raise PacketError(Unsupported.FRAGMENT)
    return ihl


_L4_HEADER = {TCP: 20, UDP: 8, ICMP: 8}


def _l4(pkt: bytes | bytearray, ihl: int, end: int, proto: int) -> tuple[int, int, int]:
    """(sport, dport, tcp flags) of a TCP or UDP header, or of an ICMP echo, within pkt[:end]."""
    need = _L4_HEADER.get(proto)
    if need is None:
        raise PacketError(Unsupported.PROTOCOL, f"IP protocol {proto}")
    if end < ihl + need:
        raise PacketError(Unsupported.TRUNCATED, f"short protocol {proto} header")
    if proto == TCP and not 20 <= (pkt[ihl + 12] >> 4) * 4 <= end - ihl:
        raise PacketError(Unsupported.TRUNCATED, "TCP data offset outside the packet")
    if proto == ICMP:
        ident = (pkt[ihl + 4] << 8) | pkt[ihl + 5]
        return ident, ident, 0
    sport, dport = struct.unpack_from("!HH", pkt, ihl)
    return sport, dport, pkt[ihl + 13] if proto == TCP else 0


def parse(pkt: bytes | bytearray, partial: bool = False) -> Parsed:
    """Addresses of a packet lanon carries; PacketError for anything else.

    `partial`: pkt is the first part of a longer packet (its headers are all there).
    """
    ihl = _ip_header(pkt, partial)
    end = min(len(pkt), (pkt[2] << 8) | pkt[3])  # headers must lie within the packet
    proto = pkt[9]
    src = bytes(pkt[12:16])
    dst = bytes(pkt[16:20])
    if proto == ICMP and end >= ihl + 8:
        icmp_type = pkt[ihl]
        if icmp_type in ICMP_ERRORS:
            return _parse_icmp_error(pkt, ihl, end, src, dst)
        if icmp_type not in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY):
            raise PacketError(Unsupported.PROTOCOL, f"ICMP type {icmp_type}")
    sport, dport, flags = _l4(pkt, ihl, end, proto)
    return Parsed(Flow(proto, src, sport, dst, dport), ihl, flags, False)


def _parse_icmp_error(pkt: bytes | bytearray, ihl: int, end: int, src: bytes, dst: bytes) -> Parsed:
    """An ICMP error is about the packet it quotes: report that packet's flow (reversed)."""
    inner = ihl + 8
    if end < inner + 28 or pkt[inner] >> 4 != 4:
        raise PacketError(Unsupported.TRUNCATED, "ICMP error quotes too little")
    inner_ihl = (pkt[inner] & 0x0F) * 4
    proto = pkt[inner + 9]
    if inner_ihl < 20 or end < inner + inner_ihl + 8:
        raise PacketError(Unsupported.TRUNCATED, "ICMP error quotes too little")
    if proto == ICMP:
        ident = (pkt[inner + inner_ihl + 4] << 8) | pkt[inner + inner_ihl + 5]
        sport = dport = ident
    elif proto in (TCP, UDP):
        sport, dport = struct.unpack_from("!HH", pkt, inner + inner_ihl)
    else:
        raise PacketError(Unsupported.PROTOCOL, f"ICMP error about protocol {proto}")
    # The quoted packet went from us (its src) to the remote (its dst).
    flow = Flow(
        proto,
        bytes(pkt[inner + 12 : inner + 16]),
        sport,
        bytes(pkt[inner + 16 : inner + 20]),
        dport,
    )
    return Parsed(flow, ihl, 0, True)


# --- checksums ------------------------------------------------------------------------------


def checksum(data: bytes | bytearray) -> int:
    """Internet checksum, in compiled code (common/native.c) where it was built, else
    `checksum_in_python`."""
    if _native is None:
        return checksum_in_python(data)
    total: int = _native.lib.lanon_sum16(_native.ffi.from_buffer(data), len(data), 0)
    return ~total & 0xFFFF


def checksum_after(first: bytes, data: bytes | bytearray | memoryview) -> int:
    """The checksum of `first` (an even number of bytes: a pseudo-header) and then `data`,
    without joining them (a 64 KiB packet's copy)."""
    if _native is None:
        return checksum_in_python(first + bytes(data))
    lib, ffi = _native.lib, _native.ffi
    total: int = lib.lanon_sum16(
        ffi.from_buffer(data), len(data), lib.lanon_sum16(first, len(first), 0)
    )
    return ~total & 0xFFFF


def checksum_in_python(data: bytes | bytearray) -> int:
    """Internet checksum: the ones' complement sum of 16-bit words is the number mod 0xFFFF.

    A long number is folded first (its high half added to its low half, which keeps it the
    same mod 0xFFFF when the cut is a multiple of 16 bits; at a multiple of 30 too, CPython's
    digits, the cut is cheap): half the time of one division, for a 64 KB packet a gateway
    receives from a lab's veth with its checksum still to compute (about 80 µs; in compiled
    code, a few)."""
    n = int.from_bytes(bytes(data) + b"\0" if len(data) % 2 else data, "big")
    bits = n.bit_length()
    while bits > _FOLD_ABOVE:
        half = bits // (2 * _FOLD_CUT) * _FOLD_CUT
        n = (n >> half) + (n & ((1 << half) - 1))
        bits = n.bit_length()
    s = n % 0xFFFF or (0xFFFF if n else 0)
    return ~s & 0xFFFF


_FOLD_ABOVE = 2048  # bits: shorter numbers are divided at once
_FOLD_CUT = 240  # bits: a fold cuts at a multiple of 16 (the words) and 30 (CPython's digits)


def fill_l4_checksum(buf: bytearray, p: Parsed) -> None:
    """Compute a TCP or UDP checksum whole (for packets handed over with checksum offload)."""
    proto, ihl = p.flow.proto, p.ihl
    if proto not in (TCP, UDP):
        return
    total = (buf[2] << 8) | buf[3]
    if not ihl + _L4_HEADER[proto] <= total <= len(buf):
        raise PacketError(Unsupported.TRUNCATED, f"total length {total}, have {len(buf)}")
    off = ihl + (16 if proto == TCP else 6)
    buf[off : off + 2] = b"\0\0"
    pseudo = bytes(buf[12:20]) + struct.pack("!BBH", 0, proto, total - ihl)
    csum = checksum_after(pseudo, memoryview(buf)[ihl:total])
    if proto == UDP and csum == 0:
        csum = 0xFFFF
    buf[off : off + 2] = _H.pack(csum)


def _update(csum: int, old: bytes, new: bytes) -> int:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') over the 16-bit words of old/new."""
    s = ~csum & 0xFFFF
    for i in range(0, len(old), 2):
        s += (~((old[i] << 8) | old[i + 1]) & 0xFFFF) + ((new[i] << 8) | new[i + 1])
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _adjust(buf: bytearray, csum_off: int, old: bytes, new: bytes, udp: bool = False) -> None:
    """Update the checksum at csum_off for a change of old -> new elsewhere (even-aligned)."""
    csum = (buf[csum_off] << 8) | buf[csum_off + 1]
    if udp and csum == 0:  # UDP without checksum stays without
        return
    csum = _update(csum, old, new)
    if udp and csum == 0:
        csum = 0xFFFF
    buf[csum_off] = csum >> 8
    buf[csum_off + 1] = csum & 0xFF


def _patch(buf: bytearray, off: int, new: bytes, csum_offs: tuple[tuple[int, bool], ...]) -> None:
    """Write `new` at `off` and update every checksum in csum_offs (offset, is_udp).

    The callers have checked that all of them lie within buf. A last odd byte counts as a word
    padded with zero, as the checksum itself pads it."""
    start = off & ~1
    end = (off + len(new) + 1) & ~1
    old = bytes(buf[start:end])
    buf[off : off + len(new)] = new
    changed = bytes(buf[start:end])
    if end > len(buf):
        old += b"\0"
        changed += b"\0"
    for csum_off, udp in csum_offs:
        _adjust(buf, csum_off, old, changed, udp)


def _l4_csum(proto: int, ihl: int) -> tuple[tuple[int, bool], ...]:
    if proto == TCP:
        return ((ihl + 16, False),)
    if proto == UDP:
        return ((ihl + 6, True),)
    return ()  # ICMP has no pseudo-header


def _port_off(proto: int, ihl: int, source: bool) -> int:
    if proto == ICMP:
        return ihl + 4
    return ihl if source else ihl + 2


def _port_csum(proto: int, ihl: int) -> tuple[tuple[int, bool], ...]:
    return ((ihl + 2, False),) if proto == ICMP else _l4_csum(proto, ihl)


def _check_l4(buf: bytearray, p: Parsed) -> None:
    if len(buf) < p.ihl + _L4_HEADER.get(p.flow.proto, 0xFFFF):
        raise PacketError(Unsupported.TRUNCATED, "the buffer is not the packet parsed")


def set_source(buf: bytearray, p: Parsed, address: bytes, port: int) -> None:
    """Rewrite source address and port (ICMP echo: identifier) of a TCP/UDP/ICMP-echo packet."""
    _check_l4(buf, p)
    ihl, proto = p.ihl, p.flow.proto
    _patch(buf, 12, address, ((10, False), *_l4_csum(proto, ihl)))
    _patch(buf, _port_off(proto, ihl, True), _H.pack(port), _port_csum(proto, ihl))


def set_destination(buf: bytearray, p: Parsed, address: bytes, port: int) -> None:
    """Rewrite destination address and port (ICMP echo reply: identifier)."""
    _check_l4(buf, p)
    ihl, proto = p.ihl, p.flow.proto
    _patch(buf, 16, address, ((10, False), *_l4_csum(proto, ihl)))
    _patch(buf, _port_off(proto, ihl, False), _H.pack(port), _port_csum(proto, ihl))


def restore_icmp_error(buf: bytearray, p: Parsed, address: bytes, port: int) -> None:
    """For an ICMP error to us: outer destination and the quoted packet's source -> ours.

    A rare path: the quoted header's and the ICMP checksums are recomputed whole.
    """
    ihl = p.ihl
    total = (buf[2] << 8) | buf[3]
    inner = ihl + 8
    inner_ihl = (buf[inner] & 0x0F) * 4 if len(buf) > inner else 0
    l4 = inner + inner_ihl
    if not p.icmp_error or inner_ihl < 20 or l4 + 8 > min(total, len(buf)):
        raise PacketError(Unsupported.TRUNCATED, "not an ICMP error quoting a whole header")
    _patch(buf, 16, address, ((10, False),))
    proto = buf[inner + 9]
    if proto == UDP:  # the quoted UDP checksum is present and covers the pseudo-header
        _adjust(buf, l4 + 6, bytes(buf[inner + 12 : inner + 16]), address, udp=True)
    buf[inner + 12 : inner + 16] = address
    if proto == ICMP:
        _patch(buf, l4 + 4, _H.pack(port), ((l4 + 2, False),))
    else:
        _patch(buf, l4, _H.pack(port), ((l4 + 6, True),) if proto == UDP else ())
    buf[inner + 10 : inner + 12] = b"\0\0"
    buf[inner + 10 : inner + 12] = _H.pack(checksum(buf[inner:l4]))
    buf[ihl + 2 : ihl + 4] = b"\0\0"
    buf[ihl + 2 : ihl + 4] = _H.pack(checksum(buf[ihl:total]))


def normalize_for_emission(buf: bytearray, ident: int, ttl: int = 64) -> None:
    """Gateway: identical IP ID policy and TTL for every member's packets (no OS fingerprint)."""
    if len(buf) < 20:
        raise PacketError(Unsupported.TRUNCATED, "shorter than an IPv4 header")
    _patch(buf, 4, _H.pack(ident), ((10, False),))
    _patch(buf, 8, bytes((ttl,)), ((10, False),))


def clamp_mss(buf: bytearray, ihl: int, mss: int) -> bool:
    """Lower the MSS option of a TCP SYN to `mss`; True if it changed.

    The option walk stays within the TCP header (its data offset), the IP total length and the
    buffer, whatever they claim: an option that does not fit ends the walk, changing nothing."""
    limit = min(len(buf), (buf[2] << 8) | buf[3]) if len(buf) >= 4 else 0
    if ihl < 20 or limit < ihl + 20 or not buf[ihl + 13] & TCP_SYN:
        return False
    end = min(ihl + (buf[ihl + 12] >> 4) * 4, limit)
    i = ihl + 20
    while i < end:
        kind = buf[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 2 > end:
            break
        length = buf[i + 1]
        if length < 2 or i + length > end:
            break
        if kind == 2:
            if length != 4:
                break
            value = (buf[i + 2] << 8) | buf[i + 3]
            if value > mss:
                _patch(buf, i + 2, _H.pack(mss), ((ihl + 16, False),))
                return True
            return False
        i += length
    return False


def pure_ack(pkt: bytes | bytearray, p: Parsed) -> int | None:
    """The acknowledgement number of a parsed TCP packet that only acknowledges, or None.

    Only acknowledges: flags ACK alone (no ECE, CWR, PSH, URG; no AE bit), no data, and no
    option but timestamps (a SACK block, an MPTCP signal or anything unknown may say what no
    later ACK repeats). Such an ACK says nothing a later one of its flow with a higher number
    does not say too (RFC 3449 §5.2.2, ACK filtering)."""
    if p.flow.proto != TCP or p.icmp_error or p.tcp_flags != TCP_ACK:
        return None
    ihl = p.ihl
    if pkt[ihl + 12] & 0x0F:
        return None  # reserved bits or AccECN's AE
    end = ihl + (pkt[ihl + 12] >> 4) * 4
    if ((pkt[2] << 8) | pkt[3]) != end:
        return None  # it carries data
    i = ihl + 20
    while i < end:
        kind = pkt[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
        elif kind == TIMESTAMP_OPTION and i + 10 <= end and pkt[i + 1] == 10:
            i += 10
        else:
            return None
    return int.from_bytes(pkt[ihl + 8 : ihl + 12], "big")


def ack_advances(new: int, old: int) -> bool:
    """Whether acknowledgement number `new` is past `old` (sequence space, RFC 1982)."""
    return 0 < (new - old) & 0xFFFFFFFF < 0x80000000


# --- sizes beyond the MTU (the gateway does what the kernel would) ---------------------------


def dont_fragment(pkt: bytes | bytearray) -> bool:
    return len(pkt) > 6 and bool(pkt[6] & 0x40)


def fragment(pkt: bytes, mtu: int) -> list[bytes]:
    """Split an IPv4 packet without DF into fragments that fit `mtu` (options are not copied).

    A packet that is itself a fragment gives fragments of the same datagram."""
    step = (mtu - 20) & ~7
    if step <= 0:
        raise ValueError(f"an MTU of {mtu} bytes leaves no room for a fragment")
    if len(pkt) < 20:
        raise PacketError(Unsupported.TRUNCATED, "shorter than an IPv4 header")
    ihl = (pkt[0] & 0x0F) * 4
    total = (pkt[2] << 8) | pkt[3]
    if ihl < 20 or total < ihl or total > len(pkt):
        raise PacketError(Unsupported.TRUNCATED, f"header {ihl}, total {total}, have {len(pkt)}")
    flags_off = (pkt[6] << 8) | pkt[7]
    base = (flags_off & 0x1FFF) * 8
    more = flags_off & 0x2000
    payload = pkt[ihl:total]
    if base + len(payload) > 0xFFFF - 20:
        raise PacketError(Unsupported.TOO_LARGE, f"fragment offset {base}")
    out = []
    for off in range(0, len(payload), step):
        chunk = payload[off : off + step]
        hdr = bytearray(pkt[:20])
        hdr[0] = 0x45
        hdr[2:4] = _H.pack(20 + len(chunk))
        last = off + step >= len(payload)
        hdr[6:8] = _H.pack((base + off) // 8 | (more if last else 0x2000))
        hdr[10:12] = b"\0\0"
        hdr[10:12] = _H.pack(checksum(hdr))
        out.append(bytes(hdr) + chunk)
    return out


def icmp_error(pkt: bytes | bytearray, code: int, mtu: int = 0) -> bytes:
    """ICMP 'destination unreachable' (code 4: fragmentation needed, with `mtu`; 13:
    administratively prohibited) about `pkt`, as if its destination answered: a source that is
    the receiver's own address would be dropped as a martian."""
    if len(pkt) < 20:
        raise PacketError(Unsupported.TRUNCATED, "shorter than an IPv4 header")
    if not 0 <= mtu <= 0xFFFF:
        raise ValueError(f"MTU {mtu}")
    ihl = (pkt[0] & 0x0F) * 4
    icmp = bytearray(struct.pack("!BBHHH", ICMP_UNREACH, code, 0, 0, mtu) + bytes(pkt[: ihl + 8]))
    icmp[2:4] = _H.pack(checksum(icmp))
    src, dst = bytes(pkt[16:20]), bytes(pkt[12:16])
    hdr = bytearray(
        struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, ICMP, 0, src, dst)
    )
    hdr[10:12] = _H.pack(checksum(hdr))
    return bytes(hdr) + bytes(icmp)


def tcp_reset(src: bytes, dst: bytes, sport: int, dport: int, seq: int) -> bytes:
    """A bare TCP RST from src:sport to dst:dport with sequence number `seq` (a member ends
    its own applications' connections with it: it never leaves the host)."""
    tcp = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x04, 0, 0, 0))
    pseudo = src + dst + struct.pack("!BBH", 0, TCP, len(tcp))
    tcp[16:18] = _H.pack(checksum(pseudo + tcp))
    hdr = bytearray(
        struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, TCP, 0, src, dst)
    )
    hdr[10:12] = _H.pack(checksum(hdr))
    return bytes(hdr) + bytes(tcp)


def tcp_ack_number(pkt: bytes | bytearray, ihl: int) -> int | None:
    """The acknowledgment number of a TCP segment with ACK set, else None."""
    if len(pkt) < ihl + 14 or not pkt[ihl + 13] & 0x10:
        return None
    return int.from_bytes(pkt[ihl + 8 : ihl + 12], "big")


UNREACH_FRAG_NEEDED = 4
UNREACH_PROHIBITED = 13
