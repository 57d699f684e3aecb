"""The TUN device through which a member hands inbound packets to its own stack."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pwd
import stat
import struct
from pathlib import Path

from pyroute2 import IPRoute

from lanon.common.errors import PrerequisiteError

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
TUN_MTU = 65535  # inbound datagrams are injected whole, up to 64 KB
DEVICE = Path("/dev/net/tun")
CAP_NET_ADMIN = 12
# Reverse-path filtering (even loose) drops everything arriving on a device without an IPv4
# address, so the device gets a /32 of its own (member setting tun_address); it is never a
# source, as no route uses the device.


class Tun:
    def __init__(self, name: str, address: str, device: Path = DEVICE) -> None:
        self.name = name
        self.fd = _open_device(device)
        ifr = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
        try:
            fcntl.ioctl(self.fd, TUNSETIFF, ifr)
        except OSError as exc:
            os.close(self.fd)
            raise PrerequisiteError(_attach_problem(name, exc)) from None
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


def has_net_admin() -> bool:
    """Whether this process holds CAP_NET_ADMIN (in its effective set)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError):
        pass
    return os.geteuid() == 0


def _who() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _open_device(device: Path) -> int:
    try:
        return os.open(device, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PrerequisiteError(
            f"{device} is missing: load the tun module (modprobe tun)"
        ) from None
    except PermissionError:
        # A capability does not open a file: the device's mode or ACL must let this user in.
        st = device.stat()
        user = _who()
        raise PrerequisiteError(
            f"user {user} may not open {device} (mode {stat.S_IMODE(st.st_mode):04o}, owner "
            f"uid {st.st_uid}): run 'lanon prepare member --user {user}' as root first (the "
            f"unit's ExecStartPre does), or 'chmod 0666 {device}'"
        ) from None


def _attach_problem(name: str, exc: OSError) -> str:
    if exc.errno == errno.EBUSY:
        return f"TUN device {name} is in use: is another lanon member running? (setting tun)"
    if exc.errno == errno.EPERM and not has_net_admin():
        return (
            f"creating TUN device {name} needs CAP_NET_ADMIN: run the daemon as the unit does "
            "(AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW) or as root"
        )
    if exc.errno == errno.EPERM:
        return (
            f"TUN device {name} exists and belongs to another user: remove it "
            f"(ip link delete {name}) or choose another name (setting tun)"
        )
    return f"cannot attach TUN device {name}: {exc.strerror}"
