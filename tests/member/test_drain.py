"""The compiled INBOUND path (member/drain.py, member/inbound_drain.c) against the engine's.

The ring here is memory laid out as the kernel lays out a TPACKET_V2 receive ring; the frames
are a simulated coalition's real INBOUND frames, genuine, forged, replayed and malformed. What
must hold: it is built; every member does the same libsodium work on every frame, the owner
of its flow or not (the attacker floods forgeries of a flow's tag and watches); the owner gets
from it exactly what the engine's own opener would have given; anything it does not take is
left, untouched, for the engine's own path; it stops where the loop must look elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from lanon.common import flowkey, wire
from lanon.common.daemon_config import load
from lanon.common.events import InboundRefusal, InboundRefused, InjectPacket
from lanon.common.flowkey import InboundCipher
from lanon.common.packet import UDP, Flow
from lanon.common.rxring import RxRing
from lanon.common.sodium import AES_GCM_MISSING
from lanon.common.templates import write_coalition
from lanon.lab.memring import SRC, MemoryRing
from lanon.member import drain
from lanon.member.config import MemberSettings
from lanon.member.daemon import MemberDaemon
from lanon.member.drain import OUT_LEN, InboundDrain, Stop
from lanon.member.engine import MAX_DRAIN_TAGS, MemberEngine
from lanon.member.inbound import OpenedInbound
from tests.harness import Lan, running_lan
from tests.packets import udp


def native() -> Any:
    module, why = drain.load()
    assert module is not None, f"the compiled INBOUND path: {why}"
    return module


def a_drain(
    ring: MemoryRing, lan: Lan, name: str, rounds: MemoryRing | None = None
) -> InboundDrain:
    eng = lan.member(name)
    d = InboundDrain(
        native(),
        ring,  # type: ignore[arg-type]
        rounds or MemoryRing(count=2),  # type: ignore[arg-type]
        bytes(32),
        cipher=eng.c.coalition.inbound_cipher,
    )
    d.follow(eng.c.id, len(eng.c.gateways))
    d.set_owned(eng.owned_keys())
    return d


# The sim's, as new files have it (AES-256-GCM where this machine has it)
SIM = InboundCipher.AES256_GCM if AES_GCM_MISSING is None else InboundCipher.CHACHA20_POLY1305
CIPHERS = pytest.mark.parametrize("cipher", list(InboundCipher), ids=lambda c: c.value)


def calls(lan: Lan) -> int:
    """libsodium calls a frame: one with AES-256-GCM, two with ChaCha20-Poly1305."""
    return 1 if lan.c.coalition.inbound_cipher is InboundCipher.AES256_GCM else 2


def reply_frames(cipher: InboundCipher = SIM) -> tuple[Lan, bytes]:
    """A coalition of 4 where member1 has a flow, and that flow's last INBOUND frame."""
    lan = running_lan(4, coalition={"inbound_cipher": cipher.value})
    lan.submit("member1", udp(payload=b"ping"))
    lan.run_until(lambda: bool(lan.host("member1").injected))
    return lan, lan.frames(wire.MsgType.INBOUND)[-1][2]


def forged(genuine: bytes, n: int) -> list[bytes]:
    """`n` forgeries of `genuine` (later numbers, a payload byte flipped)."""
    seq = int.from_bytes(genuine[8:16], "big")
    out = []
    for i in range(n):
        f = bytearray(genuine)
        f[8:16] = (seq + 1 + i).to_bytes(8, "big")
        f[40 + i % 20] ^= 0x5A
        out.append(bytes(f))
    return out


def run(d: InboundDrain, ring: MemoryRing, frames: list[bytes]) -> list[OpenedInbound]:
    """`frames` through the ring and the drain, a ring's worth at a time."""
    ours: list[OpenedInbound] = []
    for i in range(0, len(frames), ring.count):
        for f in frames[i : i + ring.count]:
            ring.put(f)
        while True:
            stop, _ = d.drain(1000, float("inf"))
            ours += d.take_ours()
            if stop is Stop.EMPTY:
                break
            assert stop is Stop.FULL
    return ours


def test_it_is_built() -> None:
    """`./run` compiles it at install: a machine where it was not would read in Python."""
    native()


