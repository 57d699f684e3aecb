"""A member never reuses a pad, never joins a round that would expose it, never crashes."""

import random
from typing import Any

from scapy.layers.inet import IP, UDP, IPOption_RR

from lanon.common import wire
from lanon.common.crypto import key_id
from lanon.common.engine import sealed
from lanon.common.errors import RejectReason
from lanon.common.events import (
    CellDelivered,
    FrameRejected,
    InboundRefusal,
    InboundRefused,
    PacketDropped,
    RefuseReason,
    RoundRefused,
    SendFrame,
)
from lanon.member.engine import MemberEngine
from tests.harness import WALL, Lan, make_coalition
from tests.harness import running_lan as harness_lan
from tests.packets import udp


def running_lan(n: int = 3, **kw: dict[str, Any]) -> Lan:
    return harness_lan(n, **kw)


def rejections(lan: Lan, name: str) -> list[RejectReason]:
    return [e.reason for e in lan.events(name, FrameRejected)]  # type: ignore[attr-defined]


def last_open(lan: Lan) -> tuple[bytes, bytes]:
    src, _dst, frame = lan.frames(wire.MsgType.OPEN)[-1]
    return src, frame


def deliver(lan: Lan, name: str, src: bytes, frame: bytes) -> list[object]:
    eng = lan.member(name)
    eng.receive_frame(src, frame, lan.now)
    return eng.pop_commands()


def kinds(commands: list[object]) -> list[int]:
    return [c.frame[1] for c in commands if isinstance(c, SendFrame)]


def test_a_replayed_open_gets_no_second_contribution() -> None:
    """A fresh OPEN of a round already answered (a paused leader's, or a replay) gets no
    contribution, only a refusal that says which round the member expects."""
    lan = running_lan()
    src, frame = last_open(lan)
    sent = deliver(lan, "member1", src, frame)
    assert kinds(sent) == [wire.MsgType.REFUSE]
    refusal = wire.pull_refuse(sent[0].frame[: -wire.MAC_LEN])  # type: ignore[attr-defined]
    eng = lan.member("member1")
    assert refusal.reason is wire.RefuseCode.STALE_ROUND
    assert refusal.next_round == eng.last_round + 1 and refusal.epoch == eng.epoch
    assert [e.reason for e in eng.pop_events() if isinstance(e, RoundRefused)] == [
        RefuseReason.STALE_ROUND
    ]


def test_an_old_open_replayed_later_costs_no_signature_check_and_gets_no_answer() -> None:
    lan = running_lan()
    src, frame = last_open(lan)
    lan.run(2.0)  # past the clock tolerance
    eng = lan.member("member1")
    checks = eng.verifier.verify
    calls: list[int] = []
    eng.verifier.verify = lambda *a: calls.append(1) or checks(*a)  # type: ignore[method-assign]
    assert deliver(lan, "member1", src, frame) == []
    reasons = [e.reason for e in eng.pop_events() if isinstance(e, FrameRejected)]
    assert calls == [] and reasons == [RejectReason.REPLAY]


def test_a_restarted_member_never_answers_a_round_recorded_before() -> None:
    lan = running_lan()
    src, frame = last_open(lan)  # recorded by an attacker
    old = lan.member("member1")
    reborn = MemberEngine(
        lan.c, "member1", old.key, now=lan.now, wall_offset=WALL - 100.0, rng=random.Random(1)
    )
    reborn.receive_frame(src, frame, lan.now)  # the round names ephemeral keys it no longer has
    assert not [
        c
        for c in reborn.pop_commands()
        if isinstance(c, SendFrame) and c.frame[1] == wire.MsgType.CONTRIB
    ]
    assert [e.reason for e in reborn.pop_events() if isinstance(e, RoundRefused)] == [
        RefuseReason.MISSING_KEY
    ]


