"""Services at anonymous endpoints, in memory (member/services.py, gateway/endpoints.py): a
member's service gets an endpoint through the rounds, the Internet reaches it there, and its
answers leave from it; no gateway learns which member serves."""

from __future__ import annotations

import ipaddress

from scapy.layers.inet import IP, TCP, UDP

from lanon.common.crypto import HostKey, encode_key
from lanon.common.endpoints import Refusal
from lanon.common.events import EndpointAsked, ServiceChanged
from lanon.common.packet import TCP as TCP_PROTO
from lanon.common.packet import UDP as UDP_PROTO
from lanon.lab.packets import echo_internet, tcp, udp
from lanon.lab.sim import Lan, local_address, make_coalition, running_lan
from lanon.member.services import ServiceOffer, ServiceState

CLIENT = "203.0.113.50"


def serving(lan: Lan, member: str, name: str) -> tuple[str, int]:
    """Run until `member`'s service `name` has an endpoint; (address, port)."""
    svc = next(s for s in lan.member(member).services if s.offer.name == name)
    lan.run_until(lambda: svc.state is ServiceState.SERVING, limit=20)
    address, port = svc.endpoint.rsplit(":", 1)
    return address, int(port)


def from_internet(lan: Lan, packet: bytes) -> None:
    """An Internet host's packet reaches every gateway (the holder takes it)."""
    for name in [g.name for g in lan.c.gateways]:
        h = lan.host(name)
        if not h.down:
            lan.gateway(name).receive_packet(packet, lan.now)
    lan.collect()
    lan.deliver()


def web(port: int = 8000, public_port: int = 0) -> ServiceOffer:
    return ServiceOffer("web", TCP_PROTO, port, public_port)


def test_a_service_gets_an_endpoint_and_the_internet_reaches_it_there() -> None:
    lan = running_lan(3, services={"member2": [web(8000, public_port=8080)]})
    address, port = serving(lan, "member2", "web")
    assert ipaddress.IPv4Address(address) in {ipaddress.IPv4Address(a) for a in lan.c.anonymous}
    assert port == 8080  # the port asked for, free
    assert [e.outcome for e in lan.all_events(EndpointAsked)][:1] == ["bound"]
    assert any(isinstance(e, ServiceChanged) for e in lan.events("member2"))

    # a client's SYN to the endpoint: member2's stack gets it at its own address and port
    syn = tcp(src=CLIENT, dst=address, sport=51000, dport=port, flags="S", seq=1000)
    from_internet(lan, syn)
    lan.run(0.05)
    got = [IP(p) for p in lan.host("member2").injected]
    assert len(got) == 1 and got[0][TCP].dport == 8000 and got[0].src == CLIENT
    assert got[0].dst == str(ipaddress.IPv4Address(local_address(1)))
    for other in ("member1", "member3"):
        assert lan.host(other).injected == []

    # the service answers from its local port: it leaves from the endpoint
    synack = tcp(
        src=got[0].dst, dst=CLIENT, sport=8000, dport=51000, flags="SA", seq=5000, ack=1001
    )
    before = len(lan.emitted)
    lan.submit("member2", synack)
    lan.run_until(lambda: len(lan.emitted) > before, limit=5)
    out = IP(lan.emitted[-1][1])
    assert (out.src, out[TCP].sport, out.dst, out[TCP].dport) == (address, port, CLIENT, 51000)
    assert out[TCP].flags == "SA"


def test_two_services_on_two_members_at_once() -> None:
    lan = running_lan(
        3,
        services={
            "member1": [ServiceOffer("dns", UDP_PROTO, 5353, 5353)],
            "member3": [web(8000, public_port=5353), ServiceOffer("echo", UDP_PROTO, 7, 5353)],
        },
    )
    ends = {
        (m, n): serving(lan, m, n)
        for m, n in (("member1", "dns"), ("member3", "web"), ("member3", "echo"))
    }
    udp_ends = [ends[("member1", "dns")], ends[("member3", "echo")]]
    assert udp_ends[0] != udp_ends[1]  # one UDP endpoint per (address, port), lanon-wide
    assert lan.gateway().flows.endpoints == 3
    # a UDP datagram to member3's echo service reaches member3 only
    address, port = ends[("member3", "echo")]
    from_internet(lan, udp(src=CLIENT, dst=address, sport=4000, dport=port, payload=b"ping"))
    lan.run(0.05)
    got = [IP(p) for p in lan.host("member3").injected]
    assert [(g[UDP].dport, bytes(g[UDP].payload)) for g in got] == [(7, b"ping")]
    assert lan.host("member1").injected == []


def test_an_endpoint_survives_a_gateway_failover() -> None:
    lan = running_lan(3, 2, services={"member1": [web()]})
    address, port = serving(lan, "member1", "web")
    holder = next(g.name for g in lan.c.gateways if ipaddress.IPv4Address(address) in g.addresses)
    other = next(g.name for g in lan.c.gateways if g.name != holder)
    assert lan.gateway(other).flows.by_port[
        (TCP_PROTO, ipaddress.IPv4Address(address).packed, port)
    ]
    lan.kill(holder)
    lan.run(3.0)  # the standby takes the address over
    syn = tcp(src=CLIENT, dst=address, sport=51000, dport=port, flags="S", seq=7)
    from_internet(lan, syn)
    lan.run(0.05)
    assert [IP(p)[TCP].dport for p in lan.host("member1").injected] == [8000]


