"""The TUN device through which a member hands inbound packets to its own stack."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
from pathlib import Path

from pyroute2 import IPRoute

from lanon.common.errors import PrerequisiteError

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
TUN_MTU = 65535  # inbound datagrams are injected whole, up to 64 KB
# Reverse-path filtering (even loose) drops everything arriving on a device without an IPv4
# address, so the device gets a /32 of its own (member setting tun_address); it is never a
# source, as no route uses the device.


class Tun:
    def __init__(self, name: str, address: str) -> None:
        self.name = name
        try:
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise PrerequisiteError(
                "/dev/net/tun is missing: load the tun module (modprobe tun)"
            ) from None
        except PermissionError:
            raise PrerequisiteError("opening /dev/net/tun needs root or CAP_NET_ADMIN") from None
        ifr = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
        fcntl.ioctl(self.fd, TUNSETIFF, ifr)
        # Replies come from Internet addresses on this device: loose reverse-path filtering,
        # no IPv6 on it.
        for key, value in (("ipv4/conf/{}/rp_filter", "2"), ("ipv6/conf/{}/disable_ipv6", "1")):
            path = Path("/proc/sys/net") / key.format(name)
            with contextlib.suppress(OSError):
                path.write_text(value)
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=name)[0]
            ipr.link("set", index=index, mtu=TUN_MTU, state="up")
            ipr.addr("add", index=index, address=address, prefixlen=32)
        self.errors = 0

    def fileno(self) -> int:
        return self.fd

    def write(self, packet: bytes) -> bool:
        try:
            os.write(self.fd, packet)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.ENOBUFS, errno.EINVAL, errno.EIO):
                self.errors += 1
                return False
            raise
        return True

    def drain(self) -> None:
        """Discard anything the kernel routes into the device (nothing should be)."""
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)
