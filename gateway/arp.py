"""ARP for the anonymous addresses a gateway holds: codec and claim policy, sans-IO.

The gateway answers requests for the addresses it holds (proxy ARP: they are on no interface)
and announces them when it claims them. Announcements are request-style (sender = target =
the address): Linux takes a reply as gratuitous only if its target MAC equals its sender MAC,
and receivers with arp_accept=0 update an existing entry from either form but create none.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ETHERTYPE_ARP = 0x0806
_ARP = struct.Struct("!HHBBH6s4s6s4s")
OP_REQUEST = 1
OP_REPLY = 2
ZERO_MAC = b"\x00" * 6
ANNOUNCE_DELAYS = (0.0, 0.25, 1.0)  # seconds after a claim: repeat, in case one is lost


@dataclass(frozen=True, slots=True)
class Arp:
    op: int
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes

    def encode(self) -> bytes:
        return _ARP.pack(
            1,
            0x0800,
            6,
            4,
            self.op,
            self.sender_mac,
            self.sender_ip,
            self.target_mac,
            self.target_ip,
        )


def pull_arp(payload: bytes) -> Arp | None:
    """An Ethernet/IPv4 ARP packet, or None for anything else."""
    if len(payload) < _ARP.size:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(payload)
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4) or op not in (OP_REQUEST, OP_REPLY):
        return None
    return Arp(op, sha, spa, tha, tpa)


def reply_to(request: Arp, my_mac: bytes) -> Arp:
    return Arp(OP_REPLY, my_mac, request.target_ip, request.sender_mac, request.sender_ip)


def announcement(my_mac: bytes, address: bytes) -> Arp:
    return Arp(OP_REQUEST, my_mac, address, ZERO_MAC, address)
