"""What the sans-IO engines ask for (commands) and report (events).

Commands must be carried out by the daemon's IO loop; events are observations for metrics, logs
and tests. Both are small frozen dataclasses; the daemon's dispatch ends in
`raise RuntimeError("unexpected command")`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lanon.common.errors import RejectReason
from lanon.common.wire import AbortReason

# --- commands -------------------------------------------------------------------------------


class Command:
    """Base of everything an engine asks its daemon to do."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class SendFrame(Command):
    """Send a lanon frame (EtherType 0x88B5) to `dst` (a MAC, or broadcast)."""

    dst: bytes
    frame: bytes


@dataclass(frozen=True, slots=True)
class SendArp(Command):
    """Send an ARP payload (EtherType 0x0806) to `dst`."""

    dst: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class EmitPacket(Command):
    """Gateway: send an IPv4 packet towards the Internet."""

    packet: bytes


@dataclass(frozen=True, slots=True)
class FilterSources(Command):
    """Let only lanon frames from these Ethernet addresses reach us (a kernel socket filter,
    while the LAN is flooded), or every frame again (None)."""

    allow: frozenset[bytes] | None


@dataclass(frozen=True, slots=True)
class InjectPacket(Command):
    """Member: hand an IPv4 packet to the local stack as if it had been received."""

    packet: bytes


# --- events ---------------------------------------------------------------------------------


class Event:
    """Base of every observation an engine reports."""

    __slots__ = ()


class MemberState(enum.Enum):
    PRESENT = "present"  # in the roster
    FORGIVEN = "forgiven"  # missed a deadline; out of the roster until it says HELLO again
    RESIGNED = "resigned"  # absent longer than forgive_rounds


class RetryReason(enum.Enum):
    RESERVATION_COLLISION = "reservation_collision"
    DATA_COLLISION = "data_collision"
    DEFERRED = "deferred"  # claim was valid but the round was full
    ROUND_LOST = "round_lost"  # aborted, or its output never arrived
    VETOED = "vetoed"  # the round's roster did not meet this member's anonymity policy


class RefuseReason(enum.Enum):
    """Why a member declined to contribute to a round it was asked into."""

    ROSTER_TOO_SMALL = "roster_too_small"
    WEAK_KEY_GRAPH = "weak_key_graph"
    CLOCK = "clock"  # the leader's time is too far from ours: maybe a replayed OPEN
    MISSING_KEY = "missing_key"  # the round names an ephemeral key we do not have
    STALE_ROUND = "stale_round"  # at or below a round we answered (a leader that paused)


class VetoReason(enum.Enum):
    """Why a member put no data into a round (its own anonymity policy)."""

    FEW_MEMBERS = "few_members"  # below the policy's minimum number of members
    SHRUNK = "shrunk"  # below its fraction of the members seen recently
    WEAK_KEY_GRAPH = "weak_key_graph"  # the roster's key graph is below the policy's k


@dataclass(frozen=True, slots=True)
class FrameRejected(Event):
    reason: RejectReason
    frame: str  # the frame's type (lowercase MsgType name), "unknown" if unreadable
    detail: str = ""
    count: int = 1  # frames turned away unread are reported together


@dataclass(frozen=True, slots=True)
class LanFlooded(Event):
    """Untrusted sources sent more rejected frames than the LAN can hold: only trusted sources
    are read for a while (`active`), or all are again."""

    active: bool
    trusted: int  # how many sources still get through


@dataclass(frozen=True, slots=True)
class RoundOpened(Event):
    round: int
    epoch: int
    nslots: int
    roster: int  # members expected


@dataclass(frozen=True, slots=True)
class RoundCompleted(Event):
    round: int
    duration: float  # seconds from OPEN to output (leader) or from OPEN to output seen (member)
    nslots: int
    used: int  # slots that carried a cell
    garbled: int  # data collisions (slot check failed)
    claims: int  # valid reservation entries
    collisions: int  # reservation entries where claims collided
    deferred: int  # valid claims that found no slot


@dataclass(frozen=True, slots=True)
class RoundAborted(Event):
    round: int
    reason: AbortReason
    missing: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MemberChanged(Event):
    name: str
    state: MemberState


@dataclass(frozen=True, slots=True)
class LanonDisbanded(Event):
    """Too few members present: rounds stop until enough are back."""

    present: int
    needed: int
    detail: str


