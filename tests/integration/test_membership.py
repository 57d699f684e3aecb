"""Members join and leave a running lanon by signed versions, without restarts (a real lab,
as root).

A 3-member lab downloads 50 MB on member1 while member4 joins (its daemon asks, the
administrator approves on gateway1) and member2 is removed. The download comes through
intact, member4 fetches, member2's frames are refused, nothing leaves member2 with its own
address, and every daemon that was running is the same process.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lanon.common import wire
from lanon.common.coalition import load
from lanon.common.crypto import read_private_key
from lanon.common.engine import signed
from lanon.lab import topology
from lanon.lab.lab import Lab
from tests.integration.conftest import reaped, running_lab

pytestmark = pytest.mark.root

URL = f"http://{topology.INTERNET_HOST}"
SIZE = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def lab3() -> Iterator[Lab]:
    yield from running_lab("m", members=3, gateways=2)


def digest(path: Path) -> str:
    h = hashlib.blake2b()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def alive(lab: Lab) -> dict[str, int]:
    return {n: p for n, p in lab.pids.items() if os.path.exists(f"/proc/{p}")}


def rejected(lab: Lab) -> dict[str, int]:
    out: dict[str, int] = {}
    for g in lab.gateways:
        for reason, n in lab.status(g.name).get("rejected", {}).items():
            out[reason] = out.get(reason, 0) + n
    return out


def test_a_member_joins_and_one_leaves_during_a_50mb_download(lab3: Lab, tmp_path: Path) -> None:
    with (lab3.www / "50mb.bin").open("wb") as f:
        f.write(os.urandom(SIZE))
    before = alive(lab3)
    out = tmp_path / "50mb.bin"
    download = lab3.popen(
        "member1",
        [
            "curl",
            "-sS",
            "--limit-rate",
            "4M",
            "--max-time",
            "120",
            "-o",
            str(out),
            f"{URL}/50mb.bin",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with reaped(download):
        time.sleep(2.0)  # well into it
        assert download.poll() is None, "the download ended before the versions"
        lab3.join("member4")
        version = lab3.leave("member2")
        assert download.poll() is None, "the download ended before member2 left"
        _, err = download.communicate(timeout=150)
    assert download.returncode == 0, err.decode()
    assert digest(out) == digest(lab3.www / "50mb.bin")

    # member4 takes part like any member; member2 is out, and sends nothing with its address
    r = lab3.run("member4", ["curl", "-sS", "--max-time", "10", f"{URL}/whoami"])
    assert r.returncode == 0, r.stderr + lab3.tail("member4")
    anonymous = {str(a) for a in load(lab3.dir / "coalition.toml").anonymous}
    assert r.stdout.split(":")[0] in anonymous
    r = lab3.run("member2", ["curl", "-sS", "--max-time", "3", f"{URL}/whoami"])
    assert r.returncode != 0
    clients = set(lab3.http_clients())
    assert topology.member_address(2) not in clients and topology.member_address(4) not in clients

    leader = lab3.leader_status()
    assert set(leader["members_present"]) == {"member1", "member3", "member4"}
    assert leader["coalition_version"] == version == 3
    for host in ["member1", "member3", "member4", "gateway1", "gateway2"]:
        assert lab3.status(host)["coalition_version"] == 3, host
    assert lab3.status("member2")["state"] == "removed"

    # member2's frames are refused: a HELLO signed with its key, as it was member #1
    key = read_private_key(lab3.dir / "keys" / "member2.key")
    c = load(lab3.dir / "coalition.toml")
    hello = wire.Hello(int(time.time() * 1000), c.fingerprint, c.version).encode(c.id, 1)
    frame = signed(key, hello)
    count = sum(rejected(lab3).values())
    send = (
        "import sys; from lanon.common.rawsock import LinkSocket; "
        "s = LinkSocket('eth0', 0x88B5); s.send(b'\\xff' * 6, bytes.fromhex(sys.argv[1]))"
    )
    lab3.run("member2", [sys.executable, "-c", send, frame.hex()], check=True)
    time.sleep(0.5)
    assert sum(rejected(lab3).values()) > count
    assert "member2" not in lab3.leader_status()["members_present"]

    # no daemon restarted: the same processes, and member4's one more
    after = alive(lab3)
    assert {n: p for n, p in after.items() if n != "member4"} == before
    assert "member4" in after
