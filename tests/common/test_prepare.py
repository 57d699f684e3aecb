"""Root's part of a daemon's start, and what an unprivileged daemon says when it was skipped.

The daemons run as the units run them: an ordinary user with CAP_NET_ADMIN and CAP_NET_RAW.
Capabilities open no files: `lanon prepare` gives that user what it needs, and nothing else, and
the daemon says in one line what to do when it is missing. These tests switch users (root).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lanon.common import prepare as prep
from lanon.common.errors import PrerequisiteError

NOBODY = prep.Account("nobody", 65534, 65534, frozenset({65534}))
CAPS = "-all,+net_admin,+net_raw"


def as_nobody(code: str) -> subprocess.CompletedProcess[str]:
    """Python `code` as uid 65534 with only CAP_NET_ADMIN and CAP_NET_RAW, as the units run."""
    if os.geteuid() != 0:
        pytest.fail("switching users needs root: run 'sudo ./run test'")
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    argv += [f"--inh-caps={CAPS}", f"--ambient-caps={CAPS}", f"--bounding-set={CAPS}"]
    argv += ["--no-new-privs", sys.executable, "-c", code]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/")


@pytest.fixture
def root_file() -> Iterator[Path]:
    """A file of root's, mode 0600, where uid 65534 can reach it (not in pytest's 0700 tmp)."""
    fd, name = tempfile.mkstemp(prefix="lanon-prepare-", dir="/tmp")
    os.close(fd)
    path = Path(name)
    path.chmod(0o600)
    yield path
    path.unlink(missing_ok=True)


def test_acls_round_trip_and_mask_like_setfacl() -> None:
    entries = {
        (prep.USER_OBJ, prep.UNDEFINED_ID): 6,
        (prep.GROUP_OBJ, prep.UNDEFINED_ID): 0,
        (prep.OTHER, prep.UNDEFINED_ID): 0,
        (prep.USER, 995): 6,
    }
    data = prep.encode_acl(entries)
    assert data[:4] == b"\x02\x00\x00\x00" and len(data) == 4 + 5 * 8  # a mask entry was added
    path = Path(tempfile.mkdtemp(prefix="lanon-acl-")) / "f"
    try:
        path.write_text("")
        os.setxattr(path, prep.ACL_XATTR, data)
        assert prep.read_acl(path) == {**entries, (prep.MASK, prep.UNDEFINED_ID): 6}
    finally:
        path.unlink()
        path.parent.rmdir()


def test_grant_gives_one_user_access_and_is_idempotent(root_file: Path) -> None:
    assert as_nobody(f"open({str(root_file)!r}, 'r+')").returncode != 0
    assert not prep.allows(root_file, NOBODY, prep.READ | prep.WRITE)
    said = prep.grant(root_file, NOBODY, prep.READ | prep.WRITE, "")
    assert said == f"{root_file}: gave user nobody rw (ACL)"
    assert prep.grant(root_file, NOBODY, prep.READ | prep.WRITE, "").endswith("access already")
    assert root_file.stat().st_uid == 0 and root_file.stat().st_mode & 0o007 == 0  # others: none
    r = as_nobody(f"open({str(root_file)!r}, 'r+').close()")
    assert r.returncode == 0, r.stderr


def test_the_xtables_lock_is_made_as_iptables_makes_it_and_shared(root_file: Path) -> None:
    root_file.unlink()
    prep.xtables_lock(NOBODY, lock=root_file)
    assert root_file.stat().st_uid == 0 and root_file.stat().st_mode & 0o777 == 0o660  # mask
    r = as_nobody(
        f"import fcntl, os; fd = os.open({str(root_file)!r}, os.O_CREAT); fcntl.flock(fd, 2)"
    )
    assert r.returncode == 0, r.stderr  # iptables-legacy's open(O_CREAT) and flock


def test_prepare_says_what_is_missing() -> None:
    with pytest.raises(PrerequisiteError, match="user 'no-such-lanon-user' does not exist"):
        prep.account("no-such-lanon-user")
    with pytest.raises(PrerequisiteError, match=r"modprobe tun"):
        prep.tun_device(NOBODY, device=Path("/nonexistent/tun"))


def test_an_unusable_tun_device_says_what_to_do(root_file: Path) -> None:
    r = as_nobody(
        "from pathlib import Path\n"
        "from lanon.common.errors import PrerequisiteError\n"
        "from lanon.member.tun import Tun\n"
        "try:\n"
        f"    Tun('lanontest0', '198.19.255.254', device=Path({str(root_file)!r}))\n"
        "except PrerequisiteError as exc:\n"
        "    print(exc)\n"
    )
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.strip() == (
        f"user nobody may not open {root_file} (mode 0600, owner uid 0): run 'lanon prepare "
        f"member --user nobody' as root first (the unit's ExecStartPre does), or 'chmod 0666 "
        f"{root_file}'"
    )


def test_an_unwritable_control_directory_is_one_line() -> None:
    r = as_nobody(
        "from pathlib import Path\n"
        "from lanon.common.control import ControlServer\n"
        "from lanon.common.errors import PrerequisiteError\n"
        "try:\n"
        "    ControlServer(Path('/run/lanon-test-unwritable/member.sock'), lambda r: {})\n"
        "except PrerequisiteError as exc:\n"
        "    print(exc)\n"
    )
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.startswith(
        "cannot make the control socket /run/lanon-test-unwritable/member.sock: Permission denied;"
    )
    assert "RuntimeDirectory=lanon" in r.stdout and len(r.stdout.strip().splitlines()) == 1
