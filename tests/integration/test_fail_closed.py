"""Fail-closed around the rules (issue 9 point 5, issue 17 points 1 and 3), in a real lab.

Each test watches the router's LAN side with tcpdump while it tries to make a member leak:
a flush of its rules, traffic it forwards for a "container" behind a MASQUERADE and an ACCEPT
placed above lanon's jump, a daemon that fails its configuration on a host without rules (as
after a boot), and an Internet host's SYN to a member's own address. Not one packet with a
member's real address may reach the router.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute, netns

from lanon.lab import topology
from lanon.lab.lab import Lab
from tests.integration.conftest import reaped, running_lab
from tests.integration.test_end_to_end import URL, Capture

pytestmark = pytest.mark.root

LANON = [sys.executable, "-m", "lanon.cli"]
CONTAINER_NET = "198.19.7"  # behind member2: beyond the LAN, inside the lab's addresses


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """4 members: one can be without a daemon and the lanon goes on."""
    yield from running_lab("f", members=4, gateways=1)


def fetches(lab: Lab, member: str, within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        r = lab.run(member, ["curl", "-sS", "--max-time", "3", f"{URL}/whoami"])
        if r.returncode == 0:
            assert r.stdout.startswith("198.18.0.19"), r.stdout  # an anonymous address
            return True
        time.sleep(0.2)
    return False


def own_address_capture(lab: Lab, member: str, path: Path, extra: str = "") -> Capture:
    """IPv4 packets from the member's own address (or `extra`) reaching the router."""
    address = lab.host(member).address
    expr = f"ip and (src host {address}{' or ' + extra if extra else ''})"
    return Capture(lab, "router", ["-i", "eth0", expr], path)


@contextlib.contextmanager
def trying(lab: Lab, member: str) -> Iterator[None]:
    """The member keeps fetching (and pinging) in the background all along."""
    loop = f"while :; do curl -s -o /dev/null --max-time 1 {URL}/whoami; sleep 0.05; done"
    procs = [
        lab.popen(member, ["sh", "-c", loop], stdout=subprocess.DEVNULL),
        lab.popen(member, ["ping", "-i", "0.2", topology.INTERNET_HOST], stdout=subprocess.DEVNULL),
    ]
    with reaped(*procs):
        try:
            yield
        finally:
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()


def wait_for_jump(lab: Lab, member: str, table: str, builtin: str, chain: str) -> float:
    """Seconds until the jump is back (polled every ~10 ms), from now."""
    start = time.monotonic()
    while time.monotonic() - start < 10:
        r = lab.run(member, ["iptables", "-w", "-t", table, "-C", builtin, "-j", chain])
        if r.returncode == 0:
            return time.monotonic() - start
        time.sleep(0.005)
    raise AssertionError(f"{member}: {table} {builtin} -> {chain} not back after 10 s")


def logged(lab: Lab, host: str, text: str, within: float = 5.0) -> bool:
    """Whether `text` appears in the host's log within `within` seconds: the daemon puts its
    rules back, then says so, and a test that saw the rules back may read the log before."""
    deadline = time.monotonic() + within
    while text not in lab.log_path(host).read_text():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_flush_of_a_members_rules_leaks_nothing_and_the_daemon_puts_them_back(
    lab: Lab, tmp_path: Path
) -> None:
    member = "member1"
    assert fetches(lab, member)
    cap = own_address_capture(lab, member, tmp_path / "router.pcap")
    missing = {}
    try:
        with trying(lab, member):
            time.sleep(1)
            for table, builtin, chain in (
                ("filter", "OUTPUT", "LANON_OUT"),  # `iptables -F; iptables -X`
                ("mangle", "POSTROUTING", "LANON_POST"),  # the safety net itself
                ("raw", "OUTPUT", "LANON_RAW"),
            ):
                flushed = time.monotonic()
                for step in ("-F", "-X"):
                    r = lab.run(member, ["iptables", "-w", "-t", table, step])
                    # -X fails if the daemon put a jump back between our -F and -X already
                    assert r.returncode == 0 or "resource busy" in r.stderr, r.stderr
                missing[table] = (
                    time.monotonic() - flushed + wait_for_jump(lab, member, table, builtin, chain)
                )
                assert fetches(lab, member, within=10), f"no fetch after the {table} flush"
    finally:
        leaked = cap.stop()  # always: a capture left running would outlive the test
    assert leaked == []  # not one packet with the member's own address
    print(
        "\njump missing after a flush: "
        + ", ".join(f"{t} {s * 1000:.0f} ms" for t, s in missing.items())
    )
    assert all(s < 1.6 for s in missing.values()), missing  # noticed within a second
    log = lab.log_path(member).read_text()
    assert log.count("WARNING the lanon rules were removed or altered") >= 3, lab.tail(member)
    r = lab.run("router", ["curl", "-sS", f"http://{lab.host(member).address}:9551/metrics"])
    restored = [ln for ln in r.stdout.splitlines() if ln.startswith("lanon_rules_restored_total")]
    assert restored and float(restored[0].split()[1]) >= 3, r.stdout[-500:] + r.stderr


