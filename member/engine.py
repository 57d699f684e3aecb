"""The member's sans-IO engine: packets in, DC-net contributions out; inbound packets back in.

Driven by `submit_packet(packet, now)` (from NFQUEUE), `receive_frame(src, frame, now)` (from
the LAN; `now` is when the frame arrived) and `handle_timer(now)`; it answers with commands
(SendFrame, InjectPacket) and events. No sockets, no clock reads. It is made of:

- this module: outbound packets into cells, the frame dispatch, the checks every OPEN passes
  (shape, clock, round and epoch windows, then its MAC), HELLO while outside the roster;
- `contributor.Contributor`: the rounds (phases in an enforced table), answered at a moment
  fixed by the round;
- `inbound.InboundReceiver`: INBOUND broadcasts back into the stack;
- `keys.KeyRing`: ephemeral keys, KEYS sent and received;
- `veto.Veto`: the member's own anonymity policy for the rounds it puts data in.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Mapping, Sequence

from lanon.common import wire
from lanon.common.accusation import ACCUSATION_TAG, Accusation, seal_accusation
from lanon.common.cell import encode_cell
from lanon.common.clock import wall_ms
from lanon.common.coalition import Coalition, GatewayPeer, Peer, check_own_key
from lanon.common.crypto import HostKey
from lanon.common.endpoints import Answer, sign_pin
from lanon.common.engine import EngineBase, check_sealed, signed
from lanon.common.errors import ConfigError, RejectReason, RemoteProtocolError
from lanon.common.events import (
    MAX_FILTER_TAGS,
    AckReplaced,
    AdoptNextKey,
    DropReason,
    FilterInbound,
    FlowsEnded,
    InboundRefusal,
    InboundRefused,
    InjectPacket,
    Joining,
    PacketDropped,
    PacketQueued,
    ProviderChosen,
    RefuseReason,
    Retired,
    ServiceChanged,
)
from lanon.common.flowkey import SEALED_OVERHEAD, KeyWrapper, seal_packet
from lanon.common.guard import GATEWAY
from lanon.common.offers import pull_offer
from lanon.common.packet import (
    TCP,
    UNREACH_FRAG_NEEDED,
    Flow,
    PacketError,
    Parsed,
    Unsupported,
    ack_advances,
    carried,
    clamp_mss,
    icmp_error,
    parse,
    pure_ack,
    set_source,
    tcp_ack_number,
    tcp_reset,
)
from lanon.common.versions import (
    JOIN_INTERVAL,
    REKEY_INTERVAL,
    Considered,
    VersionBook,
    join_frame,
    settle,
)
from lanon.member.choice import HEARD_EVERY, Priorities, ProviderChoice
from lanon.member.contributor import Contributor, Pending
from lanon.member.flows import MemberFlow, MemberFlows
from lanon.member.inbound import InboundReceiver, OpenedInbound
from lanon.member.keys import KeyRing
from lanon.member.market import Market
from lanon.member.revealer import Revealer
from lanon.member.services import MemberServices, OfferedService, ServiceOffer, ServiceState
from lanon.member.veto import AnonymityPolicy, Veto
from lanon.member.wallet import Wallet

MAX_DRAIN_TAGS = 256  # our flows and services the compiled INBOUND path reads for
HELLO_INTERVAL = 0.5  # seconds between HELLOs while we are not in the roster
HOUSEKEEPING = 1.0  # seconds between flow and reassembly expiry sweeps
CHOICE_INTERVAL = 10.0  # seconds between scorings of the providers (member/choice.py)
OFFER_CHECK = 1.0  # seconds: at most one OFFER signature checked per gateway
MAX_PACKET = 4000  # NFQUEUE copies about 4 KB of a packet
_TO_THE_LEADER = frozenset(
    {
        wire.MsgType.CONTRIB,
        wire.MsgType.HELLO,
        wire.MsgType.REFUSE,
        wire.MsgType.ATTEST,
        wire.MsgType.REVEAL,
        wire.MsgType.PROOF,
    }
)
# What a version rebuilds (MemberEngine._build and apply): kept, to put back if that fails.
_REBUILT = (
    *("c", "me", "key", "keys", "rounds", "blame"),
    *("inbound", "wrapper", "choice", "_built_for"),
)
HEARTBEAT_QUIET = 1.0  # heartbeats matter only when no OPEN came for this long
_INBOUND = bytes([wire.MsgType.INBOUND])  # a frame's second byte: its type
ACK_SPAN = 256  # ACKs that may take one queued ACK's place (the gateways' replay window is 1024)


class MemberEngine(EngineBase):
    def __init__(
        self,
        coalition: Coalition,
        name: str,
        key: HostKey,
        *,
        now: float,
        wall_offset: float,
        rng: random.Random,
        max_queue: int = 512,
        gateways: list[str] | None = None,
        policy: AnonymityPolicy | None = None,
        services: Sequence[ServiceOffer] = (),
        local: bytes = bytes(4),
        priorities: Priorities | None = None,
        wallet: Wallet | None = None,
        filter_inbound: bool = False,
    ) -> None:
        """`services` are this host's (`[[services]]`), `local` the address their inbound
        packets go to (the daemon's TUN address); `filter_inbound`: the kernel lets through
        only our flows' INBOUND frames (`FilterInbound`)."""
        super().__init__()
        self.name = name
        self.key = key
        self.rng = rng
        self.wall_offset = wall_offset
        self.max_queue = max_queue
        self.policy = policy or AnonymityPolicy()
        self.wanted_gateways = gateways or []
        self.priorities = priorities or Priorities()
        self.wallet = wallet or Wallet()
        self.market = Market(self, self.wallet, rng, now)  # (one for every version)
        self._accusation: Accusation | None = None  # to seal after the next answer
        self.flows = MemberFlows(coalition.flows, self._choose_address, rng)
        # Out of the coalition: retired by a version, or joining (a versioned coalition that
        # does not list us yet: we ask, with JOIN, until a version does). Rounds go on
        # without us; nothing of ours leaves but the requests.
        self.retired = self.joining = False
        try:
            self.me = self._me(coalition)
        except ConfigError:
            if not coalition.versioned:
                raise
            self.me = Peer(len(coalition.members), name, key.public)  # in no round
            self.retired = self.joining = True
        self._build(coalition)
        # (after _build: their addresses are among those it allows)
        self.services = MemberServices(services, self._choose_address, local, rng, now)
        self.versions = VersionBook(coalition)
        self.next_key: HostKey | None = None  # asked for by `lanon rekey`: a version gives it
        self.next_join = now  # the next JOIN (joining, or asking for next_key)
        # How the lanon looks from here (member/health.py): times of the last OPEN of any
        # roster, of the last naming us, and of a leading gateway's verified heartbeat.
        self.last_open = float("-inf")
        self.rounds_seen_at = now  # the last OPEN, or our start: flows end after long silence
        self.last_in_roster = float("-inf")
        self.last_heartbeat = float("-inf")
        # No round naming us for this long: out of the roster (the leader is gone or new).
        self.roster_silence = max(2 * HELLO_INTERVAL, 3 * coalition.rounds.idle_interval)
        self.next_hello = now
        self.next_housekeeping = now + HOUSEKEEPING
        self.next_choice = now + CHOICE_INTERVAL
        self.offers_checked: dict[int, float] = {}  # gateway -> when we last checked an OFFER
        self.filter_inbound = filter_inbound
        self._inbound_tags: frozenset[int] | None = None  # the kernel filter's, last told

    def _me(self, coalition: Coalition) -> Peer:
        me = coalition.member(self.name)
        check_own_key(me, "member", self.key.public, coalition.path)
        return me

    def _build(self, coalition: Coalition) -> None:
        """The parts that depend on the coalition's hosts: made at start and by a version."""
        self.c = coalition
        self._built_for = coalition  # the numbering of the parts' members (a retired
        # engine keeps parts of a version that listed it, whatever version it hears since)
        key, rng = self.key, self.rng
        self.keys = KeyRing(self, coalition, self.me.index, key)
        veto = Veto(coalition, self.policy)
        self.rounds = Contributor(
            self, coalition, self.me.index, self.keys, veto, rng, accuse=self._accuse
        )
        self.blame = Revealer(self, coalition, self.me.index, key, self.rounds, self.keys.pads)
        self.inbound = InboundReceiver(self, coalition, self.flows, rng)
        self.wrapper = KeyWrapper([g.public for g in coalition.gateways])
        allowed = self._allowed_addresses(self.wanted_gateways)
        old = getattr(self, "choice", None)
        self.choice = ProviderChoice(coalition, allowed, self.priorities, rng)
        if old is not None:
            self.choice.carry(old)

    def apply(self, new: Coalition, now: float) -> None:
        """Run a newer version of the coalition from now on: flows, queued cells and the
        keys of neighbours that stay go on; the round in progress is given up (its roster is
        the old version's). A version that leaves us out retires this engine: nothing is
        sent from then on but what the daemon's rules already stop. All or nothing: if the
        parts cannot be built for `new`, the old ones stay and the error is the caller's."""
        listed = {m.name: m.public for m in new.members}
        rotated = self.next_key is not None and listed.get(self.name) == self.next_key.public
        key = self.next_key if rotated and self.next_key is not None else self.key
        if listed.get(self.name) != key.public:  # not (or no longer) us
            self.c = new
            if not self.joining and not self.retired:
                self.retired = True
                self.rounds.lose()
                self.rounds.queue.clear()
                if self.rounds.in_roster:
                    self.rounds.leave()
                self.event(Retired(new.version))
            self._took(new)
            return
        kept = {k: getattr(self, k) for k in _REBUILT}
        old_rounds, old_keys, built_for = self.rounds, self.keys, self._built_for
        try:
            self.key = key
            self.me = self._me(new)
            self._build(new)
            self.keys.carry(old_keys, built_for, now)
        except Exception:
            for k, v in kept.items():
                setattr(self, k, v)
            raise
        old_rounds.lose()
        self.rounds.carry(old_rounds)
        if rotated:
            self.next_key = None
            self.command(AdoptNextKey())  # the key lanon rekey made is ours now, on disk too
        self.retired = self.joining = False
        self._took(new)
        self.keys.announce(now)  # new neighbours need our keys, and we theirs
        self.next_hello = now

    def _took(self, new: Coalition) -> None:
        applied, save = self.versions.took(new)
        self.event(applied)
        self.command(save)

    def _on_version(self, src: bytes, frame: bytes, now: float) -> None:
        settle(self.versions.receive(frame, now, src), lambda c: self.apply(c, now), self.event)

    def offer_version(self, text: str, now: float) -> Considered:
        """A coalition file an administrator gives this host (control socket: publish)."""
        considered = self.versions.consider(text)
        settle(considered, lambda c: self.apply(c, now), self.event)
        return considered

    # What status and health read.

    @property
    def behind(self) -> int:
        """A newer version a gateway's heartbeat said it runs, not applied here yet (0: none)."""
        newest = self.versions.newest_heard
        return newest if newest > self.c.version else 0

    @property
    def queue(self) -> deque[Pending]:
        return self.rounds.queue

    @property
    def veto(self) -> Veto:
        return self.rounds.veto

    @veto.setter
    def veto(self, veto: Veto) -> None:
        self.rounds.veto = veto

    @property
    def last_round(self) -> int:
        return self.rounds.last_round

    @property
    def epoch(self) -> int:
        return self.keys.epoch

    @property
    def members_heard(self) -> dict[int, float]:
        return self.keys.heard

    @property
    def in_roster(self) -> bool:
        return self.rounds.in_roster

    def answers_late(self, count: int, rnd: int, late_by: float) -> None:
        """`count` answers left late, the last round `rnd`'s, by `late_by` seconds (the
        daemon's pacer says)."""
        self.rounds.answers_late(count, rnd, late_by)

    # --- outbound packets ---------------------------------------------------------------

    def submit_packet(self, packet: bytes, now: float) -> None:
        """An outbound IPv4 packet from this host (its original has been dropped)."""
        if self.retired:
            self.event(PacketDropped(DropReason.RETIRED, "this host is out of the coalition"))
            return
        try:
            p = parse(packet)
        except PacketError as exc:
            if exc.reason is Unsupported.TRUNCATED and len(packet) >= 28 and packet[0] >> 4 == 4:
                self._refuse_too_large(packet)  # NFQUEUE copied only the start of it
            self.event(PacketDropped(DropReason.outbound(exc.reason), str(exc)))
            return
        if not carried(p, packet):
            self.event(PacketDropped(DropReason.PROTOCOL, "only TCP, UDP and ICMP echo leave"))
            return
        if p.ihl != 20:
            self.event(PacketDropped(DropReason.IP_OPTIONS, "IP options could identify us"))
            return
        if len(packet) > MAX_PACKET:
            self._refuse_too_large(packet)
            self.event(PacketDropped(DropReason.TOO_LARGE, f"{len(packet)} bytes"))
            return
        service = self.services.serving(p.flow.proto, p.flow.sport)
        if service is not None:
            self._serve(service, packet, p, now)
            return
        entry = self.flows.outbound(p.flow, now)
        if entry is None:
            self.event(PacketDropped(DropReason.FLOW_TABLE_FULL))
            return
        if self.filter_inbound and self.flows.take_changed():  # its replies must reach us
            self._filter_inbound()
        queue = self.rounds.queue
        capacity = self.c.cell_data
        wrap = entry.wants_wrap(now)
        if wrap:
            self._wrap(entry)
        sealed_len = len(packet) + SEALED_OVERHEAD + (len(entry.wrap) if wrap else 0)
        ncells = -(-sealed_len // capacity)
        ack_no = pure_ack(packet, p) if ncells == 1 and not wrap else None
        waiting = _replaceable(entry, ack_no)
        if waiting is None and len(queue) + ncells > self.max_queue:
            self.event(PacketDropped(DropReason.QUEUE_FULL, f"{len(queue)} cells waiting"))
            return
        buf = bytearray(packet)
        if p.flow.proto == TCP:
            clamp_mss(buf, p.ihl, self.c.receive_mss)
            entry.last_ack = tcp_ack_number(packet, p.ihl) or entry.last_ack
        set_source(buf, p, entry.anon, 0)
        entry.state.update(p.tcp_flags, True, now)
        cells = self._seal(entry, bytes(buf), wrap, now)
        if waiting is not None:  # the queued ACK says less than this one: this one goes instead
            waiting.cell, entry.ack_no = cells[0], ack_no or 0
            self.event(AckReplaced())
            return
        for cell in cells:
            queue.append(Pending(cell, now))
        if entry.opened_at is None:  # its provider is judged by its first answer
            entry.opened_at = now
            self.choice.flow_opened(entry, now)
        self.market.moved(entry, len(packet), now)
        # The next ACK may take this one's place; after anything else it queues behind it.
        entry.ack, entry.ack_no = (queue[-1], ack_no) if ack_no is not None else (None, 0)
        entry.ack_first = entry.sent
        self.event(PacketQueued(len(cells), len(queue)))

    def _seal(
        self, entry: MemberFlow, payload: bytes, wrap: bool, now: float, service: bool = False
    ) -> list[bytes]:
        """`payload` sealed under the flow's key (with its key wrap if `wrap`), in cells;
        `service`: the entry is a service's (its tag names an endpoint, never a flow)."""
        if wrap:
            self._wrap(entry)
            entry.wrapped_at = now
        entry.sent += 1
        sealed = seal_packet(
            entry.secret, entry.tag, entry.sent, payload, entry.wrap if wrap else b"", service
        )
        packet_id = self.rng.getrandbits(32)  # random: a counter would link our flows
        chunks = wire.split_vector(sealed, self.c.cell_data)
        cs = self.c.coalition.cell_size
        return [
            encode_cell(cs, entry.tag, packet_id, i, len(chunks), c) for i, c in enumerate(chunks)
        ]

    def _wrap(self, entry: MemberFlow) -> None:
        if not entry.wrap:  # made once per flow: X25519 with every gateway
            entry.wrap = self.wrapper.wrap(entry.secret, self.rng)

    def _queue_cells(self, cells: list[bytes], now: float, first: bool = False) -> bool:
        """`first`: ahead of everything waiting, and even into a full queue (a few cells
        that must not wait behind a flood: a service's REGISTER)."""
        queue = self.rounds.queue
        if first:
            queue.extendleft(Pending(cell, now) for cell in reversed(cells))
        elif len(queue) + len(cells) > self.max_queue:
            self.event(PacketDropped(DropReason.QUEUE_FULL, f"{len(queue)} cells waiting"))
            return False
        else:
            queue.extend(Pending(cell, now) for cell in cells)
        self.event(PacketQueued(len(cells), len(queue)))
        return True

    # --- services (member/services.py) ----------------------------------------------------

    def _serve(self, service: OfferedService, packet: bytes, p: Parsed, now: float) -> None:
        """A packet our service sends: it leaves from the service's endpoint."""
        if service.state is not ServiceState.SERVING:
            self.event(PacketDropped(DropReason.NO_ENDPOINT, service.offer.name))
            return
        flow = service.flow
        buf = bytearray(packet)
        if p.flow.proto == TCP:
            clamp_mss(buf, p.ihl, self.c.receive_mss)
        set_source(buf, p, flow.anon, service.port)
        self._queue_cells(self._seal(flow, bytes(buf), flow.wants_wrap(now), now, True), now)

    def _ask_for_endpoints(self, now: float) -> None:
        """REGISTERs due (common/endpoints.py), in cells like any packet: anonymous. They go
        first: a flood of inbound connections must not starve them (the endpoint would
        expire)."""
        for service, request in self.services.due(now, self.wall_offset):
            key = service.offer.key
            if key is not None:  # a pinned endpoint: its key says the request is its holder's
                request = sign_pin(key, self.c.identity, service.tag, request)
            cells = self._seal(service.flow, request.encode(), True, now, True)
            self._queue_cells(cells, now, first=True)

    def service_answered(self, service: OfferedService, answer: Answer, now: float) -> None:
        if self.services.answered(service, answer, now):
            why = service.refusal.label if service.refusal else ""
            self.event(
                ServiceChanged(service.offer.name, service.state.value, service.endpoint, why)
            )

    def _accuse(self, a: Accusation, now: float) -> None:
        """A reserved slot of ours was written into: say so to the gateways, anonymously, in
        express slots (common/accusation.py; `Contributor.accusation`). One accusation waits
        at a time, the latest: the gateways keep a few seconds of outputs to judge by, and a
        jammer that jams the accusations too must not make them pile up. It is sealed after
        the next round's answer is made (`_queue_accusation`): sealing costs X25519 per
        gateway, and that answer, late, would show the switch who accuses."""
        self._accusation = a

    def _queue_accusation(self, now: float) -> None:
        a, self._accusation = self._accusation, None
        if a is None:
            return
        data = seal_accusation(a, self.wrapper, self.rng)
        chunks = wire.split_vector(data, self.c.cell_data)
        packet_id = self.rng.getrandbits(32)
        cs = self.c.coalition.cell_size
        self.rounds.accusation = deque(
            Pending(
                encode_cell(cs, ACCUSATION_TAG, packet_id, i, len(chunks), c), now, accuses=True
            )
            for i, c in enumerate(chunks)
        )

    def _refuse_too_large(self, packet: bytes) -> None:
        """Tell our own stack, as the kernel would: 'fragmentation needed', at the LAN MTU."""
        self.command(
            InjectPacket(icmp_error(packet, UNREACH_FRAG_NEEDED, self.c.coalition.lan_mtu))
        )

    def _allowed_addresses(self, wanted: list[str]) -> tuple[bytes, ...]:
        """The anonymous addresses of the gateways (or operators) this member chose; all if none."""
        known = {g.name for g in self.c.gateways} | {g.operator for g in self.c.gateways}
        unknown = sorted(set(wanted) - known)
        if unknown:
            raise ConfigError(
                f"gateways = {unknown}: expected gateway names or operators of {self.c.path} "
                f"({', '.join(sorted(known))})"
            )
        chosen = [
            g for g in self.c.gateways if not wanted or g.name in wanted or g.operator in wanted
        ]
        return tuple(sorted(a.packed for g in chosen for a in g.addresses))

    @property
    def anonymous(self) -> tuple[bytes, ...]:
        """The anonymous addresses this member may leave under (its `gateways` setting)."""
        return self.choice.allowed

    @anonymous.setter
    def anonymous(self, allowed: tuple[bytes, ...]) -> None:
        self.choice.allowed = allowed

    def _choose_address(self, flow: Flow | None = None) -> bytes:
        """The chosen provider's addresses (member/choice.py); all allowed ones without offers."""
        return self.choice.address()

    # --- frames -------------------------------------------------------------------------

    def receive_frame(self, src: bytes, frame: bytes, now: float) -> None:
        if frame[1:2] == _INBOUND:  # first: a download brings thousands a second
            if self.filter_inbound:
                self._filtered_inbound(frame, now)
            elif self._admit(src, now):
                try:
                    self._inbound(frame, now)
                except RemoteProtocolError as exc:
                    self._reject(exc, frame, src, now)
            return
        if not self._admit(src, now):
            return
        try:
            header = self._header(frame, self.c.id)
            t = header.type
            if t == wire.MsgType.COALITION:
                self._on_version(src, frame, now)
                return
            if t == wire.MsgType.HEARTBEAT:
                self._on_heartbeat(header.sender, src, frame, now)
                return
            if t == wire.MsgType.OFFER:
                self._on_offer(header.sender, src, frame, now)
                return
            if t == wire.MsgType.ISSUE:
                self.market.receive_issue(self.c.gateway_at(header.sender), src, frame, now)
                return
            if t == wire.MsgType.RATING:
                self.market.receive_rating(self.c.gateway_at(header.sender), src, frame, now)
                return
            if t in _TO_THE_LEADER or self.retired:
                return  # other members' frames to the leader: not for us
            if t == wire.MsgType.TREE_PART:
                self.rounds.receive_tree_part(header.sender, frame, now)
            elif t == wire.MsgType.KEYS:
                if self.keys.receive(header.sender, src, frame, now) and not self.in_roster:
                    self._hello(now)  # we may have been waiting for this key
            elif t == wire.MsgType.OUTPUT_PART:
                self.rounds.receive_output_part(wire.pull_part(frame), now)
            elif t == wire.MsgType.OPEN:
                self._on_open(self.c.gateway_at(header.sender), src, frame, now)
            elif t == wire.MsgType.OUTPUT_HEAD:
                self._on_output_head(self.c.gateway_at(header.sender), src, frame, now)
            elif t == wire.MsgType.ABORT:
                gateway = self.c.gateway_at(header.sender)
                body = self.verified((GATEWAY, gateway.index), src, gateway.public, frame, now)
                self.rounds.receive_abort(wire.pull_abort(body))
            elif t == wire.MsgType.BLAME:
                self.blame.receive_blame(self.c.gateway_at(header.sender), src, frame, now)
            elif t == wire.MsgType.VERDICT:
                self.blame.receive_verdict(self.c.gateway_at(header.sender), src, frame, now)

        except RemoteProtocolError as exc:
            self._reject(exc, frame, src, now)

    def _filtered_inbound(self, frame: bytes, now: float) -> None:
        """An INBOUND frame the kernel let through (`filter_inbound`): it names one of our
        flows' tags, so whatever is wrong with it is told in private, as for a refused frame
        of our own flow, and the door neither counts nor turns away its source: a public count
        or a shut door would show that the tag is ours."""
        if self.retired:
            return
        try:
            self._inbound(frame, now)
        except RemoteProtocolError:
            self.event(InboundRefused(InboundRefusal.MALFORMED))

    def drain_may_read(self) -> bool:
        """Whether the daemon's compiled INBOUND path (member/drain.py) may read for us now:
        it does with a sound INBOUND frame what `receive_frame` would, but not with
        `filter_inbound` (faults are told otherwise), out of the coalition, or past
        MAX_DRAIN_TAGS flows (its table of our tags is made again whenever one comes or goes,
        at a cost that grows with them)."""
        return (
            not self.filter_inbound
            and not self.retired
            and len(self.flows) + len(self.services) <= MAX_DRAIN_TAGS
        )

    def owned_keys(self) -> dict[int, tuple[bytes, Mapping[int, int]]]:
        """Our flows' and services' tags (the INBOUND frames that are ours): each one's key,
        and the last number taken from each gateway."""
        owned: dict[int, tuple[bytes, Mapping[int, int]]] = {
            f.tag: (f.secret, f.inbound_seq or {}) for f in self.flows
        }
        for s in self.services:
            owned[s.tag] = (s.flow.secret, s.flow.inbound_seq or {})
        return owned

    @property
    def owned_changes(self) -> int:
        """Counts the changes to `owned_keys`: a flow came or went, or the engine's own path
        took a frame of ours (its number is then the last taken)."""
        return self.flows.changes + self.inbound.taken

    def receive_opened(self, opened: OpenedInbound, now: float) -> None:
        """A fresh INBOUND frame of one of our tags, read and opened by the compiled path."""
        if self.retired:
            return
        try:
            gateway = self.c.gateway_at(opened.sender)
        except RemoteProtocolError:  # (a version with fewer gateways came meanwhile)
            self.event(InboundRefused(InboundRefusal.MALFORMED))
            return
        self.inbound.receive_opened(gateway, opened, now)

    def inbound_refused(self, bad_seals: int, replays: int) -> None:
        """Frames of our tags the compiled path refused: told in private, as the engine's own
        path tells them."""
        if bad_seals:
            self.event(InboundRefused(InboundRefusal.BAD_SEAL, bad_seals))
        if replays:
            self.event(InboundRefused(InboundRefusal.REPLAY, replays))

    def _inbound(self, frame: bytes, now: float) -> None:
        """An INBOUND frame (its shape checked here is public: every member sees it alike)."""
        if self.retired:  # (its header only: the rest is no business of ours any more)
            self._header(frame, self.c.id)
            return
        sender, inbound = wire.pull_inbound_frame(frame, self.c.id)
        self.inbound.receive(self.c.gateway_at(sender), frame, inbound, now)

    def _on_offer(self, sender: int, src: bytes, frame: bytes, now: float) -> None:
        """A provider's offer, signed by one of its gateways (the latest wins). Cheap checks
        first: one good offer per gateway a second, and only one newer than the last (a replay
        is not); then the signature."""
        gateway = self.c.gateway_at(sender)
        known = src == self.choice.gateway_src.get(gateway.index)
        if now - self.offers_checked.get(gateway.index, float("-inf")) < OFFER_CHECK:
            return
        offer = pull_offer(wire.split_auth(frame, wire.SIG_LEN)[0])
        if not self.choice.fresh_offer(gateway.index, offer, wall_ms(now, self.wall_offset), now):
            return  # no newer than its last, or from the future: a replay, or a wrong clock
        if not known:  # (from elsewhere than where it is: one check a second, good or bad)
            self.offers_checked[gateway.index] = now
        self.verified((GATEWAY, gateway.index), src, gateway.public, frame, now, fresh=False)
        self.offers_checked[gateway.index] = now
        self.trusted((GATEWAY, gateway.index), src)  # fresh and good: it is there
        self.choice.heard_gateway(gateway.index, src, now)
        self.market.offer_heard(gateway.index, offer, now)
        if self.choice.offer_heard(gateway.index, offer, now):
            self._choose(now)

    def _choose(self, now: float) -> None:
        before = self.choice.chosen
        chosen = self.choice.choose(now, wall_ms(now, self.wall_offset))
        if chosen is not before:
            name, score = (chosen.operator, chosen.score) if chosen else ("", 0.0)
            self.event(ProviderChosen(name, score, self.choice.reason))

    def _on_heartbeat(self, sender: int, src: bytes, frame: bytes, now: float) -> None:
        """Rounds tell us the epoch: heartbeats matter while there are none, and when one
        says its gateway runs a newer version (its text's digest: what we take from it).
        Once a second per gateway, one is checked for the providers' availability."""
        quiet = now - self.last_open >= HEARTBEAT_QUIET
        gateway = self.c.gateway_at(sender)
        heard = self.choice.gateway_heard.get(gateway.index, float("-inf"))
        sample = now - heard >= HEARD_EVERY
        if not sample and not quiet and wire.peek_heartbeat_version(frame) <= self.c.version:
            return  # rounds run, and it runs no newer version: nothing to check
        hb = wire.pull_heartbeat(wire.split_auth(frame, wire.SIG_LEN)[0])
        if hb.seq <= self.choice.heartbeat_seq.get(gateway.index, 0):
            return  # one checked already, or a replay: nothing new (and no signature check)
        self.verified((GATEWAY, gateway.index), src, gateway.public, frame, now, fresh=False)
        self.choice.heartbeat_seq[gateway.index] = hb.seq
        self.trusted((GATEWAY, gateway.index), src)  # fresh and good: that is where it is
        self.choice.heard_gateway(gateway.index, src, now)
        ours = hb.version == self.c.version and hb.naddresses == len(self.c.anonymous)
        if hb.held and ours:  # (another numbering of the addresses says nothing here)
            self.choice.held_by(gateway.index, hb.held)
        if not quiet and hb.version <= self.c.version:
            return
        if hb.version > self.c.version:
            self.versions.advertised(hb.version, hb.text_digest, src)
        if self.retired or hb.version != self.c.version:
            return
        if hb.leader:  # only a leader's epoch is the lanon's
            self.last_heartbeat = now
            self.keys.follow(hb.epoch, now)
            self.blame.readmitted(hb.excluded)

    def _on_open(self, gateway: GatewayPeer, src: bytes, frame: bytes, now: float) -> None:
        """Cheap checks on the unauthenticated OPEN first (shape, clock, round and epoch
        windows), then our MAC in its table, then the round."""
        nmembers = len(self.c.members)
        body = wire.split_sealed(frame, nmembers)[0]
        o = wire.pull_open(body)
        if o.version != self.c.version:  # (unauthenticated: heartbeats say who is behind)
            raise RemoteProtocolError(
                RejectReason.FOREIGN,
                f"OPEN of version {o.version} of the coalition file, we run {self.c.version}",
            )
        r = self.c.rounds
        if self.c.trusted:  # every member's cells, no reservations
            fits = o.nslots == len(o.roster) * r.trusted_cells and o.nentries == 0
        else:
            fits = (
                r.express_slots <= o.nslots <= r.max_slots + r.express_slots
                and 0 < o.nentries <= r.reservation_entries
            )
        if o.nmembers != nmembers or not fits:
            raise RemoteProtocolError(RejectReason.MALFORMED, "OPEN does not fit our coalition")
        wall = wall_ms(now, self.wall_offset)
        tolerance_ms = self.c.rounds.clock_tolerance * 1000
        # Honest rounds start at the leader's wall clock in µs and grow far slower than it.
        fresh = abs(o.leader_ms - wall) <= tolerance_ms and o.round <= (wall + tolerance_ms) * 1000
        stale = o.round <= self.rounds.last_round or o.epoch < self.keys.epoch
        if stale and (not fresh or self.me.index not in o.roster):
            raise RemoteProtocolError(
                RejectReason.REPLAY, f"round {o.round} <= {self.rounds.last_round}"
            )
        check_sealed(self.rounds.mac_keys[gateway.index], frame, self.me.index, nmembers)
        if stale:
            # A fresh OPEN of an old round: its leader paused, or another led meanwhile. Say
            # where the lanon is, so that it moves on (rounds only move forward).
            self.rounds.refuse(gateway.index, src, o.round, RefuseReason.STALE_ROUND, "")
            return
        if not fresh:  # a leader without NTP, or a replay to a member that restarted
            detail = f"leader clock {o.leader_ms} ms, ours {wall} ms"
            self.rounds.refuse(gateway.index, src, o.round, RefuseReason.CLOCK, detail)
            return
        self.trusted((GATEWAY, gateway.index), src)
        self.last_open = self.last_heartbeat = self.rounds_seen_at = now
        self.keys.follow(o.epoch, now)
        if self.me.index in o.roster:
            self.last_in_roster = now
            self.blame.excluded.pop(self.me.index, None)  # readmitted: rounds name us again
        self.rounds.receive_open(o, gateway.index, src, now, body)
        if self._accusation is not None:
            self._queue_accusation(now)  # its sealing, after this round's answer is made
        if not self.in_roster:
            self._hello(now)

    def _on_output_head(self, gateway: GatewayPeer, src: bytes, frame: bytes, now: float) -> None:
        nmembers = len(self.c.members)
        head = wire.pull_output_head(wire.split_sealed(frame, nmembers)[0])
        if not self.rounds.expects(head.round):
            return  # not the round we wait for (or a replay): nothing to check
        check_sealed(self.rounds.mac_keys[gateway.index], frame, self.me.index, nmembers)
        self.rounds.receive_output_head(head, gateway.index, now)

    # --- timers ---------------------------------------------------------------------------

    def get_timer(self) -> float:
        # (a JOIN beside the others, never instead of them: a relay's moment must not wait)
        t = self.next_join if self.joining or self.next_key is not None else float("inf")
        if self.retired:
            return min(t, self.next_housekeeping)
        t = min(t, self.next_housekeeping, self.keys.get_timer(), self.rounds.get_timer())
        if self.in_roster:
            return min(t, self.last_in_roster + self.roster_silence)
        return min(t, self.next_hello)

    def handle_timer(self, now: float) -> None:
        if now >= self.next_join:
            self._ask(now)
        if self.retired:
            self.next_housekeeping = now + HOUSEKEEPING
            return
        self.rounds.handle_timer(now)  # first: an answer is due at a fixed moment
        self._report_turned_away(now)
        if self.in_roster and now - self.last_in_roster >= self.roster_silence:
            self.rounds.leave()
        if not self.in_roster and now >= self.next_hello:
            self._hello(now)
        self.keys.handle_timer(now)
        if now >= self.next_housekeeping:
            self.next_housekeeping = now + HOUSEKEEPING
            self.flows.expire(now)
            self.inbound.expire(now)
            self.choice.sweep(now)
            if now >= self.next_choice:
                self.next_choice = now + CHOICE_INTERVAL
                self._choose(now)
            if self.in_roster:
                self.market.housekeeping(now)
            if self.services and self.in_roster:
                self._ask_for_endpoints(now)
            quiet = now - self.rounds_seen_at
            if len(self.flows) and quiet >= self.c.coalition.disband_timeout:
                self._end_flows()
            if self.filter_inbound and self.flows.take_changed():
                self._filter_inbound()

    def _filter_inbound(self) -> None:
        """Our flows came or went: the kernel lets through only the INBOUND frames of our
        flows and services (the LAN still brings every frame to every member), or all of them
        past MAX_FILTER_TAGS (the daemon's checks take them). Only with `filter_inbound`: without it,
        every frame costs every member the same (`InboundOpener`)."""
        tags = None
        if len(self.flows) + len(self.services) <= MAX_FILTER_TAGS:
            tags = frozenset(itertools.chain(self.flows.tags(), (s.tag for s in self.services)))
        elif self._inbound_tags is None:
            return  # every frame already
        self._inbound_tags = tags
        self.command(FilterInbound(tags))

    def _end_flows(self) -> None:
        """No round for disband_timeout (the lanon disbanded, or its gateways are gone): no
        hope of recovering the flows (seed 000 §4.5). Our applications learn it at once, from
        a reset each connection gets inside this host; nothing is sent on the LAN or beyond,
        so nobody sees a burst of resets that would link the connections."""
        gone = self.flows.clear()
        reset = 0
        for f in gone:
            if f.key[0] == TCP and f.last_ack is not None:
                rst = tcp_reset(f.remote, f.local_addr, f.key[4], f.local_port, f.last_ack)
                self.command(InjectPacket(rst))
                reset += 1
        self.rounds.queue.clear()
        self.event(FlowsEnded(len(gone), reset))

    def _hello(self, now: float) -> None:
        if now < self.next_hello:
            return
        self.next_hello = now + HELLO_INTERVAL
        hello = wire.Hello(wall_ms(now, self.wall_offset), self.c.fingerprint, self.c.version)
        self.send(wire.BROADCAST, signed(self.key, hello.encode(self.c.id, self.me.index)))
        self.event(Joining(self.rounds.last_round))

    def ask_for_key(self, key: HostKey, now: float) -> None:
        """lanon rekey made `key`: ask for it until a version gives it."""
        self.next_key, self.next_join = key, now

    def _ask(self, now: float) -> None:
        """A JOIN: to be added (joining), or to have the key we made replace ours."""
        if self.joining:
            frame = join_frame(self.c, self.name, self.key, wall_ms(now, self.wall_offset), None)
            self.next_join = now + JOIN_INTERVAL
        elif self.next_key is not None and not self.retired:
            ms = wall_ms(now, self.wall_offset)
            frame = join_frame(self.c, self.name, self.next_key, ms, self.key)
            self.next_join = now + REKEY_INTERVAL
        else:
            self.next_join = float("inf")
            return
        self.send(wire.BROADCAST, frame)

    def start(self, now: float) -> None:
        if self.filter_inbound:
            self._filter_inbound()
        if self.joining:
            self._ask(now)
            return
        self._hello(now)


def _replaceable(flow: MemberFlow, ack_no: int | None) -> Pending | None:
    """The flow's queued ACK that a pure ACK numbered `ack_no` may take the place of: one no
    round has taken yet, by a higher number only (a duplicate ACK means something: loss; a
    queued duplicate may give its place to a later ACK that advances), and at most ACK_SPAN
    times: a packet queued before it and sent again after a lost round must still
    fall within the gateways' replay window."""
    waiting = flow.ack
    if ack_no is None or waiting is None or waiting.taken:
        return None
    if flow.sent - flow.ack_first >= ACK_SPAN:
        return None
    return waiting if ack_advances(ack_no, flow.ack_no) else None
