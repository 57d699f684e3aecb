"""The pacer: a round's answer leaves at its moment, however busy this member's daemon is.

A switch observer times each member's answer from the OPEN. The member engine has the answer
ready long before its moment (`rounds.answer_delay` after the OPEN arrived); what could still
show this host's load is the wake-up: a daemon in the middle of its own downloads' packets,
or one the scheduler ranks below idle processes because it has used more of the CPU lately,
sends later than an idle one. So the frames are handed to a small child process, the pacer,
which does nothing else: it sleeps until the moment (at real-time priority where the system
allows it) and sends them on the daemon's LAN socket. Every member's pacer has the same work
whatever its daemon does, so its timing says nothing about the daemon's traffic. Its loop is
compiled (member/pacer_loop.c, built by `pip install`): it wakes twice a round, and in Python
each wake-up ran some 20 µs of interpreter on cores that every member's daemon needs in the same
instant; where it was not built, the same loop runs in Python (`serve`) and the daemon says so.

Protocol on a SOCK_SEQPACKET pair (the daemon's end, the pacer's end):
  daemon -> pacer  `!qQ` due (CLOCK_BOOTTIME ns, the loop's), round; then the answer's whole Ethernet
                   frames, each after its length (`!H`): one message (one wake-up) a round,
                   more only for an answer over MESSAGE_MAX bytes
  pacer -> daemon  `!B` at start: 1 if it runs at real-time priority, 0 if not
                   `!IQq` late answers since the last report (handed over more than
                   LATE_AFTER after their moment, and left then), the last one's round, and
                   how late it was (ns): at most one report every REPORT_EVERY seconds, so a
                   host late every round is not woken every round to hear it
An answer whose moment has passed when the daemon has it is not handed over: the daemon sends
it at once (the pacer would, the moment it woke) and reports it late as the pacer reports its
own (`ProcessPacer.hand_over`). An answer always leaves (a lost round's too: every member's
does, so whether a member took up an ABORT before its moment, which a busy one may not, does
not show).
When the daemon goes, its end closes and the pacer ends. If the pacer cannot start or dies,
the daemon sends the answers itself (`InlinePacer`) and says so.
"""

from __future__ import annotations

import contextlib
import enum
import heapq
import os
import select
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from lanon.common import compiled
from lanon.common.clock import host_clock, host_clock_ns
from lanon.common.loop import precise_timers

SUBMIT = struct.Struct("!qQ")
LENGTH = struct.Struct("!H")
MESSAGE_MAX = 60_000  # bytes a message to the pacer holds: it reads into a 64 KiB buffer
RECEIVE_MAX = 65_536
LATE = struct.Struct("!IQq")
LATE_AFTER = 0.0002  # seconds: later than this after its moment, an answer counts as late
REPORT_EVERY = 0.5  # seconds between two reports of late answers
REALTIME_PRIORITY = 10  # SCHED_FIFO, below the kernel's own threads (50): one send a round
NS = 1_000_000_000

# The pacer finds lanon where its daemon did: the daemon may have found it by more than its
# interpreter's defaults (site directories added at start, as the lab's unprivileged runs do).
BOOT = (
    "import os, runpy, site\n"
    "for d in os.environ.pop('LANON_SITE', '').split(os.pathsep):\n"
    "    if d and os.path.isdir(d): site.addsitedir(d)\n"
    "runpy.run_module('lanon.member.pacer', run_name='__main__', alter_sys=True)\n"
)

# (count, round, late_by): `count` answers left more than LATE_AFTER after their moment (the
# daemon handed them over, or sent them, that late); the last of them was round `round`'s, late
# by `late_by` seconds
Report = Callable[[int, int, float], None]


class Mode(enum.Enum):
    REALTIME = "realtime"  # a pacer process at real-time priority
    PROCESS = "process"  # a pacer process at normal priority (real-time refused here)
    INLINE = "inline"  # the daemon's own loop: its load can show in its answers' timing


class Loop(enum.Enum):
    """The pacer process's loop: compiled where it was built (member/pacer_loop.c), else Python."""

    COMPILED = "compiled"
    PYTHON = "python"


def compiled_loop() -> tuple[Any, str | None]:
    """(the compiled module of the pacer's loop, None), or (None, why it cannot be had: the
    daemon says so). (Its function's name ends in the number of its interface: a module built
    from older source lacks it.)"""
    return compiled.load("member._pacer_loop", needs="lanon_pacer_serve1")


