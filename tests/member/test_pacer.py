"""The pacer process sends each answer at its moment, not before, a large one whole; a pacer
that dies is noticed, and one whose daemon goes ends.

A real child process; a datagram socket pair stands in for the LAN socket (the pacer only
sends whole frames on the descriptor it is given)."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from lanon.common.clock import host_clock
from lanon.member.pacer import REPORT_EVERY, InlinePacer, Loop, Mode, ProcessPacer, compiled_loop

FRAME = b"\xff" * 6 + b"\x02" * 6 + b"\x88\xb5" + b"answer"


class Reports:
    def __init__(self) -> None:
        self.got: list[tuple[int, int, float]] = []
        self.lost = 0

    def report(self, count: int, rnd: int, late_by: float) -> None:
        self.got.append((count, rnd, late_by))

    def gone(self) -> None:
        self.lost += 1


def drain(pacer: ProcessPacer, until: float) -> None:
    """The daemon's loop, as far as the pacer goes: its reports read, its timer run."""
    while host_clock() < until:
        pacer.on_readable()
        pacer.run(host_clock())
        time.sleep(0.005)


def test_the_compiled_loop_is_built() -> None:
    """`pip install` builds it (./run's install checks it too): the pacer does not fall back
    to its Python loop unnoticed."""
    assert compiled_loop()[1] is None


@pytest.mark.parametrize("loop", list(Loop))
def test_an_answer_leaves_at_its_moment_and_late_ones_are_reported_together(loop: Loop) -> None:
    """Either loop: the compiled one (as daemons run it) and Python's (a checkout never
    installed), through the same protocol."""
    lan, wire_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    r = Reports()
    pacer = ProcessPacer(lan, r.report, r.gone, loop=loop)
    try:
        assert pacer.mode in (Mode.REALTIME, Mode.PROCESS)
        due = host_clock() + 0.05
        pacer.submit(due, 7, FRAME + b"1")
        pacer.submit(due, 7, FRAME + b"2")
        pacer.hand_over()  # one message for the answer's frames
        wire_end.settimeout(2.0)
        first = wire_end.recv(100)
        arrived = host_clock()
        assert first == FRAME + b"1" and wire_end.recv(100) == FRAME + b"2"
        assert arrived >= due  # never before its moment
        drain(pacer, host_clock() + 0.1)
        assert r.got == []  # handed over in time: nothing to say (the daemon sleeps on)
        # ready after its moment: it leaves at once, from the daemon (the pacer is not woken
        # for it), and the report says how late
        late_due = host_clock() - 0.01
        pacer.submit(late_due, 8, FRAME + b"3")
        told: list[bytes] = []
        tell = pacer._tell
        pacer._tell = told.append  # type: ignore[method-assign]
        pacer.hand_over()
        pacer._tell = tell  # type: ignore[method-assign]
        assert told == []  # the pacer was not woken for it
        assert wire_end.recv(100) == FRAME + b"3"
        drain(pacer, host_clock() + 0.1)
        assert len(r.got) == 1 and r.got[0][:2] == (1, 8) and r.got[0][2] >= 0.01
        # more late ones at once: one report for them all, REPORT_EVERY later (a host late
        # every round is not woken every round to hear it)
        for rnd in (10, 11, 12):
            pacer.submit(host_clock() - 0.01, rnd, FRAME + b"4")
            pacer.hand_over()
            assert wire_end.recv(100) == FRAME + b"4"
        drain(pacer, host_clock() + 0.1)
        assert len(r.got) == 1  # not yet
        drain(pacer, host_clock() + REPORT_EVERY)
        assert len(r.got) == 2 and r.got[1][:2] == (3, 12) and r.got[1][2] >= 0.01
        # an answer larger than one message (big cells, many slots) arrives whole, in order
        big = [FRAME + bytes([k]) * 1400 for k in range(100)]  # 150 KB
        due = host_clock() + 0.05
        for f in big:
            pacer.submit(due, 9, f)
        pacer.hand_over()
        wire_end.settimeout(2.0)
        assert [wire_end.recv(2000) for _ in big] == big
        assert r.lost == 0
    finally:
        pacer.close()
        lan.close()
        wire_end.close()
    assert pacer.proc.returncode == 0  # it ended when the daemon's end closed


@pytest.mark.parametrize("loop", list(Loop))
def test_the_parts_of_one_answer_go_the_way_its_first_went(loop: Loop) -> None:
    """An answer over one message's size is handed over in several: if its moment passes
    between them, the rest still go to the pacer, in order, behind the first (none from the
    daemon ahead of them, no second count of one late answer)."""
    lan, wire_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    wire_end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    r = Reports()
    due = host_clock() + 0.05
    calls: list[float] = []

    def clock() -> float:  # before the moment at the first hand-over, long after it since
        calls.append(0.0)
        return due - 0.01 if len(calls) == 1 else due + 1.0

    pacer = ProcessPacer(lan, r.report, r.gone, clock, loop=loop)
    try:
        big = [FRAME + bytes([k]) * 1400 for k in range(100)]  # three messages
        for f in big:
            pacer.submit(due, 9, f)
        pacer.hand_over()
        assert len(calls) >= 3
        wire_end.settimeout(2.0)
        assert [wire_end.recv(2000) for _ in big] == big
        assert host_clock() >= due  # the pacer sent them all, at the moment
        pacer.run(due + 1.0)
        assert r.got == []  # handed over in time: not late, here or there
    finally:
        pacer.close()
        lan.close()
        wire_end.close()


def test_a_pacer_that_dies_is_noticed_and_ignores_the_daemons_stop_signal() -> None:
    lan, wire_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    r = Reports()
    pacer = ProcessPacer(lan, r.report, r.gone)
    try:
        pacer.proc.send_signal(signal.SIGTERM)  # meant for the daemon (its process group)
        drain(pacer, host_clock() + 0.2)
        assert pacer.proc.poll() is None and r.lost == 0
        pacer.proc.kill()
        pacer.proc.wait()
        drain(pacer, host_clock() + 0.2)
        assert r.lost >= 1
    finally:
        pacer.close()
        lan.close()
        wire_end.close()


def test_the_inline_pacer_sends_what_is_due_in_order() -> None:
    sent: list[bytes] = []
    r = Reports()
    p = InlinePacer(sent.append, r.report)
    p.submit(2.0, 5, b"b")
    p.submit(1.0, 4, b"a")
    assert p.due == 1.0
    p.run(0.5)
    assert sent == []
    p.run(1.0)
    assert sent == [b"a"] and p.due == 2.0
    p.run(3.0)
    assert sent == [b"a", b"b"] and p.due == float("inf")
    assert [(n, rnd) for n, rnd, _ in r.got] == [(1, 5)]  # sent 1 s after its moment
    p.submit(4.0, 6, b"c")
    p.run(4.0001)  # within LATE_AFTER of its moment: in time, nothing said
    assert sent[-1] == b"c" and len(r.got) == 1
