"""The lanon end to end in a real lab: curl, ping, DNS, UDP; fail-closed; uniform frames."""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from scapy.layers.inet import IP
from scapy.utils import RawPcapReader, rdpcap

from lanon.common import wire
from lanon.lab import observer, topology
from lanon.lab.lab import DNS_NAME, Lab

pytestmark = pytest.mark.root

URL = f"http://{topology.INTERNET_HOST}"


def digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


class Capture:
    """tcpdump in a lab namespace, written to a pcap, stopped on exit (and, if a failing test
    left it running, by the `no_capture_left` fixture, so that it cannot fail the next test)."""

    running: list[Capture] = []

    def __init__(self, lab: Lab, host: str, args: list[str], path: Path) -> None:
        Capture.running.append(self)
        self.path = path
        self.proc = observer.tcpdump(lab, host, path, *args)

    def stop(self) -> list:  # type: ignore[type-arg]
        time.sleep(0.3)
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=10)
        assert self.path.exists(), err
        return list(rdpcap(str(self.path))) if self.path.stat().st_size > 24 else []

    def frames(self) -> list[tuple[bytes, bytes]]:
        """(source MAC, payload) of every Ethernet frame captured; fails if tcpdump lost any."""
        return [(src, payload) for src, payload, _size in self.heads()]

    def heads(self) -> list[tuple[bytes, bytes, int]]:
        """(source MAC, payload as captured, frame's size on the wire) of every Ethernet frame:
        with `-s`, tcpdump copies only a frame's head, and keeps up with a fast lanon."""
        time.sleep(0.3)
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=10)
        assert re.search(rb"^0 packets dropped by kernel", err, re.M), err
        with RawPcapReader(str(self.path)) as reader:
            return [(bytes(data[6:12]), bytes(data[14:]), meta.wirelen) for data, meta in reader]


def test_three_members_fetch_5mb_at_once_and_get_it_intact(lab: Lab, tmp_path: Path) -> None:
    procs = {}
    for m in lab.members[:3]:
        out = tmp_path / f"{m.name}.bin"
        procs[m.name] = (
            out,
            lab.popen(
                m.name,
                ["curl", "-sS", "--max-time", "120", "-o", str(out), f"{URL}/5mb.bin"],
                stderr=subprocess.PIPE,
            ),
        )
    want = digest(lab.www / "5mb.bin")
    for name, (out, proc) in procs.items():
        _, err = proc.communicate(timeout=150)
        assert proc.returncode == 0, f"{name}: {err.decode()}"
        assert digest(out) == want, f"{name}: the file differs"
    for m in lab.members:  # every member read them in compiled code (built by ./run)
        assert lab.status(m.name)["inbound_read"] == "compiled", m.name


def test_the_internet_sees_only_anonymous_addresses(lab: Lab, tmp_path: Path) -> None:
    anonymous = {str(a) for a in topology_anonymous(lab)}
    cap = Capture(lab, "internet", ["-i", "eth0", "ip"], tmp_path / "internet.pcap")
    for m in lab.members:
        r = lab.run(m.name, ["curl", "-sS", "--max-time", "20", f"{URL}/whoami"])
        assert r.returncode == 0, r.stderr
        assert r.stdout.split(":")[0] in anonymous
    packets = cap.stop()
    sources = {p[IP].src for p in packets if IP in p and p[IP].src != topology.INTERNET_HOST}
    assert sources and sources <= anonymous, sources
    clients = set(lab.http_clients())
    assert clients <= anonymous and not clients & {m.address for m in lab.members}


def topology_anonymous(lab: Lab) -> list[str]:
    from lanon.common.coalition import load

    return [str(a) for a in load(lab.dir / "coalition.toml").anonymous]


def test_ping_dns_and_udp(lab: Lab) -> None:
    r = lab.run("member1", ["ping", "-c", "3", "-i", "0.2", "-W", "5", topology.INTERNET_HOST])
    assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout + r.stderr
    r = lab.run("member2", ["dig", "+short", "+time=5", "+tries=2", f"www.{DNS_NAME}"])
    assert r.returncode == 0 and r.stdout.strip() == topology.INTERNET_HOST, r.stdout + r.stderr
    echo = (
        "import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(5);"
        f"s.sendto(b'lanon udp', ('{topology.INTERNET_HOST}', 7)); print(s.recvfrom(2048)[0].decode())"
    )
    r = lab.run("member3", [sys.executable, "-c", echo])
    assert r.returncode == 0 and r.stdout.strip() == "lanon udp", r.stderr


