"""ACK filtering (RFC 3449 §5.2.2): a pure TCP ACK takes the place of its flow's earlier one that
is still queued, so a download's acknowledgements cost one cell per round, not one per segment.
Nothing that means more than its successor is ever replaced."""

import random

from scapy.layers.inet import IP
from scapy.layers.inet import TCP as TCPLayer

from lanon.common.events import AckReplaced
from lanon.common.packet import ack_advances, parse, pure_ack
from lanon.member.engine import MemberEngine
from tests.harness import WALL, make_coalition
from tests.harness import running_lan as harness_lan
from tests.packets import tcp


def ack(n: int, **kw: object) -> bytes:
    return tcp(flags="A", seq=1000, ack=n, **kw)  # type: ignore[arg-type]


def engine() -> MemberEngine:
    c, keys = make_coalition(3, 1)
    eng = MemberEngine(
        c, "member1", keys["member1"], now=0.0, wall_offset=WALL, rng=random.Random(1)
    )
    eng.submit_packet(tcp(flags="S"), 0.0)
    for n in range(10):  # past the packets that carry the key wrap
        eng.submit_packet(tcp(flags="PA", seq=1 + n, payload=b"q"), 0.0)
    eng.queue.clear()
    flow = eng.flows.outbound(parse(tcp()).flow, 0.0)
    assert flow is not None
    flow.answered = True  # a gateway has the key: no more wraps
    eng.pop_events()
    return eng


def test_pure_ack_recognises_only_an_acknowledgement_alone() -> None:
    for alone in (ack(5000), ack(5000, options=[("Timestamp", (1, 2))])):
        assert pure_ack(alone, parse(alone)) == 5000
    for other in (
        tcp(flags="A", ack=5000, payload=b"data"),
        tcp(flags="FA", ack=5000),
        tcp(flags="SA", ack=5000),
        tcp(flags="RA", ack=5000),
        ack(5000, options=[("SAck", (6000, 7000))]),
    ):
        assert pure_ack(other, parse(other)) is None
    assert ack_advances(10, 5) and not ack_advances(5, 5) and not ack_advances(5, 10)
    assert ack_advances(3, 0xFFFFFFF0)  # across the wrap of the sequence space


def test_a_later_ack_replaces_the_queued_one_and_a_duplicate_does_not() -> None:
    eng = engine()
    eng.submit_packet(ack(2000), 1.0)
    eng.submit_packet(ack(3000), 1.0)
    eng.submit_packet(ack(4000), 1.0)
    assert len(eng.queue) == 1
    assert sum(isinstance(e, AckReplaced) for e in eng.pop_events()) == 2
    eng.submit_packet(ack(4000), 1.0)  # a duplicate ACK: the sender counts them
    eng.submit_packet(ack(3500), 1.0)  # behind: not a replacement either
    assert len(eng.queue) == 3


def test_an_ack_never_jumps_over_data_or_replaces_one_a_round_has_taken() -> None:
    eng = engine()
    eng.submit_packet(ack(2000), 1.0)
    eng.submit_packet(tcp(flags="PA", seq=50, ack=2500, payload=b"more"), 1.0)
    eng.submit_packet(ack(3000), 1.0)  # queues behind the data
    assert len(eng.queue) == 3
    eng.queue[-1].taken = True  # a round put it in a slot: its cell is fixed
    eng.submit_packet(ack(4000), 1.0)
    assert len(eng.queue) == 4


def test_the_gateway_emits_the_newest_ack_and_the_skipped_counters_harm_nothing() -> None:
    lan = harness_lan(3)
    lan.submit("member1", tcp(flags="S"))
    lan.run_until(lambda: bool(lan.host("member1").injected))  # the flow is answered
    lan.emitted.clear()
    for n in range(2, 7):
        lan.submit("member1", ack(n * 1000))
    lan.run_until(lambda: any(IP(p)[TCPLayer].ack == 6000 for _, p in lan.emitted))
    acks = [IP(p)[TCPLayer].ack for _, p in lan.emitted]
    assert acks[-1] == 6000 and len(acks) < 5  # fewer cells than ACKs, the newest emitted
    lan.emitted.clear()
    lan.submit("member1", tcp(flags="PA", seq=2, ack=6000, payload=b"after"))
    lan.run_until(lambda: bool(lan.emitted))
    assert IP(lan.emitted[0][1])[TCPLayer].load == b"after"


def test_only_an_ack_with_nothing_else_to_say_is_pure() -> None:
    ece = tcp(flags="AE", ack=5000)  # an ECN echo must reach the sender
    mptcp = ack(5000, options=[(30, b"\x30\x01\x02\x03\x04\x05")])  # an MPTCP signal
    ae = bytearray(ack(5000))
    ae[20 + 12] |= 0x01  # AccECN's AE bit
    malformed = bytearray(ack(5000, options=[("NOP", None), ("NOP", None), (8, b"\x00" * 6)]))
    for other in (ece, mptcp, bytes(ae), bytes(malformed)):
        assert pure_ack(other, parse(other)) is None


def test_a_queued_duplicate_gives_its_place_to_an_ack_that_advances() -> None:
    eng = engine()
    eng.submit_packet(ack(2000), 1.0)
    eng.submit_packet(ack(2000), 1.0)  # a duplicate: queued as it is
    eng.submit_packet(ack(3000), 1.0)  # the gap is filled: it replaces the duplicate
    assert len(eng.queue) == 2


def test_one_queued_ack_takes_at_most_ack_span_counters() -> None:
    """A packet queued before the ACK and sent again after a lost round must still fall within
    the gateways' replay window, whatever the ACKs did meanwhile."""
    from lanon.gateway.flows import REPLAY_WINDOW
    from lanon.member.engine import ACK_SPAN

    assert ACK_SPAN + 512 < REPLAY_WINDOW  # 512: the default queue
    eng = engine()
    for n in range(ACK_SPAN + 2):  # the first, ACK_SPAN in its place, one more behind it
        eng.submit_packet(ack(1000 + n), 1.0)
    assert len(eng.queue) == 2
