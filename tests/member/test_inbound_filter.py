"""`filter_inbound`: the kernel drops other members' INBOUND frames, by their flows' tags.

Off by default: then every member does the same work on every frame (test_flow_ownership.py)
and no filter is ever asked for. On: the engine tells the daemon its flows' and services'
tags as they come and go, replies of its own flows still reach it, and another member's
download reaches it not at all (the simulated LAN drops what the kernel filter would).
"""

from __future__ import annotations

from lanon.common import wire
from lanon.common.events import MAX_FILTER_TAGS as MAX_TAGS
from lanon.common.events import FilterInbound, InboundRefused
from lanon.member.engine import MemberEngine
from tests.harness import running_lan
from tests.packets import udp


def _filters(eng: MemberEngine) -> list[FilterInbound]:
    return [c for c in eng.pop_commands() if isinstance(c, FilterInbound)]


def test_no_filter_unless_asked_every_member_reads_every_frame() -> None:
    lan = running_lan(3)
    lan.submit("member1", udp(sport=40001, payload=b"hello"))
    lan.run_until(lambda: bool(lan.host("member1").injected))
    assert all(lan.host(m).tags is None for m in ("member1", "member2", "member3"))
    seen = []
    eng = lan.member("member2")
    real = eng.inbound.receive
    eng.inbound.receive = lambda *a: (seen.append(a), real(*a))[1]  # type: ignore[method-assign]
    lan.submit("member1", udp(sport=40001, payload=b"again"))
    lan.run_until(lambda: len(lan.host("member1").injected) >= 2)
    assert seen  # another member's reply reached this member's engine


def test_a_filtering_member_gets_its_own_replies_and_none_of_the_others() -> None:
    lan = running_lan(3, filter_inbound=("member1", "member2"))
    m1, m2 = lan.host("member1"), lan.host("member2")
    assert m1.tags == m2.tags == frozenset()  # at start: no flow, no INBOUND frame
    read: dict[str, int] = {"member2": 0, "member3": 0}
    for name in read:
        eng = lan.member(name)
        real = eng.inbound.receive

        def count(*a: object, _real: object = real, _name: str = name) -> None:
            read[_name] += 1
            _real(*a)  # type: ignore[operator]

        eng.inbound.receive = count  # type: ignore[method-assign]
    for i in range(5):  # five flows of member1, each answered
        lan.submit("member1", udp(sport=41000 + i, payload=b"x" * 300))
        lan.run_until(lambda i=i: len(m1.injected) > i)
    assert m1.tags is not None and len(m1.tags) == 5
    assert m1.tags == frozenset(lan.member("member1").flows.tags())
    assert read == {"member2": 0, "member3": 5}  # member3 does not filter: it reads them all
    # member2's own flow: its filter names it before its first packet leaves
    lan.submit("member2", udp(sport=42000, payload=b"mine"))
    lan.collect()
    tag = next(iter(lan.member("member2").flows.tags()))
    assert m2.tags == frozenset({tag})
    lan.run_until(lambda: bool(m2.injected))
    assert read["member2"] == 1


def test_the_filter_follows_flows_as_they_end_and_gives_up_past_its_size() -> None:
    lan = running_lan(3, filter_inbound=("member1",))
    eng = lan.member("member1")
    eng.pop_commands()
    now = lan.now
    for i in range(3):
        eng.submit_packet(udp(sport=43000 + i, payload=b"a"), now)
    told = _filters(eng)
    assert len(told) == 3 and told[-1].tags is not None and len(told[-1].tags) == 3
    eng.submit_packet(udp(sport=43000, payload=b"b"), now)  # an old flow: nothing to tell
    assert _filters(eng) == []
    later = now + 3600  # every flow idle long past its timeout
    eng.handle_timer(max(later, eng.get_timer()))
    assert [f.tags for f in _filters(eng)] == [frozenset()]
    for i in range(MAX_TAGS + 2):  # more flows than a filter names: every frame, once
        eng.submit_packet(udp(sport=20000 + i, payload=b"c"), later)
    told = [f.tags for f in _filters(eng)]
    assert told[-1] is None and told.count(None) == 1
    assert all(t is not None and len(t) <= MAX_TAGS for t in told[:-1])


def test_a_filtering_owner_shows_nothing_in_public_of_forged_frames_of_its_tag() -> None:
    """The attacker forges INBOUND frames with member1's tag (it is on the wire): bad seals,
    replays, parts that make no sense, another coalition, version or gateway. Only member1's
    kernel lets them through; what it makes of them stays private (no public rejection, no
    door shut to the source), so nothing public tells that the tag is its own."""
    names = ("member1", "member2", "member3")
    lan = running_lan(3, filter_inbound=names)
    lan.submit("member1", udp(payload=b"ping"))
    lan.run_until(lambda: bool(lan.host("member1").injected))
    src, _dst, genuine = lan.frames(wire.MsgType.INBOUND)[-1]
    seq = int.from_bytes(genuine[8:16], "big")
    forged: list[bytes] = []
    for i in range(400):
        f = bytearray(genuine)
        f[8:16] = (seq + 1 + i).to_bytes(8, "big")
        kind = i % 6
        if kind == 0:
            f[40 + i % 20] ^= 0x5A  # a bad seal
        elif kind == 1:
            f[25] = 0  # no parts
        elif kind == 2:
            f[2] ^= 0xFF  # another coalition
        elif kind == 3:
            f[6:8] = (0x00FF).to_bytes(2, "big")  # no such gateway
        elif kind == 4:
            f[0] ^= 0x7F  # another version
        else:
            f = bytearray(genuine)  # a replay
        forged.append(bytes(f))
    taken = {}
    for name in names:
        h, eng = lan.host(name), lan.member(name)
        eng.pop_events()
        taken[name] = [f for f in forged if h.takes(f)]
        for f in taken[name]:
            eng.receive_frame(src, f, lan.now)
        events = eng.pop_events()
        assert all(isinstance(e, InboundRefused) for e in events), {type(e) for e in events}
        assert not eng.door.shut(lan.now)
    assert len(taken["member1"]) == len(forged) and not taken["member2"] and not taken["member3"]
