"""Services at anonymous endpoints in the lab (issue 14.1): the Internet host fetches from a
member's web server at the endpoint `lanon status` shows, and the router never sees the
member's own address; two services on two members at once; a service keeps answering across
the loss of the gateway that holds its address."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP

from lanon.lab.lab import Lab
from tests.integration.conftest import running_lab
from tests.integration.test_end_to_end import Capture

SERVED = {"member2": 8000, "member3": 9000}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(
        "s", members=3, gateways=2, serve=tuple(f"{m}:{p}" for m, p in SERVED.items())
    )


def status_json(lab: Lab) -> list[dict]:  # type: ignore[type-arg]
    """What `lanon status --lab NAME --json` says, as a user runs it."""
    r = subprocess.run(
        [sys.executable, "-m", "lanon.cli", "status", "--lab", lab.name, "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    return out if isinstance(out, list) else [out]


def endpoint(lab: Lab, member: str, within: float = 30.0) -> str:
    """The endpoint `lanon status --json` shows for the member's service."""
    deadline = time.monotonic() + within
    while True:
        for st in status_json(lab):
            if st.get("name") == member:
                (svc,) = st["services"]
                if svc["endpoint"]:
                    return str(svc["endpoint"])
        assert time.monotonic() < deadline, f"{member}'s service has no endpoint"
        time.sleep(0.3)


def fetch(lab: Lab, url: str, out: Path | None = None, timeout: int = 20) -> str:
    argv = ["curl", "-sS", "--max-time", str(timeout), url]
    if out is not None:
        argv[1:1] = ["-o", str(out)]
    r = lab.run("internet", argv, timeout=timeout + 10)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_status_shows_each_member_its_own_endpoint_only(lab: Lab) -> None:
    ends = {m: endpoint(lab, m) for m in SERVED}
    assert len(set(ends.values())) == 2
    for st in status_json(lab):
        text = json.dumps(st)
        if st.get("role") == "gateway":
            assert all(e not in text for e in ends.values())  # a count, never whose
            assert st["endpoints"] == 2
        elif st["name"] not in SERVED:
            assert st["services"] == []


def test_the_internet_fetches_from_two_members_services_and_the_router_never_sees_them(
    lab: Lab, tmp_path: Path
) -> None:
    own = [h.address for h in lab.members]
    cap = Capture(lab, "router", ["-i", "eth0", "ip"], tmp_path / "router.pcap")
    for member, port in SERVED.items():
        page = fetch(lab, f"http://{endpoint(lab, member)}/")
        mark = (lab.service_root(member, port) / "index.html").read_text()
        assert page == mark  # this member's server answered
        log = lab.service_root(member, port).with_suffix(".log").read_text()
        assert log.split()[0] == "203.0.113.10"  # it saw the Internet host itself
    packets = cap.stop()
    seen = {p[IP].src for p in packets if IP in p} | {p[IP].dst for p in packets if IP in p}
    assert seen and not seen & set(own), seen & set(own)
    text = " ".join(seen)
    assert all(a not in text for a in own)


def test_a_large_file_from_a_service_arrives_intact(lab: Lab, tmp_path: Path) -> None:
    root = lab.service_root("member2", SERVED["member2"])
    data = os.urandom(3 * 1024 * 1024)
    (root / "3mb.bin").write_bytes(data)
    out = tmp_path / "3mb.bin"
    t = time.monotonic()
    fetch(lab, f"http://{endpoint(lab, 'member2')}/3mb.bin", out, timeout=60)
    took = time.monotonic() - t
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    print(f"\n3 MB from member2's service to the Internet in {took:.2f} s")


def test_a_service_keeps_answering_when_its_gateway_is_lost(lab: Lab) -> None:
    at = endpoint(lab, "member3")
    address = at.rsplit(":", 1)[0]
    holder = next(g.name for g in lab.gateways if address in lab.status(g.name)["held"])
    lab.stop_daemon(holder, signal.SIGKILL)
    try:
        t = time.monotonic()
        page = fetch(lab, f"http://{at}/", timeout=20)
        print(f"\nfetched from {at} {time.monotonic() - t:.2f} s after {holder} was killed")
        assert page == (lab.service_root("member3", 9000) / "index.html").read_text()
        assert endpoint(lab, "member3") == at  # the same endpoint
    finally:
        lab.start_daemon(holder)


def test_a_lan_host_cannot_find_which_member_serves(lab: Lab) -> None:
    """The service listens on the TUN address, which the rules keep the LAN from: at a
    member's own address the port is closed, and at the TUN address (routed through a member)
    nothing answers, from the serving member and from another alike."""
    port = SERVED["member2"]
    outcomes = {}
    for member in ("member1", "member2"):
        address = lab.host(member).address
        own = lab.run("router", ["curl", "-sS", "--max-time", "3", f"http://{address}:{port}/"])
        lab.run("router", ["ip", "route", "replace", "198.19.255.254/32", "via", address])
        try:
            tun = lab.run(
                "router", ["curl", "-sS", "--max-time", "3", f"http://198.19.255.254:{port}/"]
            )
        finally:
            lab.run("router", ["ip", "route", "del", "198.19.255.254/32"])
        outcomes[member] = (own.returncode, tun.returncode)
    assert outcomes["member1"] == outcomes["member2"], outcomes
    assert outcomes["member2"][0] == 7 and outcomes["member2"][1] == 28  # refused; timed out
