"""Packets for tests and the benchmark, built and checked with scapy (never on lanon's own hot
path), and a tiny Internet that answers them (`echo_internet`, for `lanon.lab.sim.Lan`)."""

from __future__ import annotations

from typing import Any

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.packet import Raw

from lanon.gateway.defrag import Defragmenter

MEMBER_IP = "198.18.0.11"
SERVER_IP = "203.0.113.10"


def udp(
    src: str = MEMBER_IP,
    dst: str = SERVER_IP,
    sport: int = 40000,
    dport: int = 7,
    payload: bytes = b"hello",
    **ip: Any,
) -> bytes:
    return bytes(IP(src=src, dst=dst, **ip) / UDP(sport=sport, dport=dport) / Raw(payload))


def tcp(
    src: str = MEMBER_IP,
    dst: str = SERVER_IP,
    sport: int = 40000,
    dport: int = 80,
    flags: str = "S",
    payload: bytes = b"",
    options: Any = None,
    **kw: Any,
) -> bytes:
    t = TCP(sport=sport, dport=dport, flags=flags, options=options or [], **kw)
    return (
        bytes(IP(src=src, dst=dst) / t / Raw(payload))
        if payload
        else bytes(IP(src=src, dst=dst) / t)
    )


def ping(
    src: str = MEMBER_IP,
    dst: str = SERVER_IP,
    ident: int = 77,
    seq: int = 1,
    payload: bytes = b"x" * 56,
    **ip: Any,
) -> bytes:
    return bytes(IP(src=src, dst=dst, **ip) / ICMP(type=8, id=ident, seq=seq) / Raw(payload))


def checksums_ok(packet: bytes) -> bool:
    """True if the IP and L4 checksums of packet are what scapy computes afresh."""
    p = IP(packet)
    fresh = p.copy()
    del fresh.chksum
    layer = None
    for cls in (TCP, UDP, ICMP):
        if cls in fresh:
            layer = cls
            del fresh[cls].chksum
            break
    rebuilt = IP(bytes(fresh))
    ok = bool(rebuilt.chksum == p.chksum)
    if layer is not None:
        ok = ok and rebuilt[layer].chksum == p[layer].chksum
    return ok


_defrag = Defragmenter()


def echo_internet(packet: bytes) -> list[bytes]:
    """A tiny Internet: echoes UDP, answers pings, SYN-ACKs SYNs (after reassembly)."""
    if packet[6] & 0x20 or (packet[6] & 0x1F) or packet[7]:
        whole = _defrag.add(packet, 0.0)
        if whole is None:
            return []
        packet = whole
    p = IP(packet)
    if UDP in p:
        return [
            bytes(
                IP(src=p.dst, dst=p.src)
                / UDP(sport=p[UDP].dport, dport=p[UDP].sport)
                / Raw(bytes(p[UDP].payload))
            )
        ]
    if ICMP in p and p[ICMP].type == 8:
        return [
            bytes(
                IP(src=p.dst, dst=p.src)
                / ICMP(type=0, id=p[ICMP].id, seq=p[ICMP].seq)
                / Raw(bytes(p[ICMP].payload))
            )
        ]
    if TCP in p and p[TCP].flags == "S":
        t = TCP(
            sport=p[TCP].dport,
            dport=p[TCP].sport,
            flags="SA",
            seq=1000,
            ack=p[TCP].seq + 1,
            options=[("MSS", 1460)],
        )
        return [bytes(IP(src=p.dst, dst=p.src) / t)]
    return []
