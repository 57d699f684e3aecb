"""What the sans-IO engines ask for (commands) and report (events).

Commands must be carried out by the daemon's IO loop; events are observations for metrics, logs
and tests. Both are small frozen dataclasses; the daemon's dispatch ends in
`raise RuntimeError("unexpected command")`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lanon.common.errors import RejectReason
from lanon.common.packet import Unsupported
from lanon.common.parts import PartDrop
from lanon.common.wire import AbortReason

# --- commands -------------------------------------------------------------------------------


class Command:
    """Base of everything an engine asks its daemon to do."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class SendFrame(Command):
    """Send a lanon frame (EtherType 0x88B5) to `dst` (a MAC, or broadcast); a round's answer
    at its moment `at` (engine time, of the round `round`), anything else at once (`at` 0)."""

    dst: bytes
    frame: bytes
    at: float = 0.0
    round: int = 0


@dataclass(frozen=True, slots=True)
class SendArp(Command):
    """Send an ARP payload (EtherType 0x0806) to `dst`."""

    dst: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class SaveCoalition(Command):
    """A new version of the coalition file was applied: write it where it was loaded from, so
    that the next start runs it too."""

    text: str


@dataclass(frozen=True, slots=True)
class SaveWallet(Command):
    """The member's tokens changed (member/wallet.py): write them to its wallet file, so that
    none bought is lost to a restart."""

    text: str


@dataclass(frozen=True, slots=True)
class KeepSequence(Command):
    """The gateway's inbound sequence numbers will reach `mark` before it says again: write it
    to its sequence file before any frame that follows, so that a restart starts above every
    number used, whatever its clock says (they are nonces under flows' keys)."""

    mark: int


@dataclass(frozen=True, slots=True)
class MakeCredentialKey(Command):
    """The rating issuer's gateway needs its key for `period` (a few hundred ms of work: the
    daemon makes it off the loop and hands it to `GatewayEngine.credential_key`)."""

    period: int


@dataclass(frozen=True, slots=True)
class AdoptNextKey(Command):
    """A version gave this host the key `lanon rekey` made: it replaces the old one on disk."""


@dataclass(frozen=True, slots=True)
class EmitPacket(Command):
    """Gateway: send an IPv4 packet towards the Internet."""

    packet: bytes


@dataclass(frozen=True, slots=True)
class FilterSources(Command):
    """Let only lanon frames from these Ethernet addresses reach us (a kernel socket filter,
    while the LAN is flooded), or every frame again (None)."""

    allow: frozenset[bytes] | None


# Flow tags a FilterInbound names at most: two socket filter instructions each, and the kernel
# charges a filter (its classic and its converted program) to net.core.optmem_max, 20 KiB on
# kernels before 6.8. More flows: every INBOUND frame (None).
MAX_FILTER_TAGS = 256


@dataclass(frozen=True, slots=True)
class FilterInbound(Command):
    """Member: let only the INBOUND frames of these flow tags (our flows' and services') reach
    the daemon (a kernel socket filter: another member's frames cost this host nothing above
    the kernel), or every INBOUND frame (None: more flows than a filter names)."""

    tags: frozenset[int] | None


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
    CORRUPTED = "corrupted"  # a reserved slot, ours alone, emerged other than we wrote it
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


class FragmentDrop(enum.Enum):
    """Why the gateway's defragmenter gave up fragments (gateway/defrag.py)."""

    MALFORMED = "malformed"  # not an IPv4 fragment that can be part of a datagram
    TOO_LARGE = "too_large"  # the datagram would exceed 65,535 bytes
    OVERLAP = "overlap"  # two fragments claim the same bytes differently
    INCONSISTENT = "inconsistent"  # two different ends, or data past the end
    TOO_MANY_FRAGMENTS = "too_many_fragments"
    EVICTED = "evicted"  # made room for newer datagrams (pending count or bytes)
    TIMEOUT = "timeout"


