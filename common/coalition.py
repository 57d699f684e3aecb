"""The coalition file: what every member and gateway of one lanon must agree on.

All hosts load the same file. Its fingerprint (BLAKE2b of the parsed, normalised content) is
carried in HELLO and its first four bytes in every frame header, so hosts whose files differ
do not silently disagree: their frames are rejected as foreign and the daemon says why.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import functools
import hashlib
import ipaddress
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lanon.common import keygraph, wire
from lanon.common.cell import CELL_HEADER_LEN
from lanon.common.crypto import decode_public_key, verify_signature
from lanon.common.errors import ConfigError, RejectReason, RemoteProtocolError
from lanon.common.flowkey import SEALED_OVERHEAD, InboundCipher
from lanon.common.reservation import ENTRY_LEN
from lanon.common.services import PROTOCOLS, LanService, is_service, parse_service
from lanon.common.settings import (
    REQUIRED,
    between,
    is_address,
    is_name,
    is_network,
    load_table,
    one_of,
    opt,
    or_empty,
)
from lanon.common.trusted import OVERHEAD as TRUSTED_OVERHEAD

IP_TCP_HEADERS = 40
# [coalition] settings no version may change, part of the identity: no version may make members
# trust the gateways, nor stop; nor switch the INBOUND frames' cipher (they would not open).
FIXED = ("mode", "inbound_cipher")

# Destinations gateways never emit to, whatever the coalition file says (nor to the LAN), by
# class; then the private ranges, refused unless [egress] allow names them.
NEVER_EMITTED = (
    ("broadcast", "255.255.255.255/32"),
    ("reserved", "0.0.0.0/8"),
    ("loopback", "127.0.0.0/8"),
    ("link_local", "169.254.0.0/16"),
    ("multicast", "224.0.0.0/4"),
    ("reserved", "240.0.0.0/4"),
)
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "198.18.0.0/15")


class Mode(enum.Enum):
    """Whom the members trust ([coalition] mode)."""

    DCNET = "dcnet"  # nobody: superposed sending, pads between members (seed 000 §4)
    TRUSTED = "trusted"  # the gateways: each member's cells go to the leader sealed (§5.1)


@dataclass(frozen=True)
class CoalitionSection:
    name: str = opt(REQUIRED, "name of the coalition, for logs and metrics", is_name)
    lan: str = opt(
        REQUIRED,
        "the LAN prefix; anonymous addresses lie in it; members' traffic to it is carried by the "
        "lanon like any other, but for [lan_services] direct",
        is_network,
    )
    lan_mtu: int = opt(
        1500, "MTU of the LAN in bytes; every lanon frame fits in it", between(576, 9000)
    )
    cell_size: int = opt(
        1400,
        "bytes per DC-net data slot (fixed; packets are carried in whole cells; new files say "
        "1280: on a 1500-byte LAN a quiet round, one slot, then fits one frame a member)",
        between(256, 9000),
    )
    min_members: int = opt(
        3,
        "below this many members present the lanon disbands (pauses) rather than run rounds",
        between(2, 4096),
    )
    router: str = opt(
        "",
        "the border router's address on the LAN, '' if not given; no gateway share may contain it",
        or_empty(is_address),
    )
    version: int = opt(
        0,
        "this file's version, with [admin]: hosts apply a newer signed version heard on the LAN "
        "without a restart (lanon admin raises it and signs); 0 without [admin]",
        between(0, 2**32 - 1),
    )
    mode: Mode = opt(
        Mode.DCNET,
        "'dcnet': no host learns who sent a packet (pads between members); 'trusted': each "
        "member sends its cells to the leading gateway sealed under a key they share, so the "
        "gateways know who sent what and a member's cost no longer grows with the coalition "
        "(seed 000 §5.1)",
    )
    inbound_cipher: InboundCipher = opt(
        InboundCipher.CHACHA20_POLY1305,
        "the AEAD of the INBOUND frames that carry replies, each of which every member opens: "
        "'aes256-gcm' costs a member about a third of the CPU a frame, on processors with AES "
        "instructions (x86: AES-NI, PCLMUL and AVX, since about 2011; ARM: the crypto "
        "extensions) and PyNaCl 1.6 or later (a host without them refuses to start and says "
        "why); 'chacha20-poly1305' runs anywhere; changing it needs a new coalition, not a "
        "version",
    )
    disband_timeout: float = opt(
        600.0,
        "seconds without rounds (the lanon disbanded: too few members) before its flows are "
        "ended: members reset their applications' connections inside the host and gateways "
        "forget them; nothing is sent, so no burst of resets links them",
        between(1, 86400 * 30),
    )


@dataclass(frozen=True)
class AdminSection:
    """Who may publish a new version of the coalition (common/versions.py)."""

    keys: list[str] = opt(
        [],
        "public keys of the administrators (lanon admin keygen); a version counts only with "
        "`threshold` of their signatures; changing them needs a new coalition, not a version",
    )
    threshold: int = opt(1, "signatures a version needs", between(1, 64))


@dataclass(frozen=True)
class SignatureEntry:
    key: str = opt(REQUIRED, "an administrator's public key")
    signature: str = opt(REQUIRED, "its Ed25519 signature of this version (lanon admin sign)")


class Schedule(enum.Enum):
    """How contributions reach the leader ([rounds] schedule)."""

    STAR = "star"  # each member sends its vector to the leader
    TREE = "tree"  # each member XORs its children's into its own and sends one up (common/tree.py)


@dataclass(frozen=True)
class RoundSection:
    idle_interval: float = opt(
        0.05,
        "seconds between rounds when nobody has had data for `linger` seconds (each idle round "
        "costs every host a little CPU; the first packet after a quiet spell waits for one)",
        between(0.001, 10),
    )
    linger: float = opt(
        1.0,
        "seconds rounds keep following each other (`busy_interval` apart at most) after the last "
        "one with data or claims (the next packet of a conversation does not wait for an idle "
        "round)",
        between(0, 60),
    )
    busy_interval: float = opt(
        0.0025,
        "seconds from one round's opening to the next while rounds follow each other (within "
        "`linger` of data): shorter the more slots the next round grants, none when it is as "
        "full as one member can fill it (`max_claims` slots; trusted mode: a member's cells used "
        "in the last one); back-to-back rounds would take all of every host's CPU for a ping, "
        "and a host without a spare cycle answers and delivers late (0: always back to back; at "
        "most idle_interval)",
        between(0, 1),
    )
    answer_delay: float = opt(
        0.0003,
        "seconds after an OPEN arrives at which every member answers it: a moment fixed by the "
        "round, never by a member's own work or traffic, so that a switch observer learns "
        "nothing from timing (members whose work takes longer answer when done)",
        between(0.00005, 0.05),
    )
    deadline: float = opt(
        0.25,
        "seconds a round waits for every roster member before it is redone without the late ones",
        between(0.005, 30),
    )
    max_slots: int = opt(16, "most reserved data slots in one round", between(1, 64))
    express_slots: int = opt(
        1,
        "data slots in every round that need no reservation: a member with a packet and no "
        "granted slot writes its first cell into one at random, so a conversation's first packet "
        "leaves in one round instead of two; two at once collide (detected) and reserve instead",
        between(0, 8),
    )
    reservation_entries: int = opt(
        64,
        "most entries in a round's reservation vector, which grows with the claims (more "
        "entries, fewer collisions; at most 64: blame traces every written entry of a "
        "flooded one)",
        between(4, 64),
    )
    max_claims: int = opt(4, "most slots one member claims in one round", between(1, 64))
    epoch_rounds: int = opt(100_000, "rounds before the pad keys rotate", between(1, 2**31))
    epoch_seconds: float = opt(600.0, "seconds before the pad keys rotate", between(1, 86400 * 7))
    forgive_rounds: int = opt(
        200,
        "rounds an absent member keeps its place before it is treated as resigned",
        between(0, 10**7),
    )
    clock_tolerance: float = opt(
        1.0,
        "seconds hosts' clocks may differ; members refuse rounds from a leader whose clock is "
        "further off (a replayed round, or a host without NTP)",
        between(0.05, 60),
    )
    heartbeat_interval: float = opt(0.1, "seconds between gateway heartbeats", between(0.01, 10))
    gateway_timeout: float = opt(
        0.4, "seconds of silence after which a gateway is taken for dead", between(0.03, 60)
    )
    schedule: Schedule = opt(
        Schedule.STAR,
        "how contributions reach the leader: 'star' (each member to the leader) or 'tree' (each "
        "member XORs its children's into its own and sends one up: the leader's link carries "
        "fanout vectors a round instead of one per member; seed 000 §5.3)",
    )
    tree_fanout: int = opt(2, "children per member when schedule = 'tree'", between(2, 16))
    trusted_cells: int = opt(
        4,
        "with mode = 'trusted': the cells in every member's answer (data or padding); a "
        "member sends at most this many a round",
        between(1, 64),
    )


@dataclass(frozen=True)
class FlowSection:
    tcp_established_timeout: float = opt(
        7440.0, "idle seconds before an open TCP flow frees its port (RFC 5382)", between(1, 86400)
    )
    tcp_transitory_timeout: float = opt(
        240.0, "idle seconds for a TCP flow that is opening or closing", between(1, 86400)
    )
    tcp_closed_linger: float = opt(
        10.0, "seconds a closed TCP flow keeps its port for late segments", between(0, 3600)
    )
    udp_timeout: float = opt(
        300.0, "idle seconds before a UDP flow frees its port (RFC 4787)", between(1, 86400)
    )
    icmp_timeout: float = opt(
        60.0, "idle seconds before an ICMP echo flow frees its identifier", between(1, 86400)
    )
    endpoint_timeout: float = opt(
        120.0,
        "seconds a service's endpoint stays bound after its member last asked for it or sent "
        "from it (members ask every 30 s): then the endpoint of a member that left is free",
        between(35, 86400),
    )
    port_min: int = opt(1024, "lowest anonymous port handed out", between(1, 65535))
    port_max: int = opt(65535, "highest anonymous port handed out", between(1, 65535))


@dataclass(frozen=True)
class KeyGraphSection:
    kind: str = opt(
        "full",
        "'full' mesh, 'regular' (Harary graph of `degree`), or explicit 'edges'",
        one_of("full", "regular", "edges"),
    )
    degree: int = opt(4, "links per member when kind = 'regular'", between(2, 4096))
    edges: list[tuple[str, str]] = opt([], "member pairs that share a pad, when kind = 'edges'")


@dataclass(frozen=True)
class EgressSection:
    allow: list[str] = opt(
        [],
        "private prefixes gateways may emit to, e.g. '10.0.0.0/8'; they refuse 10/8, 172.16/12, "
        "192.168/16, 100.64/10 and 198.18/15 unless listed here, and never emit to the LAN, "
        "loopback, link-local, multicast, broadcast, 0/8 or 240/4",
        is_network,
    )


@dataclass(frozen=True)
class ProvidersSection:
    """Providers (seed 001): the operators of gateways compete; members choose (member/choice.py)."""

    unit: str = opt(
        "credits", "the unit offers' prices are in (a currency, or the coalition's own)"
    )
    rating_period: float = opt(
        86400.0,
        "seconds of a rating period: each member may rate each provider once a period, with an "
        "anonymous credential for that period",
        between(10, 86400 * 31),
    )
    issuer: str = opt(
        "",
        "the operator whose gateways issue the anonymous rating credentials, one per member and "
        "period (blind: it cannot link a rating to its member; it could mint credentials for "
        "itself, so choose one that sells nothing or that all trust); '' for no ratings",
    )
    agencies: list[str] = opt(
        [], "public keys of rating agencies whose signed ratings members take into account"
    )


@dataclass(frozen=True)
class LanServicesSection:
    """The LAN's own servers members use (common/services.py); every other LAN destination
    of a member is carried by the lanon and refused by the gateways."""

    anonymous: list[str] = opt(
        [],
        "LAN services members reach through the lanon, from an anonymous address, e.g. the "
        "router's resolver '198.18.0.1:53' (tcp and udp) or '198.18.0.1:53/udp'; gateways emit "
        "to these and to no other LAN address",
        is_service,
    )
    direct: list[str] = opt(
        [],
        "LAN services members reach with their own address (a printer, a file server): the "
        "member's rules let this traffic pass, and the service sees which member asks",
        is_service,
    )

    @property
    def anonymous_services(self) -> tuple[LanService, ...]:
        return tuple(parse_service(s) for s in self.anonymous)

    @property
    def direct_services(self) -> tuple[LanService, ...]:
        return tuple(parse_service(s) for s in self.direct)


@dataclass(frozen=True)
class GatewayEntry:
    name: str = opt(REQUIRED, "gateway host name", is_name)
    public_key: str = opt(REQUIRED, "the gateway's public key (lanon keygen)")
    addresses: list[str] = opt(
        REQUIRED, "this gateway's share of the anonymous addresses (prefixes)", is_network
    )
    operator: str = opt("", "who runs this gateway (defaults to its name)")
    address: str = opt(
        "",
        "the gateway's own address on the LAN, '' if not given; no share may contain it",
        or_empty(is_address),
    )


@dataclass(frozen=True)
class EndpointEntry:
    name: str = opt(
        REQUIRED, "the service's name (a member's [[services]] endpoint names it)", is_name
    )
    protocol: str = opt(REQUIRED, "'tcp' or 'udp'", one_of("tcp", "udp"))
    address: str = opt(REQUIRED, "an anonymous address (of a gateway's share)", is_address)
    port: int = opt(REQUIRED, "the public port", between(1, 65535))
    public_key: str = opt(
        REQUIRED,
        "the public key of the service (lanon keygen): whoever holds its private key serves "
        "the endpoint, and no gateway learns which member that is",
    )


@dataclass(frozen=True, slots=True)
class PinnedEndpoint:
    name: str
    proto: int
    address: bytes  # packed
    port: int
    public: bytes

    @property
    def where(self) -> tuple[int, bytes, int]:
        return (self.proto, self.address, self.port)


@dataclass(frozen=True)
class MemberEntry:
    name: str = opt(REQUIRED, "member host name", is_name)
    public_key: str = opt(REQUIRED, "the member's public key (lanon keygen)")
    address: str = opt(
        "",
        "the member's address on the LAN, '' if not given; no gateway share may contain it",
        or_empty(is_address),
    )


@dataclass(frozen=True, slots=True)
class Peer:
    index: int
    name: str
    public: bytes
    address: str = ""  # on the LAN, if the coalition file gives it


@dataclass(frozen=True, slots=True)
class GatewayPeer:
    index: int
    name: str
    public: bytes
    operator: str
    addresses: tuple[ipaddress.IPv4Address, ...]  # its share
    address: str = ""  # its own, on the LAN, if the coalition file gives it


@dataclass(frozen=True)
class Coalition:
    """A loaded, checked coalition file and everything derived from it."""

    path: Path
    coalition: CoalitionSection
    rounds: RoundSection
    flows: FlowSection
    members: tuple[Peer, ...]
    gateways: tuple[GatewayPeer, ...]
    edges: frozenset[keygraph.Edge]
    connectivity: keygraph.Connectivity
    fingerprint: bytes
    id: int  # the fingerprint's first four bytes: every frame header carries it
    egress: EgressSection = dataclasses.field(default_factory=EgressSection)
    lan_services: LanServicesSection = dataclasses.field(default_factory=LanServicesSection)
    # Versions (common/versions.py): the administrators, and what stays across versions.
    admins: tuple[bytes, ...] = ()
    threshold: int = 1
    # The coalition across its versions: frame headers (`id`) and flow ports derive from it.
    identity: bytes = b""
    text: str = ""  # the file as written: what gateways repeat on the LAN
    shortfall: str = ""  # why these members cannot run rounds, if they cannot (a version may)
    endpoints: tuple[PinnedEndpoint, ...] = ()  # services' endpoints the file pins
    providers: ProvidersSection = dataclasses.field(default_factory=ProvidersSection)

    @property
    def version(self) -> int:
        return self.coalition.version

    @property
    def versioned(self) -> bool:
        return bool(self.admins)

    @property
    def lan(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.coalition.lan)

    @property
    def anonymous(self) -> tuple[ipaddress.IPv4Address, ...]:
        return tuple(sorted(a for g in self.gateways for a in g.addresses))

    @functools.cached_property
    def text_digest(self) -> bytes:
        """The digest of a versioned file's text (heartbeats advertise it); zeros without."""
        return text_digest(self.text.encode()) if self.admins else bytes(wire.DIGEST_LEN)

    @functools.cached_property
    def anonymous_index(self) -> dict[bytes, int]:
        """Each anonymous address (4 bytes) -> its index, the one frames and heartbeats use."""
        return {a.packed: i for i, a in enumerate(self.anonymous)}

    @property
    def trusted(self) -> bool:
        return self.coalition.mode is Mode.TRUSTED

    @functools.cached_property
    def part_size(self) -> int:
        """Vector bytes carried by one CONTRIB or OUTPUT_PART frame."""
        overheads = [wire.CONTRIB_OVERHEAD, wire.OUTPUT_PART_OVERHEAD]
        if self.rounds.schedule is Schedule.TREE:
            overheads.append(wire.tree_part_overhead(len(self.members)))
        return self.coalition.lan_mtu - max(overheads)

    @property
    def cell_data(self) -> int:
        """Bytes of a sealed packet (common/flowkey.py) one cell carries."""
        return self.coalition.cell_size - CELL_HEADER_LEN

    @property
    def cell_capacity(self) -> int:
        """IP packet bytes one cell carries (sealed, without a key wrap)."""
        return self.cell_data - SEALED_OVERHEAD

    @property
    def inbound_capacity(self) -> int:
        """IP packet bytes one INBOUND frame carries."""
        return self.coalition.lan_mtu - wire.INBOUND_OVERHEAD

    @property
    def send_mss(self) -> int:
        """TCP MSS that makes a member's segments fit one cell (and the LAN), clamped into
        the SYNs its stack receives."""
        return min(self.cell_capacity, self.inbound_capacity) - IP_TCP_HEADERS

    @property
    def receive_mss(self) -> int:
        """TCP MSS that makes segments to a member fit one inbound frame, clamped into the
        SYNs it sends: inbound frames are not cells, a download needs fewer of them."""
        return self.inbound_capacity - IP_TCP_HEADERS

    def member(self, name: str) -> Peer:
        for m in self.members:
            if m.name == name:
                return m
        raise ConfigError(
            f"{self.path}: no member named {name!r} (members: {', '.join(m.name for m in self.members)})"
        )

    def gateway(self, name: str) -> GatewayPeer:
        for g in self.gateways:
            if g.name == name:
                return g
        raise ConfigError(
            f"{self.path}: no gateway named {name!r} (gateways: {', '.join(g.name for g in self.gateways)})"
        )

    def gateway_named(self, name: str) -> bytes | None:
        """The public key of the gateway of that name, if any."""
        return next((g.public for g in self.gateways if g.name == name), None)

    def member_at(self, index: int, me: int | None = None) -> Peer:
        """The member a frame's header names by index; RemoteProtocolError (NOT_IN_ROSTER)
        if the coalition has none there, or if it names `me` (a member hears itself only
        from a forger)."""
        if not 0 <= index < len(self.members) or index == me:
            who = "us" if index == me else "none"
            raise RemoteProtocolError(RejectReason.NOT_IN_ROSTER, f"member #{index}: {who}")
        return self.members[index]

    @property
    def credential_issuer(self) -> GatewayPeer | None:
        """The gateway that issues rating credentials: the first of `[providers] issuer`'s
        (one key a period); None without ratings."""
        issuer = self.providers.issuer
        return next((g for g in self.gateways if issuer and g.operator == issuer), None)

    def gateway_at(self, index: int) -> GatewayPeer:
        """The gateway a frame's header names by index; RemoteProtocolError (NOT_IN_ROSTER)
        if the coalition has none there."""
        if not 0 <= index < len(self.gateways):
            raise RemoteProtocolError(RejectReason.NOT_IN_ROSTER, f"no gateway #{index}")
        return self.gateways[index]

    def vector_len(self, nslots: int, nentries: int) -> int:
        return nentries * ENTRY_LEN + nslots * self.coalition.cell_size

    def part_lens(self, nslots: int, nentries: int) -> list[int]:
        """The length of each part of a round's vector (contributions and output alike): one
        list per shape, made once and shared (every round asks; nobody changes it)."""
        shapes = self._part_lens
        lens = shapes.get((nslots, nentries))
        if lens is None:
            if len(shapes) >= 1024:  # (a round's shapes are few; trusted_output_cells asks more)
                shapes.clear()
            lens = shapes[(nslots, nentries)] = self._split(self.vector_len(nslots, nentries))
        return lens

    @functools.cached_property
    def _part_lens(self) -> dict[tuple[int, int], list[int]]:
        return {}

    def attest_rides(self, last_part: int) -> bool:
        """Whether a member's signed ATTEST goes at the end of its last CONTRIB part, of
        `last_part` bytes (it fits the frame), or in a frame of its own: the round's shape
        says, the same for everyone."""
        return last_part + wire.ATTEST_LEN <= self.part_size

    def contrib_lens(self, nslots: int, nentries: int) -> list[int]:
        """The length of each part of a member's answer: its vector, or in trusted mode its
        `trusted_cells` cells sealed for the leader (common/trusted.py)."""
        if self.trusted:
            answer = self.rounds.trusted_cells * self.coalition.cell_size + TRUSTED_OVERHEAD
            return self._split(answer)
        return self.part_lens(nslots, nentries)

    @functools.cached_property
    def trusted_output_cells(self) -> int:
        """Trusted mode: the most cells one round's output may publish, so that its
        OUTPUT_HEAD (a digest per part, a MAC per member, a signature) fits the LAN's MTU."""
        room = self.coalition.lan_mtu - wire.output_head_overhead(len(self.members))
        most_parts = max(0, room // wire.DIGEST_LEN)
        cells = 0
        while len(self.part_lens(cells + 1, 0)) <= most_parts and cells < 65535:
            cells += 1
        return cells

    def _split(self, total: int) -> list[int]:
        ps = self.part_size
        return [min(ps, total - i) for i in range(0, total, ps)] or [0]


def check_own_key(peer: Peer | GatewayPeer, role: str, public: bytes, path: Path) -> None:
    """A daemon's key must be the one the coalition file gives its name."""
    if public != peer.public:
        raise ConfigError(
            f"the private key does not belong to {role} {peer.name!r}: its public key differs "
            f"from the one in {path}"
        )


def load(path: Path) -> Coalition:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read coalition file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    return loads(text, path)


def loads(text: str, path: Path, *, signatures: bool = True) -> Coalition:
    """`signatures=False`: a version being signed (lanon admin), never one to run."""
    if len(text) > MAX_TEXT:
        raise ConfigError(f"{path}: {len(text)} characters: at most {MAX_TEXT} (drop comments)")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(raw, path, text, signatures=signatures)


def text_digest(text: bytes) -> bytes:
    """What identifies a coalition file's text on the LAN (COALITION frames, heartbeats)."""
    return hashlib.blake2b(text, digest_size=wire.DIGEST_LEN, person=b"lanon-cfile").digest()


def split_signed(text: str) -> tuple[str, str]:
    """(body, signatures): a versioned file's text above its first `[[signatures]]` line,
    which is what administrators sign (trailing whitespace aside), and the rest."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.strip() == "[[signatures]]":
            return "\n".join(lines[:i]).rstrip() + "\n", "\n".join(lines[i:])
    return text.rstrip() + "\n", ""


def signed_message(body: str) -> bytes:
    """What an administrator signs: the exact text of the file's body."""
    digest = hashlib.blake2b(body.encode(), digest_size=32, person=b"lanon-cbody").digest()
    return SIGNED + digest


def signature_block(key: bytes, signature: bytes) -> str:
    return (
        f'\n[[signatures]]\nkey = "{base64.b64encode(key).decode()}"\n'
        f'signature = "{base64.b64encode(signature).decode()}"\n'
    )


_TOP = {
    "coalition",
    "rounds",
    "flows",
    "key_graph",
    "egress",
    "lan_services",
    "providers",
    "gateways",
    "members",
    "admin",
    "endpoints",
    "signatures",
}
SIGNED = b"lanon-coalition-version\x00"  # what administrators sign: this, then the body's hash
MAX_TEXT = 90_000  # characters of a coalition file (what COALITION frames can carry)
MAX_HOSTS = 1024  # members, and gateways
MAX_OPERATOR = 64  # bytes of an operator's name (common/tokens.MAX_NAME)


def parse(raw: dict[str, Any], path: Path, text: str = "", *, signatures: bool = True) -> Coalition:
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise ConfigError(
            f"{path}: unknown table {unknown[0]!r}; expected: {', '.join(sorted(_TOP))}"
        )
    if "coalition" not in raw:
        raise ConfigError(f"{path}: missing table [coalition]")
    section = load_table(CoalitionSection, raw["coalition"], f"{path}: [coalition]")
    rounds = load_table(RoundSection, raw.get("rounds", {}), f"{path}: [rounds]")
    flows = load_table(FlowSection, raw.get("flows", {}), f"{path}: [flows]")
    graph = load_table(KeyGraphSection, raw.get("key_graph", {}), f"{path}: [key_graph]")
    egress = load_table(EgressSection, raw.get("egress", {}), f"{path}: [egress]")
    services = load_table(
        LanServicesSection, raw.get("lan_services", {}), f"{path}: [lan_services]"
    )
    providers = load_table(ProvidersSection, raw.get("providers", {}), f"{path}: [providers]")
    admin = load_table(AdminSection, raw.get("admin", {}), f"{path}: [admin]")
    admins = tuple(
        decode_public_key(k, f"{path}: [admin] keys #{i + 1}") for i, k in enumerate(admin.keys)
    )
    _check_admin(section, admin, admins, raw, path)
    if admins:  # before anything that costs: a version is looked at only once it is signed
        if not text:
            raise ConfigError(f"{path}: a versioned coalition is read from its text")
        text = _check_signatures(raw, text, admins, admin.threshold, section, path, signatures)
    if flows.port_min > flows.port_max:
        raise ConfigError(
            f"{path}: [flows] port_min = {flows.port_min} is above port_max = {flows.port_max}"
        )
    if rounds.busy_interval > rounds.idle_interval:
        raise ConfigError(
            f"{path}: [rounds] busy_interval = {rounds.busy_interval}: expected at most "
            f"idle_interval ({rounds.idle_interval}): busy rounds come sooner than idle ones"
        )
    if rounds.max_claims > rounds.max_slots:
        raise ConfigError(
            f"{path}: [rounds] max_claims = {rounds.max_claims}: expected at most max_slots ({rounds.max_slots})"
        )
    if rounds.gateway_timeout <= rounds.heartbeat_interval:
        raise ConfigError(
            f"{path}: [rounds] gateway_timeout = {rounds.gateway_timeout}: expected more than heartbeat_interval ({rounds.heartbeat_interval})"
        )

    members = _entries(raw, "members", MemberEntry, path)
    gateways = _entries(raw, "gateways", GatewayEntry, path)
    if len(members) > MAX_HOSTS or len(gateways) > MAX_HOSTS:
        raise ConfigError(f"{path}: at most {MAX_HOSTS} members and {MAX_HOSTS} gateways")
    if not gateways:
        raise ConfigError(f"{path}: no [[gateways]]: a lanon needs at least one")
    _unique([m.name for m in members] + [g.name for g in gateways], path, "host name")
    peers = tuple(
        Peer(
            i,
            m.name,
            decode_public_key(m.public_key, f"{path}: [[members]] {m.name}: public_key"),
            m.address,
        )
        for i, m in enumerate(members)
    )
    lan = ipaddress.IPv4Network(section.lan)
    gw_peers = tuple(_gateway_peer(i, g, lan, path) for i, g in enumerate(gateways))
    _unique([p.public for p in peers] + [g.public for g in gw_peers], path, "public key")
    _unique([str(a) for g in gw_peers for a in g.addresses], path, "anonymous address")
    _check_lan_hosts(section, lan, members, gateways, gw_peers, path)
    _check_egress(egress, lan, path)
    _check_services(services, lan, gw_peers, path)
    endpoints = _endpoints(raw, gw_peers, path)
    hosts = {p.public: p.name for p in peers} | {g.public: g.name for g in gw_peers}
    for e in endpoints:
        if e.public in hosts:  # the gateways would know which member holds it
            raise ConfigError(
                f"{path}: [[endpoints]] {e.name}: public_key is {hosts[e.public]}'s own key: "
                "expected a key of the service's own (lanon keygen NAME), or everyone would "
                "know which host serves it"
            )

    # A file that starts a lanon must be able to run it. A version (signed, applied on the
    # fly) may leave too few members: the lanon then disbands until a later version.
    shortfall = ""
    if len(peers) < section.min_members:
        shortfall = (
            f"{len(peers)} member(s) listed but [coalition] min_members = {section.min_members}: "
            "a lanon needs at least min_members members"
        )
        if not admins:
            raise ConfigError(f"{path}: {shortfall}")
    edges = _edges(graph, members, path)
    conn = keygraph.connectivity(range(len(peers)), edges)
    trusted = section.mode is Mode.TRUSTED
    if trusted and rounds.schedule is Schedule.TREE:
        raise ConfigError(
            f"{path}: [coalition] mode = 'trusted' sends every member's cells to the leader "
            "sealed: expected [rounds] schedule = 'star'"
        )
    if trusted and len(peers) * rounds.trusted_cells > 65535:
        raise ConfigError(
            f"{path}: [rounds] trusted_cells = {rounds.trusted_cells} with {len(peers)} "
            "members: expected at most 65535 cells a round in all"
        )
    if conn.k < 2 and not shortfall and not trusted:  # trusted: no pads, no key graph
        weak = ", ".join(sorted(members[i].name for i in conn.weak))
        cut = ", ".join(f"{members[a].name}-{members[b].name}" for a, b in conn.cut) or "no link"
        shortfall = (
            f"[key_graph] is {conn.k}-connected; expected at least 2-connected: "
            f"{weak} reach(es) the other members through {cut} only, "
            "so a single neighbour would know what it sends"
        )
        if not admins:
            raise ConfigError(f"{path}: {shortfall}")
    content: dict[str, Any] = {
        "coalition": dataclasses.asdict(section),
        "rounds": dataclasses.asdict(rounds),
        "flows": dataclasses.asdict(flows),
        "edges": sorted(edges),
        "members": [(p.name, p.public.hex()) for p in peers],
        "gateways": [
            (g.name, g.public.hex(), g.operator, [str(a) for a in g.addresses]) for g in gw_peers
        ],
    }
    # Keys added since 0.1 count only when set: a file that does not use them keeps its
    # fingerprint across versions. (Hosts' own addresses are for checks only: not counted.)
    if not section.router:
        del content["coalition"]["router"]
    if egress.allow:
        content["egress"] = sorted(str(ipaddress.IPv4Network(p)) for p in egress.allow)
    if services.anonymous or services.direct:
        content["lan_services"] = dataclasses.asdict(services)
    for key, default in (
        ("version", 0),
        ("disband_timeout", 600.0),
        ("mode", Mode.DCNET),
        ("inbound_cipher", InboundCipher.CHACHA20_POLY1305),
    ):
        if content["coalition"][key] == default:
            del content["coalition"][key]
    if providers != ProvidersSection():
        content["providers"] = dataclasses.asdict(providers)
    if rounds.trusted_cells == 4:
        del content["rounds"]["trusted_cells"]
    if admins:
        content["admin"] = {"keys": [a.hex() for a in admins], "threshold": admin.threshold}
    if endpoints:
        content["endpoints"] = [
            (e.name, e.proto, e.address.hex(), e.port, e.public.hex()) for e in endpoints
        ]
    if flows.endpoint_timeout == 120.0:
        del content["flows"]["endpoint_timeout"]
    fingerprint = _digest(content, b"lanon-coalition")
    identity = fingerprint
    if admins:  # what no version changes: the name, the LAN, who may sign versions, FIXED
        kept = {"name": section.name, "lan": str(lan), "admin": content["admin"]}
        for key in FIXED:  # (counted only when set: a file without them keeps its identity)
            value = getattr(section, key)
            if value != CoalitionSection.__dataclass_fields__[key].default:
                kept[key] = value.value
        identity = _digest(kept, b"lanon-identity")
    cid = int.from_bytes(identity[:4], "big")
    c = Coalition(
        path,
        section,
        rounds,
        flows,
        peers,
        gw_peers,
        edges,
        conn,
        fingerprint,
        cid,
        egress,
        services,
        admins,
        admin.threshold,
        identity,
        text,
        shortfall,
        endpoints,
        providers=providers,
    )
    _check_providers(c)
    _check_frames(c)
    return c


def _check_providers(c: Coalition) -> None:
    p = c.providers
    operators = sorted({g.operator for g in c.gateways})
    for name in operators:
        if len(name.encode()) > MAX_OPERATOR:
            raise ConfigError(
                f"{c.path}: operator {name!r}: expected at most {MAX_OPERATOR} bytes (ratings "
                "name operators)"
            )
    if p.issuer and p.issuer not in operators:
        raise ConfigError(
            f"{c.path}: [providers] issuer = {p.issuer!r}: expected an operator of its gateways "
            f"({', '.join(operators)})"
        )
    for i, k in enumerate(p.agencies):
        decode_public_key(k, f"{c.path}: [providers] agencies #{i + 1}")


def _check_frames(c: Coalition) -> None:
    """Every round's OPEN and OUTPUT_HEAD must fit one LAN frame with every member in the
    roster: they carry a MAC (and a key id) per member, so the LAN's MTU bounds the members."""
    n = len(c.members)
    if not n:
        return
    r = c.rounds
    tree = r.schedule is Schedule.TREE
    o = wire.Open(
        wire.MAX_ROUND,
        0,
        0,
        0,
        r.reservation_entries,
        frozenset(range(n)),
        n,
        (0,) * n,
        (bytes(6),) * n if tree else (),
        c.version,
    )
    open_size = len(o.encode(c.id, 0)) + wire.MAC_LEN * n + wire.SIG_LEN
    if c.trusted:
        parts = 1 if c.trusted_output_cells else 10**6
    else:
        parts = len(c.part_lens(r.max_slots + r.express_slots, r.reservation_entries))
    head_size = wire.output_head_overhead(n) + wire.DIGEST_LEN * parts
    if max(open_size, head_size) > c.coalition.lan_mtu:
        raise ConfigError(
            f"{c.path}: {n} members do not fit [coalition] lan_mtu = {c.coalition.lan_mtu}: a "
            f"round's OPEN and output head carry a MAC (and a key id) per member and would be "
            f"{max(open_size, head_size)} bytes; raise lan_mtu (jumbo frames) if the LAN "
            "carries them, or split the coalition"
        )


def _digest(content: dict[str, Any], person: bytes) -> bytes:
    canonical = json.dumps(content, sort_keys=True, default=_plain).encode()
    return hashlib.blake2b(canonical, digest_size=wire.FINGERPRINT_LEN, person=person).digest()


def _check_admin(
    section: CoalitionSection,
    admin: AdminSection,
    admins: tuple[bytes, ...],
    raw: dict[str, Any],
    path: Path,
) -> None:
    if not admins:
        if section.version or raw.get("signatures"):
            raise ConfigError(
                f"{path}: a version and signatures need [admin] keys (who signs versions)"
            )
        return
    _unique(list(admins), path, "administrator key")
    if admin.threshold > len(admins):
        raise ConfigError(
            f"{path}: [admin] threshold = {admin.threshold}: expected at most the "
            f"{len(admins)} administrator key(s)"
        )
    if section.version < 1:
        raise ConfigError(
            f"{path}: [coalition] version = {section.version}: a coalition with [admin] has "
            "versions from 1 (lanon admin sign)"
        )


def _check_signatures(
    raw: dict[str, Any],
    text: str,
    admins: tuple[bytes, ...],
    threshold: int,
    section: CoalitionSection,
    path: Path,
    required: bool,
) -> str:
    """At least `threshold` distinct administrators signed the body; the text as hosts keep
    and repeat it: the body, then its valid signatures in the order of [admin] keys (any
    other wrapping of a signed body, by anyone, comes out the same)."""
    body, _ = split_signed(text)
    try:
        if "signatures" in tomllib.loads(body):
            raise ConfigError(
                f"{path}: [[signatures]] tables go last, as lanon admin sign writes them"
            )
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML above its signatures: {exc}") from None
    entries = _entries(raw, "signatures", SignatureEntry, path)
    message = signed_message(body)
    good: dict[bytes, bytes] = {}
    for i, entry in enumerate(entries):
        key = decode_public_key(entry.key, f"{path}: [[signatures]] #{i + 1}: key")
        try:
            sig = base64.b64decode(entry.signature, validate=True)
        except ValueError:
            sig = b""
        if key in admins and len(sig) == wire.SIG_LEN and verify_signature(key, message, sig):
            good[key] = sig
    if required and len(good) < threshold:
        raise ConfigError(
            f"{path}: version {section.version} carries {len(good)} valid administrator "
            f"signature(s); [admin] threshold is {threshold} (lanon admin sign adds one; an "
            "edit after signing voids them)"
        )
    return body + "".join(signature_block(k, good[k]) for k in admins if k in good)


def _plain(value: Any) -> Any:
    """Settings as the file wrote them, for the fingerprint: an enum by its value."""
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"{value!r} has no place in a fingerprint")