def test_the_routers_resolver_sees_only_anonymous_addresses(lab: Lab, tmp_path: Path) -> None:
    """#10.7: the LAN's own resolver, which members use (resolv.conf), is reached through the
    lanon; its log and the router's port show anonymous addresses only, and no LAN service but
    the one the coalition file names is reachable from a member at all."""
    anonymous = {str(a) for a in topology_anonymous(lab)}
    own = {m.address for m in lab.members}
    cap = Capture(lab, "router", ["-i", "eth0", "ip"], tmp_path / "router.pcap")
    for m in lab.members:
        r = lab.run(m.name, ["dig", "+short", "+time=5", "+tries=2", f"dns-{m.name}.{DNS_NAME}"])
        assert r.returncode == 0 and r.stdout.strip() == topology.INTERNET_HOST, r.stdout + r.stderr
    # the resolver's address given by hand: the same road
    r = lab.run("member1", ["dig", f"@{topology.ROUTER_LAN}", "+short", "+time=5", DNS_NAME])
    assert r.returncode == 0 and r.stdout.strip() == topology.INTERNET_HOST, r.stdout + r.stderr
    # any other port of the router: refused by the gateway, not reached with the member's address
    r = lab.run("member2", ["curl", "-sS", "--max-time", "3", f"http://{topology.ROUTER_LAN}/"])
    assert r.returncode != 0
    packets = cap.stop()
    sources = {p[IP].src for p in packets if IP in p and p[IP].src != topology.ROUTER_LAN}
    assert not sources & own, sources
    log = lab.resolver_log.read_text()
    clients = set(re.findall(r"query\[A\] dns-member\d+\.\S+ from ([\d.]+)", log))
    assert clients and clients <= anonymous, log[-2000:]


def test_a_stopped_member_sends_nothing_with_its_own_address(lab: Lab, tmp_path: Path) -> None:
    victim = lab.members[3]
    cap = Capture(lab, "router", ["-i", "eth0", f"host {victim.address}"], tmp_path / "router.pcap")
    lab.stop_daemon(victim.name, signal.SIGKILL)  # a crash: nothing cleans up
    r = lab.run(victim.name, ["curl", "-sS", "--max-time", "3", f"{URL}/whoami"])
    assert r.returncode != 0  # its traffic stops...
    r = lab.run(victim.name, ["ping", "-c", "2", "-W", "1", topology.INTERNET_HOST])
    assert r.returncode != 0
    # ...while the other members' goes on
    r = lab.run("member1", ["curl", "-sS", "--max-time", "20", f"{URL}/whoami"])
    assert r.returncode == 0, r.stderr
    assert cap.stop() == []  # not one packet with the member's address reached the router
    lab.start_daemon(victim.name)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = lab.run(victim.name, ["curl", "-sS", "--max-time", "3", f"{URL}/whoami"])
        if r.returncode == 0:
            break
    assert r.returncode == 0, "the restarted member did not rejoin"


def test_idle_and_busy_members_send_the_same_frames_per_round(lab: Lab, tmp_path: Path) -> None:
    # what the operator of the switch sees: each member's port, frames coming in from it
    caps = [
        Capture(
            lab,
            "lan",
            # the frames' heads only (round number, sizes): four captures keep up with a download
            ["-i", m.name, "-Q", "in", "-s", "64", "ether proto 0x88b5"],
            tmp_path / f"{m.name}.pcap",
        )
        for m in lab.members
    ]
    busy = lab.popen(
        "member1", ["curl", "-sS", "--max-time", "60", "-o", "/dev/null", f"{URL}/5mb.bin"]
    )
    assert busy.wait(timeout=90) == 0
    macs = {bytes.fromhex(m.mac.replace(":", "")): m.name for m in lab.members}
    shapes: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for src, head, size in (frame for cap in caps for frame in cap.heads()):
        if src in macs and len(head) >= 16 and head[1] == wire.MsgType.CONTRIB:
            rnd = int.from_bytes(head[8:16], "big")  # after the header: the round
            shapes[rnd][macs[src]].append(size)
    # The captures start and stop one after another: a port's first and last rounds may be
    # cut short in it.
    seen = [[r for r, s in shapes.items() if m.name in s] for m in lab.members]
    first, last = max(map(min, seen)), min(map(max, seen))
    complete = {r: s for r, s in shapes.items() if len(s) == len(lab.members) and first < r < last}
    for rnd, by_member in complete.items():
        assert len({tuple(sorted(v)) for v in by_member.values()}) == 1, (rnd, dict(by_member))
    # member1 was busy in these rounds, and the others matched it: they ran at the busy rate
    # (most carry one ACK in the express slot, a quiet round's shape), not 20 a second
    assert len(complete) > 60, len(complete)