@CIPHERS
def test_the_owner_does_the_same_work_as_everyone_on_forgeries_replays_and_the_genuine(
    cipher: InboundCipher,
) -> None:
    """The attacker floods forgeries and replays of a flow's tag (tags are on the wire): the
    owner's libsodium work is everyone's, and none of them reaches its Python: they are
    counted in C, and told to it as two numbers."""
    lan, genuine = reply_frames(cipher)
    frames = [genuine, *forged(genuine, 2000), *[genuine] * 100]
    work, refused, ours = {}, {}, {}
    for name in ("member1", "member2", "member3"):
        ring = MemoryRing()
        d = a_drain(ring, lan, name)
        ours[name] = len(run(d, ring, frames))
        work[name] = d.work
        refused[name] = d.take_refused()
    assert work["member1"] == work["member2"] == work["member3"], work
    calls, chacha20, poly1305, aes = work["member1"]
    size = len(genuine) - wire.INBOUND_OVERHEAD
    if cipher is InboundCipher.AES256_GCM:  # one call: CTR and GHASH, opened or not
        assert (calls, chacha20, poly1305) == (len(frames), 0, 0)
        assert aes == (size + wire.INBOUND_HEAD) * len(frames)
    else:
        assert calls == 2 * len(frames) and aes == 0
        assert chacha20 == size * len(frames)
        assert poly1305 == (size + wire.INBOUND_HEAD) * len(frames)
    # the owner took the genuine frame before (its number is seen): all 2,101 refused
    assert ours == {"member1": 0, "member2": 0, "member3": 0}
    assert refused == {"member1": (2000, 101), "member2": (0, 0), "member3": (0, 0)}


@CIPHERS
def test_the_owner_gets_what_its_opener_would_give_and_the_engine_takes_it_alike(
    cipher: InboundCipher,
) -> None:
    """The genuine frame opened, its forgeries and replays refused: in private, as through
    the engine's own path; nothing for anyone else."""
    lan, genuine = reply_frames(cipher)
    frames = [genuine, *forged(genuine, 40), genuine]
    owner = lan.member("member1")
    inbound = wire.pull_inbound(genuine)
    flow = owner.flows.by_tag(inbound.tag)
    assert flow is not None and flow.inbound_seq
    flow.inbound_seq.clear()  # as if it had not seen it yet
    ring = MemoryRing()
    d = a_drain(ring, lan, "member1")
    ours = run(d, ring, frames)
    expected = flowkey.open_part(
        flow.secret, 0, inbound.seq, genuine[: wire.INBOUND_HEAD], inbound.payload, cipher
    )
    assert ours == [
        OpenedInbound(0, inbound.seq, inbound.tag, inbound.index, inbound.count, expected)
    ]
    assert d.take_refused() == (40, 1)
    owner.pop_commands()
    owner.pop_events()
    owner.receive_opened(ours[0], lan.now)
    owner.inbound_refused(40, 1)
    injected = [c for c in owner.pop_commands() if isinstance(c, InjectPacket)]
    assert len(injected) == 1 and injected[0].packet.endswith(b"ping")
    refused = [e for e in owner.pop_events() if isinstance(e, InboundRefused)]
    assert [(e.reason, e.count) for e in refused] == [
        (InboundRefusal.BAD_SEAL, 40),
        (InboundRefusal.REPLAY, 1),
    ]
    for name in ("member2", "member3"):
        ring = MemoryRing()
        d = a_drain(ring, lan, name)
        assert run(d, ring, frames) == [] and d.take_refused() == (0, 0)


def test_a_number_taken_before_it_was_told_our_tags_is_a_replay() -> None:
    """The numbers the engine has taken come with our tags (`owned_keys`)."""
    lan, genuine = reply_frames()
    ring = MemoryRing()
    d = a_drain(ring, lan, "member1")  # member1 took `genuine` already
    assert run(d, ring, [genuine]) == [] and d.take_refused() == (0, 1)


