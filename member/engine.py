"""The member's sans-IO engine: packets in, DC-net contributions out; inbound packets back in.

Driven by `submit_packet(packet, now)` (from NFQUEUE), `receive_frame(src, frame, now)` (from
the LAN) and `handle_timer(now)`; it answers with commands (SendFrame, InjectPacket) and events.
No sockets, no clock reads.

In every round it is asked into, the member sends the same number of same-size frames:
its reservation claims and the cells it was granted, XORed with one pad per key-graph
neighbour in the roster. What it sends alone is indistinguishable from random.

Safety rules (each prevents reuse of a pad, which would reveal a member's message):
- it never contributes twice to one round number (rounds must strictly increase);
- pads also depend on ephemeral keys made by this process: a round recorded before a restart
  names keys the member no longer has, so a replayed OPEN can never reuse a pad.
It refuses, and tells the leader at once, rounds that would weaken anonymity (roster below
min_members, key graph below 2-connected) or that it cannot serve (a missing key).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from lanon.common import wire
from lanon.common.cell import encode_cell, split_packet
from lanon.common.coalition import Coalition, GatewayPeer, RosterCheck
from lanon.common.crypto import HostKey, apply_pads, mac_key
from lanon.common.engine import EngineBase, check_mac, maced, signed
from lanon.common.errors import ConfigError, RejectReason, RemoteProtocolError
from lanon.common.events import (
    CellDelivered,
    CellRetried,
    Contributed,
    EpochChanged,
    InboundDelivered,
    InjectPacket,
    Joining,
    OutputSeen,
    PacketDropped,
    PacketQueued,
    RefuseReason,
    RetryReason,
    RoundRefused,
    RoundVetoed,
)
from lanon.common.guard import GATEWAY, MEMBER
from lanon.common.output import OutputAssembler
from lanon.common.packet import (
    ICMP,
    ICMP_ECHO_REQUEST,
    TCP,
    UNREACH_FRAG_NEEDED,
    Flow,
    PacketError,
    Unsupported,
    clamp_mss,
    icmp_error,
    parse,
    restore_icmp_error,
    set_destination,
    set_source,
)
from lanon.common.reservation import ENTRY_LEN, make_claim, tally, write_claims
from lanon.common.tree import forward_by, place
from lanon.member.flows import MemberFlow, MemberFlows
from lanon.member.pads import PadKeys
from lanon.member.relay import Relay
from lanon.member.veto import AnonymityPolicy, Veto

HELLO_INTERVAL = 0.5  # seconds between HELLOs while we are not in the roster
HOUSEKEEPING = 1.0  # seconds between flow and reassembly expiry sweeps
KEYS_ECHO_GAP = 0.2  # at most this often, new keys from a neighbour make us announce ours
INBOUND_REASSEMBLY_TIMEOUT = 5.0
MAX_PACKET = 4000  # NFQUEUE copies about 4 KB of a packet
MAX_BACKOFF_EXP = 5


@dataclass(slots=True)
class Pending:
    cell: bytes
    queued: float


@dataclass(slots=True)
class RoundView:
    """A round this member contributed to, until its output is seen or it is lost."""

    round: int
    gateway: int
    opened: float
    nslots: int
    nentries: int
    slots: dict[int, Pending]
    claims: dict[int, bytes]
    output: OutputAssembler
    done: bool = False


@dataclass(frozen=True, slots=True)
class Grant:
    round: int  # the round the granted slots are in
    slots: tuple[int, ...]
    nslots: int


@dataclass(slots=True)
class _Inbound:
    first: float
    parts: list[bytes | None] = field(default_factory=list)


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
    ) -> None:
        super().__init__()
        self.c = coalition
        self.me = coalition.member(name)
        if key.public != self.me.public:
            raise ConfigError(
                f"the private key does not belong to member {name!r}: its public key differs "
                f"from the one in {coalition.path}"
            )
        self.key = key
        self.rng = rng
        self.wall_offset = wall_offset
        self.max_queue = max_queue
        self.pads = PadKeys(coalition, self.me.index, key)
        self.mac_keys = {g.index: mac_key(key, g.public) for g in coalition.gateways}
        self.flows = MemberFlows(coalition.flows, self._choose_address, rng)
        self.anonymous = self._allowed_addresses(gateways or [])
        self.queue: deque[Pending] = deque()
        self.last_round = 0
        self.epoch = -1
        self.last_open = float("-inf")
        self.next_keys = float("inf")  # announce once we know the epoch
        self._key_epoch: int | None = None  # the leader's epoch, from OPEN or heartbeats
        self.relay: Relay | None = None  # our place in this round's tree (schedule = "tree")
        self._tree_dst: tuple[bytes, bytes] = (b"", b"")
        self._member_macs: dict[int, bytes] = {}
        self.current: RoundView | None = None
        self.grant: Grant | None = None
        self.claim_after = 0
        self.collisions = 0
        self.last_in_roster = float("-inf")
        self.next_hello = now
        self.next_housekeeping = now + HOUSEKEEPING
        self.inbound_seq: dict[int, int] = {}
        self._inbound: dict[tuple[int, int, int], _Inbound] = {}
        self.roster_check = RosterCheck(coalition)
        self.veto = Veto(coalition, policy or AnonymityPolicy())
        self.last_heartbeat = float("-inf")  # a leading gateway's, verified
        self.members_heard: dict[int, float] = {}  # member -> when its keys were last heard

    # --- outbound packets ---------------------------------------------------------------

    def submit_packet(self, packet: bytes, now: float) -> None:
        """An outbound IPv4 packet from this host (its original has been dropped)."""
        try:
            p = parse(packet)
        except PacketError as exc:
            if exc.reason is Unsupported.TRUNCATED and len(packet) >= 28 and packet[0] >> 4 == 4:
                self._refuse_too_large(packet)  # NFQUEUE copied only the start of it
            self._event(PacketDropped(exc.reason.value, str(exc)))
            return
        f = p.flow
        if p.icmp_error or (f.proto == ICMP and packet[p.ihl] != ICMP_ECHO_REQUEST):
            self._event(PacketDropped("protocol", "only TCP, UDP and ICMP echo requests leave"))
            return
        if p.ihl != 20:
            self._event(PacketDropped("ip_options", "IP options could identify the sender"))
            return
        if len(packet) > MAX_PACKET:
            self._refuse_too_large(packet)
            self._event(PacketDropped("too_large", f"{len(packet)} bytes"))
            return
        entry = self.flows.outbound(f, now)
        if entry is None:
            self._event(PacketDropped("flow_table_full"))
            return
        capacity = self.c.cell_capacity
        ncells = -(-len(packet) // capacity)
        if len(self.queue) + ncells > self.max_queue:
            self._event(PacketDropped("queue_full", f"{len(self.queue)} cells waiting"))
            return
        buf = bytearray(packet)
        if f.proto == TCP:
            clamp_mss(buf, p.ihl, self.c.mss)
        set_source(buf, p, entry.anon, 0)
        entry.state.update(p.tcp_flags, True, now)
        packet_id = self.rng.getrandbits(32)  # random: a counter would link our flows
        chunks = split_packet(bytes(buf), capacity)
        cs = self.c.coalition.cell_size
        for i, chunk in enumerate(chunks):
            cell = encode_cell(cs, entry.tag, packet_id, i, len(chunks), chunk)
            self.queue.append(Pending(cell, now))
        self._event(PacketQueued(len(chunks), len(self.queue)))

    def _refuse_too_large(self, packet: bytes) -> None:
        """Tell our own stack, as the kernel would: 'fragmentation needed', at the LAN MTU."""
        err = icmp_error(packet, UNREACH_FRAG_NEEDED, self.c.coalition.lan_mtu)
        self._commands.append(InjectPacket(err))

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

    def _choose_address(self, flow: Flow) -> bytes:
        return self.anonymous[self.rng.randrange(len(self.anonymous))]

    # --- frames -------------------------------------------------------------------------

    def receive_frame(self, src: bytes, frame: bytes, now: float) -> None:
        if not self._admit(src, now):
            return
        try:
            header = self._header(frame, self.c.id)
            t = header.type
            if t in (wire.MsgType.CONTRIB, wire.MsgType.HELLO, wire.MsgType.REFUSE):
                return  # other members' frames to the leader: not for us
            if t == wire.MsgType.TREE_PART:
                self._on_tree_part(header.sender, frame)
                return
            if t == wire.MsgType.KEYS:
                self._on_keys(header.sender, src, frame, now)
                return
            if t == wire.MsgType.OUTPUT_PART:
                self._on_output_part(wire.pull_part(frame), now)
                return
            gateway = self._gateway(header.sender)
            if t == wire.MsgType.INBOUND:
                self._on_inbound(gateway, src, frame, now)
                return
            if t == wire.MsgType.HEARTBEAT and now - self.last_open < 1.0:
                return  # rounds tell us the epoch; heartbeats matter only while there are none
            if t == wire.MsgType.OPEN:
                self._on_open(header.sender, src, frame, now)
                return
            if t == wire.MsgType.OUTPUT_HEAD:
                head = wire.pull_output_head(wire.split_auth(frame, wire.SIG_LEN)[0])
                cur = self.current
                if cur is None or cur.done or head.round != cur.round or cur.output.head:
                    return  # not the round we wait for (or a replay): no signature to check
            body = self._verified((GATEWAY, gateway.index), src, gateway.public, frame, now)
            if t == wire.MsgType.OUTPUT_HEAD:
                self._on_output_head(head, now)
            elif t == wire.MsgType.ABORT:
                self._on_abort(wire.pull_abort(body))
            elif t == wire.MsgType.HEARTBEAT:
                hb = wire.pull_heartbeat(body)
                if hb.leader:  # only a leader's epoch is the lanon's
                    self.last_heartbeat = now
                    self._follow_epoch(hb.epoch, now)
        except RemoteProtocolError as exc:
            self._reject(exc, frame, src, now)

    def _gateway(self, index: int) -> GatewayPeer:
        if index >= len(self.c.gateways):
            raise RemoteProtocolError(RejectReason.NOT_IN_ROSTER, f"no gateway #{index}")
        return self.c.gateways[index]

    def _on_open(self, gateway: int, src: bytes, frame: bytes, now: float) -> None:
        """Cheap checks on the unverified OPEN first (shape, clock, round and epoch windows),
        then its signature, then the round."""
        o = wire.pull_open(wire.split_auth(frame, wire.SIG_LEN)[0])
        if o.nmembers != len(self.c.members) or o.nslots > self.c.rounds.max_slots:
            raise RemoteProtocolError(RejectReason.MALFORMED, "OPEN does not fit our coalition")
        wall = self._wall_ms(now)
        tolerance_ms = self.c.rounds.clock_tolerance * 1000
        # Honest rounds start at the leader's wall clock in µs and grow far slower than it.
        fresh = abs(o.leader_ms - wall) <= tolerance_ms and o.round <= (wall + tolerance_ms) * 1000
        stale = o.round <= self.last_round or o.epoch < self.epoch
        if stale and (not fresh or self.me.index not in o.roster):
            raise RemoteProtocolError(RejectReason.REPLAY, f"round {o.round} <= {self.last_round}")
        public = self.c.gateways[gateway].public
        self._verified((GATEWAY, gateway), src, public, frame, now, fresh=not stale)
        if stale:
            # A fresh OPEN of an old round: its leader paused, or another led meanwhile. Say
            # where the lanon is, so that it moves on (rounds only move forward).
            self._refuse(gateway, src, o.round, RefuseReason.STALE_ROUND, "", now)
            return
        if not fresh:  # a leader without NTP, or a replay to a member that restarted
            detail = f"leader clock {o.leader_ms} ms, ours {wall} ms"
            self._refuse(gateway, src, o.round, RefuseReason.CLOCK, detail, now)
            return
        self.last_open = self.last_heartbeat = now
        self._follow_epoch(o.epoch, now)
        self._lose_current()
        self.relay = None  # a new round: the last one's tree is gone, sent or not
        grant, self.grant = self.grant, None
        if grant is not None and (grant.round != o.round or grant.nslots != o.nslots):
            for _ in grant.slots:  # the cells are still queued: they will be claimed again
                self._event(CellRetried(RetryReason.ROUND_LOST, 0))
            grant = None
        if self.me.index not in o.roster:
            self._hello(now)
            return
        refusal = self._check_round(o, now)
        keys: list[bytes] | None = None
        if refusal is None:
            keys, why = self.pads.keys(o.epoch, o.roster, o.key_of())
            if keys is None:
                refusal = RefuseReason.MISSING_KEY, why
                self._announce_keys(now)
        if refusal is not None or keys is None:
            reason, detail = refusal or (RefuseReason.MISSING_KEY, "")
            self.last_round = o.round  # never answer this round later
            self._refuse(gateway, src, o.round, reason, detail, now)
            return
        self.last_in_roster = now
        if o.epoch != self.epoch:  # any epoch is safe: round numbers alone never repeat
            self.epoch = o.epoch
            self._event(EpochChanged(o.epoch))

        verdict = self.veto.judge(o.roster, now)
        if verdict.reason is not None:  # an idle vector: the cells wait for a better round
            self._event(RoundVetoed(o.round, verdict.reason, verdict.size, verdict.k))
            if grant is not None:
                for _ in grant.slots:
                    self._event(CellRetried(RetryReason.VETOED, 0))
                grant = None
        slots = {s: self.queue.popleft() for s in (grant.slots if grant else ()) if self.queue}
        if slots:
            self.veto.sent_with(verdict)
        claims: dict[int, bytes] = {}
        if o.round >= self.claim_after and self.queue and verdict.reason is None:
            count = min(self.c.rounds.max_claims, len(self.queue), o.nentries)
            for entry in self.rng.sample(range(o.nentries), count):
                claims[entry] = make_claim(self.rng.randbytes(4))
        cs = self.c.coalition.cell_size
        vector = write_claims(o.nentries, claims)
        vector += b"".join(slots[s].cell if s in slots else bytes(cs) for s in range(o.nslots))
        padded = apply_pads(bytes(vector), keys, o.round)
        parts = wire.split_vector(padded, self.c.part_size)
        if self.c.rounds.schedule == "tree":
            self._start_relay(o, gateway, src, parts, now)
        else:
            mkey = self.mac_keys[gateway]
            for i, payload in enumerate(parts):
                part = wire.Part(o.round, i, len(parts), payload)
                self._send(
                    src, maced(mkey, part.encode(wire.MsgType.CONTRIB, self.c.id, self.me.index))
                )
        self.last_round = o.round
        self.pads.keep_only(o.epoch)  # forward secrecy: other epochs' keys are gone
        self.current = RoundView(
            o.round,
            gateway,
            now,
            o.nslots,
            o.nentries,
            slots,
            claims,
            OutputAssembler(o.round, self.c.part_lens(o.nslots, o.nentries), o.nslots, o.nentries),
        )
        self._event(Contributed(o.round, len(parts), len(padded), bool(slots or claims)))

    def _refuse(
        self, gateway: int, src: bytes, rnd: int, reason: RefuseReason, detail: str, now: float
    ) -> None:
        code = wire.RefuseCode[reason.name]
        refuse = wire.Refuse(rnd, code, self.last_round + 1, max(self.epoch, 0))
        self._send(src, maced(self.mac_keys[gateway], refuse.encode(self.c.id, self.me.index)))
        self._event(RoundRefused(rnd, reason, detail))

    # --- the reduction tree (schedule = "tree") ------------------------------------------

    def _start_relay(
        self, o: wire.Open, gateway: int, src: bytes, parts: list[bytes], now: float
    ) -> None:
        if len(o.macs) != len(o.roster):
            raise RemoteProtocolError(RejectReason.MALFORMED, "a tree round's OPEN without MACs")
        p = place(o.roster, o.round, self.me.index, self.c.rounds.tree_fanout)
        if p.parent is None:  # the root: its parent is the leader
            self._tree_dst = (src, self.mac_keys[gateway])
        else:
            self._tree_dst = (o.mac_of()[p.parent], self._member_mac(p.parent))
        self.relay = Relay(
            o.round, p, self.me.index, parts, forward_by(now, self.c.rounds.deadline, p)
        )
        if self.relay.complete:
            self._forward(self.relay)

    def _member_mac(self, other: int) -> bytes:
        key = self._member_macs.get(other)
        if key is None:
            key = self._member_macs[other] = mac_key(self.key, self.c.members[other].public)
        return key

    def _on_tree_part(self, sender: int, frame: bytes) -> None:
        relay = self.relay
        if sender >= len(self.c.members) or sender == self.me.index:
            raise RemoteProtocolError(
                RejectReason.NOT_IN_ROSTER, f"tree part from member #{sender}"
            )
        part = wire.pull_tree_part(check_mac(self._member_mac(sender), frame))
        if relay is None or relay.sent or part.round != relay.round:
            raise RemoteProtocolError(RejectReason.STALE, f"tree part of round {part.round}")
        if part.nmembers != len(self.c.members):
            raise RemoteProtocolError(RejectReason.MALFORMED, "tree part of another coalition size")
        relay.add(sender, part)
        if relay.complete:
            self._forward(relay)

    def _forward(self, relay: Relay) -> None:
        """Send our subtree's sum up: to our parent, or to the leader if we are the root."""
        relay.sent = True
        dst, key = self._tree_dst
        parts = relay.parts()
        members = frozenset(relay.contributors)
        for i, payload in enumerate(parts):
            tp = wire.TreePart(relay.round, i, len(parts), members, len(self.c.members), payload)
            self._send(dst, maced(key, tp.encode(self.c.id, self.me.index)))

    def _check_round(self, o: wire.Open, now: float) -> tuple[RefuseReason, str] | None:
        """Refuse rounds that would weaken anonymity (the clock was checked before)."""
        verdict = self.roster_check(o.roster)
        return None if verdict is None else (RefuseReason(verdict[0]), verdict[1])

    def _on_output_head(self, head: wire.OutputHead, now: float) -> None:
        cur = self.current
        if cur is None or cur.done or head.round != cur.round:
            return  # a round we did not take part in
        cur.output.add_head(head)
        self._maybe_complete(now)

    def _on_output_part(self, part: wire.Part, now: float) -> None:
        cur = self.current
        if cur is None or cur.done or part.round != cur.round:
            return
        cur.output.add_part(part)
        self._maybe_complete(now)

    def _maybe_complete(self, now: float) -> None:
        cur = self.current
        assert cur is not None
        vector = cur.output.vector()
        if vector is None:
            return
        cur.done = True
        area = vector[: cur.nentries * ENTRY_LEN]
        t = tally(area, cur.nentries, self.c.rounds.max_slots)
        slot_of = {entry: s for s, entry in enumerate(t.granted)}
        granted, collided, deferred = [], 0, 0
        for entry, value in cur.claims.items():
            if area[entry * ENTRY_LEN : (entry + 1) * ENTRY_LEN] != value:
                collided += 1
            elif entry in slot_of:
                granted.append(slot_of[entry])
            else:
                deferred += 1
        if granted:
            self.grant = Grant(cur.round + 1, tuple(sorted(granted)), len(t.granted))
        if collided:
            self.collisions += 1
            backoff = self.rng.randrange(2 ** min(self.collisions, MAX_BACKOFF_EXP))
            self.claim_after = cur.round + 1 + backoff
            for _ in range(collided):
                self._event(CellRetried(RetryReason.RESERVATION_COLLISION, backoff))
        elif granted:
            self.collisions = 0
        for _ in range(deferred):
            self._event(CellRetried(RetryReason.DEFERRED, 0))

        base = cur.nentries * ENTRY_LEN
        cs = self.c.coalition.cell_size
        lost = []
        for s in sorted(cur.slots):
            pending = cur.slots[s]
            if vector[base + s * cs : base + (s + 1) * cs] == pending.cell:
                self._event(CellDelivered(now - pending.queued))
            else:
                lost.append(pending)
                self._event(CellRetried(RetryReason.DATA_COLLISION, 0))
        self.queue.extendleft(reversed(lost))
        self._event(OutputSeen(cur.round, now - cur.opened, cur.nslots))

    def _on_abort(self, abort: wire.Abort) -> None:
        if self.current is not None and self.current.round == abort.round:
            self._lose_current()

    def _lose_current(self) -> None:
        """The current round will not produce an output: its cells go back to the queue front."""
        cur = self.current
        if cur is None or cur.done:
            return
        cur.done = True
        lost = [cur.slots[s] for s in sorted(cur.slots)]
        for _ in lost:
            self._event(CellRetried(RetryReason.ROUND_LOST, 0))
        self.queue.extendleft(reversed(lost))

    # --- inbound packets ------------------------------------------------------------------

    def _on_inbound(self, gateway: GatewayPeer, src: bytes, frame: bytes, now: float) -> None:
        flow = self.flows.by_tag(wire.peek_inbound_tag(frame))
        if flow is None:
            return  # another member's packet: nothing to do, nothing to learn
        unverified = wire.pull_inbound(wire.split_auth(frame, wire.SIG_LEN)[0])
        last = self.inbound_seq.get(gateway.index, 0)
        if unverified.seq <= last:
            raise RemoteProtocolError(
                RejectReason.REPLAY, f"inbound seq {unverified.seq} <= {last}"
            )
        body = self._verified((GATEWAY, gateway.index), src, gateway.public, frame, now)
        inbound = wire.pull_inbound(body)
        self.inbound_seq[gateway.index] = inbound.seq
        packet = self._reassemble(gateway.index, inbound, now)
        if packet is None:
            return
        try:
            p = parse(packet)
        except PacketError as exc:
            raise RemoteProtocolError(RejectReason.MALFORMED, f"inbound packet: {exc}") from None
        if not _belongs(p.flow, p.icmp_error, flow):
            # A gateway (or a forger) must not make our stack answer anything but the flow's
            # own peer: the answer would leave outside the lanon, or link us to the flow.
            raise RemoteProtocolError(RejectReason.MALFORMED, "inbound packet not of its flow")
        buf = bytearray(packet)
        if p.icmp_error:
            restore_icmp_error(buf, p, flow.local_addr, flow.local_port)
        else:
            set_destination(buf, p, flow.local_addr, flow.local_port)
            if p.flow.proto == TCP:
                clamp_mss(buf, p.ihl, self.c.mss)
            flow.state.update(p.tcp_flags, False, now)
        self._commands.append(InjectPacket(bytes(buf)))
        self._event(InboundDelivered(len(buf)))

    def _reassemble(self, gateway: int, inbound: wire.Inbound, now: float) -> bytes | None:
        if inbound.count == 1:
            return inbound.payload
        key = (gateway, inbound.tag, inbound.seq - inbound.index)
        entry = self._inbound.get(key)
        if entry is None:
            entry = self._inbound[key] = _Inbound(now, [None] * inbound.count)
        if len(entry.parts) != inbound.count:
            raise RemoteProtocolError(RejectReason.MALFORMED, "inbound part count changed")
        entry.parts[inbound.index] = inbound.payload
        if any(p is None for p in entry.parts):
            return None
        del self._inbound[key]
        return b"".join(p for p in entry.parts if p is not None)

    # --- ephemeral keys ---------------------------------------------------------------------

    def _follow_epoch(self, epoch: int, now: float) -> None:
        """Hold keys for the leader's epoch and the next one; announce new ones at once.
        Epochs never go back: a paused leader's old epoch is refused, not followed."""
        if epoch < self.epoch or epoch > wire.MAX_EPOCH:
            return
        made = self.pads.ensure(epoch) | (epoch < wire.MAX_EPOCH and self.pads.ensure(epoch + 1))
        self._key_epoch = epoch
        if made or self.next_keys == float("inf"):
            self._announce_keys(now)

    def _announce_keys(self, now: float) -> None:
        epoch = self._key_epoch
        if epoch is None:
            return
        self.next_keys = now + wire.KEYS_INTERVAL
        epochs = [e for e in (epoch, epoch + 1) if e <= wire.MAX_EPOCH]
        keys = wire.Keys(self._wall_ms(now), self.pads.announcement(epochs))
        self._send(wire.BROADCAST, signed(self.key, keys.encode(self.c.id, self.me.index)))

    def _key_window(self) -> tuple[int, int]:
        """The epochs whose keys we keep: the current one and the next (none before we know)."""
        base = self.epoch if self.epoch >= 0 else self._key_epoch
        return (base, base + 1) if base is not None else (1, 0)

    def _on_keys(self, sender: int, src: bytes, frame: bytes, now: float) -> None:
        if sender >= len(self.c.members) or sender == self.me.index:
            raise RemoteProtocolError(RejectReason.NOT_IN_ROSTER, f"KEYS from member #{sender}")
        unverified = wire.pull_keys(wire.split_auth(frame, wire.SIG_LEN)[0])
        low, high = self._key_window()
        new = [
            (e, k)
            for e, k in unverified.keys
            if low <= e <= high and not self.pads.knows(sender, e, k)
        ]
        if not new or sender not in self.pads.neighbours:
            # Repeats, and keys of epochs we do not keep, cost no signature check. A recent
            # repeat of keys we know still says the member is there (for status only).
            tolerance_ms = self.c.rounds.clock_tolerance * 1000
            if abs(unverified.wall_ms - self._wall_ms(now)) <= tolerance_ms and any(
                self.pads.knows(sender, e, k) for e, k in unverified.keys
            ):
                self.members_heard[sender] = now
            return
        public = self.c.members[sender].public
        keys = wire.pull_keys(self._verified((MEMBER, sender), src, public, frame, now))
        self.members_heard[sender] = now
        for epoch, key in keys.keys:
            if low <= epoch <= high:
                self.pads.learn(sender, epoch, key)
        # A neighbour with new keys (it restarted, or joined) needs ours too: answer soon.
        if now - (self.next_keys - wire.KEYS_INTERVAL) >= KEYS_ECHO_GAP:
            self._announce_keys(now)
        if self._wants_hello(now):
            self._hello(now)  # we may have been waiting for this key

    # --- timers ---------------------------------------------------------------------------

    def get_timer(self) -> float:
        t = min(self.next_housekeeping, self.next_keys)
        if self.relay is not None and not self.relay.sent:
            t = min(t, self.relay.forward_at)
        if self._wants_hello(self.next_hello):
            return min(self.next_hello, t)
        return t

    def handle_timer(self, now: float) -> None:
        self._report_turned_away(now)
        if self.relay is not None and not self.relay.sent and now >= self.relay.forward_at:
            self._forward(self.relay)  # a child is silent: send what we have, the leader will see
        if now >= self.next_hello and self._wants_hello(now):
            self._hello(now)
        if now >= self.next_keys:
            self._announce_keys(now)
        if now >= self.next_housekeeping:
            self.next_housekeeping = now + HOUSEKEEPING
            self.flows.expire(now)
            stale = [
                k for k, v in self._inbound.items() if now - v.first > INBOUND_REASSEMBLY_TIMEOUT
            ]
            for k in stale:
                del self._inbound[k]

    def _wants_hello(self, now: float) -> bool:
        # In the roster recently: no need to ask. Otherwise keep asking (the leader may be new).
        return now - self.last_in_roster > 2 * HELLO_INTERVAL

    def _hello(self, now: float) -> None:
        if now < self.next_hello:
            return
        self.next_hello = now + HELLO_INTERVAL
        body = wire.Hello(self._wall_ms(now), self.c.fingerprint).encode(self.c.id, self.me.index)
        self._send(wire.BROADCAST, signed(self.key, body))
        self._event(Joining(self.last_round))

    def start(self, now: float) -> None:
        self._hello(now)

    def _wall_ms(self, now: float) -> int:
        return int((now + self.wall_offset) * 1000)


def _belongs(f: Flow, icmp_error: bool, flow: MemberFlow) -> bool:
    """Whether an inbound packet is the flow's: from its remote address and port (for an ICMP
    error: about a packet of the flow), with its protocol, to its anonymous address."""
    proto, _local, _lport, remote, rport = flow.key
    if icmp_error:  # the quoted packet went from our anonymous address to the flow's peer
        return (
            f.src == flow.anon
            and f.dst == remote
            and f.proto == proto
            and (proto == ICMP or f.dport == rport)
        )
    return (
        f.dst == flow.anon
        and f.src == remote
        and f.proto == proto
        and (proto == ICMP or f.sport == rport)
    )
