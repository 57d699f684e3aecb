"""`LinkSocket.send_frames` tries every frame of a run, whatever the kernel refuses: a refusal
of the moment (a full queue) is counted as `send_frame` counts it, and the first lasting error
is raised once all were tried, compiled (sendmmsg) or not. (Root only: the frames on a real
link, tests/integration/test_send_frames.py.)"""

from __future__ import annotations

import errno
from typing import Any

import pytest

from lanon.common import rawsock, wire
from lanon.common.rawsock import SEND_BATCH, LinkSocket

MAC = bytes.fromhex("020000000001")
REFUSED = {1: errno.ENOBUFS, 3: errno.EPERM, SEND_BATCH + 5: errno.ENOBUFS}


class Sock:
    def fileno(self) -> int:
        return 99


def link() -> LinkSocket:
    s = LinkSocket.__new__(LinkSocket)  # (no AF_PACKET socket: the calls are played here)
    s.sock, s.mac, s._type, s.send_errors = Sock(), MAC, b"\x88\xb5", 0  # type: ignore[assignment]
    return s


def test_a_run_goes_on_past_a_refused_frame_and_the_lasting_error_is_raised_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []

    def sendmmsg(fd: int, head: bytes, joined: bytes, lens: Any, count: int, errors: Any) -> int:
        assert fd == 99 and head == wire.BROADCAST + MAC + b"\x88\xb5"
        assert len(joined) == sum(lens[i] for i in range(count))
        first = len(calls) * SEND_BATCH
        calls.append(count)
        for i in range(count):
            errors[i] = REFUSED.get(first + i, 0)
        return count - sum(1 for i in range(count) if errors[i])

    monkeypatch.setattr(rawsock, "_send_frames", sendmmsg)
    s = link()
    with pytest.raises(OSError) as raised:
        s.send_frames(wire.BROADCAST, [bytes([i % 256]) * 60 for i in range(SEND_BATCH + 10)])
    assert raised.value.errno == errno.EPERM
    assert calls == [SEND_BATCH, 10]  # (the second run was sent too)
    assert s.send_errors == 2  # the refusals of the moment; the lasting one is raised
    assert s.send_frames(wire.BROADCAST, [b"x"] * 3) == 0


def test_not_compiled_every_frame_is_tried_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rawsock, "_send_frames", None)
    s = link()
    tried: list[bytes] = []

    def send(dst: bytes, payload: bytes) -> bool:
        tried.append(payload)
        if payload == b"lasting":
            raise OSError(errno.EPERM, "refused")
        return payload != b"full"

    s.send = send  # type: ignore[method-assign]
    with pytest.raises(OSError):
        s.send_frames(wire.BROADCAST, [b"a", b"full", b"lasting", b"b"])
    assert tried == [b"a", b"full", b"lasting", b"b"]
    assert s.send_frames(wire.BROADCAST, [b"a", b"full"]) == 1
