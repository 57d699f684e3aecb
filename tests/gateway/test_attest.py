"""A member's signed ATTEST rides at the end of its last CONTRIB part where the round's shape
has room for it (one frame less a member a round), and goes in a frame of its own where it
has not; the leader keeps it either way, for blame, and takes neither form out of place."""

from __future__ import annotations

from lanon.common import wire
from lanon.common.crypto import Verifier
from lanon.common.engine import maced
from lanon.common.errors import RejectReason
from lanon.common.events import FrameRejected, RoundCompleted
from lanon.common.reservation import MIN_ENTRIES
from lanon.gateway.leader import Leader
from lanon.lab.sim import Lan, running_lan


def leader_of(lan: Lan) -> Leader:
    return lan.gateway().leader


def attests_kept_and_good(lan: Lan) -> int:
    """Rounds the leader kept with every roster member's ATTEST, each signed by its member."""
    verifier, good = Verifier(), 0
    for kept in leader_of(lan).kept.values():
        assert set(kept.attests) == set(kept.roster)
        for m, signed_attest in kept.attests.items():
            body, sig = wire.split_auth(signed_attest, wire.SIG_LEN)
            assert verifier.verify(lan.c.members[m].public, body, sig)
            assert wire.pull_attest(body).round == kept.round
        good += 1
    return good


def test_the_attest_rides_in_the_last_part_where_it_fits() -> None:
    lan = running_lan()
    lan.wire_log.clear()
    lan.run(0.5)
    assert lan.c.attest_rides(lan.c.part_lens(1, MIN_ENTRIES)[-1])  # a quiet round: one frame
    assert not lan.frames(wire.MsgType.ATTEST)  # none of its own
    assert attests_kept_and_good(lan) > 5
    assert not lan.all_events(FrameRejected)


def test_a_round_without_room_takes_an_attest_frame_of_its_own() -> None:
    # 4 entries (64 bytes) and an express cell of 1400 bytes fill one part: no room after it
    lan = running_lan(coalition={"cell_size": 1400})
    assert not lan.c.attest_rides(lan.c.part_lens(1, 4)[-1])
    lan.wire_log.clear()
    lan.run(0.5)
    attests = lan.frames(wire.MsgType.ATTEST)
    rounds = len(lan.events("gateway1", RoundCompleted))
    assert attests and rounds > 5
    assert attests_kept_and_good(lan) > 5
    assert not lan.all_events(FrameRejected)


def test_an_attest_out_of_its_place_is_refused() -> None:
    """A member (or a replayer) that sends its ATTEST in a frame of its own where it should
    ride, or a last part without it: refused as malformed, nothing kept of it."""
    lan = running_lan()
    gw = lan.gateway()
    member = lan.member("member1")
    leader = leader_of(lan)
    lan.run_until(lambda: leader.collecting is not None)
    col = leader.collecting
    assert col is not None and col.attest_rides
    signed_attest = member.rounds._attest(col.round, [bytes(n) for n in col.part_lens], b"x" * 16)
    key = member.rounds.mac_keys[0]
    gw.pop_events()
    gw.receive_frame(b"\x02" * 6, maced(key, signed_attest), lan.now)  # a frame of its own
    last = wire.Part(
        col.round, len(col.part_lens) - 1, len(col.part_lens), bytes(col.part_lens[-1])
    )
    frame = maced(key, last.encode(wire.MsgType.CONTRIB, lan.c.id, member.me.index))
    gw.receive_frame(b"\x02" * 6, frame, lan.now)  # its last part without one
    rejected = [e for e in gw.pop_events() if isinstance(e, FrameRejected)]
    assert [e.reason for e in rejected] == [RejectReason.MALFORMED, RejectReason.MALFORMED]
    assert member.me.index not in col.attests


def test_an_attest_that_names_another_member_or_round_is_refused() -> None:
    """The ATTEST at the end of a part came through no engine's header check: one signed by its
    member but naming another member, another coalition or another round would be taken by
    nobody in blame (the member would escape it): refused, and the member is out of the
    round (redone without it at the deadline)."""
    lan = running_lan()
    gw, member, leader = lan.gateway(), lan.member("member1"), leader_of(lan)
    key, me = member.rounds.mac_keys[0], member.me.index
    for header_sender, coalition, round_offset in (
        (me + 1, lan.c.id, 0),
        (me, lan.c.id ^ 1, 0),
        (me, lan.c.id, 1),
    ):
        lan.run_until(lambda: leader.collecting is not None and me not in leader.collecting.bad)
        col = leader.collecting
        assert col is not None and col.attest_rides
        attest = wire.Attest(col.round + round_offset, len(col.part_lens), bytes(16), bytes(16))
        body = attest.encode(coalition, header_sender)
        signed_attest = body + member.keys.key.sign(body)  # its own signature: not a forgery
        last = wire.Part(
            col.round, len(col.part_lens) - 1, len(col.part_lens), bytes(col.part_lens[-1])
        )
        frame = last.encode(wire.MsgType.CONTRIB, lan.c.id, me) + signed_attest
        gw.pop_events()
        gw.receive_frame(b"\x02" * 6, maced(key, frame), lan.now)
        rejected = [e for e in gw.pop_events() if isinstance(e, FrameRejected)]
        assert [e.reason for e in rejected] == [RejectReason.MALFORMED]
        assert me in col.bad and me not in col.attests
        lan.run(0.3)  # the round is redone without it, and the next ones take it again
