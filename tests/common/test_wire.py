import contextlib
import random

import pytest

from lanon.common import wire
from lanon.common.errors import RejectReason, RemoteProtocolError

CID, SENDER = 0xDEADBEEF, 3


def test_open_roundtrip() -> None:
    o = wire.Open(10**15, 7, 1_800_000_000_123, 4, 64, frozenset({0, 2, 9}), 10, (11, 22, 33))
    frame = o.encode(CID, SENDER)
    h = wire.pull_header(frame)
    assert (h.type, h.coalition, h.sender) == (wire.MsgType.OPEN, CID, SENDER)
    assert wire.pull_open(frame) == o
    assert o.key_of() == {0: 11, 2: 22, 9: 33}
    with pytest.raises(RemoteProtocolError):
        wire.pull_open(frame[:-1])


def test_parts_heads_aborts_inbound_hello_heartbeat_roundtrip() -> None:
    part = wire.Part(5, 1, 3, b"abc")
    assert wire.pull_part(part.encode(wire.MsgType.CONTRIB, CID, 1)) == part
    head = wire.OutputHead(5, 99, 64, 2, (b"a" * 16, b"b" * 16))
    assert wire.pull_output_head(head.encode(CID, 0)) == head
    abort = wire.Abort(5, wire.AbortReason.DEADLINE, frozenset({1}), 4)
    assert wire.pull_abort(abort.encode(CID, 0)) == abort
    inbound = wire.Inbound(123, 2**63 + 5, 0, 2, b"packet")
    frame = inbound.encode(CID, 0)
    assert wire.pull_inbound(frame) == inbound
    assert wire.peek_inbound_tag(frame) == inbound.tag
    hello = wire.Hello(42, b"f" * 16)
    assert wire.pull_hello(hello.encode(CID, 2)) == hello
    hb = wire.Heartbeat(9, 8, 3, True, frozenset({0, 5}), 8)
    assert wire.pull_heartbeat(hb.encode(CID, 1)) == hb
    keys = wire.Keys(77, ((4, b"k" * 32), (5, b"l" * 32)))
    assert wire.pull_keys(keys.encode(CID, 2)) == keys
    refuse = wire.Refuse(12, 3)
    assert wire.pull_refuse(refuse.encode(CID, 2)) == refuse


def test_bitmap() -> None:
    assert wire.bitmap_decode(wire.bitmap_encode({0, 7, 8, 12}, 13), 13) == {0, 7, 8, 12}
    with pytest.raises(ValueError):
        wire.bitmap_encode({13}, 13)
    with pytest.raises(RemoteProtocolError):
        wire.bitmap_decode(b"\x00", 13)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x01",
        wire.HEADER.pack(wire.VERSION, 99, CID, 0),  # unknown type
        wire.HEADER.pack(wire.VERSION, wire.MsgType.OPEN, CID, 0) + b"\x00" * 5,  # short body
        wire.Part(1, 3, 3, b"").encode(wire.MsgType.CONTRIB, CID, 0),  # index >= count
        wire.Part(1, 0, 0, b"").encode(wire.MsgType.CONTRIB, CID, 0),  # zero count
    ],
)
def test_malformed_frames_are_remote_errors(frame: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        h = wire.pull_header(frame)
        {wire.MsgType.OPEN: wire.pull_open, wire.MsgType.CONTRIB: wire.pull_part}[h.type](frame)
    assert info.value.reason is RejectReason.MALFORMED


def test_other_version_is_foreign() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        wire.pull_header(wire.HEADER.pack(wire.VERSION + 1, 1, CID, 0))
    assert info.value.reason is RejectReason.FOREIGN


def test_random_bytes_never_raise_anything_but_remote_errors() -> None:
    """Every decoder (found by name, so that a new one is included), on random bytes; the
    fuzzer (test_fuzz.py) drives them harder, with mutations of real frames."""
    rng = random.Random(3)
    names = sorted(n for n in dir(wire) if n.startswith(("pull_", "peek_")))
    assert {"pull_keys", "pull_refuse", "pull_tree_part", "pull_flows"} <= set(names)
    pullers = [getattr(wire, n) for n in names]
    for _ in range(3000):
        frame = rng.randbytes(rng.randrange(0, 80))
        for pull in pullers:
            with contextlib.suppress(RemoteProtocolError):
                if pull is wire.pull_inbound_frame:  # (of its coalition: the deeper checks too)
                    pull(frame, int.from_bytes(frame[2:6], "big"))
                else:
                    pull(frame)
        with contextlib.suppress(RemoteProtocolError):
            wire.bitmap_decode(frame, rng.randrange(0, 8 * len(frame) + 9))


def test_split_vector() -> None:
    assert wire.split_vector(b"abcdefg", 3) == [b"abc", b"def", b"g"]
    assert wire.part_count(7, 3) == 3
    assert wire.part_count(0, 3) == 1
