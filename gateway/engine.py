"""The gateway's sans-IO engine: leader, egress, ingress, ARP claims and heartbeats in one.

Driven by `receive_frame(src, frame, now)` (lanon frames), `receive_packet(packet, now)` (IPv4
captured on the LAN), `receive_arp(src, payload, now)` and `handle_timer(now)`; it answers with
commands (SendFrame, SendArp, EmitPacket) and events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Iterable

from lanon.common import blindrsa, wire
from lanon.common.clock import KEYS_INTERVAL, wall_ms, wall_us
from lanon.common.coalition import Coalition, GatewayPeer, Schedule, check_own_key
from lanon.common.crypto import HostKey, gateway_pair_key
from lanon.common.engine import EngineBase, signed
from lanon.common.errors import ConfigError, RejectReason, RemoteProtocolError
from lanon.common.events import (
    AddressClaimed,
    AddressReleased,
    AdoptNextKey,
    ArpAnswered,
    FlowsEnded,
    FlowsReceived,
    GatewayChanged,
    JoinRequested,
    KeepSequence,
    LeadershipChanged,
    LinkChanged,
    MakeCredentialKey,
    MemberExcluded,
    MemberReadmitted,
    OfferMismatch,
    RatingRelayed,
    Retired,
    SendArp,
    TokensIssued,
)
from lanon.common.flowkey import CHACHA, open_part, seal_part
from lanon.common.guard import GATEWAY, MEMBER
from lanon.common.offers import OFFER_INTERVAL, Offer, pull_offer
from lanon.common.output import OutputAssembler, RoundOutput
from lanon.common.tokens import Issue, RatingKind, Relay, TokenKind, pull_buy
from lanon.common.tokens import Refusal as TokenRefusal
from lanon.common.versions import (
    REKEY_INTERVAL,
    REPEAT,
    Considered,
    PendingJoins,
    VersionBook,
    chunks,
    join_frame,
    settle,
)
from lanon.gateway import arp
from lanon.gateway.cashier import Cashier, CredentialIssuer
from lanon.gateway.claims import ClaimPolicy, PeerView
from lanon.gateway.egress import Egress, address_text
from lanon.gateway.flows import RECORD, FlowTable
from lanon.gateway.ingress import Ingress
from lanon.gateway.leader import Leader, Phase
from lanon.gateway.tracer import Exclusions, Tracer

VERSION_ECHO_GAP = 1.0  # at most this often, a host behind makes us repeat our version
# Heartbeat intervals a gateway back from a freeze keeps quiet: long enough to hear every live
# gateway's heartbeat again (at most half a gateway timeout).
RETURN_QUIET = 2.5
# Nonces between two marks of the sequence file. The heartbeat's numbers follow the wall clock
# in µs, so a mark is kept about every 34 s; a restart may start up to 67 s of µs ahead of it.
SEQUENCE_BLOCK = 1 << 26
OFFER_COMPARE = 60.0  # seconds between comparisons of our offer with another of our operator's
# What a version rebuilds (GatewayEngine._build and apply): kept, to put back if that fails.
_REBUILT = (
    "c",
    "me",
    "key",
    "addresses",
    "held",
    "ingress",
    "egress",
    "leader",
    "tracer",
    "probes",
    "policy",
)


class GatewayEngine(EngineBase):
    def __init__(
        self,
        coalition: Coalition,
        name: str,
        key: HostKey,
        mac: bytes,
        *,
        now: float,
        wall_offset: float,
        rng: random.Random,
        sequence_mark: int = 0,
    ) -> None:
        """`sequence_mark`: the last mark of the sequence file (every nonce the last run used
        is below it; 0: none)."""
        super().__init__()
        self.sequence_mark = sequence_mark
        self.marked = 0  # the last mark asked for (KeepSequence)
        self.hb_seq = max(wall_us(now, wall_offset), sequence_mark)
        self.name = name
        self.key = key
        self.mac = mac
        self.wall_offset = wall_offset
        self.rng = rng
        self.me = self._me(coalition)
        # Flow ports derive from the member's secret tag and the coalition's identity, which
        # no version changes: every gateway, and every version, gives a flow the same port.
        self.flows = FlowTable(coalition.flows, coalition.identity)
        self._build(coalition, now, Exclusions())
        self.policy = ClaimPolicy(coalition, self.me.index, now)
        self.following: OutputAssembler | None = None
        self.seen_round = 0
        self.seen_epoch = 0
        self.started_ms = wall_ms(now, wall_offset)
        self.next_heartbeat = now
        self.announcements: list[tuple[float, int]] = []
        self._alive: frozenset[int] = frozenset({self.me.index})
        self.link = True
        self.flows_seq: dict[int, int] = {}  # newest FLOWS frame per gateway: no replays
        self._last_timer = now  # when the loop last ran here
        # when our last heartbeat left (or a quiet spell ends): the others time us out from it
        self._silent_from = now
        self._pair_keys: dict[int, bytes] = {}  # gateway -> the key FLOWS to it are sealed with
        self.versions = VersionBook(coalition)
        self.joins = PendingJoins()
        self.next_repeat = now  # the version's text, repeated on the LAN (versioned only)
        self.retired = False  # a version left us out: nothing but versions from here on
        self.next_key: HostKey | None = None  # asked for by `lanon rekey`: a version gives it
        self.next_join = float("inf")
        self.host_versions: dict[str, int] = {}  # other hosts' versions, as last heard
        self._output_seen = (0, now)  # (last round output processed, when): flows end after
        self.offer: Offer | None = None  # our operator's (common/offers.py), if it sells
        self.next_offer = now
        self.cashier: Cashier | None = None  # if it takes tokens (gateway/cashier.py)
        self._offers_compared: dict[int, float] = {}  # our operator's other gateways: when
        self.issuer: CredentialIssuer | None = None  # if our operator issues rating credentials

    def _me(self, coalition: Coalition) -> GatewayPeer:
        me = coalition.gateway(self.name)
        check_own_key(me, "gateway", self.key.public, coalition.path)
        return me

    def _build(self, coalition: Coalition, now: float, exclusions: Exclusions) -> None:
        """The parts that depend on the coalition's hosts: made at start and by a version."""
        self.c = coalition
        self.flows.pinned = frozenset(e.where for e in coalition.endpoints)
        key = self.key
        self.addresses = tuple(a.packed for a in coalition.anonymous)
        self.held: set[int] = set()
        # Inbound sequence numbers are AEAD nonces under flows' keys, which outlive a version:
        # never below the last one, even if the wall clock went back meanwhile.
        first_seq = max(wall_us(now, self.wall_offset), self.sequence_mark)
        old: Ingress | None = getattr(self, "ingress", None)
        if old is not None:
            first_seq = max(first_seq, old.seq + 1)
        self.ingress = Ingress(
            self, coalition, self.me.index, self.flows, self.held, first_seq, self._keep_ahead
        )
        self._keep_ahead(0)
        self.egress = Egress(
            self, coalition, key, self.me.index, self.flows, self.held, self.ingress, self.rng
        )
        self.leader = Leader(
            self,
            coalition,
            self.me.index,
            key,
            process=self.egress.process,
            exclusions=exclusions,
            rng=self.rng,
        )
        self.tracer = Tracer(
            self,
            coalition,
            self.me.index,
            key,
            self.leader.kept,
            exclusions,
            rotate=self.leader.rotate_soon,
        )
        if hasattr(self, "cashier"):  # (a version: the new parts take our till)
            self._equip()
        self.probes = arp.Prober(  # which addresses no other host uses (probed before claims)
            self.addresses, self.mac, self.command, self.event, self.held
        )

    @property
    def leading(self) -> bool:
        return self.leader.phase is not Phase.STOPPED

    # --- input ------------------------------------------------------------------------------

    def receive_frame(self, src: bytes, frame: bytes, now: float) -> None:
        if not self._admit(src, now):
            return
        try:
            header = self._header(frame, self.c.id)
            t = header.type
            if t == wire.MsgType.COALITION:
                considered = self.versions.receive(frame, now, src)
                settle(considered, lambda c: self.apply(c, now), self.event)
            elif self.retired:
                return
            elif t == wire.MsgType.JOIN:
                if self.joins.receive(self.c, frame, now, wall_ms(now, self.wall_offset)):
                    j = wire.pull_join(wire.split_join(frame)[0])
                    self.event(JoinRequested(j.name, j.rotation))
            elif t == wire.MsgType.CONTRIB:
                if self.leading:
                    self.leader.receive_contrib(header.sender, frame, now)
            elif t == wire.MsgType.HELLO:
                self._on_hello(header.sender, frame, now, src)
            elif t == wire.MsgType.TREE_PART:
                if self.leading:
                    self.leader.receive_tree_part(header.sender, frame, now)
            elif t == wire.MsgType.KEYS:  # every gateway keeps them: any may have to lead
                self.leader.receive_keys(header.sender, src, frame, now)
            elif t == wire.MsgType.REFUSE:
                if self.leading:
                    self.leader.receive_refuse(header.sender, frame, now)
            elif t == wire.MsgType.ATTEST:
                if self.leading:
                    self.leader.receive_attest(header.sender, frame, now)
            elif t == wire.MsgType.REVEAL:
                self.tracer.receive_reveal(header.sender, src, frame, now)
            elif t == wire.MsgType.PROOF:
                self.tracer.receive_proof(header.sender, src, frame, now)
            elif t == wire.MsgType.BUY:
                self._on_buy(header.sender, src, frame, now)
            elif t == wire.MsgType.OFFER:
                self._compare_offer(header.sender, src, frame, now)
            elif t in (
                wire.MsgType.BLAME,
                wire.MsgType.VERDICT,
                wire.MsgType.ISSUE,
                wire.MsgType.RATING,
            ):
                return  # for the members (exclusions: the tracer's heartbeats say them)
            elif t == wire.MsgType.OUTPUT_PART:
                self._on_output_part(wire.pull_part(frame))
            elif t == wire.MsgType.INBOUND:  # sealed under its flow's key, not signed
                peer = self.c.gateway_at(header.sender)
                if peer.index != self.me.index:
                    self.ingress.observe(peer, frame)
            else:
                self._from_gateway(header, src, frame, now)
        except RemoteProtocolError as exc:
            self._reject(exc, frame, src, now)
        self._after_outputs(now)

    # --- versions (common/versions.py) ------------------------------------------------------

    def offer_version(self, text: str, now: float) -> Considered:
        """A coalition file an administrator gives this gateway (lanon admin publish)."""
        considered = self.versions.consider(text)
        settle(considered, lambda c: self.apply(c, now), self.event)
        return considered

    def apply(self, new: Coalition, now: float) -> None:
        """Run a newer version of the coalition from now on, between two rounds: flows, the
        addresses held that stay ours, the lead, members' presence and keys all go on. A
        version that leaves this gateway out (or gives it a key we do not hold) retires it.
        All or nothing: the parts are built for `new` first; if that fails, the old ones
        stay, the version is not taken, and the error is the caller's."""
        old = self.c
        key = self.key
        if self.next_key is not None and new.gateway_named(self.name) == self.next_key.public:
            key = self.next_key  # the rotation we asked for
        try:
            me = new.gateway(self.name)
            check_own_key(me, "gateway", key.public, new.path)
        except ConfigError:
            self._let_go(now)
            self.retired = True
            self.c = new
            self._took(new, now)
            self.event(Retired(new.version))
            return
        kept = {k: getattr(self, k) for k in _REBUILT}
        held = {self.addresses[i] for i in self.held}
        leading = self.leading
        old_leader, old_policy, old_probes = self.leader, self.policy, self.probes
        try:
            self.me, self.key = me, key
            self._build(new, now, old_leader.exclusions.remapped(old, new))
            self.held.update(i for i, a in enumerate(self.addresses) if a in held)
            self.probes.carry(old_probes, now)
            self.leader.carry(old_leader)
            self.egress.last_round = kept["egress"].last_round  # outputs already processed
            self.policy = ClaimPolicy(new, me.index, now)
            self.policy.carry(old_policy, now)
        except Exception:
            for k, v in kept.items():
                setattr(self, k, v)
            raise
        self.flows.s = new.flows
        self.egress.registrar.carry(kept["egress"].registrar)  # (the table changes last)
        if key is self.next_key:
            self.next_key, self.next_join = None, float("inf")
            self.command(AdoptNextKey())
        if leading:
            old_leader.stop(now)  # the round being collected has the old roster: given up
            self.leader.start(now, old_leader.round, old_leader.epoch)
        for a in held - set(self.addresses):  # a share that no version has any more
            self.event(AddressReleased(address_text(a)))
        self.following = None
        self._pair_keys.clear()
        names = {g.name: g.index for g in new.gateways}
        self.flows_seq = {
            names[old.gateways[g].name]: seq
            for g, seq in self.flows_seq.items()
            if old.gateways[g].name in names
        }
        self.joins.prune(new, now)
        self._took(new, now)
        if self.held:
            self._announce(self.held, now)  # a share that moved: the router learns where

    def ask_for_key(self, key: HostKey, now: float) -> None:
        """lanon rekey made `key`: ask for it (here too: the administrator may be asking this
        gateway) until a version gives it."""
        self.next_key, self.next_join = key, now

    def _ask(self, now: float) -> None:
        self.next_join = now + REKEY_INTERVAL
        if self.next_key is None or self.retired:
            self.next_join = float("inf")
            return
        ms = wall_ms(now, self.wall_offset)
        frame = join_frame(self.c, self.name, self.next_key, ms, self.key)
        self.send(wire.BROADCAST, frame)
        with contextlib.suppress(RemoteProtocolError):
            self.joins.receive(self.c, frame, now, ms)

    def _took(self, new: Coalition, now: float) -> None:
        """`new` is the version this gateway runs: said, saved, and repeated at once."""
        applied, save = self.versions.took(new)
        self.event(applied)
        self.command(save)
        self.next_repeat = now

    def _repeat_version(self, now: float) -> None:
        self.next_repeat = now + REPEAT
        for frame in chunks(self.c):  # it fits: versions.consider refuses texts that do not
            self.send(wire.BROADCAST, frame)

    def _on_hello(self, sender: int, frame: bytes, now: float, src: bytes) -> None:
        """A HELLO of another version: the member learns ours at once (and is told apart in
        status); of ours, the leader takes it."""
        hello = wire.pull_hello(wire.split_auth(frame, wire.SIG_LEN)[0])
        if hello.fingerprint != self.c.fingerprint and 0 < hello.version < self.c.version:
            member = self.c.member_at(sender)  # signed by the key our version gives it
            self.verified((MEMBER, sender), src, member.public, frame, now)
            self.host_versions[member.name] = hello.version
            if now - self.next_repeat + REPEAT >= VERSION_ECHO_GAP:
                self.next_repeat = now
            raise RemoteProtocolError(
                RejectReason.FOREIGN,
                f"member #{sender} runs version {hello.version} of the coalition file, we run "
                f"{self.c.version}: ours is repeated on the LAN",
            )
        self.leader.receive_hello(sender, frame, now, src)
        self.host_versions[self.c.members[sender].name] = hello.version

    def _after_outputs(self, now: float) -> None:
        """What the round outputs processed since the last call ask for."""
        self._trace_proven(now)
        if self.egress.ratings:
            self._relay_ratings()

    def _trace_proven(self, now: float) -> None:
        """Accusations that held up in the outputs just processed: trace them."""
        proven, self.egress.proven = self.egress.proven, []
        flooded, self.leader.flooded = self.leader.flooded, []
        for rnd, area in flooded:
            self.tracer.start_flood(rnd, area, now)
        for a in proven:
            if self.c.rounds.schedule is Schedule.TREE:
                self.tracer.untraceable(a)
            else:
                self.tracer.start(a, now, self.leading)

    def readmit(self, name: str, now: float) -> bool:
        """An operator lets an excluded member back in (`lanon readmit`); False if it was not
        excluded here."""
        return self.tracer.readmit(self.c.member(name).index, now)

    def _from_gateway(self, header: wire.Header, src: bytes, frame: bytes, now: float) -> None:
        """A gateway's signed frame: cheap checks on the unverified body first (sequence
        numbers, rounds already processed), then the signature, then its effect."""
        peer = self.c.gateway_at(header.sender)
        if peer.index == self.me.index:
            raise RemoteProtocolError(RejectReason.NOT_IN_ROSTER, f"gateway #{peer.index}: us")
        body = wire.split_auth(frame, wire.SIG_LEN)[0]
        t = header.type
        if t == wire.MsgType.HEARTBEAT:
            hb = wire.pull_heartbeat(body)
            prev = self.policy.peers.get(peer.index)
            if prev is not None and hb.seq <= prev.seq:
                raise RemoteProtocolError(RejectReason.REPLAY, f"heartbeat from {peer.name}")
            self._verify(peer, src, frame, now)
            self._on_heartbeat(peer, src, hb, now)
        elif t == wire.MsgType.OPEN:
            o = wire.pull_open(wire.split_sealed(frame, len(self.c.members))[0])
            f = self.following
            if o.round <= self.egress.last_round or (f is not None and o.round <= f.round):
                raise RemoteProtocolError(RejectReason.STALE, f"OPEN of round {o.round}")
            self._verify(peer, src, frame, now)
            self._on_open(o, now)
        elif t == wire.MsgType.OUTPUT_HEAD:
            head = wire.pull_output_head(wire.split_sealed(frame, len(self.c.members))[0])
            f = self.following
            if (
                head.round <= self.egress.last_round
                or self.leading
                or (f is not None and f.round == head.round and f.head is not None)
            ):
                return  # done already, our own round, or a replay: no signature to check
            self._verify(peer, src, frame, now)
            self._on_output_head(head)
        elif t == wire.MsgType.FLOWS:
            flows = wire.pull_flows(body)
            if flows.seq <= self.flows_seq.get(peer.index, 0):
                raise RemoteProtocolError(
                    RejectReason.REPLAY, f"FLOWS {flows.seq} from {peer.name}"
                )
            self._verify(peer, src, frame, now)
            self.flows_seq[peer.index] = flows.seq
            aad = frame[: len(frame) - wire.SIG_LEN - len(flows.sealed)]
            key = self._pair_key(peer)
            opened = open_part(key, peer.index, flows.seq, aad, flows.sealed, CHACHA)
            if opened is None:
                raise RemoteProtocolError(RejectReason.BAD_AUTH, f"FLOWS from {peer.name}")
            added, refused = self.flows.merge(flows.records(opened))
            self.event(FlowsReceived(peer.name, added, refused))
        # ABORT: nothing to keep, nothing to check

    def _verify(self, peer: GatewayPeer, src: bytes, frame: bytes, now: float) -> None:
        self.verified((GATEWAY, peer.index), src, peer.public, frame, now)

    def _on_heartbeat(self, peer: GatewayPeer, src: bytes, hb: wire.Heartbeat, now: float) -> None:
        prev = self.policy.peers.get(peer.index)
        new = peer.index not in self.policy.alive(now) or (
            prev is not None and prev.started_ms != hb.started_ms
        )
        # Another version numbers addresses and members otherwise: what it says it holds
        # and excludes waits until we run the same one (a moment: the newer is repeated).
        ours = hb.version == self.c.version and hb.naddresses == len(self.addresses)
        held = hb.held if ours else (prev.held if prev is not None else frozenset())
        self.policy.heard(
            peer.index,
            PeerView(now, hb.seq, hb.leader, held, hb.round, hb.leaving, hb.started_ms),
        )
        if ours:
            self.probes.vouch(src, hb.held)  # its ARP for these is normal, not a conflict
        self.host_versions[peer.name] = hb.version
        if hb.version > self.c.version:
            self.versions.advertised(hb.version, hb.text_digest, src)
        elif hb.version < self.c.version and now - self.next_repeat + REPEAT >= VERSION_ECHO_GAP:
            self.next_repeat = now  # it missed ours
        if new and self.leading and not hb.leaving:
            self._send_flows(src, peer)  # it may have to take over: give it every flow we know
        self.seen_round = max(self.seen_round, hb.round)
        if ours and hb.nmembers == len(self.c.members):  # the newest list of exclusions wins
            added, removed = self.tracer.exclusions.adopt(hb.excluded, hb.excluded_version)
            for m in sorted(added):
                self.event(MemberExcluded(self.c.members[m].name, 0))
            for m in sorted(removed):
                self.event(MemberReadmitted(self.c.members[m].name))
        if hb.leader:
            self.seen_epoch = max(self.seen_epoch, hb.epoch)
            self.leader.follow(hb.round, hb.epoch, now)

    def _on_open(self, o: wire.Open, now: float) -> None:
        """Another gateway opened a round: follow its output, and never lead below it."""
        self.seen_round = max(self.seen_round, o.round)
        self.seen_epoch = max(self.seen_epoch, o.epoch)
        self.leader.follow(o.round, o.epoch, now)
        if self.following is None or o.round > self.following.round:
            if self.c.trusted:  # the head says how many of the members' cells there are
                most = min(o.nslots, self.c.trusted_output_cells)
                self.following = OutputAssembler.up_to(o.round, most, self.c.part_lens)
            else:
                lens = self.c.part_lens(o.nslots, o.nentries)
                self.following = OutputAssembler(o.round, lens, o.nslots, o.nentries)

    def _on_output_head(self, head: wire.OutputHead) -> None:
        f = self.following
        if f is None or f.round != head.round:
            lens = self.c.part_lens(head.nslots, head.nentries)
            f = self.following = OutputAssembler(head.round, lens, head.nslots, head.nentries)
        f.add_head(head)
        self._output_followed()

    def _on_output_part(self, part: wire.Part) -> None:
        f = self.following
        if self.leading or part.round <= self.egress.last_round:
            return
        if f is None or part.round != f.round:
            raise RemoteProtocolError(RejectReason.STALE, f"output part of round {part.round}")
        f.add_part(part)
        self._output_followed()

    def _output_followed(self) -> None:
        f = self.following
        assert f is not None
        vector = f.vector()
        if vector is None or f.head is None:
            return
        h = f.head
        self.following = None
        self.seen_round = max(self.seen_round, h.round)
        self.egress.process(RoundOutput(h.round, h.leader_ms, h.nentries, h.nslots, vector))

    def receive_packet(self, packet: bytes, now: float, checksum_ready: bool = True) -> None:
        self.ingress.receive(packet, now, checksum_ready)

    def receive_arp(self, src: bytes, payload: bytes, now: float) -> None:
        a = arp.pull_arp(payload)
        if a is not None:
            self.probes.observe(a, now)
        if a is None or a.op != arp.OP_REQUEST or a.sender_ip == a.target_ip:
            return
        index = self.ingress.index.get(a.target_ip)
        if index is None or index not in self.held:
            return
        self.command(SendArp(a.sender_mac, arp.reply_to(a, self.mac).encode()))
        self.event(ArpAnswered(address_text(a.target_ip)))

    def _keep_ahead(self, upcoming: int) -> None:
        """Before the nonces (inbound numbers under flows' keys, FLOWS numbers under the pair
        keys), `upcoming` more included, come within half a block of the last mark kept, keep
        a new one: a restart starts above it whatever its clock says (gateway/daemon.py writes
        it to the sequence file, and to the disk, before the frames that follow)."""
        highest = max(self.ingress.seq, self.hb_seq) + upcoming
        if highest + SEQUENCE_BLOCK // 2 >= self.marked:
            self.marked = highest + SEQUENCE_BLOCK
            self.command(KeepSequence(self.marked))

    def _pair_key(self, peer: GatewayPeer) -> bytes:
        key = self._pair_keys.get(peer.index)
        if key is None:
            key = self._pair_keys[peer.index] = gateway_pair_key(self.key, peer.public)
        return key

    def _send_flows(self, dst: bytes, peer: GatewayPeer) -> None:
        """Every flow we know, flow keys and all, sealed for `peer` alone."""
        records = self.flows.export()
        per_frame = (self.c.coalition.lan_mtu - wire.FLOWS_OVERHEAD) // RECORD.size
        key = self._pair_key(peer)
        self._keep_ahead(len(records) // per_frame + 1)
        for i in range(0, len(records), per_frame):
            self.hb_seq += 1
            chunk = records[i : i + per_frame]
            flows = wire.Flows(self.hb_seq, len(chunk), RECORD.size, b"")
            head = flows.head(self.c.id, self.me.index)
            sealed = seal_part(key, self.me.index, self.hb_seq, head, b"".join(chunk), CHACHA)
            self.send(dst, signed(self.key, head + sealed))

    # --- timers -----------------------------------------------------------------------------

    def start(self, now: float) -> None:
        self.probes.start(now)
        self._heartbeat(now)

    def get_timer(self) -> float:
        # (a version's repeat or a join request beside the others, never instead of them: the
        # leader's next OPEN must not wait for a heartbeat)
        soon = min(self.next_repeat if self.c.versioned else float("inf"), self.next_join)
        if self.retired:
            return min(soon, self.next_heartbeat)
        t = min(soon, self.next_heartbeat, self.tracer.get_timer())
        lt = self.leader.get_timer()
        if lt is not None:
            t = min(t, lt)
        if self.announcements:
            t = min(t, self.announcements[0][0])
        return min(t, self.probes.get_timer())

    def shutdown(self, now: float) -> None:
        """A clean stop: let go of everything and say so, so that another gateway takes over at
        its next heartbeat instead of after `gateway_timeout` of silence."""
        self._let_go(now)
        self._heartbeat(now, leaving=True)

    def _let_go(self, now: float) -> None:
        for index in sorted(self.held):
            self.event(AddressReleased(address_text(self.addresses[index])))
        self.held.clear()
        self.announcements.clear()
        if self.leading:
            self.leader.stop(now)
            self.event(LeadershipChanged(False, self.leader.round))

    def set_wall_offset(self, offset: float, now: float) -> None:
        went_back = offset < self.wall_offset
        super().set_wall_offset(offset, now)
        # Inbound sequence numbers, nonces under flows' keys (which a restart may take back
        # from the other gateways), start at the wall clock so that a run starts above the last
        # one's: a clock set forward after start (NTP; a dead RTC at boot) takes them with it.
        self.ingress.seq = max(self.ingress.seq, wall_us(now, offset))
        self._keep_ahead(0)
        if went_back:
            self.leader.clock_went_back(now)

    def set_link(self, up: bool, now: float) -> None:
        """The LAN link went down or came back. Down: let go of every address and of the lead
        (another gateway takes over). Up: start over like a gateway that just came, claiming
        only what nobody holds, so it never takes back what was taken over (no flapping)."""
        if up == self.link:
            return
        self.link = up
        self.event(LinkChanged(up))
        if up:
            self._silent_from = now  # (no heartbeat while down: that was no freeze)
            self.policy.restart(now)
            self.probes.start(now)
            return
        self._let_go(now)
        self.policy.peers.clear()

    def handle_timer(self, now: float) -> None:
        if self.c.versioned and now >= self.next_repeat:
            self._repeat_version(now)
        if now >= self.next_join:
            self._ask(now)
        if self.retired:
            self.next_heartbeat = now + self.c.rounds.heartbeat_interval
            return
        self._report_turned_away(now)
        self._end_flows_if_disbanded(now)
        self.notice_pause(now)
        if now >= self.next_heartbeat:  # (back from a freeze: not before the quiet spell ends)
            if self.link:
                self._decide(now)
                self._heartbeat(now)
                if self.offer is not None and now >= self.next_offer:
                    self._send_offer(now)
            else:
                self.next_heartbeat = now + self.c.rounds.heartbeat_interval
        while self.announcements and self.announcements[0][0] <= now:
            _, index = self.announcements.pop(0)
            if index in self.held:
                a = arp.announcement(self.mac, self.addresses[index])
                self.command(SendArp(wire.BROADCAST, a.encode()))
        self.probes.handle_timer(now)
        self.tracer.handle_timer(now)
        if self.leading:
            self.leader.handle_timer(now)
        self._after_outputs(now)

    def _end_flows_if_disbanded(self, now: float) -> None:
        """No round output for disband_timeout: the lanon disbanded for good, or for too long
        to recover its flows (seed 000 §4.5). Every gateway forgets them silently: the
        Internet hosts' ends time out; no burst of resets links them."""
        last, since = self._output_seen
        if self.egress.last_round != last:
            self._output_seen = (self.egress.last_round, now)
        elif now - since >= self.c.coalition.disband_timeout and len(self.flows):
            self.event(FlowsEnded(self.flows.clear(), 0))

    def notice_pause(self, now: float) -> None:
        """Whether the others heard no heartbeat from us for longer than a gateway timeout
        while we meant to send them (this process was frozen, or its loop stalled): they may
        have taken over. The loop asks before it reads what queued up meanwhile, the timer
        before it sends anything."""
        if (
            now - self._silent_from > self.c.rounds.gateway_timeout
            and self.link
            and not self.retired
        ):
            self._after_pause(now)
        self._last_timer = now

    def _after_pause(self, now: float) -> None:
        """This process was frozen (SIGSTOP, a VM migration, a stalled loop). We were away,
        not the others: keep those alive then until they are heard again.

        With none of them alive, and too short a while for a gateway started meanwhile to
        have claimed anything, nobody took over: carry on. Otherwise one may have taken over
        our addresses and the lead, and made flows meanwhile. Contesting them at once would
        split flows and rounds between two gateways until they heard each other, so step aside
        quietly: no round, no address, no heartbeat, until the others' fresh heartbeats say
        what they hold and who leads (RETURN_QUIET heartbeat intervals). Then decide as
        usual: claim what nobody holds, lead if nobody leads. What another took over stays
        with it (no flapping)."""
        timeout = self.c.rounds.gateway_timeout
        others = False
        for peer in self.policy.peers.values():
            if self._last_timer - peer.last_seen <= timeout and not peer.leaving:
                peer.last_seen = max(peer.last_seen, now)  # alive when we froze
                others = True
        # A gateway that started meanwhile may have claimed what it found unheld.
        started = len(self.c.gateways) > 1 and now - self._silent_from > timeout + KEYS_INTERVAL
        if not others and not started:
            self._silent_from = now
            if self.leading:
                self.leader.paused(now)  # the round we were collecting: nobody's fault but ours
            self.announcements.clear()
            self._announce(self.held, now)  # (the router may have forgotten us meanwhile)
            return
        if self.leading:
            self.leader.stop(now)  # the round we were collecting: nobody's fault but ours
            self.event(LeadershipChanged(False, self.leader.round))
        for index in sorted(self.held):
            self.event(AddressReleased(address_text(self.addresses[index])))
        self.held.clear()
        self.announcements.clear()
        # Shorter than a gateway timeout: the quiet spell itself is no freeze.
        hb = self.c.rounds.heartbeat_interval
        self._silent_from = self.next_heartbeat = now + min(RETURN_QUIET * hb, timeout / 2)

    def _announce(
        self, indices: Iterable[int], now: float, delays: tuple[float, ...] = arp.ANNOUNCE_DELAYS
    ) -> None:
        pending = {i for _t, i in self.announcements}
        for index in sorted(set(indices) - pending):
            for delay in delays:
                self.announcements.append((now + delay, index))
        self.announcements.sort()

    def _heartbeat(self, now: float, leaving: bool = False) -> None:
        self.next_heartbeat = now + self.c.rounds.heartbeat_interval
        self._silent_from = now
        self.hb_seq = max(self.hb_seq + 1, wall_us(now, self.wall_offset))
        self._keep_ahead(0)
        if self.leading:
            rnd, epoch = self.leader.round, self.leader.epoch
        else:
            rnd, epoch = self.seen_round, self.seen_epoch
        hb = wire.Heartbeat(
            self.hb_seq,
            rnd,
            epoch,
            self.leading,
            frozenset(self.held),
            len(self.addresses),
            leaving,
            self.started_ms,
            frozenset(self.tracer.exclusions.members),
            len(self.c.members),
            self.tracer.exclusions.version,
            self.c.version,
            self.c.text_digest,
        )
        self.send(wire.BROADCAST, signed(self.key, hb.encode(self.c.id, self.me.index)))

    def provide(
        self,
        offer: Offer,
        cashier: Cashier | None = None,
        issuer: CredentialIssuer | None = None,
    ) -> None:
        """Our operator sells (seed 001): its offer, its till if it takes tokens, and the rating
        credentials if it is the coalition's issuer."""
        key = cashier.public.to_bytes() if cashier is not None else b""
        self.offer = dataclasses.replace(offer, token_key=key)
        self.cashier, self.issuer = cashier, issuer
        self._equip()

    def _equip(self) -> None:
        meter = self.cashier.meter if self.cashier is not None else None
        self.egress.cashier = self.cashier
        self.ingress.meter = meter

    def credential_key(self, period: int, key: blindrsa.PrivateKey, now: float) -> None:
        """The daemon made the issuer's key for `period` (MakeCredentialKey): offered at once."""
        if self.issuer is not None:
            self.issuer.add(period, key)
            self.next_offer = now

    def _send_offer(self, now: float) -> None:
        """Our operator's offer, stamped now (members keep the latest), every OFFER_INTERVAL;
        the issuer's carries the current period's credential key."""
        assert self.offer is not None
        self.next_offer = now + OFFER_INTERVAL
        wall = wall_ms(now, self.wall_offset)
        offer = dataclasses.replace(self.offer, issued_ms=wall)
        if self.issuer is not None:
            wanted = self.issuer.wanted(wall / 1000)
            if wanted is not None:
                self.command(MakeCredentialKey(wanted))
            cur = self.issuer.current(wall / 1000)
            if cur is not None:
                offer = dataclasses.replace(
                    offer, cred_period=cur[0], cred_key=cur[1].public_key.to_bytes()
                )
        self.send(wire.BROADCAST, signed(self.key, offer.encode(self.c.id, self.me.index)))

    def _compare_offer(self, sender: int, src: bytes, frame: bytes, now: float) -> None:
        """Another gateway of our operator should offer what we offer: said once a minute
        per gateway if not (a configuration mistake that members would pay for)."""
        peer = self.c.gateway_at(sender)
        if self.offer is None or peer.index == self.me.index or peer.operator != self.me.operator:
            return
        if now < self._offers_compared.get(peer.index, float("-inf")) + OFFER_COMPARE:
            return
        body = self.verified((GATEWAY, peer.index), src, peer.public, frame, now, fresh=False)
        self._offers_compared[peer.index] = now
        theirs, ours = pull_offer(body), self.offer
        differs = [
            what
            for what, a, b in (
                ("prices", (theirs.price, theirs.next_price), (ours.price, ours.next_price)),
                (
                    "allowance",
                    (theirs.free_mb, theirs.mb_per_token),
                    (ours.free_mb, ours.mb_per_token),
                ),
                ("token key", theirs.token_key, ours.token_key),
            )
            if a != b
        ]
        if differs:
            self.event(OfferMismatch(peer.name, ", ".join(differs)))

    def _on_buy(self, sender: int, src: bytes, frame: bytes, now: float) -> None:
        """A member buys tokens, or asks for its rating credential, openly (signed)."""
        buy = pull_buy(wire.split_auth(frame, wire.SIG_LEN)[0])
        if buy.gateway != self.me.index:
            return  # asked of another gateway
        member = self.c.member_at(sender)
        # (not `fresh`: a replayed BUY gets its answer again, from the ledger, and must not
        # make the replayer's address the member's)
        self.verified((MEMBER, sender), src, member.public, frame, now, fresh=False)
        wall = wall_ms(now, self.wall_offset) / 1000
        if buy.kind is TokenKind.PAYMENT and self.cashier is not None:
            issue = self.cashier.sell(member.name, sender, buy, wall)
        elif buy.kind is TokenKind.CREDENTIAL and self.issuer is not None:
            issue = self.issuer.issue(member.name, sender, buy, wall)
        else:
            issue = Issue(buy.kind, sender, buy.request, TokenRefusal.NOT_SOLD, ())
        refusal = "" if issue.refusal is TokenRefusal.NONE else issue.refusal.name.lower()
        self.event(TokensIssued(buy.kind.name.lower(), member.name, len(issue.signatures), refusal))
        self.send(src, signed(self.key, issue.encode(self.c.id, self.me.index)))

    def _relay_ratings(self) -> None:
        """Ratings heard in the outputs, passed on to the members by the leader (the others
        heard them too: one relay is enough)."""
        heard, self.egress.ratings = self.egress.ratings, []
        if not self.leading:
            return
        for rating in heard:
            body = Relay(RatingKind.ANONYMOUS, rating).encode(self.c.id, self.me.index)
            self.send(wire.BROADCAST, signed(self.key, body))
            self.event(RatingRelayed("anonymous"))

    def relay_agency(self, statement: bytes) -> None:
        """An agency's signed rating, handed to this gateway by its operator (control socket)."""
        body = Relay(RatingKind.AGENCY, statement).encode(self.c.id, self.me.index)
        self.send(wire.BROADCAST, signed(self.key, body))
        self.event(RatingRelayed("agency"))

    def _decide(self, now: float) -> None:
        alive = self.policy.alive(now)
        for g in alive ^ self._alive:
            self.event(GatewayChanged(self.c.gateways[g].name, g in alive))
        self._alive = alive
        d = self.policy.decide(now, frozenset(self.held), self.leading, self.probes.unavailable())
        for index in sorted(d.release):
            self.held.discard(index)
            self.event(AddressReleased(address_text(self.addresses[index])))
        for index in sorted(d.claim):
            self.held.add(index)
            takeover = index not in self.policy.share
            silence = self.policy.previous_holder_silence(index, now)
            self.event(AddressClaimed(address_text(self.addresses[index]), takeover, silence))
        # Ours, but another gateway says it holds them too (it took them over while we were
        # away, and lets go now): the router must learn again where they are.
        contested = {a for g in alive - {self.me.index} for a in self.policy.peers[g].held}
        self._announce(d.claim | (self.held & contested), now)
        if d.lead and not self.leading:
            after = max(self.seen_round, self.policy.highest_round(), self.egress.last_round)
            self.leader.start(now, after, self.seen_epoch)
            self.event(LeadershipChanged(True, self.leader.round))
        elif not d.lead and self.leading:
            self.leader.stop(now)
            self.event(LeadershipChanged(False, self.leader.round))
