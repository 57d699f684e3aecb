"""The deployment files: templates, rules, units, sysctls and the compose file, as they ship."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lanon.common import coalition
from lanon.common.settings import describe
from lanon.common.templates import template, write_coalition
from lanon.deploy import path as deploy_path
from lanon.gateway.config import GatewaySettings, OfferSettings
from lanon.gateway.rules import ruleset
from lanon.member.choice import Priorities
from lanon.member.config import MemberSettings
from lanon.member.rules import MemberRules

ROOT = Path(__file__).resolve().parents[1]


def tool(name: str, package: str) -> str:
    found = shutil.which(
        name,
        path=os.pathsep.join(
            [str(Path(sys.executable).parent), os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]
        ),
    )
    if found is None:
        pytest.fail(f"{name} is missing: install Debian's '{package}' package ('./run test' does)")
    return found


def toml_default(default: str) -> str:
    return {"True": "true", "False": "false"}.get(default, default.replace("'", '"'))


@pytest.mark.parametrize(
    "name,sections",
    [
        (
            "coalition.toml",
            {
                "coalition": coalition.CoalitionSection,
                "rounds": coalition.RoundSection,
                "flows": coalition.FlowSection,
                "key_graph": coalition.KeyGraphSection,
                "egress": coalition.EgressSection,
                "admin": coalition.AdminSection,
                "providers": coalition.ProvidersSection,
            },
        ),
        ("member.toml", {None: MemberSettings, "providers": Priorities}),
        ("gateway.toml", {None: GatewaySettings, "offer": OfferSettings}),
    ],
)
def test_every_setting_is_documented_in_its_template_with_its_default(
    name: str, sections: dict[str | None, type]
) -> None:
    text = template(name)
    for table, cls in sections.items():
        part = text if table is None else _table_part(text, table)
        for key, default, help_text in describe(cls):
            if key.startswith("["):
                continue  # a [table] of its own: checked as such
            line = re.search(rf"^(#\s*)?{key} = (.*)$", part, re.M)
            assert line, f"{name}: [{table}] {key} is not in the template"
            first_words = " ".join(help_text.split()[:4])
            assert first_words.split("(")[0].strip() in " ".join(part.split()), (
                f"{name}: {key} is not documented"
            )
            field = next(f for f in dataclasses.fields(cls) if f.name == key)
            if line.group(1):  # a commented default must be the real default
                assert line.group(2) == toml_default(default), (name, key, line.group(2), default)
            elif field.default is dataclasses.MISSING:
                pass  # a required key: an example value


def _table_part(text: str, table: str) -> str:
    """A [table]'s part of a template (commented out, as optional tables are)."""
    for head in (f"\n[{table}]\n", f"\n# [{table}]\n"):
        if head in text:
            return text.split(head, 1)[1].split("\n[", 1)[0]
    raise AssertionError(f"no [{table}] in the template")