@enum.unique
class DropReason(enum.Enum):
    """Why a packet was not carried; the value is the metric label (`..._packets_dropped_total`).

    Build the ones that follow another enum with `outbound`, `inbound`, `cells`, `fragments`
    and `prohibited`, never from strings on the hot path.
    """

    # a member's own outbound packets (`outbound(Unsupported)`, then the member's own checks)
    NOT_IPV4 = "not_ipv4"
    TRUNCATED = "truncated"
    FRAGMENT = "fragment"
    PROTOCOL = "protocol"  # neither TCP, UDP nor ICMP echo (also: gateway, out of a cell)
    TOO_LARGE = "too_large"  # (also: gateway, DF set and above the LAN MTU)
    IP_OPTIONS = "ip_options"  # options could identify the sender
    FLOW_TABLE_FULL = "flow_table_full"
    QUEUE_FULL = "queue_full"
    RETIRED = "retired"  # a version of the coalition left this member out
    # gateway: packets out of round outputs
    MALFORMED = "malformed"  # not a packet lanon carries
    NOT_ANONYMOUS = "not_anonymous"  # its source is no anonymous address
    TAG_CONFLICT = "tag_conflict"
    CELLS_MISMATCH = "cells_mismatch"  # `cells(PartDrop)`: the cell reassembler gave it up
    CELLS_MALFORMED = "cells_malformed"
    CELLS_EVICTED = "cells_evicted"
    CELLS_TIMEOUT = "cells_timeout"
    PROHIBITED_BROADCAST = "prohibited_broadcast"  # `prohibited(class)`: refused destinations
    PROHIBITED_LAN = "prohibited_lan"
    PROHIBITED_LOCAL = "prohibited_local"
    PROHIBITED_RESERVED = "prohibited_reserved"
    PROHIBITED_LOOPBACK = "prohibited_loopback"
    PROHIBITED_LINK_LOCAL = "prohibited_link_local"
    PROHIBITED_MULTICAST = "prohibited_multicast"
    PROHIBITED_PRIVATE = "prohibited_private"
    # gateway: packets from the Internet
    INBOUND_NOT_IPV4 = "inbound_not_ipv4"  # `inbound(Unsupported)`
    INBOUND_TRUNCATED = "inbound_truncated"
    INBOUND_FRAGMENT = "inbound_fragment"
    INBOUND_PROTOCOL = "inbound_protocol"
    INBOUND_TOO_LARGE = "inbound_too_large"
    INBOUND_FRAGMENTS_MALFORMED = "inbound_fragments_malformed"  # `fragments(FragmentDrop)`
    INBOUND_FRAGMENTS_TOO_LARGE = "inbound_fragments_too_large"
    INBOUND_FRAGMENTS_OVERLAP = "inbound_fragments_overlap"
    INBOUND_FRAGMENTS_INCONSISTENT = "inbound_fragments_inconsistent"
    INBOUND_FRAGMENTS_TOO_MANY_FRAGMENTS = "inbound_fragments_too_many_fragments"
    INBOUND_FRAGMENTS_EVICTED = "inbound_fragments_evicted"
    INBOUND_FRAGMENTS_TIMEOUT = "inbound_fragments_timeout"
    NO_FLOW = "no_flow"  # for an address we hold, but no flow of ours
    NO_ENDPOINT = "no_endpoint"  # a service's answer before the gateways gave it an endpoint
    # gateway: sealed packets out of cells (common/flowkey.py)
    SEAL_MALFORMED = "seal_malformed"  # not laid out as a sealed packet
    BAD_SEAL = "bad_seal"  # not sealed under its flow's key, or a wrap not for this tag
    NO_FLOW_KEY = "no_flow_key"  # a flow whose key we never got (no wrap yet)
    REPLAYED = "replayed"  # a counter this flow's packets already used
    UNPAID = "unpaid"  # beyond the flow's free allowance and what tokens paid (seed 001)

    @classmethod
    def outbound(cls, reason: Unsupported) -> DropReason:
        """A member's outbound packet that `packet.parse` refused."""
        return _OUTBOUND[reason]

    @classmethod
    def inbound(cls, reason: Unsupported) -> DropReason:
        """A packet from the Internet that `packet.parse` refused."""
        return _INBOUND[reason]

    @classmethod
    def cells(cls, reason: PartDrop) -> DropReason:
        """A packet the gateway's cell reassembler gave up."""
        return _CELLS[reason]

    @classmethod
    def fragments(cls, reason: FragmentDrop) -> DropReason:
        """Fragments from the Internet that the gateway's defragmenter gave up."""
        return _FRAGMENTS[reason]

    @classmethod
    def prohibited(cls, destination: str) -> DropReason:
        """A destination the gateway never emits to, by its class ("lan", "private", the
        classes of `coalition.NEVER_EMITTED`, ...): read once, when the classes are set up."""
        return cls("prohibited_" + destination)


