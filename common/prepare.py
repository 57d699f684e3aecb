"""`lanon prepare ROLE --user lanon`: what a daemon needs from root before it starts unprivileged.

The units run the daemons as user `lanon` with only CAP_NET_ADMIN and CAP_NET_RAW and no new
privileges. Capabilities do not open files: two files the daemons use belong to root, so the
units' root pre-start step (`ExecStartPre=+lanon prepare ...`) gives that user access to them,
and nothing else:

- `/dev/net/tun` (member): the TUN device that inbound packets are injected through. Debian
  makes it 0666; hardened hosts and containers make it 0600. The user gets `rw` through a POSIX
  ACL entry of its own (as `setfacl -m u:lanon:rw` would), the mode stays as it is.
- `/run/xtables.lock` (both): iptables-legacy takes it before any change (iptables-nft does not);
  iptables creates it 0600 for root. It is created if missing and the user gets `rw` on it the
  same way, so that lanon's rules and everyone else's still take turns on one lock.
- the control socket's directory, if the daemon file names one and it is missing (systemd's
  `RuntimeDirectory=lanon` makes /run/lanon; elsewhere this does).

Each step is idempotent and says what it did; a step that cannot be done fails with one line
that says what to do instead.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from lanon.common.errors import PrerequisiteError

TUN_DEVICE = Path("/dev/net/tun")
XTABLES_LOCK = Path(os.environ.get("XTABLES_LOCKFILE") or "/run/xtables.lock")

ACL_XATTR = "system.posix_acl_access"
ACL_VERSION = 2
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
UNDEFINED_ID = 0xFFFFFFFF
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")
READ, WRITE = 4, 2


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    groups: frozenset[int]


def account(name: str) -> Account:
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise PrerequisiteError(
            f"user {name!r} does not exist: create it with 'systemd-sysusers' once "
            "'lanon deploy install' has put sysusers.d/lanon.conf in place"
        ) from None
    return Account(name, pw.pw_uid, pw.pw_gid, frozenset(os.getgrouplist(name, pw.pw_gid)))


# --- POSIX ACLs (the xattr format of linux/posix_acl_xattr.h) --------------------------------


def read_acl(path: Path) -> dict[tuple[int, int], int]:
    """{(tag, id): perm}: the file's ACL, or the three entries its mode stands for."""
    try:
        data = os.getxattr(path, ACL_XATTR)
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.EOPNOTSUPP):
            raise
        mode = path.stat().st_mode
        return {
            (USER_OBJ, UNDEFINED_ID): (mode >> 6) & 7,
            (GROUP_OBJ, UNDEFINED_ID): (mode >> 3) & 7,
            (OTHER, UNDEFINED_ID): mode & 7,
        }
    (version,) = _HEADER.unpack_from(data)
    if version != ACL_VERSION or (len(data) - _HEADER.size) % _ENTRY.size:
        raise PrerequisiteError(f"{path}: an ACL of a kind lanon does not know (version {version})")
    entries = {}
    for offset in range(_HEADER.size, len(data), _ENTRY.size):
        tag, perm, ident = _ENTRY.unpack_from(data, offset)
        entries[(tag, ident)] = perm
    return entries


def encode_acl(entries: dict[tuple[int, int], int]) -> bytes:
    """The xattr value of an ACL; a mask entry is (re)computed as setfacl does."""
    entries = {k: v for k, v in entries.items() if k[0] != MASK}
    if any(tag in (USER, GROUP) for tag, _ in entries):
        mask = 0
        for (tag, _), perm in entries.items():
            if tag in (USER, GROUP, GROUP_OBJ):
                mask |= perm
        entries[(MASK, UNDEFINED_ID)] = mask
    return _HEADER.pack(ACL_VERSION) + b"".join(
        _ENTRY.pack(tag, perm, ident) for (tag, ident), perm in sorted(entries.items())
    )


def allows(path: Path, who: Account, want: int) -> bool:
    """Whether `who` gets `want` (READ | WRITE) on `path` from its owner, ACL and mode."""
    st = path.stat()
    if who.uid == 0:
        return True
    acl = read_acl(path)
    if who.uid == st.st_uid:
        return acl[(USER_OBJ, UNDEFINED_ID)] & want == want
    mask = acl.get((MASK, UNDEFINED_ID), 7)
    named = acl.get((USER, who.uid))
    if named is not None:
        return named & mask & want == want
    group_perms = [acl[(GROUP_OBJ, UNDEFINED_ID)]] if st.st_gid in who.groups else []
    group_perms += [p for (tag, ident), p in acl.items() if tag == GROUP and ident in who.groups]
    if group_perms:
        return any(p & mask & want == want for p in group_perms)
    return acl[(OTHER, UNDEFINED_ID)] & want == want


def grant(path: Path, who: Account, want: int, fix: str) -> str:
    """Give `who` `want` on `path` through an ACL entry of its own, unless it has it already."""
    if allows(path, who, want):
        return f"{path}: user {who.name} has access already"
    entries = read_acl(path)
    entries[(USER, who.uid)] = entries.get((USER, who.uid), 0) | want
    try:
        os.setxattr(path, ACL_XATTR, encode_acl(entries))
    except OSError as exc:
        raise PrerequisiteError(
            f"cannot give user {who.name} access to {path} ({exc.strerror}): {fix}"
        ) from None
    return f"{path}: gave user {who.name} {'r' if want & READ else ''}{'w' if want & WRITE else ''} (ACL)"


# --- the steps ------------------------------------------------------------------------------


def tun_device(who: Account, device: Path = TUN_DEVICE) -> str:
    if not device.exists():
        raise PrerequisiteError(f"{device} is missing: load the tun module (modprobe tun)")
    return grant(
        device,
        who,
        READ | WRITE,
        f"make it usable by {who.name} another way, e.g. 'chmod 0666 {device}' (Debian's default)",
    )


def xtables_lock(who: Account, lock: Path = XTABLES_LOCK) -> str:
    if not lock.exists():
        fd = os.open(lock, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600)  # as iptables makes it
        os.close(fd)
    if not stat.S_ISREG(lock.stat().st_mode):
        raise PrerequisiteError(f"{lock} is not a regular file; iptables takes it as its lock")
    return grant(
        lock,
        who,
        READ | WRITE,
        f"use the nft backend of iptables (update-alternatives --set iptables "
        f"/usr/sbin/iptables-nft), or 'chgrp {who.name} {lock}; chmod g+rw {lock}'",
    )


def runtime_directory(who: Account, directory: Path) -> str:
    if directory.is_dir():
        return f"{directory}: exists"
    directory.mkdir(mode=0o750, parents=True)
    os.chown(directory, who.uid, who.gid)
    return f"{directory}: made, owned by {who.name}"


def prepare(role: str, user: str, control_dir: Path | None = None) -> list[str]:
    """Run every step for `role` ('member' or 'gateway'); what each did, for the log."""
    if os.geteuid() != 0:
        raise PrerequisiteError(
            "lanon prepare gives the daemon's user access to root's files: run it as root "
            "(the units do, with ExecStartPre=+)"
        )
    who = account(user)
    done = []
    if role == "member":
        done.append(tun_device(who))
    done.append(xtables_lock(who))
    if control_dir is not None:
        done.append(runtime_directory(who, control_dir))
    return done