def test_files_made_from_the_templates_load(tmp_path: Path) -> None:
    write_coalition(
        tmp_path,
        "office",
        "198.18.0.0/24",
        [("gw1", "198.18.0.192/30"), ("gw2", "198.18.0.196/30")],
        ["a", "b", "c", "d"],
    )
    c = coalition.load(tmp_path / "coalition.toml")
    assert [m.name for m in c.members] == ["a", "b", "c", "d"] and len(c.anonymous) == 8
    for host in ("a", "d", "gw2"):
        r = subprocess.run(
            [sys.executable, "-m", "lanon.cli", "config", "check", str(tmp_path / f"{host}.toml")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0 and ": ok" in r.stdout, r.stderr
    assert (tmp_path / "a.toml").read_text().startswith(template("member.toml").splitlines()[0])


def test_the_rules_the_daemons_install_are_the_shipped_files() -> None:
    member = MemberRules("198.18.0.0/24", 3, "lanon0")
    shipped = deploy_path("iptables", "member.rules").read_text()
    rendered = member.ipv4()
    expected = "\n".join(
        line
        if line.startswith("#")
        else line.replace("@LAN@", "198.18.0.0/24")
        .replace("@QUEUE@", "3")
        .replace("@TUN@", "lanon0")
        .replace("@TUN_ADDRESS@", "198.19.255.254")
        for line in shipped.splitlines()
        # no dhcp_server nor direct LAN services: their lines left out
        if line.startswith("#") or ("@DHCP@" not in line and "@DIRECT@" not in line)
    )
    assert rendered.strip() == expected.strip()
    rules = [line for line in rendered.splitlines() if not line.startswith("#")]
    assert "-A LANON_OUT -j NFQUEUE --queue-num 3" in rules
    assert not any("bypass" in line for line in rules)  # fail-closed
    assert member.ipv6().strip() == deploy_path("iptables", "member6.rules").read_text().strip()
    gw = ruleset(["198.18.0.192/30", "198.18.0.196/30"])
    assert gw.count("-j DROP") == 2 and "@" not in gw.replace("#", "").split("*raw", 1)[1]


def test_the_nftables_form_has_the_same_exceptions_as_the_iptables_one() -> None:
    nft = deploy_path("nftables", "member.nft").read_text()
    ipt = deploy_path("iptables", "member.rules").read_text()
    for destination in (
        "255.255.255.255",
        "224.0.0.0/4",
        "169.254.0.0/16",
        "@LAN@",
        "@DHCP@",
        "@TUN_ADDRESS@",
    ):
        assert destination in nft and destination in ipt
    assert "queue num @QUEUE@" in nft and "bypass" not in nft.replace('No "bypass"', "")
    for hook in ("output", "forward", "input", "postrouting"):  # every chain of member.rules
        assert f"hook {hook} " in nft, hook
    assert "udp dport 67 return" in nft and "udp sport 68 udp dport 67 return" not in nft.replace(
        "@DHCP@ udp sport 68 udp dport 67 return", ""
    )  # DHCP passes only to the named server


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", "systemd")
    lanon = shutil.which("lanon", path=str(Path(sys.executable).parent)) or "/usr/bin/true"
    units = []
    for role in ("member", "gateway"):  # the boot units: root, before the network, oneshot
        text = deploy_path("systemd", "lanon-rules@.service").read_text()
        for needed in (
            "Before=network-pre.target",
            "Wants=network-pre.target",
            "DefaultDependencies=no",
            "Type=oneshot",
            "RemainAfterExit=yes",
            "ExecStart=/opt/lanon/bin/lanon rules install %i --config /etc/lanon/%i.toml",
        ):
            assert needed in text, needed
        assert "User=" not in text and "ExecStop" not in text  # root; nothing ever removes rules
        unit = tmp_path / f"lanon-rules@{role}.service"
        unit.write_text(text.replace("/opt/lanon/bin/lanon", lanon))
        units.append(str(unit))
        daemon = deploy_path("systemd", f"lanon-{role}.service").read_text()
        for key in ("Wants=", "After="):
            assert re.search(rf"^{key}.*lanon-rules@{role}\.service", daemon, re.M), (role, key)
    for name in ("lanon-member.service", "lanon-gateway.service"):
        text = deploy_path("systemd", name).read_text()
        for needed in (
            "User=lanon",
            "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW",
            "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
            "NoNewPrivileges=yes",
            "Restart=on-failure",
            "ExecStartPre=-+/usr/sbin/sysctl",
            "ExecStartPre=-+/opt/lanon/bin/lanon prepare",  # root's part: tun, iptables' lock
            "RuntimeDirectory=lanon",
        ):
            assert needed in text, (name, needed)
        families = "AF_NETLINK AF_PACKET AF_INET AF_INET6 AF_UNIX"  # ip6tables-restore: AF_INET6
        if name == "lanon-gateway.service":
            families = families.replace(" AF_INET6", "")  # IPv4 rules only
        assert f"\nRestrictAddressFamilies={families}\n" in text, name
        if name == "lanon-member.service":  # its pacer at real-time priority, and no more
            assert "\nLimitRTPRIO=10\n" in text and "RestrictRealtime" not in text, name
        else:
            assert "\nRestrictRealtime=yes\n" in text, name
        unit = tmp_path / name
        unit.write_text(
            text.replace("/opt/lanon/bin/lanon", lanon)
        )  # where lanon is installed here
        units.append(str(unit))
    r = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr


def test_sysctl_files_name_real_keys() -> None:
    for name in ("90-lanon-member.conf", "90-lanon-gateway.conf"):
        for line in deploy_path("sysctl.d", name).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, value = (p.strip() for p in line.partition("="))
                assert Path("/proc/sys", *key.split(".")).exists(), key
                assert value.isdigit(), line


def test_the_compose_file_is_valid(tmp_path: Path) -> None:
    compose = tool("docker-compose", "docker-compose")
    r = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config", "--services"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    services = set(r.stdout.split())
    assert {
        "init",
        "router",
        "internet",
        "gateway1",
        "gateway2",
        "member1",
        "member2",
        "member3",
        "prometheus",
        "grafana",
    } <= services
    text = (ROOT / "docker-compose.yml").read_text()
    assert "NET_ADMIN" in text and "NET_RAW" in text and "./deploy/grafana/dashboards" in text
