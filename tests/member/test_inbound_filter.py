"""`filter_inbound`: the kernel drops other members' INBOUND frames, by their flows' tags.

Off by default: then every member does the same work on every frame (test_flow_ownership.py)
and no filter is ever asked for. On: the engine tells the daemon its flows' and services'
tags as they come and go, replies of its own flows still reach it, and another member's
download reaches it not at all (the simulated LAN drops what the kernel filter would).
"""

from __future__ import annotations

from lanon.common.events import FilterInbound
from lanon.common.rawsock import MAX_TAGS
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
