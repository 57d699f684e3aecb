"""Metrics: Prometheus conventions, promtool, bounded labels, privacy, and the dashboard."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest

from lanon.common.events import CellDelivered, OutputSeen
from lanon.deploy import path as deploy_path
from lanon.gateway.metrics import GatewayMetrics
from lanon.member.metrics import MemberMetrics
from tests.harness import Lan, make_coalition
from tests.packets import echo_internet, udp

ALLOWED_LABELS = {
    "reason",
    "state",
    "kind",
    "protocol",
    "address",
    "coalition",
    "role",
    "name",
    "version",
    "le",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def promtool() -> str:
    found = shutil.which(
        "promtool",
        path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    if found is None:
        pytest.fail(
            "promtool is missing: './run test' unpacks Debian's prometheus package into .venv"
        )
    return found


@pytest.fixture(autouse=True)
def no_created_series() -> None:
    disable_created_metrics()  # as the daemons do: no _created noise  # type: ignore[no-untyped-call]


def registries() -> dict[str, CollectorRegistry]:
    gw, pub, priv = CollectorRegistry(), CollectorRegistry(), CollectorRegistry()
    GatewayMetrics(gw, "gateway1", "test")
    MemberMetrics(pub, priv, "member1", "test")
    return {"gateway": gw, "member": pub, "member-private": priv}


def exported_names(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + s for s in HISTOGRAM_SUFFIXES}
        else:
            names.add(family.name)
    return names


def test_names_follow_the_prometheus_conventions() -> None:
    for role, registry in registries().items():
        for family in registry.collect():
            assert family.name.startswith("lanon_"), family.name
            assert family.documentation, family.name
            if family.type == "histogram":
                assert family.name.endswith(("_seconds", "_slots")), family.name
            assert not family.name.endswith("_created"), family.name
            for sample in family.samples:
                assert set(sample.labels) <= ALLOWED_LABELS, (role, sample)


def test_promtool_accepts_every_daemons_metrics() -> None:
    tool = promtool()
    for role, registry in registries().items():
        text = generate_latest(registry)
        r = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, timeout=30)
        assert r.returncode == 0, (role, r.stdout.decode() + r.stderr.decode())


def test_promtool_accepts_the_shipped_prometheus_configuration(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(deploy_path("prometheus", "prometheus.yml").read_text())
    r = subprocess.run(
        [promtool(), "check", "config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_busy_member_and_an_idle_one_export_the_same_public_metrics() -> None:
    c, keys = make_coalition(3, 1)
    lan = Lan(c, keys, internet=echo_internet)
    lan.run_until(lambda: len(lan.all_events(OutputSeen)) >= 9)
    for i in range(30):
        lan.submit("member1", udp(sport=30000 + i, payload=b"busy" * 100))
    lan.run_until(lambda: len(lan.events("member1", CellDelivered)) == 30)
    lan.run(0.5)
    texts = {}
    for name in ("member1", "member2"):
        pub, priv = CollectorRegistry(), CollectorRegistry()
        m = MemberMetrics(pub, priv, "member", "test")  # same name label: compare the rest
        for e in lan.events(name):
            m.observe(e, 0.0)
        texts[name] = generate_latest(pub).decode()
    assert lan.host("member1").injected and not lan.host("member2").injected
    assert texts["member1"] == texts["member2"]  # nothing public tells the busy one apart
    for text in texts.values():
        assert not re.search(r"\d+\.\d+\.\d+\.\d+", text)  # no address anywhere
        assert "lanon_member_" not in text  # own traffic figures live in the private registry


def test_the_dashboard_names_only_exported_metrics() -> None:
    dash = json.loads(deploy_path("grafana", "dashboards", "lanon.json").read_text())
    assert dash["uid"] == "lanon-coalition"
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"instance", "gateway"} <= variables
    exported = set().union(*(exported_names(r) for r in registries().values()))
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dash["templating"]["list"]]
    assert len(exprs) > 20
    for expr in exprs:
        for name in re.findall(r"\blanon_[a-z_]+", expr):
            assert name in exported, (name, expr)
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in (
        "round rate",
        "round duration",
        "slot use",
        "collisions",
        "members",
        "rejected",
        "flows",
        "port space",
        "failovers",
    ):
        assert topic in titles, topic
    provider = deploy_path("grafana", "provisioning", "dashboards", "lanon.yml").read_text()
    assert "type: file" in provider and "/var/lib/grafana/dashboards/lanon" in provider
    datasource = deploy_path("grafana", "provisioning", "datasources", "prometheus.yml").read_text()
    uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p.get("targets", [])}
    assert uids == {"lanon-prometheus"} and "uid: lanon-prometheus" in datasource