class InlinePacer:
    """The daemon sends the answers itself, from its loop (`due`, `run`)."""

    mode = Mode.INLINE

    def __init__(self, send: Callable[[bytes], object], report: Report) -> None:
        self._send = send
        self._report = report
        self._held: list[tuple[float, int, int, bytes]] = []  # (due, seq, round, frame)
        self._seq = self._reported = 0

    def submit(self, due: float, rnd: int, frame: bytes) -> None:
        self._seq += 1
        heapq.heappush(self._held, (due, self._seq, rnd, frame))

    def hand_over(self) -> None:
        """Nothing to hand over: this loop keeps the frames."""

    @property
    def due(self) -> float:
        return self._held[0][0] if self._held else float("inf")

    def run(self, now: float) -> None:
        """Send every frame due by `now`, and report each answer's departure."""
        if not self._held or self._held[0][0] > now:
            return
        due, rnd = self._held[0][0], self._held[0][2]
        while self._held and self._held[0][0] <= now:
            self._send(heapq.heappop(self._held)[3])
        late_by = now - due  # (the loop's clock: it sends them now)
        if rnd != self._reported and late_by > LATE_AFTER:
            self._reported = rnd
            self._report(1, rnd, late_by)

    def close(self) -> None:
        self._held.clear()


class ProcessPacer:
    """The answers go to a pacer process that sends them at their moment; one the daemon has
    only after its moment leaves from here at once (`hand_over`)."""

    def __init__(
        self,
        lan: socket.socket,
        report: Report,
        lost: Callable[[], None],
        clock: Callable[[], float] = host_clock,
        send: Callable[[bytes], object] | None = None,
        loop: Loop = Loop.COMPILED,
    ) -> None:
        """`lan`: the LAN socket the pacer sends on; `send`: the daemon's way to send a frame
        on it (the socket's own `send`, a full buffer or a link down forgiven, if None);
        `loop`: the pacer's (the compiled one falls back to Python where it was not built)."""
        self._report = report
        self._lost = lost
        self._send = send or _sender(lan)
        self._clock = clock  # the loop's: an answer's moment is on it
        # where the frames of the answer handed over last went: to the pacer (True) or out from
        # here (an answer over MESSAGE_MAX goes in several hand-overs, all the same way)
        self._route: tuple[tuple[float, int], bool] | None = None
        # late answers sent from here, not reported yet: how many, the last one's round and
        # how late it was; reported as the pacer reports its own, at most every REPORT_EVERY
        self._late = self._late_round = 0
        self._late_by = 0.0
        self._reported_at = float("-inf")
        self.ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                # -P: nothing from the working directory comes before lanon's own modules
                [
                    sys.executable,
                    "-P",
                    "-c",
                    BOOT,
                    str(theirs.fileno()),
                    str(lan.fileno()),
                    loop.value,
                ],
                pass_fds=(theirs.fileno(), lan.fileno()),
                stdin=subprocess.DEVNULL,
                env={**os.environ, "LANON_SITE": os.pathsep.join(p for p in sys.path if p)},
            )
        except OSError:
            self.ctl.close()
            raise
        finally:
            theirs.close()
        # Its first word: whether it got real-time priority (it ends without one if it failed).
        self.ctl.settimeout(10.0)
        try:
            hello = self.ctl.recv(16)
        except OSError:
            hello = b""
        if len(hello) != 1:
            self.close()
            raise OSError("the pacer process did not start")
        self.mode = Mode.REALTIME if hello == b"\1" else Mode.PROCESS
        self.ctl.setblocking(False)
        self._kept: tuple[float, int] | None = None  # the (due, round) of the frames kept
        self._frames: list[bytes] = []
        self._size = SUBMIT.size

    def fileno(self) -> int:
        return self.ctl.fileno()

    def submit(self, due: float, rnd: int, frame: bytes) -> None:
        """Keep `frame` for the next `hand_over` (the answer's frames go in one message)."""
        if self._kept is not None and (
            self._kept != (due, rnd) or self._size + LENGTH.size + len(frame) > MESSAGE_MAX
        ):
            self.hand_over()
        self._kept = due, rnd
        self._frames.append(frame)
        self._size += LENGTH.size + len(frame)

    def hand_over(self) -> None:
        """Give the pacer what `submit` kept: one message, so one wake-up, a round. If its
        moment has passed already, the pacer would send it the moment it woke: it is sent
        from here instead, sooner and without waking the pacer (two switches of process and
        its work, on a host whose load has just made an answer late), and counted late for
        `run` to report. Every part of one answer goes the way its first went."""
        if self._kept is None:
            return
        kept = due, rnd = self._kept
        frames, self._kept, self._frames, self._size = self._frames, None, [], SUBMIT.size
        now = self._clock()
        if self._route is None or self._route[0] != kept:
            self._route = kept, now < due
        if self._route[1]:
            head = SUBMIT.pack(int(due * NS), rnd)
            self._tell(head + b"".join(LENGTH.pack(len(f)) + f for f in frames))
            return
        for frame in frames:
            self._send(frame)
        if now - due > LATE_AFTER and rnd != self._late_round:
            self._late, self._late_round, self._late_by = self._late + 1, rnd, now - due

    @property
    def due(self) -> float:
        return float("inf")  # the pacer keeps the time

    def run(self, now: float) -> None:
        """The pacer sends; what is left here is the report of late answers sent from here,
        when one is due (the daemon's timers call this: never from inside its commands)."""
        if self._late and now - self._reported_at >= REPORT_EVERY:
            count, self._late, self._reported_at = self._late, 0, now
            self._report(count, self._late_round, self._late_by)

    def _tell(self, msg: bytes) -> None:
        try:
            self.ctl.send(msg)
        except OSError:
            self._lost()

    def on_readable(self) -> None:
        """The pacer's reports; its end closed: it is gone."""
        while True:
            try:
                msg = self.ctl.recv(64)
            except BlockingIOError:
                return
            except OSError:
                msg = b""
            if not msg:
                self._lost()
                return
            if len(msg) == LATE.size:
                count, rnd, late_by = LATE.unpack(msg)
                self._report(count, rnd, late_by / NS)

    def close(self) -> None:
        self.ctl.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2.0)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _sender(lan: socket.socket) -> Callable[[bytes], object]:
    """Frames sent on `lan` as the pacer sends them: a full buffer or a link down loses one."""

    def send(frame: bytes) -> None:
        with contextlib.suppress(OSError):
            lan.send(frame)

    return send