def malformed(genuine: bytes, coalition: int) -> dict[str, bytes]:
    def at(i: int, value: bytes) -> bytes:
        return genuine[:i] + value + genuine[i + len(value) :]

    return {
        "short": genuine[: wire.INBOUND_HEAD + 15],
        "version": at(0, bytes([wire.VERSION + 1])),
        "type": at(1, bytes([wire.MsgType.OPEN])),
        "coalition": at(2, (coalition ^ 1).to_bytes(4, "big")),
        "no such gateway": at(6, (9).to_bytes(2, "big")),
        "no parts": at(25, b"\x00"),
        "part past the count": at(24, bytes([genuine[25]])),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "short",
        "version",
        "type",
        "coalition",
        "no such gateway",
        "no parts",
        "part past the count",
        "cut",
        "closed source",
    ],
)
def test_what_it_does_not_take_stays_in_its_slot_for_the_engine(kind: str) -> None:
    lan, genuine = reply_frames()
    eng: MemberEngine = lan.member("member2")
    ring = MemoryRing()
    d = a_drain(ring, lan, "member2")
    ring.put(forged(genuine, 1)[0])
    if kind == "cut":
        ring.put(genuine, cut=True)
    elif kind == "closed source":
        closed = b"\x02" + bytes(5)
        d.set_door({closed, b"\x02" * 6}, None)
        ring.put(genuine, src=closed)
    else:
        ring.put(malformed(genuine, eng.c.id)[kind])
    ring.put(genuine)
    assert d.drain(100, float("inf")) == (Stop.PYTHON, 1)
    assert ring.next == 1 and ring.status(1) == 1  # still the kernel's frame, unread
    python = RxRing.frames(ring, 1)  # type: ignore[arg-type]
    assert len(list(python)) == (0 if kind == "cut" else 1)
    d.set_door(frozenset(), None)
    assert d.drain(100, float("inf")) == (Stop.EMPTY, 1)
    assert ring.next == 3 and all(ring.status(i) == 0 for i in range(3))


def test_it_passes_over_this_hosts_own_frames_and_wraps_around_the_ring() -> None:
    lan, genuine = reply_frames()
    ring = MemoryRing(count=4)
    d = a_drain(ring, lan, "member2")
    for f in forged(genuine, 3):
        ring.put(f)
    assert d.drain(100, float("inf")) == (Stop.EMPTY, 3)
    ring.put(genuine, outgoing=True)
    for f in forged(genuine, 2):
        ring.put(f)
    assert d.drain(100, float("inf")) == (Stop.EMPTY, 3)
    assert ring.next == 2
    assert d.work[0] == 5 * calls(lan)  # the outgoing frame was not opened


def test_it_stops_for_a_rounds_frame_the_timer_and_its_limit() -> None:
    lan, genuine = reply_frames()
    ring, rounds = MemoryRing(), MemoryRing(count=4)
    d = a_drain(ring, lan, "member2", rounds)
    for f in forged(genuine, 6):
        ring.put(f)
    assert d.drain(2, float("inf")) == (Stop.LIMIT, 2)
    assert d.drain(100, 0.0) == (Stop.TIMER, 1)  # one frame, then the timer that is due
    rounds.put(b"an OPEN")
    assert d.drain(100, float("inf")) == (Stop.ROUNDS, 1)
    rounds.next = 1  # the loop read it
    assert d.drain(100, float("inf")) == (Stop.EMPTY, 2)


def sealed_frames(lan: Lan, genuine: bytes, n: int, size: int = 0) -> list[tuple[bytes, bytes]]:
    """`n` genuine frames of member1's flow, after `genuine`, each of `size` bytes of part, or
    (no size) each with `genuine`'s packet: (frame, part)."""
    flow = lan.member("member1").flows.by_tag(wire.pull_inbound(genuine).tag)
    assert flow is not None
    seq = int.from_bytes(genuine[8:16], "big")
    cipher = lan.member("member1").c.coalition.inbound_cipher
    packet = flowkey.open_part(flow.secret, 0, seq, genuine[:26], genuine[26:], cipher)
    out = []
    for i in range(n):
        head = genuine[:8] + (seq + 1 + i).to_bytes(8, "big") + genuine[16:24] + b"\x00\x01"
        part = bytes([i]) * size if size else packet
        assert part is not None
        sealed = flowkey.seal_part(flow.secret, 0, seq + 1 + i, head, part, cipher)
        out.append((head + sealed, part))
    return out