_OUTBOUND = {
    Unsupported.NOT_IPV4: DropReason.NOT_IPV4,
    Unsupported.TRUNCATED: DropReason.TRUNCATED,
    Unsupported.FRAGMENT: DropReason.FRAGMENT,
    Unsupported.PROTOCOL: DropReason.PROTOCOL,
    Unsupported.TOO_LARGE: DropReason.TOO_LARGE,
}
_INBOUND = {
    Unsupported.NOT_IPV4: DropReason.INBOUND_NOT_IPV4,
    Unsupported.TRUNCATED: DropReason.INBOUND_TRUNCATED,
    Unsupported.FRAGMENT: DropReason.INBOUND_FRAGMENT,
    Unsupported.PROTOCOL: DropReason.INBOUND_PROTOCOL,
    Unsupported.TOO_LARGE: DropReason.INBOUND_TOO_LARGE,
}
_CELLS = {
    PartDrop.MISMATCH: DropReason.CELLS_MISMATCH,
    PartDrop.MALFORMED: DropReason.CELLS_MALFORMED,
    PartDrop.EVICTED: DropReason.CELLS_EVICTED,
    PartDrop.TIMEOUT: DropReason.CELLS_TIMEOUT,
}
_FRAGMENTS = {
    FragmentDrop.MALFORMED: DropReason.INBOUND_FRAGMENTS_MALFORMED,
    FragmentDrop.TOO_LARGE: DropReason.INBOUND_FRAGMENTS_TOO_LARGE,
    FragmentDrop.OVERLAP: DropReason.INBOUND_FRAGMENTS_OVERLAP,
    FragmentDrop.INCONSISTENT: DropReason.INBOUND_FRAGMENTS_INCONSISTENT,
    FragmentDrop.TOO_MANY_FRAGMENTS: DropReason.INBOUND_FRAGMENTS_TOO_MANY_FRAGMENTS,
    FragmentDrop.EVICTED: DropReason.INBOUND_FRAGMENTS_EVICTED,
    FragmentDrop.TIMEOUT: DropReason.INBOUND_FRAGMENTS_TIMEOUT,
}


@dataclass(frozen=True, slots=True)
class PacketDropped(Event):
    """A packet lanon could not carry."""

    reason: DropReason
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
class EndpointAsked(Event):
    """A service's REGISTER was decided (gateway/endpoints.py): 'bound' (a new endpoint),
    or why not; refreshes are not told."""

    outcome: str


@dataclass(frozen=True, slots=True)
class TokensIssued(Event):
    """A gateway answered a BUY (common/tokens.py): `count` blind signatures of `kind`
    ('payment' or 'credential'), or `refusal`. The provider knows who bought: the member."""

    kind: str
    member: str
    count: int
    refusal: str = ""


@dataclass(frozen=True, slots=True)
class TokenRedeemed(Event):
    """A payment token read from the outputs: 'accepted', 'double_spent' or 'bad' (never who
    spent it: nobody here knows)."""

    outcome: str


@dataclass(frozen=True, slots=True)
class OfferMismatch(Event):
    """Another gateway of our operator offers otherwise (prices, allowance or token key):
    members see two offers, and tokens of one key are refused at the other's gateways."""

    gateway: str
    what: str


@dataclass(frozen=True, slots=True)
class RatingRelayed(Event):
    """A rating heard in the outputs (or an agency's) that this gateway passed on."""

    kind: str


@dataclass(frozen=True, slots=True)
class ProviderChosen(Event):
    """This member's new flows leave through another provider now (member/choice.py): local."""

    operator: str
    score: float
    reason: str


@dataclass(frozen=True, slots=True)
class WalletChanged(Event):
    """Tokens bought, spent or refused (member/wallet.py): local."""

    operator: str
    held: int
    spent: int
    detail: str


@dataclass(frozen=True, slots=True)
class ServiceChanged(Event):
    """One of this member's services got an endpoint, another, or was refused (local only)."""

    name: str
    state: str  # member/services.py ServiceState
    endpoint: str  # "address:port" while serving
    refused: str = ""  # why not (common/endpoints.py Refusal, its label)


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
class AckReplaced(Event):
    """A pure TCP ACK took the place of its flow's earlier one still in the queue (it says
    everything that one said): one cell fewer to send (RFC 3449 §5.2.2)."""


@dataclass(frozen=True, slots=True)
class CellDelivered(Event):
    wait: float  # seconds from queueing to emerging in a round output


@dataclass(frozen=True, slots=True)
class CellRetried(Event):
    reason: RetryReason
    backoff: int  # rounds to wait before claiming again


@dataclass(frozen=True, slots=True)
class AccusationJudged(Event):
    """A gateway read an accusation in a round output (common/accusation.py) and judged it
    (gateway/accusations.py: `judgement` is a `Judgement` value). Nothing in it says who."""

    round: int
    slot: int
    bit: int
    judgement: str


@dataclass(frozen=True, slots=True)
class TraceStarted(Event):
    """The leader traces an accused bit (gateway/tracer.py): BLAME went out."""

    round: int
    bit: int