def test_a_round_from_a_leader_clock_far_off_is_refused() -> None:
    lan = running_lan()
    frame = _open_from_leader(lan, frozenset({0, 1, 2}), leader_ms_shift=60_000)
    sent = deliver(lan, "member1", lan.host("gateway1").mac, frame)
    assert not [c for c in sent if isinstance(c, SendFrame) and c.frame[1] == wire.MsgType.CONTRIB]
    refused = [e for e in lan.member("member1").pop_events() if isinstance(e, RoundRefused)]
    assert refused and refused[0].reason is RefuseReason.CLOCK


def test_restarted_member_rejoins_and_traffic_flows() -> None:
    lan = running_lan()
    lan.restart("member2")
    lan.run(3.0)
    lan.submit("member2", udp(src="198.18.0.12", payload=b"back again"))
    lan.run_until(lambda: bool(lan.host("member2").injected))


def test_forged_and_foreign_opens_are_rejected() -> None:
    lan = running_lan()
    src, frame = last_open(lan)
    mine = len(frame) - wire.SIG_LEN - len(lan.c.members) * wire.MAC_LEN  # member1's MAC
    forged = frame[:mine] + bytes([frame[mine] ^ 1]) + frame[mine + 1 :]
    assert deliver(lan, "member1", src, forged) == []
    foreign = frame[:2] + b"\x00\x00\x00\x00" + frame[6:]
    assert deliver(lan, "member1", src, foreign) == []
    reasons = [e.reason for e in lan.member("member1").pop_events() if isinstance(e, FrameRejected)]
    assert reasons == [RejectReason.BAD_AUTH, RejectReason.FOREIGN]


def _open_from_leader(
    lan: Lan,
    roster: frozenset[int],
    rnd_bump: int = 1000,
    leader_ms_shift: int = 0,
    nentries: int = 64,
) -> bytes:
    """An OPEN signed by the real leader's key, with whatever roster a test wants."""
    gw = lan.gateway()
    leader = gw.leader
    ids = tuple(key_id(leader.ephemeral[i][leader.epoch][1]) for i in sorted(roster))
    wall_ms = int((lan.now + WALL - 100) * 1000) + leader_ms_shift
    o = wire.Open(
        leader.round + rnd_bump, leader.epoch, wall_ms, 1, nentries, roster, len(lan.c.members), ids
    )
    return sealed(gw.key, o.encode(lan.c.id, 0), leader.mac_table)


def test_a_roster_too_small_is_refused_even_from_the_leader() -> None:
    lan = running_lan(4)
    frame = _open_from_leader(lan, frozenset({0, 1}))
    assert kinds(deliver(lan, "member1", lan.host("gateway1").mac, frame)) == [wire.MsgType.REFUSE]
    refused = [e for e in lan.member("member1").pop_events() if isinstance(e, RoundRefused)]
    assert refused and refused[0].reason is RefuseReason.ROSTER_TOO_SMALL


def test_a_roster_whose_key_graph_is_1_connected_is_refused() -> None:
    ring = {
        "kind": "edges",
        "edges": [
            ["member1", "member2"],
            ["member2", "member3"],
            ["member3", "member4"],
            ["member4", "member1"],
        ],
    }
    lan = running_lan(4, key_graph=ring)
    frame = _open_from_leader(lan, frozenset({0, 1, 2}))  # a path: member2 alone links 1 and 3
    assert kinds(deliver(lan, "member1", lan.host("gateway1").mac, frame)) == [wire.MsgType.REFUSE]
    refused = [e for e in lan.member("member1").pop_events() if isinstance(e, RoundRefused)]
    assert refused and refused[0].reason is RefuseReason.WEAK_KEY_GRAPH