def test_when_its_output_is_full_it_stops_and_goes_on_once_it_is_taken() -> None:
    lan, genuine = reply_frames()
    frames = sealed_frames(lan, genuine, 200, 1400)
    assert OUT_LEN < 200 * 1400
    ring = MemoryRing(count=256)
    d = a_drain(ring, lan, "member1")
    for f, _ in frames:
        ring.put(f)
    stops, ours = [], []
    while True:
        stop, taken = d.drain(1000, float("inf"))
        got = d.take_ours()
        assert len(got) == taken
        ours += got
        stops.append(stop)
        if stop is Stop.EMPTY:
            break
    assert stops[0] is Stop.FULL and stops[-1] is Stop.EMPTY
    assert [o.part for o in ours] == [p for _, p in frames]


def test_a_flow_that_ends_is_no_longer_opened_as_ours() -> None:
    lan, genuine = reply_frames()
    ring = MemoryRing()
    d = a_drain(ring, lan, "member1")
    d.set_owned({})
    assert run(d, ring, [genuine]) == []
    assert d.work[0] == calls(lan)


@pytest.fixture
def daemon(tmp_path: Path) -> MemberDaemon:
    write_coalition(
        tmp_path, "test", "198.18.0.0/24", [("gateway1", "198.18.0.192/30")], ["m1", "m2", "m3"]
    )
    settings, loaded = load(MemberSettings, tmp_path / "m1.toml", "member")
    return MemberDaemon(settings, loaded, CollectorRegistry())


class Rounds:
    """The rounds' socket, as the daemon looks at it: a frame waits after the n-th packet."""

    def __init__(self, order: list[str], after: int) -> None:
        self.order, self.after = order, after

    def waiting(self) -> bool:
        return self.order.count("inject") == self.after and "open" not in self.order


class ErrorHoldingSocket:
    def __init__(self) -> None:
        self.asked = 0

    def getsockopt(self, level: int, name: int) -> int:
        self.asked += 1
        return 0


def test_the_daemon_looks_at_the_rounds_between_two_frames_of_ours(daemon: MemberDaemon) -> None:
    """An OPEN that comes while the owner takes its download's frames is read after the frame
    in hand, not after them all (its answer would leave later than everyone's)."""
    lan, genuine = reply_frames()
    order: list[str] = []
    daemon.engine = lan.member("member1")
    daemon.reactor.clock = lambda: lan.now
    daemon.handlers = {InjectPacket: lambda cmd: order.append("inject")}
    daemon.lan = Rounds(order, 3)  # type: ignore[assignment]
    daemon.on_lan = lambda: order.append("open")  # type: ignore[method-assign]
    ring = MemoryRing()
    daemon.drain = InboundDrain(native(), ring, MemoryRing(count=2), bytes(32), cipher=SIM)  # type: ignore[arg-type]
    for frame, _ in sealed_frames(lan, genuine, 10):
        ring.put(frame)
    assert daemon._drain_inbound(daemon.drain) == 10
    assert order == ["inject"] * 3 + ["open"] + ["inject"] * 7


def test_woken_for_nothing_the_daemon_takes_the_error_the_socket_holds(
    daemon: MemberDaemon,
) -> None:
    """A link that went down leaves an error on the socket, which keeps it readable: read
    for nothing, it is taken, or the loop would spin."""
    lan, _genuine = reply_frames()
    daemon.engine = lan.member("member2")
    daemon.reactor.clock = lambda: lan.now
    sock = ErrorHoldingSocket()
    ring = MemoryRing()
    d = InboundDrain(native(), ring, MemoryRing(count=2), bytes(32), sock, cipher=SIM)  # type: ignore[arg-type]
    assert daemon._drain_inbound(d) == 0 and sock.asked == 1


