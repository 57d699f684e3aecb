"""What every sans-IO engine shares: the command and event outboxes, and frame authentication."""

from __future__ import annotations

import hmac

from lanon.common import wire
from lanon.common.crypto import HostKey, Verifier, mac
from lanon.common.errors import RejectReason, RemoteProtocolError
from lanon.common.events import Command, Event, FrameRejected, SendFrame


class EngineBase:
    def __init__(self) -> None:
        self._commands: list[Command] = []
        self._events: list[Event] = []
        self.verifier = Verifier()

    def pop_commands(self) -> list[Command]:
        out, self._commands = self._commands, []
        return out

    def pop_events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def _event(self, event: Event) -> None:
        self._events.append(event)

    def _send(self, dst: bytes, frame: bytes) -> None:
        self._commands.append(SendFrame(dst, frame))

    def _header(self, frame: bytes, coalition: int) -> wire.Header:
        """The frame's header, if the frame is of our coalition and protocol version."""
        header = wire.pull_header(frame)
        if header.coalition != coalition:
            raise RemoteProtocolError(
                RejectReason.FOREIGN,
                f"coalition {header.coalition:08x}, ours {coalition:08x}: "
                "do all hosts use the same coalition file?",
            )
        return header

    def _reject(self, err: RemoteProtocolError, frame: bytes) -> None:
        kind = frame[1] if len(frame) > 1 else 0
        name = (
            wire.MsgType(kind).name.lower()
            if kind in wire.MsgType.__members__.values()
            else "unknown"
        )
        self._events.append(FrameRejected(err.reason, name, str(err)))

    def _verified(self, public: bytes, frame: bytes) -> bytes:
        """The signed body of `frame`, or RemoteProtocolError(BAD_AUTH)."""
        body, sig = wire.split_auth(frame, wire.SIG_LEN)
        if not self.verifier.verify(public, body, sig):
            raise RemoteProtocolError(RejectReason.BAD_AUTH, "bad signature")
        return body


def signed(key: HostKey, body: bytes) -> bytes:
    return body + key.sign(body)


def maced(key: bytes, body: bytes) -> bytes:
    return body + mac(key, body)


def check_mac(key: bytes, frame: bytes) -> bytes:
    body, tag = wire.split_auth(frame, wire.MAC_LEN)
    if not hmac.compare_digest(mac(key, body), tag):
        raise RemoteProtocolError(RejectReason.BAD_AUTH, "bad MAC")
    return body
