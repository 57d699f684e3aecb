"""The gateway's sans-IO engine: leader, egress, ingress, ARP claims and heartbeats in one.

Driven by `receive_frame(src, frame, now)` (lanon frames), `receive_packet(packet, now)` (IPv4
captured on the LAN), `receive_arp(src, payload, now)` and `handle_timer(now)`; it answers with
commands (SendFrame, SendArp, EmitPacket) and events.
"""

from __future__ import annotations

import random

from lanon.common import wire
from lanon.common.coalition import Coalition, GatewayPeer
from lanon.common.crypto import HostKey
from lanon.common.engine import EngineBase, signed
from lanon.common.errors import ConfigError, RejectReason, RemoteProtocolError
from lanon.common.events import (
    AddressClaimed,
    AddressReleased,
    ArpAnswered,
    FlowsReceived,
    GatewayChanged,
    LeadershipChanged,
    LinkChanged,
    SendArp,
)
from lanon.common.output import OutputAssembler
from lanon.gateway import arp
from lanon.gateway.claims import ClaimPolicy, PeerView
from lanon.gateway.egress import Egress, address_text
from lanon.gateway.flows import RECORD, FlowTable
from lanon.gateway.ingress import Ingress
from lanon.gateway.leader import Leader, Phase, RoundOutput


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
    ) -> None:
        super().__init__()
        self.c = coalition
        self.me: GatewayPeer = coalition.gateway(name)
        if key.public != self.me.public:
            raise ConfigError(
                f"the private key does not belong to gateway {name!r}: its public key differs "
                f"from the one in {coalition.path}"
            )
        self.key = key
        self.mac = mac
        self.wall_offset = wall_offset
        self.addresses = tuple(a.packed for a in coalition.anonymous)
        self.held: set[int] = set()
        # Flow ports derive from the member's secret tag; every gateway uses the same key.
        self.flows = FlowTable(coalition.flows, coalition.fingerprint)
        self.egress = Egress(self, coalition, self.flows, self._holds, self._answer, rng)
        self.ingress = Ingress(
            self,
            coalition,
            key,
            self.me.index,
            self.flows,
            self._holds,
            lambda: self.egress.clock,
            self._wall_us(now),
        )
        self.leader = Leader(
            self,
            coalition,
            self.me.index,
            key,
            wall_offset=wall_offset,
            process=self.egress.process,
        )
        self.policy = ClaimPolicy(coalition, self.me.index, now)
        self.following: OutputAssembler | None = None
        self.seen_round = 0
        self.seen_epoch = 0
        self.hb_seq = self._wall_us(now)
        self.started_ms = self._wall_us(now) // 1000
        self.next_heartbeat = now
        self.announcements: list[tuple[float, int]] = []
        self._alive: frozenset[int] = frozenset({self.me.index})
        self.link = True
        self.flows_seq: dict[int, int] = {}  # newest FLOWS frame per gateway: no replays

    def _holds(self, index: int) -> bool:
        return index in self.held

    def _wall_us(self, now: float) -> int:
        return int((now + self.wall_offset) * 1e6)

    @property
    def leading(self) -> bool:
        return self.leader.phase is not Phase.STOPPED

    # --- input ------------------------------------------------------------------------------

    def receive_frame(self, src: bytes, frame: bytes, now: float) -> None:
        try:
            header = self._header(frame, self.c.id)
            t = header.type
            if t == wire.MsgType.CONTRIB:
                if self.leading:
                    self.leader.receive_contrib(header.sender, frame, now)
            elif t == wire.MsgType.HELLO:
                self.leader.receive_hello(header.sender, frame, now, src)
            elif t == wire.MsgType.TREE_PART:
                if self.leading:
                    self.leader.receive_tree_part(header.sender, frame, now)
            elif t == wire.MsgType.KEYS:  # every gateway keeps them: any may have to lead
                self.leader.receive_keys(header.sender, frame, now)
            elif t == wire.MsgType.REFUSE:
                if self.leading:
                    self.leader.receive_refuse(header.sender, frame, now)
            elif t == wire.MsgType.OUTPUT_PART:
                self._follow_part(wire.pull_part(frame), now)
            else:
                self._from_gateway(header, src, frame, now)
        except RemoteProtocolError as exc:
            self._reject(exc, frame)

    def _from_gateway(self, header: wire.Header, src: bytes, frame: bytes, now: float) -> None:
        if header.sender >= len(self.c.gateways) or header.sender == self.me.index:
            raise RemoteProtocolError(RejectReason.NOT_IN_ROSTER, f"gateway #{header.sender}")
        peer = self.c.gateways[header.sender]
        body = self._verified(peer.public, frame)
        t = header.type
        if t == wire.MsgType.HEARTBEAT:
            hb = wire.pull_heartbeat(body)
            prev = self.policy.peers.get(peer.index)
            if prev is not None and hb.seq <= prev.seq:
                raise RemoteProtocolError(RejectReason.REPLAY, f"heartbeat from {peer.name}")
            new = peer.index not in self.policy.alive(now) or (
                prev is not None and prev.started_ms != hb.started_ms
            )
            self.policy.heard(
                peer.index,
                PeerView(now, hb.seq, hb.leader, hb.held, hb.round, hb.leaving, hb.started_ms),
            )
            if new and self.leading and not hb.leaving:
                self._send_flows(src)  # it may have to take over: give it every flow we know
            self.seen_round = max(self.seen_round, hb.round)
            if hb.leader:
                self.seen_epoch = hb.epoch
        elif t == wire.MsgType.OPEN:
            o = wire.pull_open(body)
            self.seen_round = max(self.seen_round, o.round)
            self.seen_epoch = o.epoch
        elif t == wire.MsgType.OUTPUT_HEAD:
            self._follow_head(wire.pull_output_head(body), now)
        elif t == wire.MsgType.INBOUND:
            self.ingress.observe(wire.pull_inbound(body))
        elif t == wire.MsgType.FLOWS:
            flows = wire.pull_flows(body)
            if flows.seq <= self.flows_seq.get(peer.index, 0):
                raise RemoteProtocolError(
                    RejectReason.REPLAY, f"FLOWS {flows.seq} from {peer.name}"
                )
            self.flows_seq[peer.index] = flows.seq
            added, refused = self.flows.merge(list(flows.records))
            self._event(FlowsReceived(peer.name, added, refused))
        # ABORT: nothing to keep

    def _follow_head(self, head: wire.OutputHead, now: float) -> None:
        if head.round <= self.egress.last_round:
            return
        if self.following is None or self.following.round != head.round:
            self.following = OutputAssembler(head.round)
        self.following.add_head(head)
        self._follow_done()

    def _follow_part(self, part: wire.Part, now: float) -> None:
        if part.round <= self.egress.last_round or self.leading:
            return
        if self.following is None or self.following.round != part.round:
            self.following = OutputAssembler(part.round)
        self.following.add_part(part)
        self._follow_done()

    def _follow_done(self) -> None:
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
        if a is None or a.op != arp.OP_REQUEST or a.sender_ip == a.target_ip:
            return
        index = self.ingress.index.get(a.target_ip)
        if index is None or index not in self.held:
            return
        self._commands.append(SendArp(a.sender_mac, arp.reply_to(a, self.mac).encode()))
        self._event(ArpAnswered(address_text(a.target_ip)))

    def _send_flows(self, dst: bytes) -> None:
        records = self.flows.export()
        per_frame = (self.c.coalition.lan_mtu - wire.FLOWS_OVERHEAD) // RECORD.size
        for i in range(0, len(records), per_frame):
            self.hb_seq += 1
            frame = wire.Flows(self.hb_seq, tuple(records[i : i + per_frame])).encode(
                self.c.id, self.me.index
            )
            self._send(dst, signed(self.key, frame))

    def _answer(self, tag: int, packet: bytes) -> None:
        self.ingress.broadcast(tag, packet)

    # --- timers -----------------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._heartbeat(now)

    def get_timer(self) -> float:
        t = self.next_heartbeat
        lt = self.leader.get_timer()
        if lt is not None:
            t = min(t, lt)
        if self.announcements:
            t = min(t, self.announcements[0][0])
        return t

    def shutdown(self, now: float) -> None:
        """A clean stop: let go of everything and say so, so that another gateway takes over at
        its next heartbeat instead of after `gateway_timeout` of silence."""
        self._let_go(now)
        self._heartbeat(now, leaving=True)

    def _let_go(self, now: float) -> None:
        for index in sorted(self.held):
            self._event(AddressReleased(address_text(self.addresses[index])))
        self.held.clear()
        self.announcements.clear()
        if self.leading:
            self.leader.stop(now)
            self._event(LeadershipChanged(False, self.leader.round))

    def set_link(self, up: bool, now: float) -> None:
        """The LAN link went down or came back. Down: let go of every address and of the lead
        (another gateway takes over). Up: start over like a gateway that just came, claiming
        only what nobody holds, so it never takes back what was taken over (no flapping)."""
        if up == self.link:
            return
        self.link = up
        self._event(LinkChanged(up))
        if up:
            self.policy.restart(now)
            return
        self._let_go(now)
        self.policy.peers.clear()

    def handle_timer(self, now: float) -> None:
        if now >= self.next_heartbeat:
            if self.link:
                self._decide(now)
                self._heartbeat(now)
            else:
                self.next_heartbeat = now + self.c.rounds.heartbeat_interval
        while self.announcements and self.announcements[0][0] <= now:
            _, index = self.announcements.pop(0)
            if index in self.held:
                a = arp.announcement(self.mac, self.addresses[index])
                self._commands.append(SendArp(wire.BROADCAST, a.encode()))
        if self.leading:
            self.leader.handle_timer(now)

    def _heartbeat(self, now: float, leaving: bool = False) -> None:
        self.next_heartbeat = now + self.c.rounds.heartbeat_interval
        self.hb_seq = max(self.hb_seq + 1, self._wall_us(now))
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
        )
        self._send(wire.BROADCAST, signed(self.key, hb.encode(self.c.id, self.me.index)))

    def _decide(self, now: float) -> None:
        alive = self.policy.alive(now)
        for g in alive ^ self._alive:
            self._event(GatewayChanged(self.c.gateways[g].name, g in alive))
        self._alive = alive
        d = self.policy.decide(now, frozenset(self.held), self.leading)
        for index in sorted(d.release):
            self.held.discard(index)
            self._event(AddressReleased(address_text(self.addresses[index])))
        for index in sorted(d.claim):
            self.held.add(index)
            takeover = index not in self.policy.share
            silence = self.policy.previous_holder_silence(index, now)
            self._event(AddressClaimed(address_text(self.addresses[index]), takeover, silence))
            for delay in arp.ANNOUNCE_DELAYS:
                self.announcements.append((now + delay, index))
        self.announcements.sort()
        if d.lead and not self.leading:
            after = max(self.seen_round, self.policy.highest_round(), self.egress.last_round)
            self.leader.start(now, after, self.seen_epoch)
            self._event(LeadershipChanged(True, self.leader.round))
        elif not d.lead and self.leading:
            self.leader.stop(now)
            self._event(LeadershipChanged(False, self.leader.round))
