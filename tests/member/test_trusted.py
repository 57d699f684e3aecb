"""Trusted-gateway mode in memory (issue 14.2, seed 000 §5.1): each member's answer is its
cells sealed for the leader, the same frames whatever they carry; the output puts every cell
in a random order; flows, inbound and failover work as in DC-net mode."""

from __future__ import annotations

from collections import defaultdict

import pytest
from scapy.layers.inet import IP, UDP

from lanon.common import wire
from lanon.common.cell import decode_slot
from lanon.common.engine import maced
from lanon.common.errors import ConfigError, RejectReason
from lanon.common.events import CellDelivered, FrameRejected
from lanon.common.trusted import seal_answer
from lanon.lab.packets import tcp, udp
from lanon.lab.sim import Lan, make_coalition, running_lan

TRUSTED = {"mode": "trusted"}


def trusted_lan(members: int = 3, gateways: int = 1) -> Lan:
    return running_lan(members, gateways, coalition=TRUSTED)


def test_udp_and_tcp_go_out_and_come_back_to_their_member_only() -> None:
    lan = trusted_lan(8)
    lan.submit("member5", udp(payload=b"trusted"))
    lan.submit("member2", tcp(flags="S", seq=1))
    lan.run_until(lambda: len(lan.emitted) >= 2, limit=5)
    lan.run(0.2)
    echoed = [IP(p) for p in lan.host("member5").injected if UDP in IP(p)]
    assert [bytes(p[UDP].payload) for p in echoed] == [b"trusted"]
    assert any(IP(p).sprintf("%TCP.flags%") == "SA" for p in lan.host("member2").injected)
    for other in ("member1", "member3", "member4", "member6", "member7", "member8"):
        assert lan.host(other).injected == []
    assert not lan.all_events(FrameRejected)


def test_every_member_sends_the_same_frames_whatever_it_carries() -> None:
    lan = trusted_lan(4)
    lan.wire_log.clear()
    for i in range(6):
        lan.submit("member1", udp(sport=40000 + i, payload=bytes(900)))
    lan.run_until(lambda: len(lan.events("member1", CellDelivered)) >= 6, limit=5)
    shapes: dict[int, dict[bytes, list[int]]] = defaultdict(lambda: defaultdict(list))
    for src, _dst, f in lan.frames(wire.MsgType.CONTRIB):
        shapes[wire.pull_part(f[: -wire.MAC_LEN]).round][src].append(len(f))
    # member1's 6 cells took two rounds (4 a round at most: trusted_cells)
    assert len(shapes) >= 2
    for by_member in shapes.values():
        assert len(by_member) == 4
        assert len({tuple(v) for v in by_member.values()}) == 1  # count and sizes alike


def test_the_output_order_says_nothing_of_who_sent_a_cell() -> None:
    """member1 sends one cell a round: the slot it emerges in is spread over the output."""
    lan = trusted_lan(3)
    positions = []
    for i in range(40):
        lan.wire_log.clear()
        lan.submit("member1", udp(sport=41000 + i, payload=b"x" * 50))
        lan.run_until(lambda n=i + 1: len(lan.events("member1", CellDelivered)) >= n, limit=5)
        outputs: dict[int, dict[int, bytes]] = defaultdict(dict)
        for _src, _dst, f in lan.frames(wire.MsgType.OUTPUT_PART):
            part = wire.pull_part(f)
            outputs[part.round][part.index] = part.payload
        cs = lan.c.coalition.cell_size
        for parts in outputs.values():
            vector = b"".join(parts[i] for i in sorted(parts))
            for s in range(len(vector) // cs):
                if decode_slot(vector[s * cs : (s + 1) * cs])[1] is not None:
                    positions.append(s)
    assert len(positions) >= 40
    assert len(set(positions)) >= 8  # 12 slots a round: anywhere, not member1's own place


def test_an_answer_not_sealed_for_the_leader_is_refused_and_the_round_goes_on() -> None:
    lan = trusted_lan(4)
    leader = lan.gateway()

    def forge() -> None:
        """member2's answer, MACed as its own (a member or whoever has its MAC key) but not
        sealed under its answer key."""
        col = leader.leader.collecting
        assert col is not None
        sealed = seal_answer(bytes(32), col.round, 1, bytes(4 * lan.c.coalition.cell_size))
        parts = wire.split_vector(sealed, lan.c.part_size)
        for i, payload in enumerate(parts):
            frame = wire.Part(col.round, i, len(parts), payload).encode(
                wire.MsgType.CONTRIB, lan.c.id, 1
            )
            leader.receive_frame(
                lan.host("member2").mac, maced(leader.leader.mac_keys[1], frame), lan.now
            )

    lan.run_until(lambda: leader.leader.collecting is not None, limit=2)
    forge()
    lan.collect()
    rejected = [
        e for e in lan.events("gateway1", FrameRejected) if e.reason is RejectReason.BAD_AUTH
    ]
    assert rejected
    lan.submit("member3", udp(payload=b"still"))
    lan.run_until(lambda: bool(lan.emitted), limit=5)


def test_trusted_mode_needs_the_star_schedule() -> None:
    with pytest.raises(ConfigError, match="expected \\[rounds\\] schedule = 'star'"):
        make_coalition(3, coalition=TRUSTED, rounds={"schedule": "tree"})


def test_no_key_graph_is_needed() -> None:
    c, _ = make_coalition(3, coalition=TRUSTED, key_graph={"kind": "edges", "edges": []})
    assert not c.shortfall


def test_a_leader_failover_keeps_flows() -> None:
    lan = trusted_lan(3, 2)
    lan.submit("member1", udp(payload=b"one"))
    lan.run_until(lambda: len(lan.emitted) >= 1, limit=5)
    lan.kill("gateway1")
    lan.run(3.0)
    before = len(lan.emitted)
    lan.submit("member1", udp(payload=b"two"))
    lan.run_until(lambda: len(lan.emitted) > before, limit=10)
    lan.run(0.2)
    got = [bytes(IP(p)[UDP].payload) for p in lan.host("member1").injected if UDP in IP(p)]
    assert got[-1] == b"two"
