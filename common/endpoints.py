"""Services at anonymous endpoints (seed 000 §4, §4.4): what a member and the gateways say.

A member offering a service draws a service key, as it would a flow key (common/flowkey.py):
its tag is the key's hash, and the key reaches the gateways wrapped in the first cells. It
asks for an endpoint, an (anonymous address, port), with a REGISTER sealed under that key in
an ordinary cell, so the request is as anonymous as any packet. Every gateway reads it from
the round output and binds the same endpoint to the tag (gateway/endpoints.py); the one that
holds the address answers GRANTED, sealed under the key in an INBOUND frame, so only the
requester recognises its endpoint. From then on the endpoint's inbound packets are broadcast
under the tag, like a flow's replies, and the service's answers leave in cells under it.

A sealed IPv4 packet starts with 0x45; these messages start with a kind below 0x40.

A coalition may pin an endpoint (`[[endpoints]]`: an address and port that stay across
restarts and failovers). Whoever holds the endpoint's private key may bind it: the REGISTER
then carries a signature of the tag and of when the service started (`since_ms`), and the
service that started last wins: a restarted or moved service takes its endpoint over, and an
older copy that still runs elsewhere is refused (STALE) instead of taking it back. No gateway
learns which member holds the key.

Services' cells are sealed with the SERVICE flag (common/flowkey.py): their tag names an
endpoint, never a flow, so a gateway that lost the binding (a restart) drops the service's
answers until its next REGISTER (every REFRESH) instead of mistaking them for a new flow.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from lanon.common.crypto import HostKey, verify_signature

REGISTER_KIND = 0x01
GRANTED_KIND = 0x02
REFUSED_KIND = 0x03
_REGISTER = struct.Struct("!BB4sHQ")  # kind, protocol, anonymous address, port, since (ms)
_GRANTED = struct.Struct("!BB4sH")  # kind, protocol, anonymous address, port
_REFUSED = struct.Struct("!BB")  # kind, why
SIG_LEN = 64
PIN_PERSON = b"lanon-endpoint-pin\x00"
MAX_SERVICES = 8  # a member's services; the gateways bind at most this many per member
REFRESH = 10.0  # a member repeats its REGISTER this often once granted (or refused)
RETRY = 3.0  # and this often while no answer comes
FIRST_ASK = 10.0  # the first REGISTER waits a random time up to this after the member's start
PIN_TOLERANCE_MS = 120_000  # a pinned REGISTER's start time may be this far ahead of the lanon


def is_control(packet: bytes) -> bool:
    """Whether a sealed cell's or INBOUND frame's content is one of these messages."""
    return bool(packet) and packet[0] < 0x40


class Refusal(enum.IntEnum):
    """Why the gateways did not bind an endpoint (the value is on the wire)."""

    PROTOCOL = 1  # only TCP and UDP services
    NOT_ANONYMOUS = 2  # the address asked for is none of the lanon's
    EXHAUSTED = 3  # no free port on that address
    TOO_MANY = 4  # the lanon's endpoints are all taken (MAX_SERVICES a member)
    BAD_PIN = 5  # a pinned endpoint, without a valid signature of its key
    STALE = 6  # a pinned endpoint served by a copy of the service that started later
    TAG_IN_USE = 7  # the tag names a flow

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Register:
    proto: int
    anon: bytes
    port: int  # the port asked for (0: any)
    since_ms: int  # when the service started (wall clock): the latest wins a pinned endpoint
    signature: bytes = b""  # for a pinned endpoint: its key's, over `pin_message`

    def encode(self) -> bytes:
        head = _REGISTER.pack(REGISTER_KIND, self.proto, self.anon, self.port, self.since_ms)
        return head + self.signature


def pull_register(data: bytes) -> Register:
    """Raises ValueError for anything but a REGISTER."""
    if len(data) not in (_REGISTER.size, _REGISTER.size + SIG_LEN) or data[0] != REGISTER_KIND:
        raise ValueError("not a REGISTER")
    _, proto, anon, port, since_ms = _REGISTER.unpack_from(data)
    return Register(proto, anon, port, since_ms, data[_REGISTER.size :])


@dataclass(frozen=True, slots=True)
class Granted:
    proto: int
    anon: bytes
    port: int

    def encode(self) -> bytes:
        return _GRANTED.pack(GRANTED_KIND, self.proto, self.anon, self.port)


@dataclass(frozen=True, slots=True)
class Refused:
    why: Refusal

    def encode(self) -> bytes:
        return _REFUSED.pack(REFUSED_KIND, self.why)


Answer = Granted | Refused


def pull_answer(data: bytes) -> Answer:
    """Raises ValueError for anything but GRANTED or REFUSED."""
    if len(data) == _GRANTED.size and data[0] == GRANTED_KIND:
        _, proto, anon, port = _GRANTED.unpack(data)
        return Granted(proto, anon, port)
    if len(data) == _REFUSED.size and data[0] == REFUSED_KIND:
        try:
            return Refused(Refusal(data[1]))
        except ValueError:
            raise ValueError(f"unknown refusal {data[1]}") from None
    raise ValueError("not an endpoint answer")


def pin_message(
    identity: bytes, tag: int, proto: int, anon: bytes, port: int, since_ms: int
) -> bytes:
    """What a pinned endpoint's key signs to bind it to the service of `tag`: the
    coalition, the tag and the service's start (a copied REGISTER binds only its own tag, and
    an older service's loses to a newer)."""
    head = _REGISTER.pack(0, proto, anon, port, since_ms)
    return PIN_PERSON + identity + head + tag.to_bytes(8, "big")


def sign_pin(key: HostKey, identity: bytes, tag: int, request: Register) -> Register:
    r = request
    message = pin_message(identity, tag, r.proto, r.anon, r.port, r.since_ms)
    return Register(r.proto, r.anon, r.port, r.since_ms, key.sign(message))


def pin_holds(public: bytes, identity: bytes, tag: int, request: Register) -> bool:
    if len(request.signature) != SIG_LEN:
        return False
    r = request
    message = pin_message(identity, tag, r.proto, r.anon, r.port, r.since_ms)
    return verify_signature(public, message, r.signature)