def _entries(raw: dict[str, Any], key: str, cls: type[Any], path: Path) -> list[Any]:
    items = raw.get(key, [])
    if not isinstance(items, list):
        raise ConfigError(f"{path}: {key} must be an array of tables ([[{key}]])")
    return [load_table(cls, item, f"{path}: [[{key}]] #{i + 1}") for i, item in enumerate(items)]


def _unique(values: list[Any], path: Path, what: str) -> None:
    seen = set()
    for v in values:
        if v in seen:
            shown = v.hex() if isinstance(v, bytes) else v
            raise ConfigError(f"{path}: {what} {shown!r} appears twice; expected each once")
        seen.add(v)


def _gateway_peer(
    index: int, g: GatewayEntry, lan: ipaddress.IPv4Network, path: Path
) -> GatewayPeer:
    where = f"{path}: [[gateways]] {g.name}"
    addresses: list[ipaddress.IPv4Address] = []
    for prefix in g.addresses:
        net = ipaddress.IPv4Network(prefix)
        if not net.subnet_of(lan):
            raise ConfigError(
                f"{where}: addresses = {prefix!r}: expected a prefix inside lan {lan} "
                "(the border router must see anonymous addresses as neighbours)"
            )
        for special, what in (
            (lan.network_address, "network"),
            (lan.broadcast_address, "broadcast"),
        ):
            if special in net:
                raise ConfigError(
                    f"{where}: addresses = {prefix!r} contains {special}, the LAN's {what} "
                    f"address; expected a prefix of unused host addresses of lan {lan}"
                )
        addresses.extend(net)
    if not addresses:
        raise ConfigError(f"{where}: addresses: expected at least one anonymous address")
    public = decode_public_key(g.public_key, f"{where}: public_key")
    return GatewayPeer(
        index, g.name, public, g.operator or g.name, tuple(sorted(addresses)), g.address
    )


