"""Inbound packets (sans-IO): a gateway's INBOUND broadcasts, back into this member's stack.

Every member receives every INBOUND frame. One whose flow tag is not in this member's table is
someone else's: nothing is done and nothing is learnt. For one of ours: its sequence number
must be new (cheap), then its signature holds, then its parts are put together (bounded,
common/parts.py), then the packet must be the flow's own (protocol, peer address and port, to
the flow's anonymous address): a gateway or a forger must not make our stack answer anyone
but the flow's peer, which would leave outside the lanon. The packet is then addressed to the
local end of the flow and handed to the stack.
"""

from __future__ import annotations

from lanon.common import wire
from lanon.common.coalition import Coalition, GatewayPeer
from lanon.common.engine import EngineBase
from lanon.common.errors import RejectReason, RemoteProtocolError
from lanon.common.events import InboundDelivered, InjectPacket
from lanon.common.guard import GATEWAY
from lanon.common.packet import (
    ICMP,
    TCP,
    Flow,
    PacketError,
    clamp_mss,
    parse,
    restore_icmp_error,
    set_destination,
)
from lanon.common.parts import PartReassembler
from lanon.member.flows import MemberFlow, MemberFlows

REASSEMBLY_TIMEOUT = 5.0
MAX_PENDING = 256  # inbound packets waiting for parts
MAX_BYTES = 1 << 20


class InboundReceiver:
    def __init__(self, engine: EngineBase, coalition: Coalition, flows: MemberFlows) -> None:
        self.e = engine
        self.c = coalition
        self.flows = flows
        self.seq: dict[int, int] = {}  # gateway -> the last sequence number taken
        self.parts: PartReassembler[tuple[int, int]] = PartReassembler(
            REASSEMBLY_TIMEOUT, MAX_PENDING, max_per_group=MAX_PENDING, max_bytes=MAX_BYTES
        )

    def receive(self, gateway: GatewayPeer, src: bytes, frame: bytes, now: float) -> None:
        flow = self.flows.by_tag(wire.peek_inbound_tag(frame))
        if flow is None:
            return  # another member's packet: nothing to do, nothing to learn
        unverified = wire.pull_inbound(wire.split_auth(frame, wire.SIG_LEN)[0])
        last = self.seq.get(gateway.index, 0)
        if unverified.seq <= last:
            raise RemoteProtocolError(
                RejectReason.REPLAY, f"inbound seq {unverified.seq} <= {last}"
            )
        body = self.e.verified((GATEWAY, gateway.index), src, gateway.public, frame, now)
        inbound = wire.pull_inbound(body)
        self.seq[gateway.index] = inbound.seq
        packet = self.parts.add(
            (gateway.index, inbound.tag),
            inbound.seq - inbound.index,
            inbound.index,
            inbound.count,
            inbound.payload,
            now,
        )
        if packet is not None:
            self._deliver(flow, packet, now)

    def _deliver(self, flow: MemberFlow, packet: bytes, now: float) -> None:
        try:
            p = parse(packet)
        except PacketError as exc:
            raise RemoteProtocolError(RejectReason.MALFORMED, f"inbound packet: {exc}") from None
        if not belongs(p.flow, p.icmp_error, flow):
            raise RemoteProtocolError(RejectReason.MALFORMED, "inbound packet not of its flow")
        buf = bytearray(packet)
        if p.icmp_error:
            restore_icmp_error(buf, p, flow.local_addr, flow.local_port)
        else:
            set_destination(buf, p, flow.local_addr, flow.local_port)
            if p.flow.proto == TCP:
                clamp_mss(buf, p.ihl, self.c.mss)
            flow.state.update(p.tcp_flags, False, now)
        self.e.command(InjectPacket(bytes(buf)))
        self.e.event(InboundDelivered(len(buf)))

    def expire(self, now: float) -> None:
        self.parts.expire(now)


def belongs(f: Flow, icmp_error: bool, flow: MemberFlow) -> bool:
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
