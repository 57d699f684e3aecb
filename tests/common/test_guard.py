"""Cheap checks before expensive ones: a flood costs a look-up a frame, not a signature."""

from __future__ import annotations

import pytest

from lanon.common import wire
from lanon.common.errors import RejectReason
from lanon.common.events import FrameRejected
from lanon.common.guard import MEMBER, Door, SignatureGuard
from tests.harness import running_lan

ATTACKER = bytes.fromhex("02666c6f6f64")


def test_signature_checks_from_an_unknown_source_are_limited() -> None:
    guard = SignatureGuard(rate=10, burst=20)
    admitted = sum(guard.admit((MEMBER, 1), ATTACKER, 0.0) for _ in range(1000))
    assert admitted == 20
    assert sum(guard.admit((MEMBER, 1), ATTACKER, 1.0) for _ in range(1000)) == 10
    guard.verified((MEMBER, 1), b"\x02" * 6)  # where member 1 really is: never limited
    assert all(guard.admit((MEMBER, 1), b"\x02" * 6, 1.0) for _ in range(1000))


def test_the_door_closes_on_a_source_that_keeps_sending_garbage_and_opens_again() -> None:
    door = Door(rate=10, burst=20)
    for _ in range(25):
        if door.open(ATTACKER, 0.0):
            door.rejected(ATTACKER, 0.0)
    assert not door.open(ATTACKER, 0.0) and door.take_turned_away() >= 5
    assert door.open(ATTACKER, 5.0)  # its budget refilled
    door.trust(b"\x02" * 6)
    for _ in range(1000):
        door.rejected(b"\x02" * 6, 0.0)
    assert door.open(b"\x02" * 6, 0.0)  # a verified sender is never turned away


def test_the_door_names_the_sources_it_has_closed_while_they_are() -> None:
    """A member's compiled INBOUND path leaves their frames to the engine, which turns them
    away and counts them."""
    door = Door(rate=10, burst=20)
    assert door.closed_sources(0.0) == frozenset()
    for _ in range(25):
        if door.open(ATTACKER, 0.0):
            door.rejected(ATTACKER, 0.0)
    assert not door.open(ATTACKER, 0.0) and door.closed_sources(0.0) == {ATTACKER}
    assert door.closed_sources(5.0) == frozenset()  # its budget refilled, without a frame


def test_a_flood_of_forged_frames_costs_few_signature_checks_and_is_counted() -> None:
    lan = running_lan(3)
    gw = lan.gateway()
    calls: list[int] = []
    verify = gw.verifier.verify
    gw.verifier.verify = lambda *a: calls.append(1) or verify(*a)  # type: ignore[method-assign]
    _src, _dst, hello = lan.frames(wire.MsgType.HELLO)[-1]
    for i in range(5000):
        forged = bytearray(hello)
        forged[-1] ^= (i % 255) + 1  # a bad signature on a fresh-looking HELLO
        forged[8:16] = int((lan.now + 1_800_000_000.0 - 100) * 1000 + i).to_bytes(8, "big")
        gw.receive_frame(ATTACKER, bytes(forged), lan.now)
    gw.handle_timer(lan.now)
    assert len(calls) <= 200, len(calls)
    events = [e for e in gw.pop_events() if isinstance(e, FrameRejected)]
    assert sum(e.count for e in events) == 5000
    assert RejectReason.RATE_LIMITED in {e.reason for e in events}
    lan.run(1.0)  # the coalition goes on
    assert gw.leader.present == frozenset({0, 1, 2})


def test_a_replayed_hello_from_another_address_redirects_nothing() -> None:
    lan = running_lan(3, rounds={"schedule": "tree"})
    gw = lan.gateway()
    _src, _dst, hello = lan.frames(wire.MsgType.HELLO)[-1]
    sender = wire.pull_header(hello).sender
    before = dict(gw.leader.member_ethernet)
    gw.receive_frame(ATTACKER, hello, lan.now)
    assert (
        gw.leader.member_ethernet == before and ATTACKER not in gw.leader.member_ethernet.values()
    )
    assert gw.leader.member_ethernet[sender] != ATTACKER


def test_far_epochs_in_keys_are_not_kept() -> None:
    from lanon.common.engine import signed

    lan = running_lan(3)
    gw, member = lan.gateway(), lan.member("member2")
    key = lan.keys["member1"]
    wall_ms = int((lan.now + 1_800_000_000.0 - 100) * 1000)
    frame = wire.Keys(wall_ms, ((wire.MAX_EPOCH, b"\x09" * 32),)).encode(lan.c.id, 0)
    for eng in (gw, member):
        eng.receive_frame(lan.host("member1").mac, signed(key, frame), lan.now)
    assert wire.MAX_EPOCH not in gw.leader.ephemeral[0]
    assert not member.keys.pads.knows(0, wire.MAX_EPOCH, b"\x09" * 32)
    lan.run(2.0)  # rotations go on as before
    assert gw.leader.epoch < 10