def test_a_flush_of_a_gateways_rules_is_repaired(lab: Lab) -> None:
    gateway = lab.gateways[0].name
    flushed = time.monotonic()
    assert lab.run(gateway, ["iptables", "-w", "-t", "raw", "-F"]).returncode == 0
    took = (
        time.monotonic() - flushed + wait_for_jump(lab, gateway, "raw", "PREROUTING", "LANON_GW_IN")
    )
    assert took < 1.6, took
    assert wait_for_jump(lab, gateway, "raw", "OUTPUT", "LANON_GW_OUT") < 1.6
    assert logged(lab, gateway, "WARNING the lanon rules were removed or altered"), lab.tail(
        gateway
    )
    assert fetches(lab, "member1")


def test_forwarded_traffic_is_refused_whatever_is_above_our_jump_or_masquerades_it(
    lab: Lab, tmp_path: Path
) -> None:
    """A "container" behind member2, with what docker adds: an ACCEPT above lanon's jump in
    FORWARD and a MASQUERADE with the host's address."""
    member = "member2"
    ct = lab.ns("ct")
    netns.create(ct)
    docker_like = [
        [
            *("iptables", "-w", "-t", "nat", "-A", "POSTROUTING"),
            *("-s", f"{CONTAINER_NET}.0/24", "!", "-o", "ct0", "-j", "MASQUERADE"),
        ],
        ["iptables", "-w", "-I", "FORWARD", "1", "-i", "ct0", "-j", "ACCEPT"],
        ["iptables", "-w", "-I", "FORWARD", "1", "-o", "ct0", "-j", "ACCEPT"],
    ]
    try:
        with IPRoute(netns=lab.ns(member)) as ipr:
            ipr.link("add", ifname="ct0", kind="veth", peer={"ifname": "eth0", "net_ns_fd": ct})
            ct0 = ipr.link_lookup(ifname="ct0")[0]
            ipr.addr("add", index=ct0, address=f"{CONTAINER_NET}.1", prefixlen=24)
            ipr.link("set", index=ct0, state="up")
        with IPRoute(netns=ct) as ipr:
            eth0 = ipr.link_lookup(ifname="eth0")[0]
            ipr.addr("add", index=eth0, address=f"{CONTAINER_NET}.2", prefixlen=24)
            ipr.link("set", index=eth0, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            ipr.route("add", dst="default", gateway=f"{CONTAINER_NET}.1")
        topology.sysctl(lab.ns(member), "net.ipv4.ip_forward=1")
        for rule in docker_like:
            assert lab.run(member, rule).returncode == 0
        cap = own_address_capture(
            lab, member, tmp_path / "router.pcap", extra=f"src net {CONTAINER_NET}.0/24"
        )
        in_ct = ["ip", "netns", "exec", ct]
        for attempt in ("as installed", "after iptables -F"):
            r = subprocess.run(
                [*in_ct, "curl", "-sS", "--max-time", "3", f"{URL}/whoami"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert r.returncode != 0, (attempt, r.stdout)
            r = subprocess.run(
                [*in_ct, "ping", "-c", "2", "-W", "1", topology.INTERNET_HOST],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert r.returncode != 0, (attempt, r.stdout)
            if attempt == "as installed":  # the filter table gone: the safety net holds
                assert lab.run(member, ["iptables", "-w", "-F"]).returncode == 0
        assert cap.stop() == []
        assert fetches(lab, member)  # the host's own traffic goes on through the lanon
    finally:
        netns.remove(ct)
        topology.sysctl(lab.ns(member), "net.ipv4.ip_forward=0")
        lab.run(member, ["iptables", "-w", "-t", "nat", "-F"])
        for rule in docker_like[1:]:
            lab.run(member, [*rule[:2], "-D", "FORWARD", *rule[5:]])


def test_a_member_without_rules_whose_configuration_fails_sends_nothing(
    lab: Lab, tmp_path: Path
) -> None:
    """As after a reboot without the boot unit: no rules, then the daemon fails to start."""
    member = "member4"
    config = lab.dir / f"{member}.toml"
    key = lab.dir / "keys" / f"{member}.key"
    good = config.read_text()
    lab.stop_daemon(member)
    cap = own_address_capture(lab, member, tmp_path / "router.pcap")
    try:
        for breakage, expected in (
            ("key", "full"),  # a missing key file: the rules need only the LAN and the queue
            ("coalition", "closed"),  # not even the LAN prefix: the closed rules
        ):
            r = lab.run(member, [*LANON, "member", "--remove-rules"])
            assert r.returncode == 0, r.stderr
            if breakage == "key":
                key.rename(key.with_suffix(".gone"))
            else:
                key.with_suffix(".gone").rename(key)
                config.write_text(good.replace('coalition = "', 'coalition = "gone-'))
            lab.start_daemon(member)
            failed = wait_for_exit(lab, member)
            assert "configuration error" in failed, failed
            r = lab.run(member, ["curl", "-sS", "--max-time", "3", f"{URL}/whoami"])
            assert r.returncode != 0, (breakage, r.stdout)
            r = lab.run(member, ["ping", "-c", "2", "-W", "1", topology.INTERNET_HOST])
            assert r.returncode != 0, breakage
            r = lab.run(member, ["dig", "+time=1", "+tries=1", "www.lanon.test"])
            assert r.returncode != 0 or not r.stdout.count("ANSWER SECTION"), breakage
            check = [*LANON, "rules", "check", "member"]
            check += ["--closed"] if expected == "closed" else ["--config", str(config)]
            r = lab.run(member, check)
            assert r.returncode == 0, (breakage, r.stdout + r.stderr)
        # closed: not even the LAN (the router) answers
        r = lab.run(member, ["ping", "-c", "1", "-W", "1", topology.ROUTER_LAN])
        assert r.returncode != 0
        assert cap.stop() == []  # nothing with the member's own address reached the router
    finally:
        config.write_text(good)
        if not key.exists():
            key.with_suffix(".gone").rename(key)
    lab.start_daemon(member)  # fixed: the full rules replace the closed ones
    assert fetches(lab, member, within=30), lab.tail(member)


def wait_for_exit(lab: Lab, host: str, within: float = 30) -> str:
    """The daemon's log once it has exited (it must, for its configuration is broken)."""
    from lanon.lab.lab import _alive

    pid = lab.pids[host]
    deadline = time.monotonic() + within
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), f"{host} still runs:\n{lab.tail(host)}"
    lab.stop_daemon(host)  # reaps it
    return lab.tail(host, 5)


def test_a_syn_from_the_internet_to_a_members_own_address_gets_no_answer(
    lab: Lab, tmp_path: Path
) -> None:
    """Unanswered, the SYN-ACK (or RST) would go out through the lanon, from an anonymous
    address and port: the capture watches for anything to the probe's own ports."""
    member = lab.host("member3")
    ports = {9551: 40001, 81: 40002}  # its metrics endpoint (listening), a closed port (an RST)
    internet = Capture(
        lab,
        "internet",
        ["-i", "eth0", "tcp and dst portrange 40001-40002"],
        tmp_path / "internet.pcap",
    )
    router = own_address_capture(lab, member.name, tmp_path / "router.pcap")
    probe = (
        "import socket, sys\n"
        "for pair in sys.argv[2:]:\n"
        "    port, sport = map(int, pair.split(':'))\n"
        "    s = socket.socket(); s.settimeout(3); s.bind(('0.0.0.0', sport))\n"
        "    try:\n"
        "        s.connect((sys.argv[1], port)); print(port, 'connected')\n"
        "    except TimeoutError:\n"
        "        print(port, 'timeout')\n"
        "    except OSError as exc:\n"
        "        print(port, exc.__class__.__name__)\n"
    )
    pairs = [f"{p}:{sp}" for p, sp in ports.items()]
    r = lab.run("internet", [sys.executable, "-c", probe, member.address, *pairs])
    assert r.stdout.split("\n")[:2] == [f"{p} timeout" for p in ports], r.stdout + r.stderr
    assert internet.stop() == []  # no answer: neither from its own address nor an anonymous one
    assert router.stop() == []
    # the member itself still fetches, and its LAN neighbours still reach it
    assert fetches(lab, member.name)
    r = lab.run("router", ["curl", "-sS", "--max-time", "5", f"http://{member.address}:9551/"])
    assert r.returncode == 0, r.stderr