def test_an_endpoint_nobody_asks_for_is_freed_after_endpoint_timeout() -> None:
    lan = running_lan(
        4,
        services={"member2": [web()]},
        flows={"endpoint_timeout": 40},
        rounds={"idle_interval": 0.5, "linger": 0.0},  # (fewer rounds to simulate)
    )
    address, port = serving(lan, "member2", "web")
    g = lan.gateway()
    where = (TCP_PROTO, ipaddress.IPv4Address(address).packed, port)
    lan.run(45.0)  # member2 asks every 30 s: still bound
    assert where in g.flows.by_port and g.flows.endpoints == 1
    lan.kill("member2")  # it leaves: nobody asks
    lan.run(45.0)
    assert where not in g.flows.by_port and g.flows.endpoints == 0


def pinned_lan(holder_key: HostKey, signer: HostKey) -> tuple[Lan, str, int]:
    """A coalition that pins 198.18.0.193:443 to `holder_key`; member3 serves it with the key
    `signer` (its own file's `key`)."""
    address, port = "198.18.0.193", 443
    endpoint = {
        "name": "site",
        "protocol": "tcp",
        "address": address,
        "port": port,
        "public_key": encode_key(holder_key.public),
    }
    c, keys = make_coalition(3, endpoints=[endpoint])
    offer = ServiceOffer("site", TCP_PROTO, 8443, 0, c.endpoints[0], signer)
    lan = Lan(c, keys, internet=echo_internet, services={"member3": [offer]})
    return lan, address, port


def test_a_pinned_endpoint_goes_to_the_holder_of_its_key_only() -> None:
    key = HostKey.generate()
    lan, address, port = pinned_lan(key, key)
    assert serving(lan, "member3", "site") == (address, port)
    syn = tcp(src=CLIENT, dst=address, sport=51000, dport=port, flags="S", seq=7)
    from_internet(lan, syn)
    lan.run(0.05)
    assert [IP(p)[TCP].dport for p in lan.host("member3").injected] == [8443]


def test_a_pinned_endpoint_stays_across_a_restart_and_a_failover() -> None:
    key = HostKey.generate()
    address, port = "198.18.0.197", 443
    endpoint = {
        "name": "site",
        "protocol": "tcp",
        "address": address,
        "port": port,
        "public_key": encode_key(key.public),
    }
    c, keys = make_coalition(3, 2, endpoints=[endpoint])
    offer = ServiceOffer("site", TCP_PROTO, 8443, 0, c.endpoints[0], key)
    lan = Lan(c, keys, internet=echo_internet, services={"member1": [offer]})
    assert serving(lan, "member1", "site") == (address, port)
    first = lan.gateway("gateway1").flows.by_port[(TCP_PROTO, c.endpoints[0].address, port)].tag
    lan.run(1.0)
    lan.restart("member1")  # a new process: a new service key, a new tag
    assert serving(lan, "member1", "site") == (address, port)
    lan.run(2.0)
    for g in ("gateway1", "gateway2"):
        bound = lan.gateway(g).flows.by_port[(TCP_PROTO, c.endpoints[0].address, port)]
        assert bound.tag != first and bound.tag == next(iter(lan.member("member1").services)).tag
    lan.kill("gateway2")  # the holder of 198.18.0.197
    lan.run(3.0)
    lan.host("member1").injected.clear()
    from_internet(lan, tcp(src=CLIENT, dst=address, sport=52000, dport=port, flags="S", seq=9))
    lan.run(0.05)
    assert [IP(p)[TCP].dport for p in lan.host("member1").injected] == [8443]


def test_a_pinned_endpoint_is_refused_without_its_key() -> None:
    lan, _, _ = pinned_lan(HostKey.generate(), HostKey.generate())
    svc = next(iter(lan.member("member3").services))
    lan.run_until(lambda: svc.state is ServiceState.REFUSED, limit=20)
    assert svc.refusal is Refusal.BAD_PIN
    assert lan.gateway().flows.endpoints == 0


def test_a_restarted_gateway_binds_the_endpoint_again_and_never_takes_it_for_a_flow() -> None:
    lan = running_lan(3, services={"member2": [web(8000, public_port=8080)]})
    address, port = serving(lan, "member2", "web")
    lan.restart("gateway1")  # its table is gone
    lan.run(1.0)
    # the service answers a client meanwhile (a wrapped packet, as after a while it is)
    svc = next(iter(lan.member("member2").services))
    svc.flow.wrapped_at = float("-inf")
    local = str(ipaddress.IPv4Address(local_address(1)))
    lan.submit("member2", tcp(src=local, dst=CLIENT, sport=8000, dport=51000, flags="A"))
    lan.run(0.5)
    g = lan.gateway()
    assert svc.tag not in g.flows.by_tag or g.flows.by_tag[svc.tag].endpoint  # never a flow
    lan.run(10.5)  # its next REGISTER (every 10 s)
    bound = g.flows.by_tag[svc.tag]
    assert bound.endpoint and (bound.anon, bound.port) == (
        ipaddress.IPv4Address(address).packed,
        port,
    )


def test_a_register_goes_first_even_into_a_full_queue() -> None:
    lan = running_lan(3, services={"member2": [web()]})
    serving(lan, "member2", "web")
    m = lan.member("member2")
    svc = next(iter(m.services))
    for i in range(m.max_queue + 10):  # a flood of answers fills the queue
        m.submit_packet(udp(src="198.18.0.12", sport=30000 + i, payload=b"x" * 1000), lan.now)
    assert len(m.queue) >= m.max_queue
    lan.run_until(lambda: svc.next_ask > lan.now + 9, limit=15)  # it asked again
    first = m.queue[0].cell
    from lanon.common.cell import decode_slot

    assert decode_slot(first)[1].tag == svc.tag  # ahead of the flood
