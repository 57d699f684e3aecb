"""Watching the lanon: every daemon's metrics, a real Prometheus in the lab, the dashboard's queries."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lanon.deploy import path as deploy_path
from lanon.lab import topology
from lanon.lab.lab import DAEMON_PORT, Lab
from tests.common.test_metrics import promtool
from tests.integration.conftest import running_lab

pytestmark = pytest.mark.root

URL = f"http://{topology.INTERNET_HOST}"
SCRAPE = 5.0  # deploy/prometheus/prometheus.yml


@pytest.fixture(scope="module")
def labp() -> Iterator[Lab]:
    yield from running_lab("p", members=4, gateways=1, prometheus=True)


def scrape(lab: Lab, host: str, port: int = DAEMON_PORT, address: str | None = None) -> str:
    h = lab.host(host)
    r = lab.run(
        host, ["curl", "-sS", "--max-time", "5", f"http://{address or h.address}:{port}/metrics"]
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def value(lab: Lab, expr: str) -> float:
    result = lab.prometheus_query(expr)
    assert result, f"no data for {expr}"
    return float(result[0]["value"][1])


def test_promtool_accepts_every_daemons_metrics_in_the_lab(labp: Lab) -> None:
    tool = promtool()
    outputs = {h.name: scrape(labp, h.name) for h in labp.gateways + labp.members}
    outputs["member1 (private)"] = scrape(labp, "member1", 9552, "127.0.0.1")
    for name, text in outputs.items():
        r = subprocess.run(
            [tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
        )
        assert r.returncode == 0, (name, r.stdout + r.stderr)
        assert "_created" not in text, name
        assert ("lanon_info{" in text) == ("private" not in name), name


def test_prometheus_sees_rounds_and_collisions_as_they_happened(labp: Lab, tmp_path: Path) -> None:
    time.sleep(2 * SCRAPE)
    before = labp.leader_status()
    fetch = ["curl", "-sS", "--max-time", "90", "-o", "/dev/null", f"{URL}/5mb.bin"]
    for _ in range(3):  # every member at once: 2 to 5 collisions a time, and now and then none
        procs = [labp.popen(m.name, fetch) for m in labp.members]
        assert all(p.wait(timeout=120) == 0 for p in procs)
        after = labp.leader_status()
        if after["reservation_collisions"] > before["reservation_collisions"]:
            break
    time.sleep(2 * SCRAPE)
    rate = value(labp, 'sum(rate(lanon_rounds_completed_total{role="gateway"}[30s]))')
    assert rate > 5, rate
    collisions = value(labp, 'sum(lanon_reservation_collisions_total{role="gateway"})')
    assert (
        after["reservation_collisions"] > before["reservation_collisions"]
    )  # the fetches contended
    assert (
        before["reservation_collisions"]
        < collisions
        <= labp.leader_status()["reservation_collisions"]
    )
    assert value(labp, 'sum(lanon_members{role="gateway",state="present"})') == len(labp.members)
    # ACK filtering leaves a download about one ACK a round: dozens of packets, not thousands
    emitted = value(labp, 'sum(lanon_emitted_packets_total{role="gateway"})')
    assert before["emitted_packets"] + 3 * 20 < emitted <= labp.leader_status()["emitted_packets"]
    assert value(labp, 'sum(rate(lanon_rounds_contributed_total{role="member"}[1m]))') > 0


def test_every_dashboard_query_runs_against_the_real_prometheus(labp: Lab) -> None:
    dash = json.loads(deploy_path("grafana", "dashboards", "lanon.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for expr in exprs:
        labp.prometheus_query(
            expr.replace("$gateway", ".*").replace("$instance", ".*")
        )  # raises if refused
    assert labp.prometheus_query('lanon_info{role="gateway"}')[0]["metric"]["host"] == "gateway1"


def test_a_members_public_metrics_say_nothing_of_its_flows(labp: Lab) -> None:
    r = labp.run("member1", ["curl", "-sS", "--max-time", "20", f"{URL}/whoami"])
    assert r.returncode == 0
    text = scrape(labp, "member1")
    addresses = set(re.findall(r"\d+\.\d+\.\d+\.\d+", text))
    assert not addresses, addresses  # no destination, no anonymous address, no own address
    names = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert not any(n.startswith("lanon_member_") for n in names)
    # the private figures are served on the member's loopback only: not from the LAN
    r = labp.run(
        "gateway1",
        ["curl", "-sS", "--max-time", "3", f"http://{labp.host('member1').address}:9552/metrics"],
    )
    assert r.returncode != 0
    own = scrape(labp, "member1", 9552, "127.0.0.1")
    assert "lanon_member_cells_delivered_total" in own
