"""No configuration can hijack the LAN: a gateway whose share covers live hosts (the router,
itself, the members) probes before it claims, claims none of them, says why, and the router
still reaches every host at its own MAC."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from lanon.common.coalition import load
from lanon.gateway import arp
from lanon.lab.lab import Lab
from tests.integration.conftest import running_lab
from tests.integration.test_end_to_end import Capture
from tests.integration.test_gateways import router_neighbours

pytestmark = pytest.mark.root

# 198.18.0.1-15 (the 198.18.0.0/28 without the network address, which config check
# refuses): the router (.1), gateway1 (.2) and the three members (.11-.13) live there.
SHARE = "198.18.0.1/32,198.18.0.2/31,198.18.0.4/30,198.18.0.8/29"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab("k", members=3, gateways=1, shares=(SHARE,))


def packed(a: str) -> bytes:
    return ipaddress.IPv4Address(a).packed


def test_a_share_over_live_hosts_claims_none_of_them_and_says_why(lab: Lab) -> None:
    anonymous = {str(a) for a in load(lab.dir / "coalition.toml").anonymous}
    live = {h.address: h for h in lab.hosts if h.kind != "internet"}
    taken = anonymous & set(live)
    assert taken == {"198.18.0.1", "198.18.0.2", "198.18.0.11", "198.18.0.12", "198.18.0.13"}
    st = lab.status("gateway1")
    assert set(st["held"]) == anonymous - taken
    refused = st["refused"]
    assert set(refused) == taken
    assert refused["198.18.0.1"]["reason"] == "router"
    assert refused["198.18.0.2"]["reason"] == "own_address"
    log = lab.log_path("gateway1").read_text()
    for m in lab.members:
        assert refused[m.address]["reason"] == "in_use"
        assert refused[m.address]["mac"] == m.mac  # the member answered the probe
        assert f"not claiming {m.address}: in use, {m.mac} answered a probe" in log
    assert "not claiming 198.18.0.1: router" in log
    assert "not claiming 198.18.0.2: own address" in log


def test_a_restarted_gateway_announces_none_of_them_and_the_router_reaches_each_host(
    lab: Lab, tmp_path: Path
) -> None:
    live = [h for h in lab.hosts if h.kind in ("gateway", "member")]
    for h in live:  # the router knows every host
        lab.run("router", ["ping", "-c", "1", "-W", "1", h.address])
    cap = Capture(lab, "lan", ["-i", "br0", "arp"], tmp_path / "arp.pcap")
    lab.stop_daemon("gateway1")
    lab.start_daemon("gateway1")
    lab.wait_ready()
    frames = cap.frames()
    gw = lab.host("gateway1")
    gw_mac = bytes.fromhex(gw.mac.replace(":", ""))
    probed, announced = set(), set()
    for src, payload in frames:
        a = arp.pull_arp(payload)
        if src != gw_mac or a is None:
            continue
        if a.sender_ip == arp.ZERO_IP:
            probed.add(str(ipaddress.IPv4Address(a.target_ip)))
        elif a.sender_ip == a.target_ip:
            announced.add(str(ipaddress.IPv4Address(a.sender_ip)))
        elif a.sender_ip != packed(gw.address):  # its own kernel's ARP for its own address
            announced.add(str(ipaddress.IPv4Address(a.sender_ip)))  # a reply for an address
    members = {m.address for m in lab.members}
    assert members <= probed  # it asked before claiming
    assert "198.18.0.1" not in probed and gw.address not in probed  # refused without asking
    assert not announced & (members | {"198.18.0.1", gw.address}), announced
    assert "198.18.0.3" in announced  # what it does hold, it announces
    lab.run("router", ["ping", "-c", "1", "-W", "0.3", "198.18.0.3"])  # nothing answers pings
    neighbours = router_neighbours(lab)
    for h in live:
        assert neighbours.get(h.address) == h.mac, (h.name, neighbours.get(h.address), h.mac)
    assert neighbours.get("198.18.0.3") == gw.mac