def test_gateways_ignore_what_they_have_done_without_checking_a_signature() -> None:
    lan = running_lan(3, 2)
    standby = next(lan.gateway(g.name) for g in lan.c.gateways if not lan.gateway(g.name).leading)
    calls: list[int] = []
    verify = standby.verifier.verify
    standby.verifier.verify = lambda *a: calls.append(1) or verify(*a)  # type: ignore[method-assign]
    for src, _dst, frame in lan.frames(wire.MsgType.OUTPUT_HEAD)[:-2]:
        standby.receive_frame(src, frame, lan.now)  # old rounds: replays
    assert calls == []


def test_a_flood_from_invented_addresses_shuts_the_door_to_all_but_verified_hosts() -> None:
    import random

    from lanon.common.events import FilterSources, LanFlooded

    lan = running_lan(3)
    member = lan.member("member2")
    member.pop_commands()
    rng = random.Random(3)
    junk = wire.HEADER.pack(wire.VERSION, wire.MsgType.OPEN, lan.c.id, 0) + b"\x00" * 40
    for _ in range(5000):
        member.receive_frame(b"\x02" + rng.randbytes(5), junk, lan.now)
    filters = [c for c in member.pop_commands() if isinstance(c, FilterSources)]
    assert len(filters) == 1 and filters[0].allow is not None
    gateway_mac = lan.host("gateway1").mac
    assert gateway_mac in filters[0].allow  # the leader is still heard
    assert any(isinstance(e, LanFlooded) and e.active for e in member.pop_events())
    lan.run(member.door.shut_seconds + 1.5)  # the rounds go on meanwhile; then it opens again
    assert [c for c in lan.wire_log if c] and member.door.filter(lan.now) is None
    assert any(isinstance(e, LanFlooded) and not e.active for e in lan.events("member2"))


def test_replayed_genuine_frames_make_their_source_neither_trusted_nor_the_senders() -> None:
    lan = running_lan(3)
    member = lan.member("member2")
    gateway_mac = lan.host("gateway1").mac
    for mtype in (wire.MsgType.OPEN, wire.MsgType.OUTPUT_HEAD, wire.MsgType.HEARTBEAT):
        for _src, _dst, frame in lan.frames(mtype)[-3:]:
            member.receive_frame(ATTACKER, frame, lan.now)  # recent, genuinely signed
    assert member.guard.address_of((1, 0)) == gateway_mac
    assert not member.door.trusts(ATTACKER) and member.door.trusts(gateway_mac)


def test_a_signed_ephemeral_key_off_the_curve_is_refused_when_it_arrives() -> None:
    from lanon.common.engine import signed

    lan = running_lan(3)
    member = lan.member("member2")
    epoch = member.keys.epoch + 1
    wall_ms = int((lan.now + 1_800_000_000.0 - 100) * 1000)
    for bad in (bytes(32), b"\xff" * 32):  # the identity's neighbourhood and a non-point
        frame = wire.Keys(wall_ms, ((epoch, bad),)).encode(lan.c.id, 0)
        member.receive_frame(lan.host("member1").mac, signed(lan.keys["member1"], frame), lan.now)
        assert not member.keys.pads.knows(0, epoch, bad)
    rejected = [e for e in member.pop_events() if isinstance(e, FrameRejected)]
    assert [e.reason.value for e in rejected] == ["malformed", "malformed"]


def test_a_second_key_under_one_id_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rounds name ephemeral keys by a 32-bit id: a member that signs two keys under one id
    (2^16 tries find a pair) could use one with a neighbour and prove the other in blame."""
    from lanon.common.crypto import Ephemeral
    from lanon.common.engine import signed
    from lanon.member import pads

    lan = running_lan(3)
    monkeypatch.setattr(pads, "key_id", lambda public: 7)  # every key from now on collides
    member = lan.member("member2")
    epoch = member.keys.epoch + 1
    wall_ms = int((lan.now + 1_800_000_000.0 - 100) * 1000)
    first, second = Ephemeral().public, Ephemeral().public
    for n, key in enumerate((first, second)):
        frame = wire.Keys(wall_ms + n, ((epoch, key),)).encode(lan.c.id, 0)
        member.receive_frame(lan.host("member1").mac, signed(lan.keys["member1"], frame), lan.now)
    known = member.keys.pads.peers[(0, epoch)]
    assert known[7] == first and second not in known.values()  # the first one stays
    rejected = [e for e in member.pop_events() if isinstance(e, FrameRejected)]
    assert [e.reason.value for e in rejected] == ["malformed"]
