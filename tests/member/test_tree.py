"""The reduction-tree schedule: same rounds, same uniformity, the leader hears only the root."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from lanon.common import tree, wire
from lanon.common.events import CellDelivered, MemberChanged, MemberState, RoundAborted
from tests.harness import Lan
from tests.harness import running_lan as harness_lan
from tests.packets import udp

TREE = {"rounds": {"schedule": "tree", "tree_fanout": 2}}


def tree_lan(n: int = 7, rounds: dict[str, Any] | None = None) -> Lan:
    return harness_lan(n, latency=0.0005, rounds={**TREE["rounds"], **(rounds or {})})


def test_the_tree_of_a_round() -> None:
    roster = frozenset(range(10))
    members = tree.order(roster, 42)
    assert sorted(members) == sorted(roster) and members == tree.order(roster, 42)
    assert members != tree.order(roster, 43)  # reshuffled every round
    places = {m: tree.place(roster, 42, m, 2) for m in roster}
    root = members[0]
    assert places[root].parent is None and places[root].depth == 0
    for m, p in places.items():  # every member is the child of its parent, and only of it
        assert p.height == 3
        if p.parent is not None:
            assert m in places[p.parent].children
            assert places[p.parent].depth == p.depth - 1
    assert sum(len(p.children) for p in places.values()) == len(roster) - 1
    # deeper members forward earlier, the root before the leader's deadline
    assert tree.forward_by(0.0, 1.0, places[root]) < 1.0
    leaf = next(p for p in places.values() if not p.children and p.depth == 3)
    assert tree.forward_by(0.0, 1.0, leaf) < tree.forward_by(0.0, 1.0, places[root])


def test_traffic_flows_and_the_leader_hears_only_the_root() -> None:
    lan = tree_lan(7)
    lan.wire_log.clear()
    for i in range(1, 8):
        lan.submit(f"member{i}", udp(src=f"198.18.0.{10 + i}", payload=b"up the tree"))
    lan.run_until(lambda: all(lan.host(f"member{i}").injected for i in range(1, 8)), limit=10)
    gw = lan.host("gateway1").mac
    to_leader: dict[int, set[bytes]] = defaultdict(set)
    shapes: dict[int, dict[bytes, list[int]]] = defaultdict(lambda: defaultdict(list))
    for src, dst, frame in lan.frames(wire.MsgType.TREE_PART):
        part = wire.pull_tree_part(frame[: -wire.MAC_LEN])
        shapes[part.round][src].append(len(frame))
        if dst == gw:
            to_leader[part.round].add(src)
    assert lan.frames(wire.MsgType.CONTRIB) == []
    assert to_leader and all(len(srcs) == 1 for srcs in to_leader.values())  # the root alone
    for by_member in shapes.values():  # every member sends the same frames, busy or not
        if len(by_member) == 7:
            assert len({tuple(sorted(v)) for v in by_member.values()}) == 1


def test_a_silent_interior_member_is_named_and_the_rounds_go_on() -> None:
    lan = tree_lan(7, rounds={"forgive_rounds": 1000})
    lan.kill("member3")
    lan.run_until(lambda: bool(lan.events("gateway1", RoundAborted)), limit=5)
    abort = lan.events("gateway1", RoundAborted)[0]
    assert abort.missing == ("member3",)  # type: ignore[attr-defined]
    assert ("member3", MemberState.FORGIVEN) in [
        (e.name, e.state) for e in lan.events("gateway1", MemberChanged)
    ]  # type: ignore[attr-defined]
    lan.submit("member5", udp(src="198.18.0.15", payload=b"without member3"))
    lan.run_until(lambda: bool(lan.host("member5").injected), limit=5)
    assert len(lan.events("gateway1", RoundAborted)) == 1


def test_contention_in_a_tree_converges() -> None:
    lan = tree_lan(8)
    for i in range(1, 9):
        for k in range(20):
            lan.submit(
                f"member{i}", udp(src=f"198.18.0.{10 + i}", sport=20000 + k, payload=b"burst")
            )
    lan.run_until(
        lambda: all(len(lan.events(f"member{i}", CellDelivered)) == 20 for i in range(1, 9)),
        limit=60,
    )


def test_a_silent_member_with_children_is_blamed_alone() -> None:
    lan = tree_lan(7, rounds={"forgive_rounds": 1000})
    leader = lan.gateway().leader
    lan.run_until(lambda: leader.collecting is None)
    nxt, roster = leader.round + 1, leader.present
    places = {m: tree.place(roster, nxt, m, 2) for m in roster}
    victim = next(m for m, p in places.items() if p.children and p.parent is not None)
    lan.kill(f"member{victim + 1}")
    lan.run_until(lambda: bool(lan.events("gateway1", RoundAborted)), limit=5)
    abort = lan.events("gateway1", RoundAborted)[0]
    assert abort.round == nxt  # type: ignore[attr-defined]
    assert abort.missing == (f"member{victim + 1}",)  # type: ignore[attr-defined]
    lan.run(1.0)
    assert leader.present == roster - {victim}  # its children are still in


def test_a_leaf_hands_its_answer_to_the_pacer_and_a_relay_sends_when_its_subtree_is_in() -> None:
    """A leaf's answer is ready when the OPEN comes: it leaves at the round's moment, like a
    star answer (`SendFrame.at`), whatever the leaf's load; a member with children sends when
    their parts are in, from its loop."""
    lan = tree_lan(7)
    sent: list[tuple[int, int, float]] = []  # (member index, round, at) of each tree part
    for h in lan.hosts.values():
        if h.name.startswith("member"):
            index = int(h.name.removeprefix("member")) - 1

            def pop(m: int = index, inner: Any = h.engine.pop_commands) -> Any:
                cmds = inner()
                for c in cmds:
                    frame = getattr(c, "frame", b"")
                    if frame[1:2] == bytes([wire.MsgType.TREE_PART]):
                        part = wire.pull_tree_part(frame[: -wire.MAC_LEN])
                        sent.append((m, part.round, c.at))
                return cmds

            h.engine.pop_commands = pop
    lan.run(0.5)
    rosters = {}
    for _src, _dst, f in lan.frames(wire.MsgType.OPEN):
        o = wire.pull_open(wire.split_sealed(f, 7)[0])
        rosters[o.round] = o.roster
    judged = [(m, n, at) for m, n, at in sent if n in rosters]
    assert len({n for _m, n, _at in judged}) >= 8
    for m, n, at in judged:
        leaf = not tree.place(rosters[n], n, m, 2).children
        assert (at > 0) == leaf, (m, n, at)


def test_the_order_is_a_permutation_and_a_place_costs_one_hash_at_any_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for n in (1, 2, 3, 7, 8, 30, 64):
        roster = frozenset(range(3, 3 + 3 * n, 3))  # indices with gaps
        roots = set()
        for rnd in range(1, 60):
            members = tree.order(roster, rnd)
            assert sorted(members) == sorted(roster)
            roots.add(members[0])
            for pos, m in enumerate(members):
                assert tree.place(roster, rnd, m, 3).position == pos
        assert len(roots) >= min(n, 20)  # the root's work moves around
    with pytest.raises(ValueError):
        tree.place(frozenset({1, 2, 3}), 5, 4, 2)
    hashes = []
    real = tree.hashlib.blake2b
    monkeypatch.setattr(tree.hashlib, "blake2b", lambda *a, **k: hashes.append(1) or real(*a, **k))
    big = frozenset(range(4096))
    p = tree.place(big, 77, 1234, 2)
    assert len(hashes) == 1 and len(p.children) <= 2 and p.height == 12


def test_an_opens_per_member_lists_are_read_by_member() -> None:
    o = wire.Open(
        9, 1, 0, 4, 8, frozenset({2, 5, 9}), 12, (20, 50, 90), (b"a" * 6, b"b" * 6, b"c" * 6)
    )
    assert o.key_of() == {2: 20, 5: 50, 9: 90} and o.key_of().get(4) is None
    assert o.ethernet_of()[9] == b"c" * 6 and len(o.ethernet_of()) == 3
    with pytest.raises(ValueError):
        wire.ByMember(frozenset({1, 2}), (1,))
