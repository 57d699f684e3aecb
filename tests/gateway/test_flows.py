import random

import pytest

from lanon.common.coalition import FlowSection
from lanon.common.packet import ICMP, TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, UDP
from lanon.gateway.flows import Exhausted, FlowTable, TagConflict

A = bytes([198, 18, 0, 192])
B = bytes([198, 18, 0, 193])
R = bytes([203, 0, 113, 10])


def table(**kw) -> FlowTable:  # type: ignore[no-untyped-def]
    return FlowTable(FlowSection(**kw), b"k" * 16)


def test_twenty_thousand_udp_flows_get_distinct_endpoints() -> None:
    t = table()
    rng = random.Random(1)
    ports = set()
    for _ in range(20_000):
        f, created = t.outbound(rng.getrandbits(64), UDP, A, R, 53, 0, 0.0)
        assert created
        ports.add(f.port)
    assert len(ports) == 20_000 == len(t)
    assert all(1024 <= p <= 65535 for p in ports)


def test_allocation_is_deterministic_so_gateways_agree() -> None:
    a, b = table(), table()
    rng = random.Random(2)
    for _ in range(500):
        tag = rng.getrandbits(64)
        assert (
            a.outbound(tag, TCP, B, R, 80, TCP_SYN, 1.0)[0].port
            == b.outbound(tag, TCP, B, R, 80, TCP_SYN, 1.0)[0].port
        )


def test_same_tag_same_flow_and_conflicts() -> None:
    t = table()
    f, created = t.outbound(7, UDP, A, R, 53, 0, 0.0)
    g, created2 = t.outbound(7, UDP, A, R, 53, 0, 1.0)
    assert created and not created2 and f is g
    with pytest.raises(TagConflict):
        t.outbound(7, UDP, A, R, 54, 0, 1.0)


def test_inbound_matches_only_the_remote_end() -> None:
    t = table()
    f, _ = t.outbound(9, TCP, A, R, 443, TCP_SYN, 0.0)
    assert t.inbound(TCP, A, f.port, R, 443) is f
    assert t.inbound(TCP, A, f.port, R, 444) is None
    assert t.inbound(TCP, A, f.port, bytes([203, 0, 113, 11]), 443) is None
    assert t.inbound(UDP, A, f.port, R, 443) is None
    ping, _ = t.outbound(10, ICMP, A, R, 5, 0, 0.0)
    assert t.inbound(ICMP, A, ping.port, R, 999) is ping  # ICMP: no remote port


def test_exhaustion_is_clean_and_ports_come_back() -> None:
    t = table(port_min=1000, port_max=1009)
    for tag in range(10):
        t.outbound(tag + 1, UDP, A, R, 53, 0, 0.0)
    with pytest.raises(Exhausted):
        t.outbound(99, UDP, A, R, 53, 0, 0.0)
    t.outbound(99, UDP, B, R, 53, 0, 0.0)  # another address has room
    t.outbound(100, TCP, A, R, 53, TCP_SYN, 0.0)  # another protocol too
    assert len(t.expire(400.0)) == 12  # UDP 300 s idle, TCP opening 240 s
    t.outbound(99, UDP, A, R, 53, 0, 401.0)


def test_tcp_close_frees_the_port_after_a_linger() -> None:
    t = table()
    f, _ = t.outbound(1, TCP, A, R, 80, TCP_SYN, 0.0)
    f.state.update(TCP_SYN | TCP_ACK, False, 0.1)
    t.outbound(1, TCP, A, R, 80, TCP_ACK, 0.2)
    assert t.expire(1000.0) == []  # established: 7440 s
    t.outbound(1, TCP, A, R, 80, TCP_FIN | TCP_ACK, 1000.0)
    f.state.update(TCP_FIN | TCP_ACK, False, 1000.1)
    assert t.expire(1005.0) == []
    gone = t.expire(1011.0)
    assert gone == [f] and gone[0].state.close_reason() == "fin"


def test_rst_closes() -> None:
    t = table()
    f, _ = t.outbound(1, TCP, A, R, 80, TCP_SYN, 0.0)
    f.state.update(TCP_RST, False, 0.1)
    assert t.expire(11.0) == [f] and f.state.close_reason() == "rst"


def test_a_table_travels_in_records_and_merges_without_collisions() -> None:
    a, b = table(), table()
    f, _ = a.outbound(1, TCP, A, R, 80, TCP_SYN, 10.0)
    f.state.update(TCP_SYN | TCP_ACK, False, 11.0)
    a.outbound(2, UDP, B, R, 53, 0, 12.0)
    clash, _ = b.outbound(99, UDP, B, R, 53, 0, 12.0)  # b already uses a port a gave another flow?
    records = a.export()
    added, refused = b.merge(records)
    port_of_2 = a.by_tag[2].port
    expect_refused = 1 if clash.port == port_of_2 else 0
    assert (added, refused) == (2 - expect_refused, expect_refused)
    got = b.by_tag[1]
    assert (got.proto, got.anon, got.port, got.remote, got.remote_port) == (TCP, A, f.port, R, 80)
    assert got.state.phase == f.state.phase and got.state.last == 11.0
    assert b.merge(records) == (0, expect_refused)  # a second time adds nothing
    assert b.merge([b"short"]) == (0, 1)
