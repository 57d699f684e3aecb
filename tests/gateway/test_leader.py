"""The leader's faults and membership, in memory."""

from typing import Any

from lanon.common import wire
from lanon.common.crypto import HostKey
from lanon.common.engine import maced, signed
from lanon.common.errors import RejectReason
from lanon.common.events import (
    CellDelivered,
    FrameRejected,
    LanonDisbanded,
    LanonResumed,
    MemberChanged,
    MemberState,
    OutputSeen,
    RoundAborted,
    RoundCompleted,
    SendFrame,
)
from lanon.common.reservation import MIN_ENTRIES
from tests.harness import WALL, Lan, make_coalition
from tests.harness import running_lan as harness_lan
from tests.packets import udp


def running_lan(n: int = 4, **kw: dict[str, Any]) -> Lan:
    return harness_lan(n, **kw)


def test_a_silent_member_costs_one_round_then_the_others_go_on() -> None:
    lan = running_lan(4, rounds={"forgive_rounds": 20})
    lan.kill("member4")
    lan.submit("member1", udp(payload=b"during the fault"))
    lan.run(2.0)
    aborted = lan.events("gateway1", RoundAborted)
    assert len(aborted) == 1 and aborted[0].missing == ("member4",)  # type: ignore[attr-defined]
    assert lan.events("member1", CellDelivered)
    assert lan.host("member1").injected
    changes = [(e.name, e.state) for e in lan.events("gateway1", MemberChanged)]  # type: ignore[attr-defined]
    assert ("member4", MemberState.FORGIVEN) in changes and (
        "member4",
        MemberState.RESIGNED,
    ) in changes


def test_the_silent_member_comes_back() -> None:
    lan = running_lan(4)
    lan.kill("member4")
    lan.run(1.0)
    before = len(lan.events("member4", OutputSeen))
    lan.restart("member4")  # a new process: new ephemeral keys, which the others learn
    lan.run_until(lambda: len(lan.events("member4", OutputSeen)) > before + 3, limit=5)
    assert 3 in lan.gateway().leader.present


def test_below_min_members_the_lanon_disbands_and_resumes() -> None:
    lan = running_lan(3)
    lan.kill("member3")
    lan.run(2.0)
    assert lan.events("gateway1", LanonDisbanded)
    done = len(lan.events("gateway1", RoundCompleted))
    lan.run(1.0)
    assert len(lan.events("gateway1", RoundCompleted)) == done  # no rounds while disbanded
    lan.restart("member3")
    lan.run_until(lambda: bool(lan.events("gateway1", LanonResumed)), limit=5)
    lan.submit("member1", udp(payload=b"resumed"))
    lan.run_until(lambda: bool(lan.host("member1").injected))


def _rejections(lan: Lan) -> list[RejectReason]:
    return [e.reason for e in lan.gateway().pop_events() if isinstance(e, FrameRejected)]


def hold_a_round_open(lan: Lan) -> None:
    """Silence member3: the next round waits for it (until the deadline)."""
    lan.kill("member3")
    lan.wire_log.clear()
    lan.run_until(
        lambda: (
            lan.gateway().leader.collecting is not None and bool(lan.frames(wire.MsgType.CONTRIB))
        )
    )


def test_contributions_are_authenticated_and_checked() -> None:
    lan = running_lan(3, coalition={"cell_size": 1400})  # two parts: the first has no ATTEST
    gw = lan.gateway()
    hold_a_round_open(lan)
    col = gw.leader.collecting
    assert col is not None
    key = gw.leader.mac_keys[0]
    good = wire.Part(col.round, 0, len(col.part_lens), bytes(col.part_lens[0]))
    frame = maced(key, good.encode(wire.MsgType.CONTRIB, lan.c.id, 0))
    src = lan.host("member1").mac
    gw.pop_events()
    gw.receive_frame(src, frame[:-1] + bytes([frame[-1] ^ 1]), lan.now)  # bad MAC
    gw.receive_frame(
        src, maced(key, good.encode(wire.MsgType.CONTRIB, lan.c.id, 9)), lan.now
    )  # no member 9
    stale = wire.Part(col.round - 1, 0, len(col.part_lens), bytes(col.part_lens[0]))
    gw.receive_frame(src, maced(key, stale.encode(wire.MsgType.CONTRIB, lan.c.id, 0)), lan.now)
    short = wire.Part(col.round, 0, len(col.part_lens), b"x")
    gw.receive_frame(src, maced(key, short.encode(wire.MsgType.CONTRIB, lan.c.id, 0)), lan.now)
    assert _rejections(lan) == [
        RejectReason.BAD_AUTH,
        RejectReason.NOT_IN_ROSTER,
        RejectReason.STALE,
        RejectReason.MALFORMED,
    ]