@dataclass(frozen=True, slots=True)
class TraceEnded(Event):
    """A trace is over: `outcome` is a `blame.Outcome` value (or "untraceable": schedule tree,
    no member's own contribution is kept; "unkept": the leader does not hold that round's), `named` whom the evidence shows wrote into the slot or lied,
    `silent` who revealed nothing. `since_round`: seconds from the accused round's opening."""

    round: int
    bit: int
    outcome: str
    named: tuple[str, ...]
    silent: tuple[str, ...]
    seconds: float
    since_round: float
    flood: bool = False  # the trace of a flooded reservation area, not of an accused slot


@dataclass(frozen=True, slots=True)
class MemberExcluded(Event):
    """A verdict named this member: out of every roster until an operator readmits it."""

    name: str
    round: int


@dataclass(frozen=True, slots=True)
class FlowsEnded(Event):
    """No rounds for [coalition] disband_timeout: every flow is given up (seed 000 §4.5). A
    member resets its own applications' TCP connections, inside the host; nothing leaves."""

    flows: int
    reset: int  # of them, TCP connections reset locally (members)


@dataclass(frozen=True, slots=True)
class VersionApplied(Event):
    """A newer version of the coalition file runs now (no restart)."""

    old: int
    new: int
    joined: tuple[str, ...]  # hosts it adds
    left: tuple[str, ...]  # hosts it removes
    rekeyed: tuple[str, ...]  # hosts with a new key


@dataclass(frozen=True, slots=True)
class VersionRefused(Event):
    """A coalition file heard or given was not applied (outcome: common/versions.Outcome)."""

    outcome: str
    version: int
    detail: str


@dataclass(frozen=True, slots=True)
class JoinRequested(Event):
    """A host asked to be added (a new, verified request: lanon admin pending lists it)."""

    name: str
    rotation: bool


@dataclass(frozen=True, slots=True)
class Retired(Event):
    """A version left this host out: it takes no part from now on (nothing leaves with its
    address: its rules stay)."""

    version: int


@dataclass(frozen=True, slots=True)
class MemberReadmitted(Event):
    name: str


@dataclass(frozen=True, slots=True)
class BlameAnswered(Event):
    """Member: a BLAME for a round we answered; `refused` says why we did not answer ('' if we
    did): member/revealer.py."""

    round: int
    bit: int
    phase: str
    refused: str


@dataclass(frozen=True, slots=True)
class VerdictChecked(Event):
    """Member: a verdict's evidence, checked here (common/verdict.py): `agrees` if it shows
    what the leader said (`named` excluded, for `outcome`)."""

    round: int
    bit: int
    outcome: str
    named: tuple[str, ...]
    agrees: bool
    detail: str


@dataclass(frozen=True, slots=True)
class SlotCorrupted(Event):
    """A reserved slot of ours emerged other than we wrote it: someone wrote into it (only a
    claimant writes in a reserved slot). Private: saying so in public says whose slot it was.
    What an accusation needs (common/blame.py): the round, the bit of the round's vector where
    we wrote 0 and 1 emerged (None if there is no such bit: we could not accuse without showing
    what we sent), and the secret our claim for the slot committed to."""

    round: int
    slot: int
    bit: int | None
    secret: bytes


@dataclass(frozen=True, slots=True)
class Contributed(Event):
    round: int
    frames: int
    size: int  # bytes of vector sent (identical for every member of the round)
    busy: bool  # whether this member had data in it (local knowledge only)


@dataclass(frozen=True, slots=True)
class AnswerLate(Event):
    """A member's answer left after its moment (`answer_at`): this host was too slow for
    `rounds.answer_delay`, and the answer's timing may have told the switch it was busy."""

    round: int  # the last of them
    late_by: float  # seconds, the last of them
    count: int = 1  # answers late since the last report


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


class InboundRefusal(enum.Enum):
    """Why a member did not take an INBOUND frame of one of its own flows."""

    BAD_SEAL = "bad_seal"  # not sealed under the flow's key: forged, or junk
    REPLAY = "replay"  # a sequence number already taken from that gateway
    MALFORMED = "malformed"  # parts that do not make a packet
    NOT_OF_FLOW = "not_of_flow"  # from another peer, protocol or port than the flow's


@dataclass(frozen=True, slots=True)
class InboundRefused(Event):
    """An INBOUND frame of one of this member's flows, not taken. Private: no other member
    can check a frame of a flow not its own, so a public count or a log line would say
    whose flow it was."""

    reason: InboundRefusal
    count: int = 1  # (frames the compiled path refused together: member/drain.py)


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
