"""From round outputs to packets on the wire (sans-IO, part of the gateway engine).

Every gateway processes every round output, so every gateway's flow table is the same; only
the gateway holding a packet's anonymous source address emits it. Cells carry packets sealed
under their flow's key (common/flowkey.py): a flow's first packets bring the key, wrapped for
each gateway; a packet that does not open under its flow's key, or that repeats a counter the
flow used, is dropped. A packet is emitted only if
its source is an anonymous address, and only towards the Internet (`Destinations`): a member
cannot make a gateway send anything else, nor anywhere else.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from collections.abc import Set as AbstractSet

from lanon.common.accusation import ACCUSATION_TAG, Accusation
from lanon.common.cell import Reassembler, SlotState, decode_slot
from lanon.common.coalition import NEVER_EMITTED, PRIVATE_RANGES, Coalition
from lanon.common.crypto import HostKey
from lanon.common.endpoints import Granted, Refused, is_control, pull_register
from lanon.common.engine import EngineBase
from lanon.common.events import (
    AccusationJudged,
    DropReason,
    EmitPacket,
    EndpointAsked,
    FlowClosed,
    FlowOpened,
    PacketDropped,
    PacketEmitted,
    PortExhausted,
    TokenRedeemed,
)
from lanon.common.flowkey import Sealed, unwrap
from lanon.common.output import RoundOutput, SlotStats
from lanon.common.packet import (
    ICMP,
    ICMP_ECHO_REQUEST,
    UNREACH_FRAG_NEEDED,
    UNREACH_PROHIBITED,
    PacketError,
    Parsed,
    checksum,
    dont_fragment,
    fragment,
    icmp_error,
    normalize_for_emission,
    parse,
    set_source,
)
from lanon.common.reservation import ENTRY_LEN
from lanon.common.tokens import RATING_TAG, SPEND, pull_rating, pull_spend
from lanon.gateway.accusations import Accusations, Judgement
from lanon.gateway.cashier import Cashier
from lanon.gateway.endpoints import Registrar
from lanon.gateway.flows import Exhausted, FlowTable, GatewayFlow, TagConflict
from lanon.gateway.ingress import Ingress

SWEEP_INTERVAL = 1.0  # seconds of lanon clock between flow expiry sweeps
MAX_RATINGS = 64  # ratings kept to relay between two looks of the engine
# seconds after its first output before a gateway meters the flows it hears of: by then every
# flow older than it has sent its key again (member/flows.REWRAP_INTERVAL), and is known
METER_AFTER = 15.0
SPEND_BYTE = bytes([SPEND])


def address_text(packed: bytes) -> str:
    return str(ipaddress.IPv4Address(packed))


def _int_net(prefix: str | ipaddress.IPv4Network) -> tuple[int, int]:
    net = ipaddress.IPv4Network(prefix)
    return int(net.network_address), int(net.netmask)


class Destinations:
    """Where a gateway emits: only where the Internet is. Refused, by class:

    - always: the LAN's and the limited broadcast ("broadcast"), the LAN itself (but for the
      services of `[lan_services] anonymous`, such as the router's resolver), so the
      gateways' and members' own and the anonymous addresses ("lan"), the gateway host's own
      addresses ("local", given by its daemon), 0/8 and 240/4 ("reserved"), loopback,
      link-local, multicast;
    - unless the coalition's `[egress] allow` lists them: the private ranges ("private":
      10/8, 172.16/12, 192.168/16, 100.64/10, 198.18/15).

    `refused(dst)` is one pass over precomputed (network, mask) integers, once a packet, and
    names the class by its drop reason (`DropReason.PROHIBITED_LAN`, ...).
    """

    def __init__(self, coalition: Coalition) -> None:
        lan = coalition.lan
        self._never: list[tuple[int, int, DropReason]] = [
            (int(lan.broadcast_address), 0xFFFFFFFF, DropReason.PROHIBITED_BROADCAST),
            (*_int_net(lan), DropReason.PROHIBITED_LAN),
        ]
        self._never += [(*_int_net(p), DropReason.prohibited(what)) for what, p in NEVER_EMITTED]
        self._private = [_int_net(p) for p in PRIVATE_RANGES]
        self._allowed = [_int_net(p) for p in coalition.egress.allow]
        # [lan_services] anonymous: the LAN servers members reach through the lanon
        self._services = {
            (int(svc.address), proto, svc.port)
            for svc in coalition.lan_services.anonymous_services
            for proto in svc.numbers
        }

    def refuse_local(self, addresses: Iterable[ipaddress.IPv4Address]) -> None:
        """The gateway host's own addresses (on any interface): never a destination."""
        for a in addresses:
            self._never.insert(2, (int(a), 0xFFFFFFFF, DropReason.PROHIBITED_LOCAL))

    def refused(self, dst: bytes, proto: int = 0, dport: int = 0) -> DropReason | None:
        """Why a destination is refused (its class), None if the gateway may emit to it."""
        d = int.from_bytes(dst, "big")
        if self._services and (d, proto, dport) in self._services:
            return None
        for net, mask, what in self._never:
            if d & mask == net:
                return what
        for net, mask in self._private:
            if d & mask == net:
                if any(d & amask == anet for anet, amask in self._allowed):
                    return None
                return DropReason.PROHIBITED_PRIVATE
        return None


