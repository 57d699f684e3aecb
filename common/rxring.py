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
PACKET_OUTGOING = 4  # pkttype of frames this host sent: never ours to receive
TP_STATUS_USER = 1  # the frame is ours to read; 0 (TP_STATUS_KERNEL) gives it back
# A slot's layout (lab/memring.py lays out one in memory with it too).
# struct tpacket2_hdr: status, len, snaplen, mac, net, sec, nsec (then VLAN fields, padding)
SLOT_HEADER = struct.Struct("=IIIHHII")
SLOT_STATUS = struct.Struct("=I")
PKTTYPE_AT = 32 + 10  # struct sockaddr_ll's sll_pkttype, after the 32-byte header
# Where the kernel puts a frame's Ethernet header in its slot (the header and a sockaddr_ll,
# aligned, then room for a link header of up to 16 bytes): what a slot holds is the rest.
MAC_AT = 66
_VLAN = 4
_ALIGN = 16  # TPACKET_ALIGNMENT: a slot's size is a multiple of it
_BLOCK = 1 << 16  # frames never cross a block; a block is whole pages


def slot_size(mtu: int) -> int:
    """The smallest slot (a multiple of 16 bytes) that holds a whole frame of `mtu`."""
    return -(-(MAC_AT + 14 + _VLAN + mtu) // _ALIGN) * _ALIGN


def interface_mtu(sock: socket.socket, ifname: str) -> int:
    ifr = fcntl.ioctl(sock, SIOCGIFMTU, struct.pack("16si", ifname.encode(), 0))
    return int(struct.unpack_from("16si", ifr)[1])


class RxRing:
    """The receive ring of `sock` (bound to `ifname`): at least `frames` slots, each of a whole
    frame at the interface's MTU. Raises OSError where the kernel will not set one up, and
    leaves the socket as it was."""

    def __init__(self, sock: socket.socket, ifname: str, frames: int) -> None:
        self.slot = slot_size(interface_mtu(sock, ifname))
        block = max(_BLOCK, -(-self.slot // mmap.PAGESIZE) * mmap.PAGESIZE)
        per_block = block // self.slot
        blocks = max(1, -(-frames // per_block))
        self.count = blocks * per_block
        self._sock = sock
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        sock.setsockopt(
            SOL_PACKET, PACKET_RX_RING, struct.pack("IIII", block, blocks, self.slot, self.count)
        )
        try:
            self.map = mmap.mmap(sock.fileno(), blocks * block)
        except OSError:
            # A ring nobody reads would take every frame: give it back to the kernel.
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, bytes(16))
            raise
        # Where each slot begins: a block's slots are contiguous, its end may be unused.
        self.starts = [b * block + k * self.slot for b in range(blocks) for k in range(per_block)]
        self.next = 0  # the slot the kernel fills after the last one read
        self.truncated = 0  # frames longer than a slot, dropped (`take_truncated`)

    def frames(self, limit: int) -> Iterator[tuple[bytes, bytes, int, int, int]]:
        """(source MAC, payload, status, seconds, nanoseconds) of each frame waiting that this
        host did not send, at most `limit` slots read, each given back before its frame is
        yielded."""
        ring, starts, count = self.map, self.starts, self.count
        for i in range(limit):
            at = starts[self.next]
            status, length, snap, mac, _net, sec, nsec = SLOT_HEADER.unpack_from(ring, at)
            if not status & TP_STATUS_USER:
                if i == 0:
                    # Woken for nothing: maybe an error, as when the link went down, that
                    # only a call clears; the socket would stay readable, and this loop spin.
                    self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                return
            # (The kernel writes a frame, then its status. x86 reads them in that order; where
            # loads may pass each other (arm64: Python has no read barrier), a slot read too
            # early could still hold its frame of the ring's last lap: a replay, as any LAN
            # host can send, which every frame's checks refuse.)
            whole = snap == length and snap >= 14 and ring[at + PKTTYPE_AT] != PACKET_OUTGOING
            if whole:
                src, payload = (
                    ring[at + mac + 6 : at + mac + 12],
                    ring[at + mac + 14 : at + mac + snap],
                )
            elif snap < length:
                self.truncated += 1
            SLOT_STATUS.pack_into(ring, at, 0)
            self.next = (self.next + 1) % count
            if whole:
                yield src, payload, status, sec, nsec

    def waiting(self) -> bool:
        """Whether the next slot holds a frame: a look at shared memory, no system call (it
        may be this host's own frame, which a read then passes over)."""
        return bool(SLOT_STATUS.unpack_from(self.map, self.starts[self.next])[0] & TP_STATUS_USER)

    def take_truncated(self) -> int:
        """Frames dropped since the last call, longer than a slot."""
        count, self.truncated = self.truncated, 0
        return count

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self.map.close()
