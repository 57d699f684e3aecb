"""The daemon loop contains what one frame, packet, timer or command does wrong, and goes on.

Played as a script: frames in, an engine that fails on some of them, commands out through the
handler table; no sockets (the real ones run in the integration tests).
"""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from lanon.common.daemon import LAN_BATCH
from lanon.common.daemon_config import load
from lanon.common.events import Command, Event, FilterSources, SendFrame
from lanon.common.templates import write_coalition
from lanon.member.config import MemberSettings
from lanon.member.daemon import INBOUND_PAUSE, INBOUND_PAUSE_AFTER, MemberDaemon


class FlakyEngine:
    """Fails on frames that start with b'!', and on its timer once."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.out: list[Command] = []
        self.timer_fails = True

    def receive_frame(self, src: bytes, frame: bytes, now: float) -> None:
        if frame.startswith(b"!"):
            raise IndexError("a decoder read past its buffer")
        self.got.append(frame)
        self.out.append(SendFrame(b"\xff" * 6, b"answer to " + frame))

    def pending(self) -> bool:
        return bool(self.out)

    def get_timer(self) -> float:
        return 0.0

    def handle_timer(self, now: float) -> None:
        if self.timer_fails:
            self.timer_fails = False
            raise KeyError("a bug in a timer")

    def pop_commands(self) -> list[Command]:
        out, self.out = self.out, []
        return out

    def pop_events(self) -> list[Event]:
        return []


class Lan:
    def __init__(self, frames: list[bytes], truncated: int = 0) -> None:
        self.frames = frames
        self.sent: list[bytes] = []
        self.truncated = truncated  # frames its ring dropped, longer than a slot

    def take_truncated(self) -> int:
        count, self.truncated = self.truncated, 0
        return count

    def receive_stamped(self) -> Iterator[tuple[bytes, bytes, float]]:
        for f in self.frames:
            yield b"\x02" * 6, f, 0.0

    def receive_unstamped(self) -> Iterator[tuple[bytes, bytes, float]]:
        return self.receive_stamped()

    def waiting(self) -> bool:
        return False

    def send(self, dst: bytes, frame: bytes) -> bool:
        if frame.endswith(b"boom"):
            raise OSError(13, "Permission denied")
        self.sent.append(frame)
        return True


@pytest.fixture
def daemon(tmp_path: Path) -> MemberDaemon:
    write_coalition(
        tmp_path, "test", "198.18.0.0/24", [("gateway1", "198.18.0.192/30")], ["m1", "m2", "m3"]
    )
    settings, loaded = load(MemberSettings, tmp_path / "m1.toml", "member")
    d = MemberDaemon(settings, loaded, CollectorRegistry())
    d.engine = FlakyEngine()  # type: ignore[assignment]
    d.outputs = Lan([])  # type: ignore[assignment]  (no round's output waits)
    return d


def errors(d: MemberDaemon, stage: str) -> float:
    value = d.private_registry.get_sample_value("lanon_internal_errors_total", {"stage": stage})
    return value or 0.0


def test_a_frame_that_breaks_the_engine_costs_only_itself(daemon: MemberDaemon) -> None:
    lan = Lan([b"one", b"!crash", b"two", b"boom", b"three"])
    daemon.lan = lan  # type: ignore[assignment]
    daemon.handlers = {SendFrame: lambda cmd: lan.send(cmd.dst, cmd.frame)}
    daemon.on_lan()
    assert daemon.engine.got == [b"one", b"two", b"boom", b"three"]  # type: ignore[attr-defined]
    assert lan.sent == [b"answer to one", b"answer to two", b"answer to three"]
    assert errors(daemon, "lan_frame") == 1 and errors(daemon, "command") == 1
    # what a member's own traffic may trigger stays off its public endpoint
    assert (
        daemon.registry.get_sample_value("lanon_internal_errors_total", {"stage": "lan_frame"})
        is None
    )


class Outputs(Lan):
    """The rounds' outputs' socket: read once, and waiting while it holds a frame."""

    def receive_stamped(self) -> Iterator[tuple[bytes, bytes, float]]:
        frames, self.frames = self.frames, []
        for f in frames:
            yield b"\x02" * 6, f, 0.0

    def waiting(self) -> bool:
        return bool(self.frames)


def test_outputs_wake_nobody_and_are_read_before_what_did(daemon: MemberDaemon) -> None:
    """A round's output is read when the next OPEN wakes the member (it came first), its
    commands and events carried out with the OPEN's, after nothing else; or at any wake-up."""
    flushes: list[list[bytes]] = []
    engine = daemon.engine
    daemon.flush = lambda now: flushes.append(list(engine.got))  # type: ignore[method-assign, attr-defined]
    daemon.outputs = Outputs([b"output 1"])  # type: ignore[assignment]
    daemon.lan = Lan([b"open 2"])  # type: ignore[assignment]
    daemon.on_lan()
    assert engine.got == [b"output 1", b"open 2"]  # type: ignore[attr-defined]
    assert flushes[0] == [b"output 1", b"open 2"]  # no flush between the two
    daemon.outputs = Outputs([b"output 2"])  # type: ignore[assignment]
    daemon.next_refresh = math.inf  # (the gauges ask a real engine)
    daemon._tick(daemon.reactor.clock())  # woken by anything else: the output is read
    assert engine.got[-1] == b"output 2"  # type: ignore[attr-defined]
    assert not daemon.outputs.waiting()