def test_status_and_exec_from_the_command_line(lab: Lab) -> None:
    lanon = [sys.executable, "-m", "lanon.cli"]
    r = subprocess.run(
        [*lanon, "status", "--lab", lab.name], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0 and "gateway1" in r.stdout and "leading" in r.stdout, (
        r.stdout + r.stderr
    )
    r = subprocess.run(
        [
            *lanon,
            "lab",
            "exec",
            "--name",
            lab.name,
            "member2",
            "--",
            "curl",
            "-sS",
            "--max-time",
            "20",
            f"{URL}/whoami",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0 and r.stdout.startswith("198.18.0.19"), r.stdout + r.stderr


def lanon_chains(ns: str) -> list[str]:
    """Our chains' rules as iptables-save prints them in a namespace (counters aside)."""
    out = []
    for table in ("raw", "filter"):
        r = subprocess.run(
            ["ip", "netns", "exec", ns, "iptables-save", "-t", table],
            capture_output=True,
            text=True,
            check=True,
        )
        out += [ln for ln in r.stdout.splitlines() if "LANON" in ln and not ln.startswith("#")]
    return sorted(re.sub(r"\[\d+:\d+\]", "", ln) for ln in out)


def test_members_run_the_shipped_rules_and_files_made_from_the_templates(lab: Lab) -> None:
    from pyroute2 import netns

    from lanon.common.templates import template
    from lanon.member.rules import JUMPS_V4, MemberRules

    scratch = f"{lab.ns('lan')}-scratch"
    netns.create(scratch)
    try:  # the shipped file, loaded by hand as deploy/iptables/member.rules says
        rules = MemberRules("198.18.0.0/24", 0, "lanon0")
        subprocess.run(
            ["ip", "netns", "exec", scratch, "iptables-restore", "--noflush"],
            input=rules.ipv4(),
            text=True,
            check=True,
        )
        for table, builtin, chain in JUMPS_V4:
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    scratch,
                    "iptables",
                    "-t",
                    table,
                    "-I",
                    builtin,
                    "1",
                    "-j",
                    chain,
                ],
                check=True,
            )
        assert lanon_chains(lab.ns("member1")) == lanon_chains(scratch)
    finally:
        netns.remove(scratch)
    header = template("member.toml").splitlines()[0]
    assert (lab.dir / "member1.toml").read_text().startswith(header)
    assert (
        (lab.dir / "coalition.toml")
        .read_text()
        .startswith(template("coalition.toml").splitlines()[0])
    )


def test_remove_rules_on_request_and_the_daemon_puts_them_back(lab: Lab) -> None:
    lab.stop_daemon("member3")
    assert lanon_chains(lab.ns("member3"))  # stopped: the rules stay (fail-closed)
    r = lab.run("member3", [sys.executable, "-m", "lanon.cli", "member", "--remove-rules"])
    assert r.returncode == 0 and "rules removed" in r.stdout, r.stderr
    assert lanon_chains(lab.ns("member3")) == []
    lab.start_daemon("member3")
    deadline = time.monotonic() + 20
    while "member3" not in lab.leader_status()["members_present"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lanon_chains(lab.ns("member3"))
    r = lab.run("member3", ["curl", "-sS", "--max-time", "20", f"{URL}/whoami"])
    assert r.returncode == 0 and r.stdout.startswith("198.18.0.19"), r.stdout + r.stderr


def test_a_download_is_acknowledged_in_few_cells_and_arrives_intact(
    lab: Lab, tmp_path: Path
) -> None:
    """ACK filtering: a member's queued pure ACK gives its place to the flow's next one, so the
    server receives far fewer segments than it sends, and TCP still delivers every byte."""

    def segments() -> tuple[int, int]:
        r = lab.run("internet", ["nstat", "-az", "TcpInSegs", "TcpOutSegs"])
        counts = dict(line.split()[:2] for line in r.stdout.splitlines()[1:])
        return int(counts["TcpInSegs"]), int(counts["TcpOutSegs"])

    out = tmp_path / "5mb.bin"
    in0, out0 = segments()
    r = lab.run("member2", ["curl", "-sS", "--max-time", "120", "-o", str(out), f"{URL}/5mb.bin"])
    in1, out1 = segments()
    assert r.returncode == 0, r.stderr
    assert digest(out) == digest(lab.www / "5mb.bin")
    received, sent = in1 - in0, out1 - out0
    assert sent >= 3000 and received < sent / 4, (received, sent)
