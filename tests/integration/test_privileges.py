"""The daemons as the units run them, and what faces whom.

This lab runs every daemon as the systemd units do: user lanon, only CAP_NET_ADMIN and
CAP_NET_RAW (ambient, so that iptables-restore has them too), no new privileges, after the
units' root pre-start steps (the sysctl file, `lanon prepare`). Whatever the daemons need beyond
that shows here as a failure, not on an operator's host.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lanon.lab import topology
from lanon.lab.lab import DAEMON_PORT, DAEMON_USER, Lab, pacer_limits
from tests.integration.conftest import running_lab

pytestmark = pytest.mark.root

URL = f"http://{topology.INTERNET_HOST}"
NET_ADMIN_AND_RAW = (1 << 12) | (1 << 13)


@pytest.fixture(scope="module")
def labu() -> Iterator[Lab]:
    yield from running_lab("u", members=3, gateways=1, unprivileged=True, prometheus=True)


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_daemons_run_as_the_units_run_them(labu: Lab) -> None:
    import pwd

    uid = pwd.getpwnam(DAEMON_USER).pw_uid
    for h in labu.gateways + labu.members:
        st = proc_status(labu.pids[h.name])
        assert st["Uid"].split() == [str(uid)] * 4, h.name
        for caps in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
            assert int(st[caps], 16) == NET_ADMIN_AND_RAW, (h.name, caps, st[caps])
        assert st["NoNewPrivs"] == "1", h.name
        assert st["Groups"] == "", h.name
        sock = labu.socket_path(h.name)
        assert sock.owner() == DAEMON_USER and sock.stat().st_mode & 0o777 == 0o660


def test_a_member_fetches_through_the_lanon_unprivileged(labu: Lab) -> None:
    anonymous = {f"198.18.0.{192 + i}" for i in range(4)}
    for m in labu.members:
        r = labu.run(m.name, ["curl", "-sS", "--max-time", "20", f"{URL}/whoami"])
        assert r.returncode == 0, (m.name, r.stderr, labu.tail(m.name))
        assert r.stdout.split(":")[0] in anonymous, r.stdout
    assert labu.status("member1")["state"] == "running"
    # the pacer process runs for the unprivileged member too; at real-time priority where the
    # lab can give it the unit's LimitRTPRIO= (root without CAP_SYS_RESOURCE cannot)
    paced = labu.status("member1")["answers"]["paced"]
    assert paced == ("realtime" if pacer_limits() else "process"), paced
    assert labu.status("member1")["inbound_read"] == "compiled"


def test_the_internet_reaches_no_metrics_but_the_lans_prometheus_scrapes(labu: Lab) -> None:
    for h in labu.gateways + labu.members:
        r = labu.run(
            "internet",
            ["curl", "-sS", "--max-time", "3", f"http://{h.address}:{DAEMON_PORT}/metrics"],
        )
        assert r.returncode != 0 and "lanon_" not in r.stdout, (h.name, r.stdout)
    # a web page's DNS name, rebound to a member's address, reads nothing from a LAN browser
    # (on a host of the LAN that is not a member: a member reaches no LAN address but through
    # the lanon, and the gateways emit to none but [lan_services] anonymous)
    member = labu.host("member1")
    curl = ["curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}"]
    r = labu.run(
        "router",
        [*curl, "-H", "Host: attacker.example", f"http://{member.address}:{DAEMON_PORT}/"],
    )
    assert r.stdout == "403", r.stdout + r.stderr
    deadline = time.monotonic() + 30  # the first scrape comes within one interval (5 s)
    while time.monotonic() < deadline:
        up = {s["metric"]["host"]: s["value"][1] for s in labu.prometheus_query("up")}
        if len(up) == 4 and set(up.values()) == {"1"}:
            break
        time.sleep(1)
    assert up == {h.name: "1" for h in labu.gateways + labu.members}, up


def lanon_status(lab: Lab) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "lanon.cli", "status", "--lab", lab.name],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def wait_state(
    lab: Lab, host: str, states: set[str], timeout: float = 15.0, condition: str = ""
) -> dict[str, str]:
    """The host's status once it is in one of `states` (and its condition starts with
    `condition`: a member stopped a moment ago is still counted until its keys are 3 s old)."""
    end = time.monotonic() + timeout
    st: dict[str, str] = {}
    while time.monotonic() < end:
        st = lab.status(host)
        if st["state"] in states and st["condition"].startswith(condition):
            return st
        time.sleep(0.2)
    raise AssertionError(f"{host} never in {states} ({condition!r}): {st}")


def test_a_member_says_the_lanon_is_paused_and_then_that_the_gateway_is_gone(labu: Lab) -> None:
    """Last: it stops a member, then the gateway."""
    labu.stop_daemon("member3")
    st = wait_state(labu, "member1", {"paused"}, condition="paused: 2 of 3")
    assert st["round_rate"] == 0.0 and st["fingerprint"] and st["version"]
    assert st["condition"] == "paused: 2 of 3 members present (min 3)", st
    gateway = labu.status("gateway1")
    assert gateway["condition"] == "paused: 2 of 3 members present (min 3)", gateway
    text = lanon_status(labu)
    assert "member1: " + st["condition"].split(" for ")[0] in text, text
    assert f"fingerprint {st['fingerprint'][:16]}" in text
    time.sleep(6)  # a problem is logged once it lasts 5 s
    log = labu.log_path("member1").read_text()
    assert "WARNING " + st["condition"].split(" for ")[0] in log, labu.tail("member1")
    log = labu.log_path("gateway1").read_text()
    assert re.search(r"WARNING lanon paused for \d+ s: 2 member\(s\), at least 3", log), labu.tail(
        "gateway1"
    )

    labu.stop_daemon("gateway1")
    st = wait_state(labu, "member1", {"no gateway"}, timeout=20)
    assert st["condition"].startswith("no gateway heard for "), st
    assert wait_state(labu, "member2", {"no gateway"}, timeout=10)["state"] == st["state"]