def _check_lan_hosts(
    section: CoalitionSection,
    lan: ipaddress.IPv4Network,
    members: list[MemberEntry],
    gateways: list[GatewayEntry],
    gw_peers: tuple[GatewayPeer, ...],
    path: Path,
) -> None:
    """The router's and hosts' addresses the file gives: in the LAN, distinct, and in no share
    (a gateway would announce them and take that host's traffic)."""
    known = [(f"[coalition] router = {section.router!r}", "the border router", section.router)]
    known += [
        (f"[[gateways]] {g.name}: address = {g.address!r}", f"gateway {g.name}", g.address)
        for g in gateways
    ]
    known += [
        (f"[[members]] {m.name}: address = {m.address!r}", f"member {m.name}", m.address)
        for m in members
    ]
    known = [k for k in known if k[2]]
    for where, _, value in known:
        a = ipaddress.IPv4Address(value)
        if a not in lan or a in (lan.network_address, lan.broadcast_address):
            raise ConfigError(f"{path}: {where}: expected a host address of lan {lan}")
    _unique([value for _, _, value in known], path, "LAN address")
    for entry, peer in zip(gateways, gw_peers, strict=True):
        for prefix in entry.addresses:
            net = ipaddress.IPv4Network(prefix)
            for where, who, value in known:
                if ipaddress.IPv4Address(value) in net:
                    raise ConfigError(
                        f"{path}: [[gateways]] {peer.name}: addresses = {prefix!r} contains "
                        f"{value}, the address of {who} ({where}); expected a share of unused "
                        "addresses: a gateway would announce it and take that host's traffic"
                    )


