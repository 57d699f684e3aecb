"""What every sans-IO engine shares: the command and event outbox (`send`, `command`, `event`)
and frame authentication (`verified`, `trusted`), public to the parts each engine is
made of."""

from __future__ import annotations

import hmac

from lanon.common import wire
from lanon.common.crypto import HostKey, MacTable, Verifier, mac
from lanon.common.errors import RejectReason, RemoteProtocolError
from lanon.common.events import (
    Command,
    Event,
    FilterSources,
    FrameRejected,
    LanFlooded,
    SendFrame,
)
from lanon.common.guard import Door, SenderKey, SignatureGuard


class EnginePart:
    """A part of an engine (leader, tracer, key ring) that stamps frames with the wall clock:
    it reads the engine's offset, which the daemon moves when the host's clock is stepped."""

    e: EngineBase

    @property
    def wall_offset(self) -> float:
        return self.e.wall_offset


class EngineBase:
    # Wall clock minus `now`, for the stamps other hosts check (common/clock.py). The daemon
    # measures it again as it runs, so that a wall clock stepped after start (NTP at boot)
    # moves every stamp with it; the engine's parts read it here, never keep a copy.
    wall_offset: float

    def __init__(self) -> None:
        self._commands: list[Command] = []
        self._events: list[Event] = []
        self.verifier = Verifier()
        self.guard = SignatureGuard()
        self.door = Door()
        self._filter: frozenset[bytes] | None = None  # what the daemon's socket lets through

    def set_wall_offset(self, offset: float, now: float) -> None:
        """The daemon measured the wall clock again and it moved (NTP stepped it)."""
        self.wall_offset = offset

    def pop_commands(self) -> list[Command]:
        out, self._commands = self._commands, []
        return out

    def pop_events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    # The public outbox: the engine's parts (leader, egress, ingress; contributor, inbound,
    # key ring) report through these, never through the lists.

    def pending(self) -> bool:
        """Whether commands or events wait for the daemon (after most frames, none do)."""
        return bool(self._commands) or bool(self._events)

    def event(self, event: Event) -> None:
        self._events.append(event)

    def command(self, command: Command) -> None:
        self._commands.append(command)

    def send(self, dst: bytes, frame: bytes) -> None:
        self.command(SendFrame(dst, frame))

    def _header(self, frame: bytes, coalition: int) -> wire.Header:
        """The frame's header, if the frame is of our coalition and protocol version."""
        header = wire.pull_header(frame)
        if header.coalition != coalition:
            raise wire.foreign_coalition(header.coalition, coalition)
        return header

    def _admit(self, src: bytes, now: float) -> bool:
        """The door: False for a frame from a source that keeps sending what we reject."""
        if self.door.open(src, now):
            return True
        if self.door.shut(now) and self._filter is None:
            self._report_turned_away(now)  # shut now: the kernel filter at once, not at a timer
        return False

    def _report_turned_away(self, now: float) -> None:
        """Report frames turned away unread, and tell the daemon when the door shut or
        opened again (the kernel filter follows it)."""
        n = self.door.take_turned_away()
        if n:
            detail = "from sources whose frames kept being rejected"
            self._events.append(FrameRejected(RejectReason.RATE_LIMITED, "any", detail, n))
        allow = self.door.filter(now)
        if allow != self._filter:
            self._filter = allow
            self.command(FilterSources(allow))
            self._events.append(LanFlooded(allow is not None, len(allow or ())))

    def _reject(self, err: RemoteProtocolError, frame: bytes, src: bytes, now: float) -> None:
        self.door.rejected(src, now)
        if self.door.shut(now) and self._filter is None:
            self._report_turned_away(now)  # shut now: the kernel filter at once, not at a timer
        kind = frame[1] if len(frame) > 1 else 0
        name = (
            wire.MsgType(kind).name.lower()
            if kind in wire.MsgType.__members__.values()
            else "unknown"
        )
        self._events.append(FrameRejected(err.reason, name, str(err)))

    def verified(
        self,
        sender: SenderKey,
        src: bytes,
        public: bytes,
        frame: bytes,
        now: float,
        fresh: bool = True,
    ) -> bytes:
        """The signed body of `frame`, claimed by `sender` and received from `src`; or
        RemoteProtocolError: RATE_LIMITED if the source may not make us check more signatures
        now (cheap checks come before this one), BAD_AUTH if the signature is wrong.

        A good signature on a `fresh` frame (one that passed the replay checks: anybody can
        replay an old one) says where its sender is now: that source is trusted."""
        body, sig = wire.split_auth(frame, wire.SIG_LEN)
        if not self.guard.admit(sender, src, now):
            raise RemoteProtocolError(RejectReason.RATE_LIMITED, f"from {src.hex(':')}")
        if not self.verifier.verify(public, body, sig):
            raise RemoteProtocolError(RejectReason.BAD_AUTH, "bad signature")
        if fresh:
            self.trusted(sender, src)
        return body

    def trusted(self, sender: SenderKey, src: bytes) -> None:
        """A fresh frame of `sender`'s passed its signature or MAC: that is where it is now."""
        self.guard.verified(sender, src)
        self.door.trust(src)


def check_sealed(key: bytes, frame: bytes, index: int, nmembers: int) -> bytes:
    """The body of an OPEN or OUTPUT_HEAD, if member `index`'s MAC in its table is good."""
    body, table, _sig = wire.split_sealed(frame, nmembers)
    if not hmac.compare_digest(mac(key, body), wire.table_entry(table, index)):
        raise RemoteProtocolError(RejectReason.BAD_AUTH, "bad MAC")
    return body


def signed(key: HostKey, body: bytes) -> bytes:
    return body + key.sign(body)


def sealed(key: HostKey, body: bytes, macs: MacTable) -> bytes:
    """An OPEN or OUTPUT_HEAD: the body, one MAC per member (wire.split_sealed), signed."""
    return signed(key, body + macs.of(body))


def maced(key: bytes, body: bytes) -> bytes:
    return body + mac(key, body)


def check_mac(key: bytes, frame: bytes) -> bytes:
    body, tag = wire.split_auth(frame, wire.MAC_LEN)
    if not hmac.compare_digest(mac(key, body), tag):
        raise RemoteProtocolError(RejectReason.BAD_AUTH, "bad MAC")
    return body
