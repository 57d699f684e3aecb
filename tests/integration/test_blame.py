"""A jammer in a real lab (`--jammer member4`): the members whose slots it writes into know it,
accuse it anonymously, and the gateways find the accusations proven; the jammer's own slots are
untouched and it accuses nobody. (Naming and excluding the jammer is not built yet.)"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lanon.lab import topology
from lanon.lab.lab import Lab
from tests.integration.conftest import reaped, running_lab

pytestmark = pytest.mark.root

URL = f"http://{topology.INTERNET_HOST}"


@pytest.fixture(scope="module")
def labj() -> Iterator[Lab]:
    yield from running_lab("j", members=4, gateways=2, jammer="member4")


def test_the_jammed_accuse_and_every_gateway_finds_it_proven(labj: Lab, tmp_path: Path) -> None:
    body = tmp_path / "upload.bin"
    body.write_bytes(bytes(range(256)) * 4096)  # 1 MiB: many reserved slots
    uploads = [
        labj.popen(
            m,
            ["curl", "-sS", "--max-time", "20", "--data-binary", f"@{body}", f"{URL}/upload"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for m in ("member1",)  # a lone victim: every reserved slot of its is jammed
    ]
    proven: dict[str, int] = {}
    with reaped(*uploads):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            proven = {
                g.name: labj.status(g.name).get("accusations", {}).get("proven", 0)
                for g in labj.gateways
            }
            if all(proven.values()):
                break
            time.sleep(0.5)
    assert all(proven.values()), (proven, labj.tail("gateway1"), labj.tail("member1"))
    jammed = {m: labj.status(m)["corrupted_slots"] for m in ("member1", "member2", "member4")}
    assert jammed["member1"] > 0 and jammed["member2"] == 0, jammed
    assert jammed["member4"] == 0, jammed  # the jammer leaves its own slots alone
    for g in labj.gateways:
        refused = {
            j: n for j, n in labj.status(g.name).get("accusations", {}).items() if j != "proven"
        }
        assert set(refused) <= {"repeated", "unknown_round"}, (g.name, refused)
    assert "JAMMING (lab only)" in labj.log_path("member4").read_text()
