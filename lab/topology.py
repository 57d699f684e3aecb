"""The lab's network: namespaces, a bridge as the LAN, veth pairs, addresses and routes.

    [member1..N] [gateway1..G] [router]──eth1───eth0──[internet 203.0.113.10]
          \\            |         /
           eth0       eth0     eth0
             \\         |       /
            ( br0 in namespace "lan" )          198.18.0.0/24

All of it lives in namespaces named lanon-<lab>-<host>; nothing touches the machine's own
namespace, and there is no route out of the lab.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
from dataclasses import dataclass

from pyroute2 import IPRoute, netns

LAN = ipaddress.IPv4Network("198.18.0.0/24")
INTERNET = ipaddress.IPv4Network("203.0.113.0/24")
ROUTER_LAN = "198.18.0.1"
ROUTER_WAN = "203.0.113.1"
INTERNET_HOST = "203.0.113.10"
ANON_BASE = 192  # anonymous shares: 198.18.0.192/30, .196/30, ...
MAX_MEMBERS = 100
MAX_GATEWAYS = 14


@dataclass(frozen=True)
class Host:
    name: str
    kind: str  # member, gateway, router, internet
    index: int
    address: str  # on the LAN (the internet host: on its own network)
    mac: str


def member_address(i: int) -> str:
    return str(LAN.network_address + 10 + i)


def gateway_address(j: int) -> str:
    return str(LAN.network_address + 1 + j)


def share(j: int) -> str:
    return f"{LAN.network_address + ANON_BASE + 4 * (j - 1)}/30"


def hosts(members: int, gateways: int) -> list[Host]:
    out = [Host("router", "router", 1, ROUTER_LAN, "02:1a:00:03:00:01")]
    out += [
        Host(f"gateway{j}", "gateway", j, gateway_address(j), f"02:1a:00:02:00:{j:02x}")
        for j in range(1, gateways + 1)
    ]
    out += [
        Host(f"member{i}", "member", i, member_address(i), f"02:1a:00:01:00:{i:02x}")
        for i in range(1, members + 1)
    ]
    out.append(Host("internet", "internet", 1, INTERNET_HOST, "02:1a:00:04:00:01"))
    return out


def ns_name(lab: str, host: str) -> str:
    return f"lanon-{lab}-{host}"


def lab_namespaces(lab: str) -> list[str]:
    prefix = f"lanon-{lab}-"
    return sorted(n for n in netns.listnetns() if n.startswith(prefix))


def sysctl(ns: str, *settings: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", ns, "sysctl", "-q", "-w", *settings],
        check=True,
        capture_output=True,
    )


def build(lab: str, members: int, gateways: int) -> list[Host]:
    """Create the lab's namespaces and links; raises on any failure (caller tears down)."""
    all_hosts = hosts(members, gateways)
    lan_ns = ns_name(lab, "lan")
    for ns in [lan_ns] + [ns_name(lab, h.name) for h in all_hosts]:
        netns.create(ns)
    with IPRoute(netns=lan_ns) as lan:
        lan.link("add", ifname="br0", kind="bridge")
        br = lan.link_lookup(ifname="br0")[0]
        lan.link("set", index=br, state="up")
        lan.link("set", index=lan.link_lookup(ifname="lo")[0], state="up")
    for h in all_hosts:
        if h.kind != "internet":
            _plug(lab, h)
    router_ns = ns_name(lab, "router")
    with IPRoute(netns=router_ns) as rt:
        rt.link(
            "add",
            ifname="eth1",
            kind="veth",
            peer={"ifname": "eth0", "net_ns_fd": ns_name(lab, "internet")},
        )
    for h in all_hosts:
        _configure(lab, h)
    return all_hosts


def add_member(lab: str, i: int) -> Host:
    """A member host more, plugged into the running lab's switch (lanon lab join)."""
    if not 1 <= i <= MAX_MEMBERS:
        raise ValueError(f"member{i}: expected 1 to {MAX_MEMBERS}")
    h = Host(f"member{i}", "member", i, member_address(i), f"02:1a:00:01:00:{i:02x}")
    netns.create(ns_name(lab, h.name))
    _plug(lab, h)
    _configure(lab, h)
    return h


def _plug(lab: str, h: Host) -> None:
    """A veth from the switch's bridge to the host's eth0."""
    with IPRoute(netns=ns_name(lab, "lan")) as lan:
        br = lan.link_lookup(ifname="br0")[0]
        lan.link(
            "add",
            ifname=h.name,
            kind="veth",
            peer={"ifname": "eth0", "net_ns_fd": ns_name(lab, h.name)},
        )
        port = lan.link_lookup(ifname=h.name)[0]
        lan.link("set", index=port, master=br, state="up")


def _configure(lab: str, h: Host) -> None:
    ns = ns_name(lab, h.name)
    # no IPv6 in the lab: nothing but what lanon carries; the router forwards
    settings = ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
    if h.kind == "router":
        settings.append("net.ipv4.ip_forward=1")
    sysctl(ns, *settings)
    with IPRoute(netns=ns) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        eth0 = ipr.link_lookup(ifname="eth0")[0]
        ipr.link("set", index=eth0, address=h.mac, state="up")
        if h.kind == "internet":
            ipr.addr("add", index=eth0, address=INTERNET_HOST, prefixlen=INTERNET.prefixlen)
            ipr.route("add", dst=str(LAN.supernet(new_prefix=15)), gateway=ROUTER_WAN)
            return
        ipr.addr("add", index=eth0, address=h.address, prefixlen=LAN.prefixlen)
        if h.kind == "router":
            eth1 = ipr.link_lookup(ifname="eth1")[0]
            ipr.link("set", index=eth1, state="up")
            ipr.addr("add", index=eth1, address=ROUTER_WAN, prefixlen=INTERNET.prefixlen)
        else:
            ipr.route("add", dst="default", gateway=ROUTER_LAN)


def destroy(lab: str) -> list[str]:
    """Remove every namespace of the lab (their links go with them)."""
    removed = []
    for ns in lab_namespaces(lab):
        with contextlib.suppress(OSError):
            netns.remove(ns)
            removed.append(ns)
    return removed