@dataclass(frozen=True, slots=True)
class LanonResumed(Event):
    present: int


@dataclass(frozen=True, slots=True)
class EpochChanged(Event):
    epoch: int


@dataclass(frozen=True, slots=True)
class LeadershipChanged(Event):
    leader: bool
    round: int


@dataclass(frozen=True, slots=True)
class PacketEmitted(Event):
    size: int


@dataclass(frozen=True, slots=True)
class PacketDropped(Event):
    """A packet lanon could not carry (bounded reason strings)."""

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class InboundBroadcast(Event):
    size: int
    parts: int


@dataclass(frozen=True, slots=True)
class FlowOpened(Event):
    proto: int
    address: str


@dataclass(frozen=True, slots=True)
class FlowClosed(Event):
    proto: int
    address: str
    reason: str  # "fin", "rst", "idle"


@dataclass(frozen=True, slots=True)
class PortExhausted(Event):
    proto: int
    address: str


@dataclass(frozen=True, slots=True)
class AddressClaimed(Event):
    address: str
    takeover: bool
    silence: float = 0.0  # takeover: seconds since its previous holder was last heard


@dataclass(frozen=True, slots=True)
class AddressReleased(Event):
    address: str


@dataclass(frozen=True, slots=True)
class ArpAnswered(Event):
    address: str


@dataclass(frozen=True, slots=True)
class LinkChanged(Event):
    """The gateway's LAN link went down (it let go of everything) or came back."""

    up: bool


@dataclass(frozen=True, slots=True)
class GatewayChanged(Event):
    name: str
    alive: bool


# member-only observations: they stay on the member and are never sent anywhere


@dataclass(frozen=True, slots=True)
class PacketQueued(Event):
    cells: int
    queue_cells: int  # cells waiting after this one


@dataclass(frozen=True, slots=True)
class CellDelivered(Event):
    wait: float  # seconds from queueing to emerging in a round output


@dataclass(frozen=True, slots=True)
class CellRetried(Event):
    reason: RetryReason
    backoff: int  # rounds to wait before claiming again


@dataclass(frozen=True, slots=True)
class Contributed(Event):
    round: int
    frames: int
    size: int  # bytes of vector sent (identical for every member of the round)
    busy: bool  # whether this member had data in it (local knowledge only)


@dataclass(frozen=True, slots=True)
class RoundRefused(Event):
    round: int
    reason: RefuseReason
    detail: str


@dataclass(frozen=True, slots=True)
class RoundVetoed(Event):
    """This member answered a round with an idle vector: its roster or key graph did not meet
    the member's own anonymity policy (local knowledge only: never sent anywhere)."""

    round: int
    reason: VetoReason
    size: int  # members in the round's roster
    k: int  # connectivity of the key graph among them


@dataclass(frozen=True, slots=True)
class Joining(Event):
    """Not in the roster: a HELLO was sent."""

    round: int


@dataclass(frozen=True, slots=True)
class InboundDelivered(Event):
    size: int


@dataclass(frozen=True, slots=True)
class OutputSeen(Event):
    """A member received and checked the output of a round it contributed to."""

    round: int
    latency: float  # seconds from OPEN to complete output
    nslots: int


@dataclass(frozen=True, slots=True)
class FlowsReceived(Event):
    """A gateway that just came got the leader's flow table."""

    sender: str
    added: int
    refused: int  # records whose port another flow holds here


# gateway: addresses it will not claim (ARP probing, RFC 5227 style)


class ClaimRefusal(enum.Enum):
    """Why a gateway will not claim an anonymous address."""

    ROUTER = "router"  # the LAN's router (the gateway host's default route goes through it)
    OWN_ADDRESS = "own_address"  # an address of the gateway host itself
    IN_USE = "in_use"  # another host answered a probe for it, or sent an ARP from it


@dataclass(frozen=True, slots=True)
class AddressRefused(Event):
    """The gateway will not claim an anonymous address (in_use: until a probe finds it free)."""

    address: str
    reason: ClaimRefusal
    mac: str = ""  # in_use: the host that answered for it or sent an ARP from it
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AddressDefended(Event):
    """A host that is not a lanon gateway sent an ARP from an address this gateway holds: it
    announced the address again (a second conflict soon after makes it give the address up)."""

    address: str
    mac: str


@dataclass(frozen=True, slots=True)
class AddressFree(Event):
    """An address refused as in use was probed and nobody answered: it may be claimed."""

    address: str
