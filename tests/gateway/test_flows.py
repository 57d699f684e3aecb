import random

import pytest

from lanon.common.coalition import FlowSection
from lanon.common.flowkey import flow_tag
from lanon.common.packet import ICMP, TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, UDP
from lanon.gateway.flows import Exhausted, FlowTable, ReplayWindow, TagConflict

A = bytes([198, 18, 0, 192])
B = bytes([198, 18, 0, 193])
R = bytes([203, 0, 113, 10])
K = bytes(32)  # a flow key (the table only keeps it)


def keyed(n: int) -> tuple[int, bytes]:
    """A flow key and the tag it names, as members make them."""
    key = bytes([n]) * 32
    return flow_tag(key), key


def table(**kw) -> FlowTable:  # type: ignore[no-untyped-def]
    return FlowTable(FlowSection(**kw), b"k" * 16)


def test_twenty_thousand_udp_flows_get_distinct_endpoints() -> None:
    t = table()
    rng = random.Random(1)
    ports = set()
    for _ in range(20_000):
        f, created = t.outbound(rng.getrandbits(64), UDP, A, R, 53, 0, 0.0, K)
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
            a.outbound(tag, TCP, B, R, 80, TCP_SYN, 1.0, K)[0].port
            == b.outbound(tag, TCP, B, R, 80, TCP_SYN, 1.0, K)[0].port
        )


def test_same_tag_same_flow_and_conflicts() -> None:
    t = table()
    f, created = t.outbound(7, UDP, A, R, 53, 0, 0.0, K)
    g, created2 = t.outbound(7, UDP, A, R, 53, 0, 1.0, K)
    assert created and not created2 and f is g
    with pytest.raises(TagConflict):
        t.outbound(7, UDP, A, R, 54, 0, 1.0, K)


def test_inbound_matches_only_the_remote_end() -> None:
    t = table()
    f, _ = t.outbound(9, TCP, A, R, 443, TCP_SYN, 0.0, K)
    assert t.inbound(TCP, A, f.port, R, 443) is f
    assert t.inbound(TCP, A, f.port, R, 444) is None
    assert t.inbound(TCP, A, f.port, bytes([203, 0, 113, 11]), 443) is None
    assert t.inbound(UDP, A, f.port, R, 443) is None
    ping, _ = t.outbound(10, ICMP, A, R, 5, 0, 0.0, K)
    assert t.inbound(ICMP, A, ping.port, R, 999) is ping  # ICMP: no remote port


def test_exhaustion_is_clean_and_ports_come_back() -> None:
    t = table(port_min=1000, port_max=1009)
    for tag in range(10):
        t.outbound(tag + 1, UDP, A, R, 53, 0, 0.0, K)
    with pytest.raises(Exhausted):
        t.outbound(99, UDP, A, R, 53, 0, 0.0, K)
    t.outbound(99, UDP, B, R, 53, 0, 0.0, K)  # another address has room
    t.outbound(100, TCP, A, R, 53, TCP_SYN, 0.0, K)  # another protocol too
    assert len(t.expire(400.0)) == 12  # UDP 300 s idle, TCP opening 240 s
    t.outbound(99, UDP, A, R, 53, 0, 401.0, K)


def test_tcp_close_frees_the_port_after_a_linger() -> None:
    t = table()
    f, _ = t.outbound(1, TCP, A, R, 80, TCP_SYN, 0.0, K)
    f.state.update(TCP_SYN | TCP_ACK, False, 0.1)
    t.outbound(1, TCP, A, R, 80, TCP_ACK, 0.2, K)
    assert t.expire(1000.0) == []  # established: 7440 s
    t.outbound(1, TCP, A, R, 80, TCP_FIN | TCP_ACK, 1000.0, K)
    f.state.update(TCP_FIN | TCP_ACK, False, 1000.1)
    assert t.expire(1005.0) == []
    gone = t.expire(1011.0)
    assert gone == [f] and gone[0].state.close_reason() == "fin"


def test_rst_closes() -> None:
    t = table()
    f, _ = t.outbound(1, TCP, A, R, 80, TCP_SYN, 0.0, K)
    f.state.update(TCP_RST, False, 0.1)
    assert t.expire(11.0) == [f] and f.state.close_reason() == "rst"


def test_a_table_travels_in_records_and_merges_without_collisions() -> None:
    a, b = table(), table()
    (t1, k1), (t2, k2) = keyed(1), keyed(2)
    f, _ = a.outbound(t1, TCP, A, R, 80, TCP_SYN, 10.0, k1)
    f.state.update(TCP_SYN | TCP_ACK, False, 11.0)
    f.window.mark(5)
    a.outbound(t2, UDP, B, R, 53, 0, 12.0, k2)
    clash, _ = b.outbound(99, UDP, B, R, 53, 0, 12.0, K)  # b already uses a port a gave another?
    records = a.export()
    added, refused = b.merge(records)
    port_of_2 = a.by_tag[t2].port
    expect_refused = 1 if clash.port == port_of_2 else 0
    assert (added, refused) == (2 - expect_refused, expect_refused)
    got = b.by_tag[t1]
    assert (got.proto, got.anon, got.port, got.remote, got.remote_port) == (TCP, A, f.port, R, 80)
    assert got.state.phase == f.state.phase and got.state.last == 11.0
    assert got.key == k1  # the flow key travels: the new gateway reads the flow's packets
    assert not got.window.fresh(5) and got.window.fresh(6)  # and does not take replays
    assert b.merge(records) == (0, expect_refused)  # a second time adds nothing
    assert b.merge([b"short"]) == (0, 1)
    forged = bytearray(records[0])
    forged[-40:-8] = k2  # a record whose key is not its tag's
    c = table()
    assert c.merge([bytes(forged)]) == (0, 1)


def test_the_replay_window_takes_each_counter_once_in_any_order() -> None:
    w = ReplayWindow()
    for n in (3, 1, 2, 10, 5):
        assert w.fresh(n)
        w.mark(n)
    assert not any(w.fresh(n) for n in (1, 2, 3, 5, 10))
    assert w.fresh(4) and w.fresh(9) and w.fresh(11)
    w.mark(10 + 2000)  # far ahead: what fell out of the window is refused, not taken twice
    assert not w.fresh(4) and not w.fresh(2010 - 1024) and w.fresh(2011 - 1024)