class Filtered:
    """A LAN socket that records the sources' filter it is given."""

    sources_refused = False

    def __init__(self) -> None:
        self.allowed: list[frozenset[bytes] | None] = []

    def allow_only(self, sources: frozenset[bytes] | None) -> None:
        self.allowed.append(sources)


def test_the_doors_filter_closes_every_lan_socket(daemon: MemberDaemon) -> None:
    """A flood's sources are dropped by the kernel on each of the member's three LAN sockets:
    the outputs' too, or forged outputs would fill its ring and crowd out the real ones."""
    socks = daemon.lan, daemon.outputs, daemon.inbound = Filtered(), Filtered(), Filtered()  # type: ignore[assignment]
    trusted = frozenset({b"\x02" * 6})
    daemon._filter_sources(FilterSources(trusted))
    daemon._filter_sources(FilterSources(None))
    assert [s.allowed for s in socks] == [[trusted, None]] * 3


def test_frames_longer_than_the_ring_took_are_said_once(
    daemon: MemberDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    daemon.handlers = {SendFrame: lambda cmd: True}
    lan = Lan([b"one"], truncated=2)
    daemon.lan = lan  # type: ignore[assignment]
    daemon.on_lan()
    daemon.on_lan()  # nothing new: nothing said
    lan.truncated = 3
    daemon.on_lan()  # more, within LOG_EVERY: counted, said with the next
    said = [r.getMessage() for r in caplog.records if "longer than" in r.getMessage()]
    assert said == [
        "2 frames dropped in all, longer than a slot of the receive ring (the LAN interface's "
        "MTU when this daemon started: if it was raised, restart the daemon)"
    ]
    assert daemon.too_long == 5


def test_a_failing_timer_is_contained_and_runs_again(daemon: MemberDaemon) -> None:
    daemon.handlers = {}
    daemon.run_timers(1.0)
    daemon.run_timers(2.0)
    assert errors(daemon, "timer") == 1


def test_the_reactor_survives_a_callback_that_raises(daemon: MemberDaemon) -> None:
    import socket

    r = daemon.reactor
    a, b = socket.socketpair()
    calls: list[int] = []

    def callback() -> None:
        a.recv(16)
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("escaped everything")
        r.stop()

    r.add_reader(a, callback)
    b.send(b"x")
    b.send(b"y")
    ticks = iter(range(10))

    def tick(now: float) -> float:
        if next(ticks) > 5:
            r.stop()
        b.send(b"z")
        return now + 0.01

    r.run(tick)
    a.close()
    b.close()
    r.close()
    assert len(calls) >= 2 and errors(daemon, "loop") == 1


def test_a_members_answer_goes_to_its_pacer_before_its_events_are_reported(
    daemon: MemberDaemon,
) -> None:
    """With a host's cores shared, whatever runs between the OPEN and the hand-over can make
    the answer late: the events of the round (metrics, logs) wait until the pacer has it."""
    from lanon.common.events import Contributed
    from lanon.member.pacer import Mode

    order: list[str] = []

    class Answering(FlakyEngine):
        def __init__(self) -> None:
            super().__init__()
            self.events: list[Event] = []

        def receive_frame(self, src: bytes, frame: bytes, now: float) -> None:
            self.out.append(SendFrame(b"\xff" * 6, b"answer", at=now + 0.0003, round=7))
            self.events.append(Contributed(7, 1, 6, False))

        def pop_events(self) -> list[Event]:
            out, self.events = self.events, []
            return out

        def pending(self) -> bool:
            return bool(self.out) or bool(self.events)

    class Pacer:
        mode = Mode.PROCESS
        due = float("inf")

        def __init__(self) -> None:
            self.kept: list[bytes] = []

        def submit(self, due: float, rnd: int, frame: bytes) -> None:
            self.kept.append(frame)

        def hand_over(self) -> None:
            if self.kept:
                order.append("hand over")
                self.kept = []

        def run(self, now: float) -> None:
            pass

    daemon.engine = Answering()  # type: ignore[assignment]
    daemon.lan = Lan([b"open"])  # type: ignore[assignment]
    daemon.lan.frame = lambda dst, frame: frame  # type: ignore[attr-defined]
    daemon.pacer = Pacer()  # type: ignore[assignment]
    daemon.handlers = {SendFrame: daemon._send}
    daemon.report = lambda events, now: order.append("report")  # type: ignore[method-assign]
    daemon.on_lan()
    assert order == ["hand over", "report"]


class InboundSocket:
    """The daemon's INBOUND socket: its frames once."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames

    def receive_unstamped(self) -> Iterator[tuple[bytes, bytes, float]]:
        frames, self.frames = self.frames, []
        for f in frames:
            yield b"\x02" * 6, f, 0.0

    def take_truncated(self) -> int:
        return 0

    def waiting(self) -> bool:
        return bool(self.frames)


class RoundsLan(Lan):
    """The rounds' socket: a frame waits there after the INBOUND frames named."""

    def __init__(self, frames: list[bytes], after: list[bytes], engine: FlakyEngine) -> None:
        super().__init__(frames)
        self.after, self.engine = after, engine

    def waiting(self) -> bool:
        got = self.engine.got
        return bool(got) and got[-1] in self.after


def test_an_open_is_taken_between_two_inbound_frames_and_a_broken_one_costs_only_itself(
    daemon: MemberDaemon,
) -> None:
    """The INBOUND loop (every member reads every frame of every download): a rounds' frame
    waiting is read after the frame in hand, not after the whole batch; a frame that breaks
    the engine is contained; what a frame leaves is carried out at once."""
    engine = daemon.engine
    lan = RoundsLan([b"open"], [b"in2"], engine)  # type: ignore[arg-type]
    daemon.lan = lan  # type: ignore[assignment]
    daemon.inbound = InboundSocket([b"in1", b"!crash", b"in2", b"in3"])  # type: ignore[assignment]
    daemon.drain = None  # the engine's own path (the compiled one: tests/member/test_drain.py)
    daemon.handlers = {SendFrame: lambda cmd: lan.send(cmd.dst, cmd.frame)}
    daemon._on_inbound()
    assert engine.got == [b"in1", b"in2", b"open", b"in3"]  # type: ignore[attr-defined]
    assert lan.sent == [b"answer to in1", b"answer to in2", b"answer to open", b"answer to in3"]
    assert errors(daemon, "lan_frame") == 1


def test_after_a_busy_read_the_inbound_socket_rests_a_moment_and_comes_back(
    daemon: MemberDaemon,
) -> None:
    """A download's frames are read many at a wake-up: after INBOUND_PAUSE_AFTER frames or
    more, the socket is left alone for INBOUND_PAUSE; after fewer, not at all."""
    engine = daemon.engine
    a, b = socket.socketpair()
    with a, b:
        inbound = InboundSocket([b"in%d" % i for i in range(INBOUND_PAUSE_AFTER - 1)])
        inbound.fileno = a.fileno  # type: ignore[attr-defined]
        daemon.inbound = inbound  # type: ignore[assignment]
        lan = daemon.lan = RoundsLan([], [], engine)  # type: ignore[arg-type, assignment]
        daemon.handlers = {SendFrame: lambda cmd: lan.send(cmd.dst, cmd.frame)}
        daemon.next_refresh = math.inf
        selector = daemon.reactor.sel
        daemon.reactor.add_reader(a.fileno(), daemon._on_inbound)
        daemon._on_inbound()
        assert daemon.inbound_paused_until is None  # a few frames: no rest
        inbound.frames = [b"in%d" % i for i in range(LAN_BATCH + 1)]
        daemon._on_inbound()
        assert daemon.inbound_paused_until is None  # a whole batch: behind, it reads on
        assert inbound.frames == []
        inbound.frames = [b"in%d" % i for i in range(INBOUND_PAUSE_AFTER)]
        now = daemon.reactor.clock()
        daemon._on_inbound()
        until = daemon.inbound_paused_until
        assert until is not None and now + INBOUND_PAUSE <= until <= now + 2 * INBOUND_PAUSE
        assert a.fileno() not in selector.get_map()
        assert daemon._tick(until - INBOUND_PAUSE / 2) <= until  # wakes for it
        assert a.fileno() not in selector.get_map()
        daemon._tick(until)
        assert a.fileno() in selector.get_map() and daemon.inbound_paused_until is None
        daemon.reactor.remove_reader(a.fileno())