def prohibited(packet: bytes, source: bytes | None = None) -> bytes:
    """ICMP 'administratively prohibited' about `packet`, from its destination or `source`
    (a broadcast, multicast, loopback or LAN source would be dropped as a martian)."""
    err = bytearray(icmp_error(packet, UNREACH_PROHIBITED))
    if source is not None:
        err[12:16] = source
        err[10:12] = b"\0\0"
        err[10:12] = checksum(err[:20]).to_bytes(2, "big")
    return bytes(err)


class Egress:
    def __init__(
        self,
        engine: EngineBase,
        coalition: Coalition,
        key: HostKey,
        index: int,
        flows: FlowTable,
        held: AbstractSet[int],
        ingress: Ingress,
        rng: random.Random,
    ) -> None:
        self.e = engine
        self.c = coalition
        self.key = key  # our host key: it unwraps flow keys
        self.gw = index  # ours among the gateways: where our piece of a wrap is
        self.flows = flows
        self.held = held  # the engine's: the indexes of the addresses it holds (and emits)
        self.ingress = ingress  # answers to members (ICMP) go back as inbound packets do
        self.rng = rng
        self.index = coalition.anonymous_index
        self.destinations = Destinations(coalition)
        self.cells = Reassembler()
        self.accusations = Accusations(coalition, key, index)
        self.registrar = Registrar(coalition, flows)
        self.proven: list[Accusation] = []  # to trace (the engine takes them: gateway/tracer.py)
        self.ratings: list[bytes] = []  # heard in outputs, to relay (the engine takes them)
        self.cashier: Cashier | None = None  # our operator's, if it takes tokens
        self._started = float("inf")
        self.last_round = 0
        self._next_sweep = 0.0

    def process(self, out: RoundOutput) -> SlotStats:
        if self._started == float("inf"):
            self._started = out.leader_ms / 1000  # the first output this gateway read
        self.accusations.record(out)
        self.last_round = max(self.last_round, out.round)
        self.flows.time = max(self.flows.time, out.leader_ms / 1000)
        cs = self.c.coalition.cell_size
        base = out.nentries * ENTRY_LEN
        used = garbled = 0
        for s in range(out.nslots):
            state, cell = decode_slot(out.vector[base + s * cs : base + (s + 1) * cs])
            if state is SlotState.GARBLED:
                garbled += 1
            elif cell is not None:
                used += 1
                packet = self.cells.add_cell(cell, self.flows.time)
                if packet is None:
                    continue
                if cell.tag == ACCUSATION_TAG:
                    self._accused(packet)
                elif cell.tag == RATING_TAG:
                    self._rated(packet)
                else:
                    self._egress(cell.tag, packet)
        if self.flows.time >= self._next_sweep:
            self._sweep()
        return SlotStats(used, garbled)

    def _accused(self, data: bytes) -> None:
        a, judgement = self.accusations.receive(data)
        if a is not None and judgement is Judgement.PROVEN:
            self.proven.append(a)
        where = (a.round, a.slot, a.bit) if a else (0, 0, 0)
        self.e.event(AccusationJudged(*where, judgement.value))

    def _rated(self, data: bytes) -> None:
        """A member's anonymous rating: passed on if it is one (members check its credential)."""
        try:
            pull_rating(data)
        except ValueError as exc:
            self._drop(DropReason.MALFORMED, f"rating: {exc}")
            return
        if len(self.ratings) < MAX_RATINGS:
            self.ratings.append(data)

    def _spent(self, tag: int, key: bytes, counter: int, data: bytes) -> None:
        """A token spent in a flow (common/tokens.py): our operator's takes it, if the flow is
        on one of its addresses; the others let it pass (it is not theirs)."""
        flow = self.flows.by_tag.get(tag)
        if flow is None or flow.key != key or flow.endpoint:
            self._drop(DropReason.NO_FLOW_KEY, f"a payment for {tag:016x}, no flow of it")
            return
        flow.window.mark(counter)
        if self.cashier is None:
            return
        try:
            token = pull_spend(data)
        except ValueError as exc:
            self._drop(DropReason.MALFORMED, f"payment: {exc}")
            return
        outcome = self.cashier.redeem(flow, token, self.flows.time)
        if outcome:
            self.e.event(TokenRedeemed(outcome))

    def _sweep(self) -> None:
        # On whole seconds of the lanon's clock: every gateway sweeps at the same outputs.
        self._next_sweep = (self.flows.time // SWEEP_INTERVAL + 1) * SWEEP_INTERVAL
        for f in self.flows.expire(self.flows.time):
            self.e.event(FlowClosed(f.proto, address_text(f.anon), f.state.close_reason()))
        self.cells.expire(self.flows.time)
        for reason, n in self.cells.take_drops().items():
            for _ in range(n):
                self.e.event(PacketDropped(DropReason.cells(reason)))

    def _drop(self, reason: DropReason, detail: str = "") -> None:
        self.e.event(PacketDropped(reason, detail))

    def _open(self, tag: int, data: bytes) -> tuple[bytes, int, bytes, bool] | None:
        """(flow key, counter, packet, whether a service's) of a sealed packet; None,
        counted, if it does not open or is a service's under a flow's tag (or the other way
        round)."""
        try:
            sealed = Sealed(tag, data)
        except ValueError as exc:
            self._drop(DropReason.SEAL_MALFORMED, str(exc))
            return None
        known = self.flows.by_tag.get(tag)
        if known is not None and known.endpoint != sealed.service:
            self._drop(DropReason.TAG_CONFLICT, f"{tag:016x}: a flow's tag and a service's")
            return None
        if known is not None:
            key = known.key
            if not known.window.fresh(sealed.counter):
                self._drop(DropReason.REPLAYED, f"counter {sealed.counter} of {tag:016x}")
                return None
        elif sealed.wrap:  # a new flow (or one we missed): its key is in the wrap
            unwrapped = unwrap(self.key, self.gw, tag, sealed.wrap)
            if unwrapped is None:
                self._drop(DropReason.BAD_SEAL, "the wrap holds no key of this tag for us")
                return None
            key = unwrapped
        else:
            reason = DropReason.NO_ENDPOINT if sealed.service else DropReason.NO_FLOW_KEY
            self._drop(reason, f"{tag:016x}")
            return None
        packet = sealed.open(key)
        if packet is None:
            self._drop(DropReason.BAD_SEAL, f"flow {tag:016x}")
            return None
        return key, sealed.counter, packet, sealed.service

    def _egress(self, tag: int, data: bytes) -> None:
        opened = self._open(tag, data)
        if opened is None:
            return
        key, counter, packet, service = opened
        if service:  # a service's: its REGISTER, or an answer from its endpoint
            known = self.flows.by_tag.get(tag)
            if is_control(packet):
                self._register(tag, key, counter, packet)
            elif known is None:  # never a flow: the service's next REGISTER binds it again
                self._drop(DropReason.NO_ENDPOINT, f"service {tag:016x}: no endpoint here")
            else:
                self._serve(known, key, counter, packet)
            return
        if packet[:1] == SPEND_BYTE:
            self._spent(tag, key, counter, packet)
            return
        p = self._checked(key, tag, packet)
        if p is None:
            return
        f = p.flow
        index = self.index[f.src]
        try:
            flow, created = self.flows.outbound(
                tag, f.proto, f.src, f.dst, f.dport, p.tcp_flags, self.flows.time, key
            )
        except Exhausted:
            self.e.event(PortExhausted(f.proto, address_text(f.src)))
            if index in self.held:  # the application hears at once, as from a full NAT
                self.ingress.broadcast(key, tag, icmp_error(packet, UNREACH_PROHIBITED))
            return
        except TagConflict as exc:
            self._drop(DropReason.TAG_CONFLICT, str(exc))
            return
        if created:
            self.e.event(FlowOpened(f.proto, address_text(f.src)))
            # Metered unless it may be an older flow that this gateway, just started, hears of
            # only now (from a rewrap): what it paid before is not known here.
            flow.metered = self.flows.time >= self._started + METER_AFTER
        flow.window.mark(counter)
        if index in self.held:
            if self.cashier is not None and not self.cashier.meter.charge(flow, len(packet)):
                self._drop(DropReason.UNPAID, f"flow {tag:016x}")
                return
            self._send(key, tag, packet, p, flow.port)

    def _checked(self, key: bytes, tag: int, packet: bytes) -> Parsed | None:
        """A packet a member may have emitted: TCP, UDP or an echo request, from an anonymous
        address, to the Internet; None, counted (and the application told), if not."""
        if is_control(packet):
            self._drop(DropReason.MALFORMED, "a REGISTER not sealed as a service's")
            return None
        try:
            p = parse(packet)
        except PacketError as exc:
            self._drop(DropReason.MALFORMED, str(exc))
            return None
        f = p.flow
        if p.icmp_error or (f.proto == ICMP and packet[p.ihl] != ICMP_ECHO_REQUEST):
            self._drop(DropReason.PROTOCOL, "only TCP, UDP and ICMP echo requests leave")
            return None
        index = self.index.get(f.src)
        if index is None:
            self._drop(DropReason.NOT_ANONYMOUS, "source is not an anonymous address")
            return None
        refused = self.destinations.refused(f.dst, f.proto, f.dport)
        if refused is not None:
            self._drop(refused, f"to {address_text(f.dst)}")
            if index in self.held:  # the application hears at once, as from a firewall
                private = refused is DropReason.PROHIBITED_PRIVATE
                self.ingress.broadcast(key, tag, prohibited(packet, None if private else f.src))
            return None
        return p

    def _serve(self, endpoint: GatewayFlow, key: bytes, counter: int, packet: bytes) -> None:
        """A service's answer: emitted from its endpoint, to the Internet only."""
        p = self._checked(key, endpoint.tag, packet)
        if p is None:
            return
        if (p.flow.proto, p.flow.src, p.flow.sport) != endpoint.where:
            self._drop(DropReason.TAG_CONFLICT, f"not from the endpoint of {endpoint.tag:016x}")
            return
        endpoint.state.last = self.flows.time
        endpoint.window.mark(counter)
        if self.index[p.flow.src] in self.held:
            self._send(key, endpoint.tag, packet, p, endpoint.port)

    def _send(self, key: bytes, tag: int, packet: bytes, p: Parsed, port: int) -> None:
        """Emit a packet from this gateway's address, from `port`, fragmented if it must be."""
        buf = bytearray(packet)
        set_source(buf, p, p.flow.src, port)
        normalize_for_emission(buf, self.rng.getrandbits(16))
        mtu = self.c.coalition.lan_mtu
        if len(buf) <= mtu:
            self._emit(bytes(buf))
        elif dont_fragment(buf):
            self.ingress.broadcast(key, tag, icmp_error(bytes(buf), UNREACH_FRAG_NEEDED, mtu))
            self._drop(
                DropReason.TOO_LARGE, f"{len(buf)} bytes with DF: answered 'fragmentation needed'"
            )
        else:
            for piece in fragment(bytes(buf), mtu):
                self._emit(piece)

    def _register(self, tag: int, key: bytes, counter: int, data: bytes) -> None:
        """A service asks for its endpoint (common/endpoints.py): every gateway decides alike;
        the one holding the address tells the service, under its key."""
        try:
            request = pull_register(data)
        except ValueError as exc:
            self._drop(DropReason.MALFORMED, str(exc))
            return
        self._sweep()  # whenever this gateway last swept: every gateway decides alike
        refresh = tag in self.flows.by_tag
        answer = self.registrar.register(tag, key, request)
        flow = self.flows.by_tag.get(tag)
        if flow is not None and flow.key == key:
            flow.window.mark(counter)
        if isinstance(answer, Refused):
            self.e.event(EndpointAsked(answer.why.label))
        elif not refresh:  # (refreshes are not counted: their rate would follow presence)
            self.e.event(EndpointAsked("bound"))
        address = answer.anon if isinstance(answer, Granted) else request.anon
        if self.index.get(address, -1) in self.held:
            self.ingress.broadcast(key, tag, answer.encode())

    def _emit(self, packet: bytes) -> None:
        self.e.command(EmitPacket(packet))
        self.e.event(PacketEmitted(len(packet)))
