"""The LAN sockets' kernel filters (`rawsock.frame_filter`), run on a small interpreter of the
classic BPF they are made of: each message type reaches exactly one of a member's three
sockets, with the sources' and the flow tags' filters after the kind's. (The kernel runs them
in tests/integration/test_source_filter.py.)"""

from __future__ import annotations

import struct

from lanon.common import wire
from lanon.common.rawsock import TAG_OFFSET, TYPE_OFFSET, Kind, frame_filter
from lanon.member.daemon import INBOUND, OUTPUTS, ROUNDS

_INSN = struct.Struct("=HBBI")
TRUSTED, OTHER = bytes.fromhex("020000000001"), bytes.fromhex("02666c6f6f64")


def run(program: bytes, frame: bytes) -> int:
    """What the kernel would keep of `frame` (0: dropped), for the instructions we emit."""
    insns = [_INSN.unpack_from(program, i) for i in range(0, len(program), _INSN.size)]
    pc, a = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x06:  # ret k
            return k
        if code in (0x20, 0x28, 0x30):  # ld w/h/b [k]
            size = {0x20: 4, 0x28: 2, 0x30: 1}[code]
            if k + size > len(frame):
                return 0  # (the kernel drops a frame read past its end)
            a = int.from_bytes(frame[k : k + size], "big")
        elif code == 0x15:  # jeq k
            pc += jt if a == k else jf
        elif code == 0x05:  # ja k
            pc += k
        else:
            raise AssertionError(f"an instruction the interpreter does not know: {code:#x}")
        pc += 1


def frame(msg_type: int, src: bytes = TRUSTED, tag: int = 0) -> bytes:
    head = b"\xff" * 6 + src + b"\x88\xb5" + bytes([wire.VERSION, msg_type])
    body = head + b"\0" * (TAG_OFFSET - len(head)) + tag.to_bytes(8, "big") + b"x" * 40
    assert body[TYPE_OFFSET] == msg_type
    return body


def passes(kind: Kind, msg_type: int) -> bool:
    return run(frame_filter(None, kind), frame(msg_type)) > 0


def test_every_type_reaches_one_member_socket() -> None:
    for t in range(256):
        reached = [
            name
            for name, k in (("rounds", ROUNDS), ("outputs", OUTPUTS), ("inbound", INBOUND))
            if passes(k, t)
        ]
        if t in (wire.MsgType.OUTPUT_HEAD, wire.MsgType.OUTPUT_PART):
            assert reached == ["outputs"], t
        elif t == wire.MsgType.INBOUND:
            assert reached == ["inbound"], t
        else:
            assert reached == ["rounds"], t


def test_one_type_either_way() -> None:
    only = (frozenset({wire.MsgType.OPEN}), True)
    all_but = (frozenset({wire.MsgType.OPEN}), False)
    for t in range(256):
        assert passes(only, t) == (t == wire.MsgType.OPEN)
        assert passes(all_but, t) == (t != wire.MsgType.OPEN)


def test_sources_and_tags_after_the_kind() -> None:
    ours = 0x0123456789ABCDEF
    program = frame_filter(frozenset({TRUSTED}), INBOUND, frozenset({ours}))
    assert run(program, frame(wire.MsgType.INBOUND, TRUSTED, ours))
    assert not run(program, frame(wire.MsgType.INBOUND, OTHER, ours))  # an untrusted source
    assert not run(program, frame(wire.MsgType.INBOUND, TRUSTED, 0x1111111111111111))
    assert not run(program, frame(wire.MsgType.OPEN, TRUSTED, ours))  # not this socket's kind
    rounds = frame_filter(frozenset({TRUSTED}), ROUNDS)
    assert run(rounds, frame(wire.MsgType.OPEN, TRUSTED))
    assert not run(rounds, frame(wire.MsgType.OPEN, OTHER))
    assert not run(rounds, frame(wire.MsgType.OUTPUT_PART, TRUSTED))
