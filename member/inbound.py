"""Inbound packets (sans-IO): a gateway's INBOUND broadcasts, back into this member's stack.

Every member receives every INBOUND frame and does the same work on each: its shape is
checked, then its sealed part is opened (common/flowkey.py), under the flow's key if the flow
is ours and under a key of nobody's if not, at equal cost (`InboundOpener`). Nothing else is
done with someone else's frame. For one of ours: the seal must hold, its sequence number must
be new, then its parts are put together (bounded, common/parts.py), then the packet must be
the flow's own (protocol, peer address and port, to the flow's anonymous address): a gateway
must not make our stack answer anyone but the flow's peer, which would leave outside the
lanon. The packet is then addressed to the local end of the flow and handed to the stack.

What goes wrong with a frame of our own flow is told only in private (`InboundRefused`): no
other member could have checked it, so a public count or a log line would say whose flow it was.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lanon.common import wire
from lanon.common.coalition import Coalition, GatewayPeer
from lanon.common.endpoints import is_control, pull_answer
from lanon.common.events import InboundDelivered, InboundRefusal, InboundRefused, InjectPacket
from lanon.common.flowkey import InboundOpener
from lanon.common.packet import (
    ICMP,
    TCP,
    Flow,
    PacketError,
    Parsed,
    clamp_mss,
    parse,
    restore_icmp_error,
    set_destination,
)
from lanon.common.parts import PartReassembler
from lanon.member.flows import MemberFlow, MemberFlows
from lanon.member.services import OfferedService, ServiceState

if TYPE_CHECKING:
    from lanon.member.engine import MemberEngine

REASSEMBLY_TIMEOUT = 5.0
MAX_PENDING = 256  # inbound packets waiting for parts
MAX_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class OpenedInbound:
    """A fresh INBOUND frame of one of our tags, its header read, its seal checked, its number
    new and its part opened elsewhere (member/drain.py)."""

    sender: int
    seq: int
    tag: int
    index: int
    count: int
    part: bytes


class InboundReceiver:
    def __init__(
        self,
        engine: MemberEngine,
        coalition: Coalition,
        flows: MemberFlows,
        rng: random.Random,
    ) -> None:
        self.e = engine
        self.c = coalition
        self.flows = flows
        self.opener = InboundOpener(rng, coalition.coalition.inbound_cipher)
        self.taken = 0  # frames of ours this path took itself (member/drain.py follows it)
        self.parts: PartReassembler[tuple[int, int]] = PartReassembler(
            REASSEMBLY_TIMEOUT, MAX_PENDING, max_per_group=MAX_PENDING, max_bytes=MAX_BYTES
        )

    def receive(
        self, gateway: GatewayPeer, frame: bytes, inbound: wire.Inbound, now: float
    ) -> None:
        """`inbound`: `frame`'s body, its shape checked."""
        flow, service = self._ours(inbound.tag)
        part = self.opener.open(
            flow.secret if flow is not None else None,
            gateway.index,
            inbound.seq,
            frame[: wire.INBOUND_HEAD],
            inbound.payload,
        )
        if flow is None:
            return  # another member's packet: the same work done, nothing learnt
        if self._accept(
            gateway,
            flow,
            service,
            inbound.seq,
            inbound.tag,
            inbound.index,
            inbound.count,
            part,
            now,
        ):
            self.taken += 1  # (its number is the last taken: the compiled path's table follows)

    def receive_opened(self, gateway: GatewayPeer, opened: OpenedInbound, now: float) -> None:
        """A frame of one of our tags, shape checked and opened with the same work as by
        `receive` (by member/drain.py)."""
        flow, service = self._ours(opened.tag)
        if flow is None:
            return  # (a flow gone since the drain was told our tags)
        self._accept(
            gateway,
            flow,
            service,
            opened.seq,
            opened.tag,
            opened.index,
            opened.count,
            opened.part,
            now,
        )

    def _ours(self, tag: int) -> tuple[MemberFlow | None, OfferedService | None]:
        """Our flow of `tag`, if any, and the service it is the flow of, if any."""
        flow = self.flows.by_tag(tag)
        if flow is not None:
            return flow, None
        services = self.e.services  # (the engine's: made after us)
        service = services.by_tag(tag) if services else None
        return (service.flow, service) if service is not None else (None, None)

    def _accept(
        self,
        gateway: GatewayPeer,
        flow: MemberFlow,
        service: OfferedService | None,
        seq: int,
        tag: int,
        index: int,
        count: int,
        part: bytes | None,
        now: float,
    ) -> bool:
        """A frame of our `flow`, opened: `part` None if its seal did not hold. Whether it
        was taken (its number new)."""
        if part is None:
            self.e.event(InboundRefused(InboundRefusal.BAD_SEAL))
            return False
        seen = flow.inbound_seq
        if seen is None:
            seen = flow.inbound_seq = {}
        if seq <= seen.get(gateway.index, 0):
            self.e.event(InboundRefused(InboundRefusal.REPLAY))
            return False
        seen[gateway.index] = seq
        if not flow.answered and flow.opened_at is not None:  # its provider's latency
            self.e.choice.first_answer(flow.anon, now - flow.opened_at)
        flow.answered = True  # a gateway has the flow's key
        packet = self.parts.add((gateway.index, tag), seq - index, index, count, part, now)
        if packet is None:
            return True
        if service is not None:
            self._to_service(service, packet, now)
        else:
            self._deliver(flow, packet, now)
        return True

    def _to_service(self, service: OfferedService, packet: bytes, now: float) -> None:
        """The gateways' answer to our REGISTER, or a packet for the service's endpoint."""
        if is_control(packet):
            try:
                answer = pull_answer(packet)
            except ValueError:
                self.e.event(InboundRefused(InboundRefusal.MALFORMED))
                return
            self.e.service_answered(service, answer, now)
            return
        try:
            p = parse(packet)
        except PacketError:
            self.e.event(InboundRefused(InboundRefusal.MALFORMED))
            return
        f, flow = p.flow, service.flow
        if service.state is not ServiceState.SERVING or not at_endpoint(
            f, p.icmp_error, flow.key[0], flow.anon, service.port
        ):
            self.e.event(InboundRefused(InboundRefusal.NOT_OF_FLOW))
            return
        self._inject(flow, bytearray(packet), p, now)

    def _deliver(self, flow: MemberFlow, packet: bytes, now: float) -> None:
        try:
            p = parse(packet)
        except PacketError:
            self.e.event(InboundRefused(InboundRefusal.MALFORMED))
            return
        if not belongs(p.flow, p.icmp_error, flow):
            self.e.event(InboundRefused(InboundRefusal.NOT_OF_FLOW))
            return
        self._inject(flow, bytearray(packet), p, now)
        self.e.market.moved(flow, len(packet), now)  # what its provider meters

    def _inject(self, flow: MemberFlow, buf: bytearray, p: Parsed, now: float) -> None:
        """An inbound packet of `flow`, addressed to its local end, into our stack."""
        if p.icmp_error:
            restore_icmp_error(buf, p, flow.local_addr, flow.local_port)
        else:
            set_destination(buf, p, flow.local_addr, flow.local_port)
            if p.flow.proto == TCP:
                clamp_mss(buf, p.ihl, self.c.send_mss)
            flow.state.update(p.tcp_flags, False, now)
        self.e.command(InjectPacket(bytes(buf)))
        self.e.event(InboundDelivered(len(buf)))

    def expire(self, now: float) -> None:
        self.parts.expire(now)


def at_endpoint(f: Flow, icmp_error: bool, proto: int, anon: bytes, port: int) -> bool:
    """Whether an inbound packet is for a service's endpoint (an ICMP error: about a packet
    the service sent from it), from anyone."""
    if f.proto != proto:
        return False
    if icmp_error:
        return f.src == anon and f.sport == port
    return f.dst == anon and f.dport == port


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