def test_inbound_replays_and_forgeries_are_not_injected() -> None:
    """A replayed or altered INBOUND frame of member1's flow is not injected. Only member1 can
    tell (no other member holds the flow key), so it says so in private and nowhere else:
    no public rejection, no log; the other members see nothing at all."""
    lan = running_lan()
    lan.submit("member1", udp(payload=b"ping"))
    lan.run_until(lambda: bool(lan.host("member1").injected))
    src, _dst, inbound = lan.frames(wire.MsgType.INBOUND)[-1]
    forged = bytearray(inbound)
    forged[40] ^= 0xFF  # its payload
    later = bytearray(forged)
    seq = int.from_bytes(later[8:16], "big")  # and with a later sequence number
    later[8:16] = (seq + 1000).to_bytes(8, "big")
    for name in ("member1", "member2", "member3"):
        eng = lan.member(name)
        eng.pop_events()
        for frame in (inbound, bytes(forged), bytes(later)):
            eng.receive_frame(src, frame, lan.now)
        assert eng.pop_commands() == []
        events = eng.pop_events()
        assert not [e for e in events if isinstance(e, FrameRejected)]
        refused = [e.reason for e in events if isinstance(e, InboundRefused)]
        if name == "member1":
            assert refused == [
                InboundRefusal.REPLAY,
                InboundRefusal.BAD_SEAL,
                InboundRefusal.BAD_SEAL,
            ]
        else:
            assert refused == []


def test_random_and_mutated_frames_never_crash_anyone() -> None:
    lan = running_lan()
    rng = random.Random(9)
    samples = [f for _s, _d, f in lan.wire_log[-200:]]
    for _ in range(4000):
        if rng.random() < 0.5:
            frame = bytearray(rng.choice(samples))
            for _ in range(rng.randrange(1, 4)):
                frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
            frame = frame[: rng.randrange(len(frame) + 1)] if rng.random() < 0.2 else frame
        else:
            frame = bytearray(rng.randbytes(rng.randrange(0, 120)))
        for h in lan.hosts.values():
            h.engine.receive_frame(b"\x02\x99\x99\x99\x99\x99", bytes(frame), lan.now)
            h.engine.pop_commands()
            h.engine.pop_events()
    lan.submit("member1", udp(payload=b"still alive"))
    lan.run_until(lambda: bool(lan.events("member1", CellDelivered)))


def test_what_cannot_be_carried_is_dropped_and_counted() -> None:
    lan = running_lan()
    eng = lan.member("member1")
    eng.submit_packet(bytes.fromhex("4500"), lan.now)
    eng.submit_packet(b"\x60" + bytes(39), lan.now)  # IPv6
    eng.submit_packet(
        bytes(IP(src="198.18.0.11", dst="203.0.113.10", options=[IPOption_RR()]) / UDP()), lan.now
    )
    reasons = [e.reason.value for e in eng.pop_events() if isinstance(e, PacketDropped)]
    assert reasons == ["truncated", "not_ipv4", "ip_options"]


def test_a_full_queue_drops_and_counts() -> None:
    c, keys = make_coalition(3, 1)
    eng = MemberEngine(
        c, "member1", keys["member1"], now=0.0, wall_offset=WALL, rng=random.Random(1), max_queue=8
    )
    for i in range(10):
        eng.submit_packet(udp(sport=1000 + i), 0.0)
    drops = [e for e in eng.pop_events() if isinstance(e, PacketDropped)]
    assert [d.reason.value for d in drops] == ["queue_full", "queue_full"]
    assert len(eng.queue) == 8


def test_an_open_whose_reservation_area_is_empty_or_too_large_is_refused() -> None:
    lan = running_lan(4)
    everyone = frozenset(range(4))
    for nentries in (0, lan.c.rounds.reservation_entries + 1, 65535):
        frame = _open_from_leader(lan, everyone, nentries=nentries)
        assert deliver(lan, "member1", lan.host("gateway1").mac, frame) == []
        reasons = [
            e.reason for e in lan.member("member1").pop_events() if isinstance(e, FrameRejected)
        ]
        assert reasons == [RejectReason.MALFORMED], nentries
