"""From the Internet to the members (sans-IO, part of the gateway engine).

A packet for an anonymous address this gateway holds is matched to its flow and broadcast on
the LAN in INBOUND frames named by the flow's tag, sealed under the flow's key (only the
flow's member can read it, and nobody else can forge one); the gateway never learns which
member takes it. Packets that match no flow are dropped silently: the gateway's own stack never
answers for an anonymous address (no RST, no ICMP).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet

from lanon.common import wire
from lanon.common.coalition import Coalition, GatewayPeer
from lanon.common.engine import EngineBase
from lanon.common.errors import RejectReason, RemoteProtocolError
from lanon.common.events import DropReason, InboundBroadcast, PacketDropped
from lanon.common.flowkey import open_part, seal_parts
from lanon.common.packet import PacketError, Unsupported, fill_l4_checksum, parse
from lanon.gateway.cashier import Meter
from lanon.gateway.defrag import Defragmenter
from lanon.gateway.flows import FlowTable


class Ingress:
    def __init__(
        self,
        engine: EngineBase,
        coalition: Coalition,
        index: int,
        flows: FlowTable,
        held: AbstractSet[int],
        first_seq: int,
        keep_ahead: Callable[[int], None],
    ) -> None:
        self.e = engine
        self.c = coalition
        self.gw = index
        self.flows = flows
        self.held = held  # the engine's: the indexes of the addresses it holds
        self.seq = first_seq  # the last inbound number used: a nonce under flows' keys
        self.keep_ahead = keep_ahead  # the engine's sequence file, before `upcoming` more
        self.index = coalition.anonymous_index
        self.defrag = Defragmenter()
        self.meter: Meter | None = None  # our operator's, if it takes tokens (gateway/cashier.py)

    def receive(self, packet: bytes, now: float, checksum_ready: bool = True) -> None:
        """An IPv4 packet seen on the LAN interface (not sent by us); `checksum_ready` is
        False when the kernel handed it over with its TCP/UDP checksum still to compute."""
        if len(packet) < 20:
            return
        index = self.index.get(bytes(packet[16:20]))
        if index is None or index not in self.held:
            return  # not for an address we hold
        packet = packet[: (packet[2] << 8) | packet[3]]  # Ethernet may have padded it
        try:
            p = parse(packet)
        except PacketError as exc:
            if exc.reason is not Unsupported.FRAGMENT:
                self.e.event(PacketDropped(DropReason.inbound(exc.reason), str(exc)))
                return
            whole = self.defrag.add(packet, now)
            for reason, n in self.defrag.take_drops().items():
                for _ in range(n):
                    self.e.event(PacketDropped(DropReason.fragments(reason)))
            if whole is None:
                return
            packet = whole
            try:
                p = parse(packet)
            except PacketError as exc2:
                self.e.event(PacketDropped(DropReason.inbound(exc2.reason), str(exc2)))
                return
        f = p.flow
        if p.icmp_error:  # about a packet we sent: its source is our address and port
            flow = self.flows.inbound(f.proto, f.src, f.sport, f.dst, f.dport)
        else:
            flow = self.flows.inbound(f.proto, f.dst, f.dport, f.src, f.sport)
        if flow is None:
            self.e.event(PacketDropped(DropReason.NO_FLOW))
            return
        if not p.icmp_error and not flow.endpoint:  # an endpoint's life is its member's doing
            flow.state.update(p.tcp_flags, False, self.flows.time)
        if self.meter is not None and not self.meter.charge(flow, len(packet)):
            self.e.event(PacketDropped(DropReason.UNPAID))
            return
        if not checksum_ready:
            buf = bytearray(packet)
            fill_l4_checksum(buf, p)
            packet = bytes(buf)
        self.broadcast(flow.key, flow.tag, packet)

    def broadcast(self, key: bytes, tag: int, packet: bytes) -> None:
        """`packet` to the member of flow `tag` (whose key is `key`), in sealed INBOUND parts."""
        capacity = self.c.inbound_capacity
        self.keep_ahead(wire.part_count(len(packet), capacity))
        head = wire.inbound_head(self.c.id, self.gw, tag)
        cipher = self.c.coalition.inbound_cipher
        frames = seal_parts(key, self.gw, self.seq + 1, head, packet, capacity, cipher)
        self.seq += len(frames)
        send = self.e.send
        for frame in frames:
            send(wire.BROADCAST, frame)
        self.e.event(InboundBroadcast(len(packet), len(frames)))

    def observe(self, peer: GatewayPeer, frame: bytes) -> None:
        """Another gateway broadcast an inbound packet: keep our copy of its flow the same."""
        inbound = wire.pull_inbound(frame)
        flow = self.flows.by_tag.get(inbound.tag)
        if flow is None:
            return
        if flow.inbound_from == peer.index and inbound.seq <= flow.inbound_seq:
            raise RemoteProtocolError(RejectReason.REPLAY, f"inbound from {peer.name}")
        head = frame[: wire.INBOUND_HEAD]
        cipher = self.c.coalition.inbound_cipher
        part = open_part(flow.key, peer.index, inbound.seq, head, inbound.payload, cipher)
        if part is None:
            raise RemoteProtocolError(RejectReason.BAD_AUTH, "inbound not sealed under its key")
        flow.inbound_from, flow.inbound_seq = peer.index, inbound.seq
        if inbound.index != 0:
            return
        try:
            p = parse(part, partial=inbound.count > 1)
        except PacketError:
            return
        if not p.icmp_error and not flow.endpoint:
            flow.state.update(p.tcp_flags, False, self.flows.time)