def packet_frames(lan: Lan, genuine: bytes, parts: int, first: int) -> tuple[list[bytes], bytes]:
    """`genuine`'s packet cut into `parts` parts, sealed as a gateway seals them, numbered
    from `first`: (frames, the packet)."""
    flow = lan.member("member1").flows.by_tag(wire.pull_inbound(genuine).tag)
    assert flow is not None
    seq = int.from_bytes(genuine[8:16], "big")
    cipher = lan.member("member1").c.coalition.inbound_cipher
    packet = flowkey.open_part(flow.secret, 0, seq, genuine[:26], genuine[26:], cipher)
    assert packet is not None
    size = -(-len(packet) // parts)
    frames = []
    for i in range(parts):
        n = first + i
        head = genuine[:8] + n.to_bytes(8, "big") + genuine[16:24] + bytes([i, parts])
        chunk = packet[i * size : (i + 1) * size]
        frames.append(head + flowkey.seal_part(flow.secret, 0, n, head, chunk, cipher))
    return frames, packet


def test_a_packet_whose_parts_came_together_comes_whole_and_the_engine_delivers_it() -> None:
    lan, genuine = reply_frames()
    seq = int.from_bytes(genuine[8:16], "big")
    frames, packet = packet_frames(lan, genuine, 4, seq + 1)
    ring = MemoryRing()
    ours = run(a_drain(ring, lan, "member1"), ring, frames)
    assert ours == [OpenedInbound(0, seq + 4, wire.pull_inbound(genuine).tag, 0, 1, packet)]
    owner = lan.member("member1")
    owner.pop_commands()
    owner.receive_opened(ours[0], lan.now)
    injected = [c for c in owner.pop_commands() if isinstance(c, InjectPacket)]
    assert len(injected) == 1 and injected[0].packet.endswith(b"ping")


def test_parts_that_did_not_all_come_together_go_one_by_one_and_the_engine_joins_them() -> None:
    """The rest of a packet in a later read, a part lost: the engine puts the parts
    together, as it does for parts it opened itself. (A part that comes after a later one
    is refused as a replay, in C as in the engine.)"""
    lan, genuine = reply_frames()
    seq = int.from_bytes(genuine[8:16], "big")
    frames, _packet = packet_frames(lan, genuine, 4, seq + 1)
    owner = lan.member("member1")
    owner.pop_commands()
    ring = MemoryRing()
    d = a_drain(ring, lan, "member1")
    first = run(d, ring, [frames[0], frames[1]])
    assert [(o.index, o.count, o.seq) for o in first] == [(0, 4, seq + 1), (1, 4, seq + 2)]
    then = run(d, ring, [frames[2], frames[3]])
    assert [(o.index, o.count, o.seq) for o in then] == [(2, 4, seq + 3), (3, 4, seq + 4)]
    lost = run(
        d, ring, [f for i, f in enumerate(packet_frames(lan, genuine, 4, seq + 5)[0]) if i != 1]
    )
    assert [(o.index, o.count) for o in lost] == [(0, 4), (2, 4), (3, 4)]
    for opened in first + then:
        owner.receive_opened(opened, lan.now)
    injected = [c for c in owner.pop_commands() if isinstance(c, InjectPacket)]
    assert len(injected) == 1 and injected[0].packet.endswith(b"ping")


def test_while_the_door_is_shut_only_the_sources_it_lets_in_are_read_here() -> None:
    """A flood shut the door: the engine turns away the rest (and counts them); the compiled
    path goes on for the sources it trusts, so that forged frames from them cost every
    member alike."""
    lan, genuine = reply_frames()
    ring = MemoryRing()
    d = a_drain(ring, lan, "member2")
    d.set_door(frozenset(), frozenset({SRC}))
    ring.put(genuine)
    ring.put(genuine, src=b"\x02" + bytes(5))
    assert d.drain(100, float("inf")) == (Stop.PYTHON, 1)
    d.set_door(frozenset(), None)
    assert d.drain(100, float("inf")) == (Stop.EMPTY, 1)


def test_a_packet_cut_by_a_full_output_is_kept_until_its_rest_is_read() -> None:
    lan, genuine = reply_frames()
    seq = int.from_bytes(genuine[8:16], "big")
    frames, packet = packet_frames(lan, genuine, 4, seq + 1)
    ring = MemoryRing()
    d = a_drain(ring, lan, "member1")
    for f in frames[:2]:
        ring.put(f)
    d.drain(100, float("inf"))
    assert d.take_ours(more=True) == []  # (as if the output had been full)
    assert d.holding
    for f in frames[2:]:
        ring.put(f)
    d.drain(100, float("inf"))
    assert [(o.index, o.count, o.part) for o in d.take_ours()] == [(0, 1, packet)]
    assert not d.holding


class InboundFrames:
    """The INBOUND socket, read by the engine's own path."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames

    def receive_unstamped(self) -> Any:
        frames, self.frames = self.frames, []
        return ((SRC, f, 0.0) for f in frames)

    def take_truncated(self) -> int:
        return 0


def test_the_parts_the_compiled_path_kept_reach_the_engine_when_python_reads_on(
    daemon: MemberDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A packet cut by a full output: its first parts wait in the compiled path for the rest.
    If the engine's own path reads on from there (more flows than the compiled path takes,
    the coalition left), they go to the engine first, which puts them together with the rest
    it reads itself (after the rest, they would be refused as replays: their numbers are
    lower)."""
    lan, genuine = reply_frames()
    owner = lan.member("member1")
    daemon.engine = owner
    daemon.reactor.clock = lambda: lan.now
    injected: list[bytes] = []
    daemon.handlers = {InjectPacket: lambda cmd: injected.append(cmd.packet)}
    seq = int.from_bytes(genuine[8:16], "big")
    frames, _packet = packet_frames(lan, genuine, 4, seq + 1)
    ring = MemoryRing()
    d = daemon.drain = a_drain(ring, lan, "member1")
    for f in frames[:2]:
        ring.put(f)
    d.drain(100, float("inf"))
    assert d.take_ours(more=True) == []  # (as if the output had been full)
    daemon.inbound = InboundFrames(frames[2:])  # type: ignore[assignment]
    daemon.lan = Rounds([], 1)  # type: ignore[assignment]  (no rounds' frame waits)
    monkeypatch.setattr(owner, "drain_may_read", lambda: False)
    daemon._on_inbound()
    assert len(injected) == 1 and injected[0].endswith(b"ping")
    replays = daemon.private_registry.get_sample_value(
        "lanon_member_inbound_rejected_total", {"reason": "replay"}
    )
    assert not replays


def test_a_frame_the_engine_took_itself_is_a_replay_here_once_it_is_told(
    daemon: MemberDaemon,
) -> None:
    """While the compiled path could not read (the engine's own path took our frames), the
    numbers moved on: its table follows, and a replay of them never reaches Python."""
    lan, genuine = reply_frames()
    owner = lan.member("member1")
    daemon.engine = owner
    daemon.reactor.clock = lambda: lan.now
    daemon.handlers = {InjectPacket: lambda cmd: None}
    opened: list[OpenedInbound] = []
    owner.receive_opened = lambda o, now: opened.append(o)  # type: ignore[method-assign]
    ring = MemoryRing()
    d = daemon.drain = InboundDrain(native(), ring, MemoryRing(count=2), bytes(32), cipher=SIM)  # type: ignore[arg-type]
    daemon._drain_inbound(d)  # told our tags
    frames = [f for f, _ in sealed_frames(lan, genuine, 2)]
    for f in frames:
        owner.receive_frame(SRC, f, lan.now)  # the engine's own path
    for f in frames:
        ring.put(f)
    daemon._drain_inbound(d)
    assert opened == []
    replays = daemon.private_registry.get_sample_value(
        "lanon_member_inbound_rejected_total", {"reason": "replay"}
    )
    assert replays == 2  # counted in C, told in private


def test_past_max_drain_tags_flows_the_engine_reads_its_frames_itself() -> None:
    """The compiled path's table of our tags is made again whenever a flow comes or goes, at
    a cost that grows with them: past MAX_DRAIN_TAGS, the engine's own path reads."""
    lan = running_lan(3)
    eng = lan.member("member1")
    assert eng.drain_may_read()
    for port in range(MAX_DRAIN_TAGS + 1 - len(eng.flows)):
        eng.flows.outbound(Flow(UDP, bytes([198, 18, 0, 11]), 20000 + port, bytes(4), 53), lan.now)
    assert not eng.drain_may_read()
