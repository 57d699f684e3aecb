"""The gateway's flow table and the shared port space (AIP x ports), sans-IO.

A flow is named by the member's random tag; the gateway gives it an anonymous port on the
anonymous address the member chose, unique per (protocol, address) lanon-wide. The port is
chosen RFC 6056-style at random, but deterministically from the tag (keyed BLAKE2b, then
probing): every gateway that processes the same round outputs and inbound broadcasts builds
the same table, so a standby can take over an address with its established flows intact.

The table is driven by a logical clock (the leader's clock from round outputs), never by the
local one, for the same reason.

A service's endpoint (gateway/endpoints.py) is an entry of the same table, named by the
service's tag: it takes its port from the same space, answers any remote end, and lives as
long as its member keeps asking for it or sending from it (`endpoint_timeout`). Pinned
endpoints' ports are never handed to flows.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from lanon.common.coalition import FlowSection
from lanon.common.flowkey import flow_tag
from lanon.common.flowstate import FlowState, TcpPhase
from lanon.common.packet import ICMP

PROBES = 16
# A flow as a FLOWS record: tag, whether an endpoint, protocol, anonymous address, port, remote
# address and port, TCP phase, FIN bits, last activity (leader's clock, milliseconds), flow key,
# highest counter, a pinned endpoint's binding time (its REGISTER's clock).
RECORD = struct.Struct("!QBB4sH4sHBBQ32sQQ")
Where = tuple[int, bytes, int]  # protocol, anonymous address, port
REPLAY_WINDOW = 1024  # outbound counters remembered below the highest (cells can be retried)
_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1


@dataclass(slots=True)
class ReplayWindow:
    """The highest outbound counter of a flow and which of the REPLAY_WINDOW below it were
    seen: a sealed packet copied from an output into a later round is not emitted again."""

    top: int = 0
    seen: int = 0  # bit i: counter top - i was seen

    def fresh(self, counter: int) -> bool:
        if counter > self.top:
            return True
        behind = self.top - counter
        return behind < REPLAY_WINDOW and not (self.seen >> behind) & 1

    def mark(self, counter: int) -> None:
        if counter > self.top:
            self.seen = ((self.seen << (counter - self.top)) | 1) & _WINDOW_MASK
            self.top = counter
        else:
            self.seen |= 1 << (self.top - counter)


@dataclass(slots=True)
class GatewayFlow:
    tag: int
    proto: int
    anon: bytes
    port: int
    remote: bytes
    remote_port: int
    state: FlowState
    key: bytes  # the flow key (common/flowkey.py), from the member's wrap
    window: ReplayWindow
    # the newest INBOUND part seen for this flow: (gateway, sequence number), against replays
    inbound_from: int = -1
    inbound_seq: int = 0
    endpoint: bool = False  # a service's endpoint: any remote end, no TCP state of its own
    pinned_ms: int = 0  # a pinned endpoint: the clock of the REGISTER that bound it
    # what the flow moved, and what tokens paid for (gateway/cashier.py), in bytes; not in
    # FLOWS records: a flow this gateway did not see begin is not metered here
    moved: int = 0
    paid: int = 0
    metered: bool = False  # seen here from its first packet: what it moved is known

    @property
    def where(self) -> Where:
        return (self.proto, self.anon, self.port)


class Exhausted(Exception):
    """No free port for (protocol, address)."""


class TagConflict(Exception):
    """A known tag arrived with other addresses: a member bug or a forgery."""


class FlowTable:
    def __init__(self, settings: FlowSection, key: bytes, pinned: Iterable[Where] = ()) -> None:
        self.s = settings
        self.key = key
        self.pinned = frozenset(pinned)  # the coalition's pinned endpoints: never a flow's port
        self.endpoints = 0
        self.span = settings.port_max - settings.port_min + 1
        self.by_tag: dict[int, GatewayFlow] = {}
        self.by_port: dict[tuple[int, bytes, int], GatewayFlow] = {}
        self.in_use: dict[tuple[int, bytes], int] = {}  # ports used per (protocol, address)
        # The lanon's time (s): the leader's clock as of the last round output. Flow timers run
        # on it, so that every gateway's table ages alike (Egress advances it).
        self.time = 0.0

    def outbound(
        self,
        tag: int,
        proto: int,
        anon: bytes,
        remote: bytes,
        rport: int,
        flags: int,
        now: float,
        key: bytes,
    ) -> tuple[GatewayFlow, bool]:
        """The flow for an outbound packet, allocated if new: (flow, created)."""
        flow = self.by_tag.get(tag)
        remote_port = 0 if proto == ICMP else rport
        if flow is not None:
            if (flow.proto, flow.anon, flow.remote, flow.remote_port) != (
                proto,
                anon,
                remote,
                remote_port,
            ):
                raise TagConflict(f"tag {tag:016x} reused for another flow")
            flow.state.update(flags, True, now)
            return flow, False
        port = self._allocate(tag, proto, anon)
        flow = GatewayFlow(
            tag, proto, anon, port, remote, remote_port, FlowState(proto, now), key, ReplayWindow()
        )
        flow.state.update(flags, True, now)
        self._add(flow)
        return flow, True

    def _allocate(self, tag: int, proto: int, anon: bytes) -> int:
        if self.in_use.get((proto, anon), 0) >= self.span:
            raise Exhausted(f"protocol {proto}, address {anon.hex()}")
        seed = tag.to_bytes(8, "big") + bytes((proto,)) + anon
        h = 0
        for i in range(PROBES):
            h = int.from_bytes(
                hashlib.blake2b(seed + bytes((i,)), key=self.key, digest_size=4).digest(), "big"
            )
            port = self.s.port_min + h % self.span
            if self.free((proto, anon, port)):
                return port
        start = h % self.span  # nearly full: walk from a random point
        for j in range(self.span):
            port = self.s.port_min + (start + j) % self.span
            if self.free((proto, anon, port)):
                return port
        raise Exhausted(f"protocol {proto}, address {anon.hex()}")  # pragma: no cover

    def free(self, where: Where) -> bool:
        """Whether no flow or endpoint holds `where`, and the coalition does not pin it."""
        return where not in self.by_port and where not in self.pinned

    def endpoint_port(self, tag: int, proto: int, anon: bytes, wanted: int) -> int:
        """The port a new endpoint gets: `wanted` if it is free (and not pinned), else one at
        random as a flow's. Raises Exhausted."""
        if wanted and self.free((proto, anon, wanted)):
            return wanted
        return self._allocate(tag, proto, anon)

    def bind(
        self, tag: int, key: bytes, where: Where, now: float, pinned_ms: int = 0
    ) -> GatewayFlow:
        """A new endpoint at `where` (free: the caller made sure) for the service of `tag`."""
        proto, anon, port = where
        flow = GatewayFlow(
            tag, proto, anon, port, bytes(4), 0, FlowState(proto, now), key, ReplayWindow()
        )
        flow.endpoint, flow.pinned_ms = True, pinned_ms
        self._add(flow)
        return flow

    def unbind(self, flow: GatewayFlow) -> None:
        self._remove(flow)

    def move(self, flow: GatewayFlow, port: int) -> None:
        """An endpoint to another (free) port of its address."""
        self._remove(flow)
        flow.port = port
        self._add(flow)

    def inbound(
        self, proto: int, anon: bytes, port: int, remote: bytes, rport: int
    ) -> GatewayFlow | None:
        """The flow an inbound packet belongs to, if its remote end matches (an endpoint's
        matches any)."""
        flow = self.by_port.get((proto, anon, port))
        if flow is not None and flow.endpoint:
            return flow
        if flow is None or flow.remote != remote:
            return None
        if proto != ICMP and flow.remote_port != rport:
            return None
        return flow

    def expire(self, now: float) -> list[GatewayFlow]:
        gone = [f for f in self.by_tag.values() if self._expired(f, now)]
        for f in gone:
            self._remove(f)
        return gone

    def _expired(self, f: GatewayFlow, now: float) -> bool:
        if f.endpoint:
            return now - f.state.last > self.s.endpoint_timeout
        return f.state.expired(self.s, now)

    def clear(self) -> int:
        n = len(self.by_tag)
        self.by_tag.clear()
        self.by_port.clear()
        self.in_use.clear()
        self.endpoints = 0
        return n

    def _add(self, f: GatewayFlow) -> None:
        self.by_tag[f.tag] = f
        self.by_port[f.where] = f
        self.in_use[(f.proto, f.anon)] = self.in_use.get((f.proto, f.anon), 0) + 1
        self.endpoints += f.endpoint

    def _remove(self, f: GatewayFlow) -> None:
        del self.by_tag[f.tag]
        del self.by_port[f.where]
        self.in_use[(f.proto, f.anon)] -= 1
        self.endpoints -= f.endpoint

    def export(self) -> list[bytes]:
        return [
            RECORD.pack(
                f.tag,
                f.endpoint,
                f.proto,
                f.anon,
                f.port,
                f.remote,
                f.remote_port,
                f.state.phase,
                f.state.fins,
                int(f.state.last * 1000),
                f.key,
                f.window.top,
                f.pinned_ms,
            )
            for f in self.by_tag.values()
        ]

    def merge(self, records: list[bytes]) -> tuple[int, int]:
        """Add the flows we do not know (another gateway's table); (added, refused): a record
        whose port is taken by another flow here is refused, never a silent collision."""
        added = refused = 0
        for record in records:
            if len(record) != RECORD.size:
                refused += 1
                continue
            (
                tag,
                endpoint,
                proto,
                anon,
                port,
                remote,
                rport,
                phase,
                fins,
                last_ms,
                key,
                top,
                pinned_ms,
            ) = RECORD.unpack(record)
            if tag in self.by_tag:
                continue
            if flow_tag(key) != tag:  # a record whose key is not its flow's
                refused += 1
                continue
            where = (proto, anon, port)
            if where in self.by_port or endpoint > 1:
                refused += 1
                continue
            if not endpoint and (
                where in self.pinned or not self.s.port_min <= port <= self.s.port_max
            ):
                refused += 1
                continue
            state = FlowState(proto, last_ms / 1000)
            state.phase, state.fins = TcpPhase(min(phase, TcpPhase.CLOSED)), fins & 3
            # Counters up to the sender's highest count as seen: at worst a late packet is lost.
            window = ReplayWindow(top, _WINDOW_MASK)
            flow = GatewayFlow(tag, proto, anon, port, remote, rport, state, key, window)
            flow.endpoint, flow.pinned_ms = bool(endpoint), pinned_ms
            self._add(flow)
            added += 1
        return added, refused

    def usage(self) -> dict[tuple[int, bytes], int]:
        return dict(self.in_use)

    def __len__(self) -> int:
        return len(self.by_tag)