def _check_egress(egress: EgressSection, lan: ipaddress.IPv4Network, path: Path) -> None:
    for prefix in egress.allow:
        net = ipaddress.IPv4Network(prefix)
        never = [(what, ipaddress.IPv4Network(p)) for what, p in NEVER_EMITTED]
        for what, space in [("LAN", lan), *never]:
            if net.subnet_of(space):
                raise ConfigError(
                    f"{path}: [egress] allow = {prefix!r}: expected a prefix gateways may emit "
                    f"to; it lies in {space} ({what.replace('_', '-')}), never emitted to"
                )


def _check_services(
    services: LanServicesSection,
    lan: ipaddress.IPv4Network,
    gateways: tuple[GatewayPeer, ...],
    path: Path,
) -> None:
    for key, entries in (("anonymous", services.anonymous), ("direct", services.direct)):
        for text in entries:
            service = parse_service(text)
            if service.address not in lan or service.address in (
                lan.network_address,
                lan.broadcast_address,
            ):
                raise ConfigError(
                    f"{path}: [lan_services] {key} = {text!r}: expected a host of the LAN "
                    f"{lan}; services beyond it are reached through the lanon anyway"
                )
            if any(service.address in g.addresses for g in gateways):
                raise ConfigError(
                    f"{path}: [lan_services] {key} = {text!r}: an anonymous address, not a "
                    "LAN server"
                )


