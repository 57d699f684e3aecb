"""A packet socket's receive ring (PACKET_RX_RING, TPACKET_V2): the kernel writes each frame into
memory this process shares with it, so reading one costs no system call and no buffer of its
own. A member reads every INBOUND frame of every download, most of them others'; a system call
and a 64 KiB buffer a frame were a fifth of what each such frame cost it."""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import socket
import struct
from collections.abc import Iterator

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V2 = 1
SIOCGIFMTU = 0x8921
PACKET_OUTGOING = 4  # pkttype of frames this host sent
TP_STATUS_USER = 1  # the frame is ours to read; 0 (TP_STATUS_KERNEL) gives it back
_HEADER = struct.Struct(
    "=IIIHHII"
)  # struct tpacket2_hdr: status, len, snaplen, mac, net, sec, nsec
_STATUS = struct.Struct("=I")
_PKTTYPE = 32 + 10  # struct sockaddr_ll's sll_pkttype, after the 32-byte header
# Where the kernel puts a frame's Ethernet header in its slot (the header and a sockaddr_ll,
# aligned, then room for a link header of up to 16 bytes): what a slot holds is the rest.
_MAC_AT = 66
_VLAN = 4
_BLOCK = 1 << 16  # frames never cross a block; a block is whole pages


def slot_size(mtu: int) -> int:
    """The smallest power of two (at least 2 KiB) whose slot holds a whole frame of `mtu`."""
    return 1 << max(11, (_MAC_AT + 14 + _VLAN + mtu - 1).bit_length())


def interface_mtu(sock: socket.socket, ifname: str) -> int:
    ifr = fcntl.ioctl(sock, SIOCGIFMTU, struct.pack("16si", ifname.encode(), 0))
    return int(struct.unpack_from("16si", ifr)[1])


class RxRing:
    """The receive ring of `sock` (bound to `ifname`): `frames` slots, each of a whole frame at
    the interface's MTU. Raises OSError where the kernel will not set one up."""

    def __init__(self, sock: socket.socket, ifname: str, frames: int) -> None:
        self.slot = slot_size(interface_mtu(sock, ifname))
        per_block = max(1, _BLOCK // self.slot)
        block = per_block * self.slot
        blocks = max(1, -(-frames // per_block))
        self.count = blocks * per_block
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        sock.setsockopt(
            SOL_PACKET, PACKET_RX_RING, struct.pack("IIII", block, blocks, self.slot, self.count)
        )
        self.map = mmap.mmap(sock.fileno(), blocks * block)
        self.next = 0  # the slot the kernel fills after the last one read
        self.truncated = 0  # frames longer than a slot (the interface's MTU raised since)

    def frames(self, limit: int) -> Iterator[tuple[bytes, bytes, int, int, int]]:
        """(source MAC, payload, status, seconds, nanoseconds) of each frame waiting that this
        host did not send, at most `limit` slots read, each given back before its frame is
        yielded."""
        ring, slot, count = self.map, self.slot, self.count
        for _ in range(limit):
            at = self.next * slot
            status, length, snap, mac, _net, sec, nsec = _HEADER.unpack_from(ring, at)
            if not status & TP_STATUS_USER:
                return
            # (The kernel writes the frame, then its status. Where loads may pass each other,
            # unlike x86, a frame read too early fails its checks like any damaged one.)
            whole = snap == length and snap >= 14 and ring[at + _PKTTYPE] != PACKET_OUTGOING
            if whole:
                src, payload = (
                    ring[at + mac + 6 : at + mac + 12],
                    ring[at + mac + 14 : at + mac + snap],
                )
            elif snap < length:
                self.truncated += 1
            _STATUS.pack_into(ring, at, 0)
            self.next = (self.next + 1) % count
            if whole:
                yield src, payload, status, sec, nsec

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self.map.close()
