"""AF_PACKET sockets on the LAN interface, one per EtherType (the kernel demultiplexes)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import select
import socket
import struct
from collections.abc import Iterator

from lanon.common.errors import PrerequisiteError
from lanon.common.events import MAX_FILTER_TAGS
from lanon.common.rxring import PACKET_OUTGOING, SOL_PACKET, RxRing

PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_AUXDATA = 8
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20: this socket never sees what this host sends
TP_STATUS_CSUMNOTREADY = 1 << 3
_AUX = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
MAX_BATCH = 256
# Nothing to read now: the socket is empty, or its link is down (it will come back or not; the
# engine's timers decide what that means).
TRY_AGAIN = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ENETDOWN, errno.ENXIO})
# Sending can fail for reasons the loop must survive: a full buffer, or a link that is down.
TRANSIENT_SEND = frozenset(
    {
        errno.ENOBUFS,
        errno.EAGAIN,
        errno.EWOULDBLOCK,
        errno.ENOMEM,
        errno.EMSGSIZE,
        errno.ENETDOWN,
        errno.ENXIO,
        errno.ENODEV,
        errno.ENETUNREACH,
    }
)
SIOCGIFFLAGS = 0x8913
SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
_BPF_INSN = struct.Struct("=HBBI")  # struct sock_filter
_LD_W_ABS, _LD_H_ABS, _LD_B_ABS, _JEQ_K, _RET_K, _JA = 0x20, 0x28, 0x30, 0x15, 0x06, 0x05
Kind = tuple[frozenset[int], bool]  # a socket's frames: (message types, whether wanted)
TYPE_OFFSET = 15  # a lanon frame's message type: the second byte after the Ethernet header
TAG_OFFSET = 30  # an INBOUND frame's flow tag: after Ethernet (14), lanon header (8) and seq (8)
SO_TIMESTAMPNS = 35  # also SCM_TIMESTAMPNS: the kernel's receive time of each frame
_TIMESPEC = struct.Struct("=qq")
IFF_UP = 0x1
IFF_RUNNING = 0x40


class LinkSocket:
    """Raw Ethernet frames of one EtherType on one interface."""

    def __init__(
        self,
        ifname: str,
        ethertype: int,
        rcvbuf: int = 4 << 20,
        kind: Kind | None = None,
        ring: int = 0,
    ) -> None:
        """`kind` (message types, wanted): only frames of those types (True) or all but them
        (False) reach this socket, so that one kind never waits behind another. `ring`: read
        through a receive ring of that many frames (`rxring.RxRing`), where the kernel sets
        one up, instead of a system call a frame (for frames no larger than the interface's
        MTU: not a gateway's IP packets, which segmentation offload may have merged)."""
        self.ifname = ifname
        self.ethertype = ethertype
        self._type = struct.pack("!H", ethertype)
        try:
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
            self.sock.bind((ifname, ethertype))
        except PermissionError:
            raise PrerequisiteError("raw sockets need root or CAP_NET_RAW") from None
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise PrerequisiteError(f"interface {ifname!r} does not exist") from None
            raise
        for opt in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
                break
            except OSError:
                continue
        self.mac: bytes = self.sock.getsockname()[4]
        self.send_errors = 0
        self._auxdata = False
        self._stamps = False
        self._kind = kind
        self._sources: frozenset[bytes] | None = None
        self._tags: frozenset[int] | None = None
        self.tags_refused = False  # the kernel refused a filter with flow tags (`_filter`)
        self.sources_refused = False  # ... or with the sources the door trusts
        self._no_outgoing = False
        with contextlib.suppress(OSError):
            self.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            self._no_outgoing = True
        if kind is not None:
            self._filter()
        self._ring: RxRing | None = None
        self.ring_refused: str | None = None  # why the kernel made no ring, if it did not
        if ring:
            try:
                self._ring = RxRing(self.sock, ifname, ring)
            except OSError as exc:
                self.ring_refused = exc.strerror or str(exc)

    @property
    def ring(self) -> RxRing | None:
        """The receive ring, if the kernel made one (member/drain.py reads it in C)."""
        return self._ring

    def take_truncated(self) -> int:
        """Frames the ring dropped since the last call, longer than its slots (the interface's
        MTU raised since it was made)."""
        return self._ring.take_truncated() if self._ring is not None else 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def promiscuous(self) -> None:
        ifindex = socket.if_nametoindex(self.ifname)
        mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
        self.sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)

    def frame(self, dst: bytes, payload: bytes) -> bytes:
        """The whole Ethernet frame that `send` would send."""
        return dst + self.mac + self._type + payload

    def send(self, dst: bytes, payload: bytes) -> bool:
        return self.send_frame(self.frame(dst, payload))

    def send_frame(self, frame: bytes) -> bool:
        """Send a whole Ethernet frame; False if it could not go now (counted)."""
        try:
            self.sock.send(frame)
        except OSError as exc:
            if exc.errno in TRANSIENT_SEND:
                self.send_errors += 1
                return False
            raise
        return True

    def link_up(self) -> bool:
        """Whether the interface is up and has carrier (asked of this socket's namespace)."""
        try:
            ifr = fcntl.ioctl(self.sock, SIOCGIFFLAGS, struct.pack("16sH", self.ifname.encode(), 0))
        except OSError:
            return False
        flags = struct.unpack_from("16sH", ifr)[1]
        return bool(flags & IFF_UP and flags & IFF_RUNNING)

    def receive(self) -> Iterator[tuple[bytes, bytes]]:
        """(source MAC, payload) of every frame waiting, sent by others: one system call a
        frame where the kernel leaves out our own (an address costs a second: its interface's
        name), else their address says which are ours; none at all through a ring."""
        if self._ring is not None:
            for src, payload, _status, _sec, _nsec in self._ring.frames(MAX_BATCH):
                yield src, payload
            return
        for _ in range(MAX_BATCH):
            try:
                if self._no_outgoing:
                    data = self.sock.recv(65536, socket.MSG_DONTWAIT)
                else:
                    data, addr = self.sock.recvfrom(65536, socket.MSG_DONTWAIT)
                    if addr[2] == PACKET_OUTGOING:
                        continue
            except OSError as exc:
                if exc.errno in TRY_AGAIN:
                    return
                raise
            if len(data) >= 14:
                yield data[6:12], data[14:]

    def receive_unstamped(self) -> Iterator[tuple[bytes, bytes, float]]:
        """As `receive_stamped`, without the arrival (0.0): for frames nothing times."""
        if self._ring is not None:  # (straight from the ring: every member reads every frame)
            for src, payload, _status, _sec, _nsec in self._ring.frames(MAX_BATCH):
                yield src, payload, 0.0
            return
        for src, payload in self.receive():
            yield src, payload, 0.0

    def waiting(self) -> bool:
        """Whether a frame waits to be read: a look at the ring, else a poll."""
        if self._ring is not None:
            return self._ring.waiting()
        return bool(select.select([self.sock], [], [], 0)[0])

    def _received(self, space: int) -> Iterator[tuple[bytes, list[tuple[int, int, bytes]]]]:
        """(frame, ancillary data) of every frame waiting, sent by others."""
        for _ in range(MAX_BATCH):
            try:
                data, ancillary, _flags, addr = self.sock.recvmsg(65536, space, socket.MSG_DONTWAIT)
            except OSError as exc:
                if exc.errno in TRY_AGAIN:
                    return
                raise
            if addr[2] == PACKET_OUTGOING or len(data) < 14:
                continue
            yield data, ancillary

    def receive_stamped(self) -> Iterator[tuple[bytes, bytes, float]]:
        """(source MAC, payload, arrival) of every frame waiting, sent by others; arrival is the
        kernel's receive time (wall clock, seconds): when the frame came, not when we read it."""
        if self._ring is not None:
            for src, payload, _status, sec, nsec in self._ring.frames(MAX_BATCH):
                yield src, payload, sec + nsec * 1e-9
            return
        if not self._stamps:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self._stamps = True
        for data, ancillary in self._received(socket.CMSG_SPACE(_TIMESPEC.size)):
            stamp = 0.0
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    stamp = sec + nsec * 1e-9
            yield data[6:12], data[14:], stamp

    def receive_checked(self) -> Iterator[tuple[bytes, bool]]:
        """(payload, checksum_ready) of every frame waiting: with checksum offload (veth,
        virtio) the kernel may hand over packets whose TCP/UDP checksum is still partial."""
        if self._ring is not None:
            for _src, payload, status, _sec, _nsec in self._ring.frames(MAX_BATCH):
                yield payload, not status & TP_STATUS_CSUMNOTREADY
            return
        if not self._auxdata:
            self.sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            self._auxdata = True
        for data, ancillary in self._received(socket.CMSG_SPACE(_AUX.size)):
            ready = True
            for level, kind, value in ancillary:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(value) >= _AUX.size:
                    ready = not _AUX.unpack_from(value)[0] & TP_STATUS_CSUMNOTREADY
            yield data[14:], ready

    def allow_only(self, sources: frozenset[bytes] | None) -> None:
        """Let only frames from these Ethernet addresses reach this socket (a classic BPF
        filter, checked by the kernel before anything is queued for us), or all (None)."""
        self._sources = sources
        self._filter()

    def allow_tags(self, tags: frozenset[int] | None) -> None:
        """Let only INBOUND frames of these flow tags reach this socket (at most
        MAX_FILTER_TAGS; see `frame_filter`), or all (None)."""
        self._tags = tags
        self._filter()

    def _filter(self) -> None:
        """The best filter the kernel takes: all that is wanted; else without the flow tags,
        which only spare us work (every INBOUND frame reaches us); else without the sources
        (the engine's door turns them away itself, frame by frame), with the tags, then
        without; the kind always."""
        wanted = [(self._sources, self._tags)]
        if self._tags is not None:
            wanted.append((self._sources, None))
        if self._sources is not None:
            if self._tags is not None:
                wanted.append((None, self._tags))
            wanted.append((None, None))
        if self._try(*wanted[0]):
            return
        # Refused: the kernel charges the old program and the new together to
        # net.core.optmem_max (20 KiB before Linux 6.8). Without the old one, then: for a
        # moment any frame reaches this socket, which the engine takes as from the other
        # (every kind is handled on either).
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
        for sources, tags in wanted:
            if self._try(sources, tags):
                return
        raise OSError(errno.ENOMEM, f"{self.ifname}: the kernel takes no filter of this kind")

    def _try(self, sources: frozenset[bytes] | None, tags: frozenset[int] | None) -> bool:
        """Attach the filter of `sources`, `tags` and this socket's kind; False if refused."""
        try:
            if sources is None and tags is None and self._kind is None:
                with contextlib.suppress(OSError):  # no filter attached: nothing to detach
                    self.sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
            else:
                self._attach(frame_filter(sources, self._kind, tags))
        except OSError:
            return False
        self.tags_refused = self._tags is not None and tags is None
        self.sources_refused = self._sources is not None and sources is None
        return True

    def _attach(self, program: bytes) -> None:
        buf = ctypes.create_string_buffer(program)
        fprog = struct.pack("@HP", len(program) // _BPF_INSN.size, ctypes.addressof(buf))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()
        self.sock.close()


def frame_filter(
    sources: frozenset[bytes] | None,
    kind: Kind | None = None,
    tags: frozenset[int] | None = None,
) -> bytes:
    """A classic BPF program: with `kind` (message types, wanted), first drop the frames of
    another type (wanted) or of one of those types (not wanted); with `tags` (INBOUND frames
    only), drop the frames whose flow tag's first four bytes are no tag's (two instructions a
    tag: a frame of one of our flows always passes, another's passes one time in
    2**32 / len(tags), and the daemon's checks take it as before); then accept frames whose
    source address is one of `sources` (for each, five instructions: compare bytes 6..9, then
    10..11, accept) and drop the rest, or accept all if `sources` is None."""
    insns = []
    if kind is not None:
        types, wanted = sorted(kind[0]), kind[1]
        insns.append((_LD_B_ABS, 0, 0, TYPE_OFFSET))
        for i, t in enumerate(types):  # one of them: past the other tests, to what follows
            insns.append((_JEQ_K, len(types) - i, 0, t))
        if not wanted:  # none of them: past the drop that follows
            insns.append((_JA, 0, 0, 1))
        insns.append((_RET_K, 0, 0, 0))  # not for this socket
    if tags is not None:
        if kind is None or not kind[1]:
            raise ValueError("flow tags filter a socket of INBOUND frames only")
        if len(tags) > MAX_FILTER_TAGS:
            raise ValueError(f"{len(tags)} flow tags: a filter names at most {MAX_FILTER_TAGS}")
        highs = sorted({t >> 32 for t in tags})
        insns.append((_LD_W_ABS, 0, 0, TAG_OFFSET))  # (a shorter frame: the kernel drops it)
        for i, high in enumerate(highs):
            insns += [
                (_JEQ_K, 0, 1, high),
                (_JA, 0, 0, 2 * (len(highs) - i - 1) + 1),  # ours: past the rest and the drop
            ]
        insns.append((_RET_K, 0, 0, 0))  # no flow of ours
    if sources is None:
        insns.append((_RET_K, 0, 0, 0x40000))
        return b"".join(_BPF_INSN.pack(*i) for i in insns)
    for mac in sorted(sources):
        high, low = struct.unpack("!IH", mac)
        insns += [
            (_LD_W_ABS, 0, 0, 6),
            (_JEQ_K, 0, 3, high),  # not this address: on to the next one
            (_LD_H_ABS, 0, 0, 10),
            (_JEQ_K, 0, 1, low),
            (_RET_K, 0, 0, 0x40000),  # accept the whole frame
        ]
    insns.append((_RET_K, 0, 0, 0))  # nobody we trust: drop
    return b"".join(_BPF_INSN.pack(*i) for i in insns)
