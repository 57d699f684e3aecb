"""What the fuzzer (lanon/lab/fuzz.py) found in the engines, each as a plain reproducer: crashes,
and frames an engine sends that its peers refuse."""

from __future__ import annotations

import dataclasses

from lanon.common import wire
from lanon.common.crypto import mac_key
from lanon.common.engine import maced, sealed
from lanon.common.errors import RejectReason
from lanon.common.events import FrameRejected, SendFrame
from tests.harness import running_lan


def test_a_tree_part_naming_members_beyond_the_coalition_is_rejected_not_fatal() -> None:
    """A child (a member, MACed) sends its parent a TREE_PART whose bitmap is 256 members wide
    and names member #200. The parent used to fold it in and then crash encoding its own part
    ("ValueError: bit 200 outside 0..6" in bitmap_encode, from MemberEngine._forward), in
    receive_frame or in handle_timer: one member could stop any parent's daemon."""
    lan = running_lan(7, latency=0.0005, rounds={"schedule": "tree", "tree_fanout": 2})
    names = {h.mac: h.name for h in lan.hosts.values()}
    for _ in range(500):  # the next TREE_PART on its way from a member to its parent
        found = [
            (src, target, cmd.frame)
            for _at, _seq, src, target, cmd in lan.queue
            if isinstance(cmd, SendFrame)
            and cmd.frame[1] == wire.MsgType.TREE_PART
            and names.get(target, "").startswith("member")
        ]
        if found:
            break
        lan.advance()
    src, target, frame = found[0]
    child, parent = lan.hosts[src], lan.hosts[target]
    real = wire.pull_tree_part(frame[: -wire.MAC_LEN])
    odd = wire.TreePart(
        real.round, real.index, real.count, real.contributors | {200}, 256, real.payload
    )
    body = odd.encode(lan.c.id, lan.c.member(child.name).index)
    key = mac_key(lan.keys[child.name], lan.keys[parent.name].public)

    parent.engine.receive_frame(src, maced(key, body), lan.now)
    lan.run(1.0)  # and its timers, when it forwards what it has

    rejected = [e for e in lan.events(parent.name, FrameRejected) if e.frame == "tree_part"]  # type: ignore[attr-defined]
    assert any(e.reason is RejectReason.MALFORMED for e in rejected)  # type: ignore[attr-defined]


def test_a_member_at_the_last_epoch_announces_keys_its_peers_take() -> None:
    """A gateway's signed OPEN for epoch MAX_EPOCH (the last one whose successor encodes) is
    taken; the member then announces its keys for [epoch, epoch + 1] in one KEYS frame, and
    epoch + 1 = 2**32 - 1 makes every peer refuse the whole frame as malformed: no member learns
    another's key for the epoch, and no round can run. Announce only epochs up to MAX_EPOCH."""
    lan = running_lan(3, 1)
    gw = lan.host("gateway1")
    last_open = [f for src, _dst, f in lan.wire_log if src == gw.mac and f[1] == wire.MsgType.OPEN][
        -1
    ]
    o = wire.pull_open(wire.split_sealed(last_open, len(lan.c.members))[0])
    wall_us = int((lan.now + lan.member("member1").wall_offset) * 1e6)
    odd = dataclasses.replace(o, round=wall_us, leader_ms=wall_us // 1000, epoch=wire.MAX_EPOCH)
    body = odd.encode(lan.c.id, 0)
    lan.wire_log.clear()
    frame = sealed(lan.keys["gateway1"], body, lan.gateway().leader.mac_table)
    lan.host("member1").engine.receive_frame(gw.mac, frame, lan.now)
    lan.collect()
    sent = [f for src, _dst, f in lan.wire_log if f[1] == wire.MsgType.KEYS]
    assert sent
    for frame in sent:
        wire.pull_keys(frame[: -wire.SIG_LEN])  # raises RemoteProtocolError(MALFORMED) today