def test_a_duplicate_part_is_a_replay() -> None:
    lan = running_lan(3)
    hold_a_round_open(lan)
    gw = lan.gateway()
    src, _dst, frame = lan.frames(wire.MsgType.CONTRIB)[-1]
    assert gw.leader.collecting is not None
    assert wire.pull_part(frame[: -wire.MAC_LEN]).round == gw.leader.collecting.round
    gw.pop_events()
    gw.receive_frame(src, frame, lan.now)
    assert _rejections(lan) == [RejectReason.REPLAY]


def test_hello_with_another_coalition_file_is_refused() -> None:
    lan = running_lan(3)
    key: HostKey = lan.keys["member1"]
    wall_ms = int((lan.now + WALL - 100) * 1000) + 5000
    hello = wire.Hello(wall_ms, b"\x01" * 16).encode(lan.c.id, 0)
    gw = lan.gateway()
    gw.pop_events()
    gw.receive_frame(lan.host("member1").mac, signed(key, hello), lan.now)
    events = [e for e in gw.pop_events() if isinstance(e, FrameRejected)]
    assert events[0].reason is RejectReason.FOREIGN and "coalition file differs" in events[0].detail


def test_a_replayed_hello_is_refused() -> None:
    lan = running_lan(3)
    src, _dst, hello = lan.frames(wire.MsgType.HELLO)[-1]
    gw = lan.gateway()
    gw.pop_events()
    gw.receive_frame(src, hello, lan.now)
    assert _rejections(lan) == [RejectReason.REPLAY]


def test_a_member_with_another_coalition_file_is_told_so_on_both_sides() -> None:
    import random

    from lanon.common import coalition as coalition_mod
    from lanon.gateway.engine import GatewayEngine
    from lanon.member.engine import MemberEngine
    from tests.harness import coalition_dict

    c, keys = make_coalition(3, 1)
    raw = coalition_dict(
        [(m.name, keys[m.name]) for m in c.members],
        [(g.name, keys[g.name], ["198.18.0.192/30"]) for g in c.gateways],
        rounds={"deadline": 0.3},  # one value differs: another file
    )
    other = coalition_mod.parse(raw, c.path)
    assert other.fingerprint != c.fingerprint
    gw = GatewayEngine(
        c,
        "gateway1",
        keys["gateway1"],
        b"\x02" * 6,
        now=0.0,
        wall_offset=WALL,
        rng=random.Random(1),
    )
    m1 = MemberEngine(
        other, "member1", keys["member1"], now=0.0, wall_offset=WALL, rng=random.Random(2)
    )
    m1.start(0.0)
    gw.start(0.0)
    for cmd in m1.pop_commands():
        gw.receive_frame(b"\x02\x11" * 3, cmd.frame, 0.0)  # type: ignore[attr-defined]
    for cmd in gw.pop_commands():
        if isinstance(cmd, SendFrame):  # (not its sequence file's mark)
            m1.receive_frame(b"\x02" * 6, cmd.frame, 0.0)
    for eng in (gw, m1):
        rejected = [e for e in eng.pop_events() if isinstance(e, FrameRejected)]
        assert rejected and all(e.reason is RejectReason.FOREIGN for e in rejected)
        assert "do all hosts use the same coalition file?" in rejected[0].detail


def test_quiet_rounds_have_the_least_area_and_claims_grow_the_next() -> None:
    lan = running_lan(3)
    lan.run(0.5)

    def areas() -> list[int]:
        opens = lan.frames(wire.MsgType.OPEN)
        return [wire.pull_open(wire.split_sealed(f, 3)[0]).nentries for _s, _d, f in opens]

    assert set(areas()[-5:]) == {MIN_ENTRIES}  # one frame a member, the ATTEST riding
    lan.wire_log.clear()
    for k in range(12):  # more than the express slot takes: member1 reserves
        lan.submit("member1", udp(src="198.18.0.11", sport=30000 + k, payload=b"burst"))
    lan.run(0.5)
    assert max(areas()) > MIN_ENTRIES
    assert areas()[-1] == MIN_ENTRIES  # quiet again
