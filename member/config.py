"""The member daemon's configuration file."""

from __future__ import annotations

from dataclasses import dataclass

from lanon.common.daemon_config import DaemonSettings, is_ifname
from lanon.common.settings import between, is_address, is_listen, opt
from lanon.member.choice import Priorities
from lanon.member.services import ServiceEntry


@dataclass(frozen=True)
class MemberSettings(DaemonSettings):
    queue: int = opt(0, "NFQUEUE number the outbound rules send packets to", between(0, 65535))
    tun: str = opt("lanon0", "TUN device that inbound packets are injected through", is_ifname)
    manage_rules: bool = opt(
        True,
        "install the iptables rules at start; they stay after the daemon exits (fail-closed): "
        "'lanon member --remove-rules' takes them away",
    )
    max_queue: int = opt(
        512,
        "cells that may wait for a slot; beyond, packets are dropped (counted)",
        between(8, 1 << 20),
    )
    gateways: list[str] = opt(
        [],
        "leave only through these gateways' addresses (gateway names or operators); empty: all, "
        "chosen at random. A preference that few members share makes their flows stand out",
    )
    min_anonymity_set: int = opt(
        0,
        "this member puts data only into rounds with at least this many members (0: the "
        "coalition's min_members); other rounds get an idle vector and its cells wait",
        between(0, 4096),
    )
    min_anonymity_fraction: float = opt(
        0.67,
        "...and with at least this fraction of the members it saw in rounds within "
        "presence_window (a leader, or whoever blocks switch ports, cannot shrink the set)",
        between(0.0, 1.0),
    )
    min_anonymity_k: int = opt(
        2,
        "...and whose key graph is at least this connected (k members must collude to expose it)",
        between(1, 4096),
    )
    presence_window: float = opt(
        60.0,
        "seconds a member seen in a round counts as present for min_anonymity_fraction",
        between(1.0, 86400.0),
    )
    filter_inbound: bool = opt(
        False,
        "let the kernel drop the INBOUND frames of other members' flows: their downloads then "
        "cost this host nothing above the kernel. By default every member does the same work "
        "on every frame, so that forged frames of a flow's tag, flooded onto the LAN, cost "
        "every member alike; with this on, such a flood costs only this host if the flow is its "
        "own, and whoever can measure its load can tell (README: Owning a flow)",
    )
    private_metrics: str = opt(
        "127.0.0.1:9552",
        "ADDRESS:PORT for this member's own traffic figures (queue, waits, retries); keep it on "
        "localhost: they tell whoever reads them whether this member is busy. '' for none",
        is_listen,
    )
    dhcp_server: str = opt(
        "",
        "the DHCP server's address if it lies beyond the LAN (through a relay): the rules let "
        "DHCP to and from it pass. '' when it is on the LAN or there is none (broadcast DHCP "
        "always passes)",
        lambda v: None if v == "" else is_address(v),
    )
    tun_address: str = opt(
        "198.19.255.254",
        "a /32 for the TUN device: reverse-path filtering drops packets arriving on a device "
        "without an address; it is never used as a source (choose one unused on your network)",
        is_address,
    )
    wallet: str = opt(
        "/var/lib/lanon/wallet.json",
        "the file this member keeps its tokens in (relative to this file; the unit's state "
        "directory by default): payment tokens bought, rating credentials",
    )
    providers: Priorities = opt(
        Priorities(),
        "how this member chooses among providers that publish offers, as a [providers] table "
        "(weights of price, latency, loss, availability and ratings; exclusions and caps)",
    )
    services: list[ServiceEntry] = opt(
        [],
        "services this host offers at anonymous endpoints, one [[services]] table each (after "
        "every other setting of the file): port, and optionally protocol, name, public_port, "
        "endpoint and key",
    )