# --- the pacer process ----------------------------------------------------------------------


def realtime() -> bool:
    """Real-time priority for this process, if the system grants it."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
    except (OSError, AttributeError):
        return False
    return True


def serve(ctl: socket.socket, lan: socket.socket) -> None:
    """Until the daemon's end closes: keep the frames handed over, send each at its moment,
    and report the answers handed over after their moment (the timer's own jitter is the
    same on every member and is not this host's lateness)."""
    held: list[tuple[int, int, int, int, bytes]] = []  # (due ns, seq, round, handed, frame)
    seq = counted = 0
    late = late_by = 0  # not reported yet: how many, and by how much the last (`counted`)
    report_at = 0  # ns: no report before this
    while True:
        timeout = None
        if held:
            timeout = max(0, held[0][0] - host_clock_ns()) / NS
        if late:  # a report waits
            wait = max(0, report_at - host_clock_ns()) / NS
            timeout = wait if timeout is None else min(timeout, wait)
        readable, _, _ = select.select([ctl], [], [], timeout)
        if readable:
            while True:
                try:
                    msg = ctl.recv(RECEIVE_MAX, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                if not msg:
                    return  # the daemon is gone
                if len(msg) < SUBMIT.size:
                    continue  # only the daemon writes here: nothing of the kind is sent
                due, rnd = SUBMIT.unpack_from(msg)
                handed, at = host_clock_ns(), SUBMIT.size
                while at + LENGTH.size <= len(msg):
                    (n,) = LENGTH.unpack_from(msg, at)
                    at += LENGTH.size
                    seq += 1
                    heapq.heappush(held, (due, seq, rnd, handed, msg[at : at + n]))
                    at += n
        now = host_clock_ns()
        if held and held[0][0] <= now:
            due, _seq, rnd, handed, _frame = held[0]
            while held and held[0][0] <= now:
                with contextlib.suppress(OSError):  # a full buffer or a link down: lost
                    lan.send(heapq.heappop(held)[4])
            # A late answer is counted once (its parts may come one by one)
            if handed - due > LATE_AFTER * NS and rnd != counted:
                counted, late_by = rnd, handed - due
                late += 1
        if late and now >= report_at:
            try:
                ctl.send(LATE.pack(late, counted, late_by), socket.MSG_DONTWAIT)
                late = 0
            except OSError:
                pass  # (a full pair: the count waits for the next report)
            report_at = now + int(REPORT_EVERY * NS)


def serve_compiled(ctl: socket.socket, lan: socket.socket) -> bool:
    """`serve`, in compiled code (member/pacer_loop.c): False if it is not built here."""
    module, _why = compiled_loop()
    if module is None:
        return False
    done = module.lib.lanon_pacer_serve1(
        ctl.fileno(), lan.fileno(), int(LATE_AFTER * NS), int(REPORT_EVERY * NS)
    )
    if done != 0:  # (its pair or the clock failed: nothing the Python loop would do better)
        raise OSError(module.ffi.errno, "the pacer's loop ended")
    return True


def main(argv: list[str]) -> int:
    ctl = socket.socket(fileno=int(argv[0]))
    lan = socket.socket(fileno=int(argv[1]))
    loop = argv[2] if len(argv) > 2 else Loop.COMPILED.value
    # A stop signal is for the daemon (the pacer is in its process group): the pacer ends
    # when the daemon's end of the pair closes, after the daemon's last answer.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    precise_timers()
    ctl.send(b"\1" if realtime() else b"\0")
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError, ConnectionResetError):
        if loop != Loop.COMPILED.value or not serve_compiled(ctl, lan):
            serve(ctl, lan)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
