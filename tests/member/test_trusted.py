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
from lanon.common.events import CellDelivered, FrameRejected, RoundAborted
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
    """Every member sends one cell a round: the order their cells emerge in is random, and
    only the cells are published, not the padding."""
    lan = trusted_lan(3)
    names = ["member1", "member2", "member3"]
    orders = []
    cs = lan.c.coalition.cell_size
    for i in range(30):
        lan.wire_log.clear()
        for m in names:
            lan.submit(m, udp(sport=41000 + i, payload=b"x" * 50))
        lan.run_until(
            lambda n=i + 1: all(len(lan.events(m, CellDelivered)) >= n for m in names), limit=5
        )
        outputs: dict[int, dict[int, bytes]] = defaultdict(dict)
        for _src, _dst, f in lan.frames(wire.MsgType.OUTPUT_PART):
            part = wire.pull_part(f)
            outputs[part.round][part.index] = part.payload
        for parts in outputs.values():
            vector = b"".join(parts[k] for k in sorted(parts))
            assert len(vector) % cs == 0
            cells = [decode_slot(vector[s : s + cs])[1] for s in range(0, len(vector), cs)]
            assert all(c is not None for c in cells)  # no padding published
            owners = tuple(
                next(m for m in names if lan.member(m).flows.by_tag(c.tag)) for c in cells if c
            )
            if len(owners) == 3:
                orders.append(owners)
    assert len(orders) >= 20
    assert {o.index("member1") for o in orders} == {0, 1, 2}
    assert len(set(orders)) >= 4


def test_an_answer_not_sealed_for_the_leader_is_refused_and_the_round_goes_on() -> None:
    lan = trusted_lan(4)
    leader = lan.gateway()

    def forge() -> None:
        """member2's answer, MACed as its own (a member or whoever has its MAC key) but not
        sealed under its answer key."""
        col = leader.leader.collecting
        assert col is not None
        cells = bytes(4 * lan.c.coalition.cell_size)
        sealed = seal_answer(bytes(32), col.round, 1, cells, bytes(12))
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
    # the round is not given up for it: published with the others' answers at its deadline
    lan.run(lan.c.rounds.deadline + 0.05)
    assert not lan.events("gateway1", RoundAborted)
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


def test_an_output_whose_head_gives_its_size_is_bounded_by_its_open() -> None:
    from lanon.common.crypto import digest16
    from lanon.common.errors import RemoteProtocolError
    from lanon.common.output import OutputAssembler

    c, _ = make_coalition(3, coalition=TRUSTED)
    cs = c.coalition.cell_size
    vector = (bytes(range(256)) * 12)[: 2 * cs]
    lens = c.part_lens(2, 0)
    parts = [vector[sum(lens[:i]) : sum(lens[: i + 1])] for i in range(len(lens))]
    head = wire.OutputHead(9, 0, 0, 2, tuple(digest16(p) for p in parts))
    a = OutputAssembler.up_to(9, 12, c.part_lens)
    for i, p in enumerate(parts):  # parts before their head wait, whatever their count says
        a.add_part(wire.Part(9, i, 99, p))
    a.add_part(wire.Part(9, 0, 99, b"forged"))
    with pytest.raises(RemoteProtocolError):
        a.add_part(wire.Part(9, 500, 99, b"beyond"))
    a.add_head(head)
    assert a.vector() == vector
    too_big = OutputAssembler.up_to(9, 1, c.part_lens)
    with pytest.raises(RemoteProtocolError, match="beyond its OPEN"):
        too_big.add_head(head)


def test_no_version_can_switch_the_mode() -> None:
    """The mode is part of the coalition's identity: a signed version that turned a DC-net
    coalition into a trusted one (the gateways would learn who sends what) is another
    coalition's, refused as foreign."""
    from lanon.lab.sim import make_versioned

    dcnet, _ = make_versioned(3)
    trusted, _ = make_versioned(3, coalition=TRUSTED)
    assert dcnet.identity != trusted.identity and dcnet.id != trusted.id


def test_answers_never_share_a_nonce_even_across_a_restart() -> None:
    lan = trusted_lan(3)
    mac = lan.host("member1").mac

    def nonces() -> list[bytes]:
        return [
            wire.pull_part(f[: -wire.MAC_LEN]).payload[:12]
            for src, _dst, f in lan.frames(wire.MsgType.CONTRIB)
            if src == mac and wire.pull_part(f[: -wire.MAC_LEN]).index == 0
        ]

    lan.wire_log.clear()
    lan.run(0.5)
    lan.restart("member1")
    lan.run(2.0)
    seen = nonces()
    assert len(seen) > 10 and len(set(seen)) == len(seen)


def test_many_busy_members_never_outgrow_the_output_head() -> None:
    """20 members with 4 cells each: more than one OUTPUT_HEAD can vouch for; the leader
    publishes what fits (the rest go again) and rounds go on."""
    lan = trusted_lan(20)
    assert lan.c.trusted_output_cells < 20 * 4
    lan.wire_log.clear()
    for i in range(1, 21):
        for k in range(4):
            lan.submit(f"member{i}", udp(sport=42000 + k, payload=bytes(1000)))
    lan.run_until(
        lambda: all(len(lan.events(f"member{i}", CellDelivered)) >= 4 for i in range(1, 21)),
        limit=10,
    )
    heads = lan.frames(wire.MsgType.OUTPUT_HEAD)
    assert heads and max(len(f) for _s, _d, f in heads) <= lan.c.coalition.lan_mtu