def _endpoints(
    raw: dict[str, Any], gateways: tuple[GatewayPeer, ...], path: Path
) -> tuple[PinnedEndpoint, ...]:
    entries = _entries(raw, "endpoints", EndpointEntry, path)
    anonymous = {a for g in gateways for a in g.addresses}
    pinned = []
    for e in entries:
        where = f"{path}: [[endpoints]] {e.name}"
        address = ipaddress.IPv4Address(e.address)
        if address not in anonymous:
            raise ConfigError(f"{where}: address = {e.address!r}: expected an anonymous address")
        public = decode_public_key(e.public_key, f"{where}: public_key")
        pinned.append(PinnedEndpoint(e.name, PROTOCOLS[e.protocol], address.packed, e.port, public))
    _unique([e.name for e in pinned], path, "endpoint name")
    _unique([e.where for e in pinned], path, "endpoint (protocol, address, port)")
    return tuple(pinned)


def warnings(c: Coalition) -> list[str]:
    """What `lanon config check` cannot verify about a valid coalition file, or that looks
    unintended: printed as warnings, not refused."""
    out = []
    unknown = [g.name for g in c.gateways if not g.address]
    unknown += [m.name for m in c.members if not m.address]
    if not c.coalition.router:
        unknown.insert(0, "the router ([coalition] router)")
    if unknown:
        shown = ", ".join(unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        out.append(
            f"{c.path}: no LAN address given for {shown}: the shares could not be checked against "
            "them. Gateways refuse their own addresses and their routers', and probe every "
            "anonymous address before claiming it, but a host that is off then is seen only when "
            "it speaks: keep the shares out of DHCP pools and static assignments."
        )
    private = [ipaddress.IPv4Network(p) for p in PRIVATE_RANGES]
    never = [ipaddress.IPv4Network(p) for _, p in NEVER_EMITTED] + [c.lan]
    for prefix in c.egress.allow:
        net = ipaddress.IPv4Network(prefix)
        if not any(net.overlaps(p) for p in private):
            out.append(
                f"{c.path}: [egress] allow = {prefix!r} has no effect: gateways emit to public "
                "addresses anyway (allow lists private prefixes they would refuse)"
            )
        elif any(net.overlaps(n) for n in never):
            out.append(
                f"{c.path}: [egress] allow = {prefix!r} overlaps the LAN or addresses gateways "
                "never emit to (loopback, link-local, multicast, broadcast, 0/8, 240/4): those "
                "stay refused"
            )
    return out


def _edges(
    graph: KeyGraphSection, members: list[MemberEntry], path: Path
) -> frozenset[keygraph.Edge]:
    n = len(members)
    if graph.kind == "full":
        return keygraph.full_mesh(n)
    if graph.kind == "regular":
        try:
            return keygraph.harary(n, graph.degree)
        except ValueError as exc:
            raise ConfigError(f"{path}: [key_graph] degree = {graph.degree}: {exc}") from None
    index = {m.name: i for i, m in enumerate(members)}
    edges = []
    for a, b in graph.edges:
        for name in (a, b):
            if name not in index:
                raise ConfigError(
                    f"{path}: [key_graph] edges: {name!r} is not a member; expected one of {', '.join(index)}"
                )
        if a == b:
            raise ConfigError(
                f"{path}: [key_graph] edges: [{a!r}, {b!r}]: a member cannot share a key with itself"
            )
        edges.append((index[a], index[b]))
    return keygraph.normalize(edges)
