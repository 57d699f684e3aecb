"""A jammer in a real lab (`--jammer member4`): the members whose slots it writes into accuse it
anonymously, the leading gateway traces an accused bit, and member4 and only member4 is
excluded within seconds, every honest member having checked the evidence itself; then a 5 MB
download from another member comes through intact, and an operator can readmit it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lanon.lab import topology
from lanon.lab.lab import Lab
from tests.integration.conftest import reaped, running_lab
from tests.integration.test_end_to_end import digest

pytestmark = pytest.mark.root

URL = f"http://{topology.INTERNET_HOST}"


@pytest.fixture(scope="module")
def labj() -> Iterator[Lab]:
    yield from running_lab("j", members=4, gateways=2, jammer="member4")


def test_the_jammer_and_only_the_jammer_is_excluded_within_seconds(
    labj: Lab, tmp_path: Path
) -> None:
    body = tmp_path / "upload.bin"
    body.write_bytes(bytes(range(256)) * 4096)  # 1 MiB: many reserved slots
    upload = labj.popen(
        "member1",  # a lone victim: every reserved slot of its is jammed
        ["curl", "-sS", "--max-time", "20", "--data-binary", f"@{body}", f"{URL}/upload"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = time.monotonic()
    excluded: dict[str, list[str]] = {}
    with reaped(upload):
        while time.monotonic() < started + 20:
            excluded = {g.name: labj.status(g.name)["blame"]["excluded"] for g in labj.gateways}
            if all(excluded.values()):
                break
            time.sleep(0.2)
    took = time.monotonic() - started
    assert all(v == ["member4"] for v in excluded.values()), (
        excluded,
        labj.tail("gateway1"),
        labj.tail("member1"),
    )
    print(f"member4 excluded on every gateway {took:.1f} s after the upload started")
    leader = next(g.name for g in labj.gateways if labj.status(g.name)["leading"])
    traces = labj.status(leader)["blame"]["traces"]
    assert traces.get("disruptor", 0) >= 1, traces
    for m in ("member1", "member2", "member3"):  # each checked the evidence itself
        blame = labj.status(m)["blame"]
        assert blame["excluded"] == ["member4"], (m, blame)
        assert blame["verdicts"].get("agreed", 0) >= 1 and not blame["verdicts"].get("refuted")
    assert labj.status("member2")["corrupted_slots"] == 0
    assert "JAMMING (lab only)" in labj.log_path("member4").read_text()
    deadline = time.monotonic() + 10
    while labj.status("member4")["state"] != "excluded" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert labj.status("member4")["state"] == "excluded", labj.status("member4")["condition"]


def test_after_the_exclusion_a_5mb_download_comes_through_intact(labj: Lab, tmp_path: Path) -> None:
    out = tmp_path / "5mb.bin"
    r = labj.run("member2", ["curl", "-sS", "--max-time", "120", "-o", str(out), f"{URL}/5mb.bin"])
    assert r.returncode == 0, r.stderr
    assert digest(out) == digest(labj.www / "5mb.bin")
    assert labj.status("member2")["corrupted_slots"] == 0


def test_an_operator_readmits_it(labj: Lab) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lanon.cli", "readmit", "--lab", labj.name, "member4"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert "member4 is readmitted" in r.stdout
    leader = next(g.name for g in labj.gateways if labj.status(g.name)["leading"])
    assert labj.status(leader)["blame"]["excluded"] == []
    r = subprocess.run(
        [sys.executable, "-m", "lanon.cli", "readmit", "--lab", labj.name, "member4"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode != 0 and "not excluded" in r.stderr, r.stderr  # a clear error
