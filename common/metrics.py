"""Prometheus metrics, fed by engine events; the registry is passed in, never a module global.

Names follow the Prometheus conventions: `lanon_` prefix, base units, `_total` counters,
`_seconds` histograms. Label values are bounded (reasons, protocols, the coalition's own
anonymous addresses and member names); nothing is labelled per flow or per port.

What a member exports is limited to what every member shares (rounds, their latency, refusals
and rejected round frames): its own traffic (cells sent, queue, flows, inbound packets) would
tell whoever scrapes it which member is busy, so those figures stay on the member and are
shown only by `lanon status` on the member itself.
"""

from __future__ import annotations

from collections import Counter as PyCounter
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lanon.common import __version__
from lanon.common import events as ev
from lanon.common.packet import ICMP, TCP, UDP

ROUND_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
WAIT_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
SLOT_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64)
PROTOCOLS = {TCP: "tcp", UDP: "udp", ICMP: "icmp"}


def protocol(proto: int) -> str:
    return PROTOCOLS.get(proto, "other")


class RoundRate:
    """Rounds per second over the last `window` seconds (for `lanon status`)."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._times: deque[float] = deque()
        self._first: float | None = None

    def tick(self, now: float) -> None:
        if self._first is None:
            self._first = now
        self._times.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()

    def rate(self, now: float) -> float:
        self._trim(now)
        if self._first is None:
            return 0.0
        span = min(self.window, now - self._first)
        return len(self._times) / span if span > 0.5 else 0.0


class BaseMetrics:
    def __init__(self, registry: CollectorRegistry, role: str, name: str, coalition: str) -> None:
        self.registry = registry
        r = registry
        self.info = Gauge(
            "lanon_info",
            "Which daemon this is",
            ["coalition", "role", "name", "version"],
            registry=r,
        )
        self.info.labels(coalition, role, name, __version__).set(1)
        self.rejected = Counter(
            "lanon_frames_rejected_total", "lanon frames dropped, by reason", ["reason"], registry=r
        )
        self.epoch = Gauge("lanon_epoch", "Current key epoch", registry=r)
        self.rules_restored = Counter(
            "lanon_rules_restored_total",
            "Times this host's lanon iptables rules were found removed or altered and put back",
            registry=r,
        )
        self.rounds_rate = RoundRate()
        self.local: PyCounter[str] = PyCounter()  # figures for `lanon status` only
        self.internal_errors = self.internal_error_counter(r)
        self.lan_filtered = Gauge(
            "lanon_lan_filtered",
            "1 while the LAN is flooded and only verified hosts' frames are read",
            registry=r,
        )

    @staticmethod
    def internal_error_counter(registry: CollectorRegistry) -> Counter:
        return Counter(
            "lanon_internal_errors_total",
            "Errors that escaped the handling of one frame, packet, timer or command, by "
            "stage; the daemon went on (a bug: the log has the traceback)",
            ["stage"],
            registry=registry,
        )

    def observe(self, e: ev.Event, now: float) -> None:
        if isinstance(e, ev.FrameRejected):
            self.rejected.labels(e.reason.value).inc(e.count)
            self.local[f"rejected_{e.reason.value}"] += e.count
        elif isinstance(e, ev.EpochChanged):
            self.epoch.set(e.epoch)
        elif isinstance(e, ev.LanFlooded):
            self.lan_filtered.set(1 if e.active else 0)


class GatewayMetrics(BaseMetrics):
    def __init__(self, registry: CollectorRegistry, name: str, coalition: str) -> None:
        super().__init__(registry, "gateway", name, coalition)
        r = registry
        self.completed = Counter(
            "lanon_rounds_completed_total", "Rounds whose output was published", registry=r
        )
        self.aborted = Counter(
            "lanon_rounds_aborted_total", "Rounds given up, by reason", ["reason"], registry=r
        )
        self.duration = Histogram(
            "lanon_round_duration_seconds",
            "Time from OPEN to published output",
            buckets=ROUND_BUCKETS,
            registry=r,
        )
        self.slots = Counter(
            "lanon_round_slots_total", "Data slots offered in completed rounds", registry=r
        )
        self.slots_per_round = Histogram(
            "lanon_round_data_slots",
            "Data slots per completed round",
            buckets=SLOT_BUCKETS,
            registry=r,
        )
        self.slots_used = Counter(
            "lanon_round_slots_used_total", "Data slots that carried a cell", registry=r
        )
        self.claims = Counter(
            "lanon_reservation_claims_total", "Valid reservation claims", registry=r
        )
        self.res_collisions = Counter(
            "lanon_reservation_collisions_total",
            "Reservation entries where claims collided",
            registry=r,
        )
        self.deferred = Counter(
            "lanon_reservation_deferred_total",
            "Valid claims that found no slot in a full round",
            registry=r,
        )
        self.data_collisions = Counter(
            "lanon_data_collisions_total", "Data slots whose integrity check failed", registry=r
        )
        self.members = Gauge("lanon_members", "Coalition members by state", ["state"], registry=r)
        self.k = Gauge(
            "lanon_key_graph_connectivity",
            "Edge connectivity k of the key graph among present members (k colluders needed)",
            registry=r,
        )
        self.leader = Gauge("lanon_leader", "1 if this gateway leads rounds", registry=r)
        self.disbanded = Gauge(
            "lanon_disbanded", "1 while too few members are present to run rounds", registry=r
        )
        self.held = Gauge(
            "lanon_anonymous_addresses_held", "Anonymous addresses this gateway holds", registry=r
        )
        self.gateways_alive = Gauge(
            "lanon_gateways_alive", "Gateways heard from, this one included", registry=r
        )
        self.arp = Counter(
            "lanon_arp_replies_total", "ARP requests answered for anonymous addresses", registry=r
        )
        self.takeover = Histogram(
            "lanon_takeover_seconds",
            "Silence of a lost gateway before this one took over its address",
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0, 5.0),
            registry=r,
        )
        self.takeovers: deque[tuple[str, float]] = deque(maxlen=32)  # for `lanon status`
        self.claimed = Counter(
            "lanon_address_claims_total",
            "Anonymous addresses claimed, own share or takeover",
            ["kind"],
            registry=r,
        )
        self.flows = Gauge(
            "lanon_flows",
            "Flows per anonymous address and protocol",
            ["address", "protocol"],
            registry=r,
        )
        self.port_space = Gauge(
            "lanon_port_space_ports",
            "Ports per anonymous address and protocol (the port space)",
            registry=r,
        )
        self.exhausted = Counter(
            "lanon_port_exhaustion_total",
            "Flows refused because the port space was full",
            ["protocol"],
            registry=r,
        )
        self.opened = Counter(
            "lanon_flows_opened_total", "Flows given an anonymous port", ["protocol"], registry=r
        )
        self.closed = Counter(
            "lanon_flows_closed_total",
            "Flows whose port was freed",
            ["protocol", "reason"],
            registry=r,
        )
        self.emitted = Counter(
            "lanon_emitted_packets_total", "Packets emitted towards the Internet", registry=r
        )
        self.emitted_bytes = Counter(
            "lanon_emitted_bytes_total", "Bytes emitted towards the Internet", registry=r
        )
        self.inbound = Counter(
            "lanon_inbound_broadcast_packets_total",
            "Inbound packets broadcast to members",
            registry=r,
        )
        self.inbound_bytes = Counter(
            "lanon_inbound_broadcast_bytes_total", "Inbound bytes broadcast to members", registry=r
        )
        self.dropped = Counter(
            "lanon_packets_dropped_total", "Packets not carried, by reason", ["reason"], registry=r
        )
        self.emit_errors = Counter(
            "lanon_emit_errors_total",
            "Packets the raw socket did not send, by error (errno name)",
            ["reason"],
            registry=r,
        )
        self.conflicts = Counter(
            "lanon_address_conflicts_total",
            "ARP conflicts: another host answered a probe for an anonymous address or sent an "
            "ARP from one",
            registry=r,
        )
        self.refused_addresses = Gauge(
            "lanon_anonymous_addresses_refused",
            "Anonymous addresses this gateway will not claim, by reason",
            ["reason"],
            registry=r,
        )

    def observe(self, e: ev.Event, now: float) -> None:
        match e:
            case ev.RoundCompleted():
                self.completed.inc()
                self.rounds_rate.tick(now)
                self.duration.observe(e.duration)
                self.slots.inc(e.nslots)
                self.slots_per_round.observe(e.nslots)
                self.slots_used.inc(e.used)
                self.claims.inc(e.claims)
                self.res_collisions.inc(e.collisions)
                self.deferred.inc(e.deferred)
                self.data_collisions.inc(e.garbled)
            case ev.RoundAborted():
                self.aborted.labels(e.reason.name.lower()).inc()
            case ev.LanonDisbanded():
                self.disbanded.set(1)
            case ev.LanonResumed():
                self.disbanded.set(0)
            case ev.LeadershipChanged():
                self.leader.set(1 if e.leader else 0)
            case ev.ArpAnswered():
                self.arp.inc()
            case ev.AddressClaimed():
                self.claimed.labels("takeover" if e.takeover else "share").inc()
                if e.takeover:
                    self.takeover.observe(e.silence)
                    self.takeovers.append((e.address, e.silence))
            case ev.PortExhausted():
                self.exhausted.labels(protocol(e.proto)).inc()
            case ev.FlowOpened():
                self.opened.labels(protocol(e.proto)).inc()
            case ev.FlowClosed():
                self.closed.labels(protocol(e.proto), e.reason).inc()
            case ev.PacketEmitted():
                self.emitted.inc()
                self.emitted_bytes.inc(e.size)
            case ev.InboundBroadcast():
                self.inbound.inc()
                self.inbound_bytes.inc(e.size)
            case ev.PacketDropped():
                self.dropped.labels(e.reason).inc()
            case ev.AddressRefused(reason=ev.ClaimRefusal.IN_USE) | ev.AddressDefended():
                self.conflicts.inc()
            case _:
                super().observe(e, now)


class MemberMetrics(BaseMetrics):
    """A member's metrics in two registries.

    `registry` (public, scraped over the LAN) holds only what every member shares: the rounds
    it took part in and their latency, refusals, rejected round frames. `private` (served on
    127.0.0.1 by default) holds this member's own traffic: queue, waits, retries, flows. Those
    would tell whoever scrapes them which member is busy, so they never go to the public one.
    """

    def __init__(
        self, registry: CollectorRegistry, private: CollectorRegistry, name: str, coalition: str
    ) -> None:
        super().__init__(registry, "member", name, coalition)
        r, p = registry, private
        self.private = private
        # A bug may be triggered by this member's own traffic: its count stays private.
        registry.unregister(self.internal_errors)
        self.internal_errors = self.internal_error_counter(p)
        self.contributed = Counter(
            "lanon_rounds_contributed_total",
            "Rounds this member sent its (padded) vector in",
            registry=r,
        )
        self.latency = Histogram(
            "lanon_round_latency_seconds",
            "Time from OPEN to the checked output",
            buckets=ROUND_BUCKETS,
            registry=r,
        )
        self.refused = Counter(
            "lanon_rounds_refused_total",
            "Rounds this member declined to join, by reason",
            ["reason"],
            registry=r,
        )
        self.in_roster = Gauge(
            "lanon_in_roster", "1 if this member took part in the last round", registry=r
        )
        # --- private: this member's own traffic ---
        self.queue = Gauge("lanon_member_queue_cells", "Cells waiting for a slot", registry=p)
        self.wait = Histogram(
            "lanon_member_cell_wait_seconds",
            "Time from queueing to emerging in a round output",
            buckets=WAIT_BUCKETS,
            registry=p,
        )
        self.delivered = Counter(
            "lanon_member_cells_delivered_total", "Cells that emerged in a round output", registry=p
        )
        self.retries = Counter(
            "lanon_member_cell_retries_total", "Cells sent again, by reason", ["reason"], registry=p
        )
        self.backoffs = Counter(
            "lanon_member_backoffs_total",
            "Reservation collisions that made this member wait",
            registry=p,
        )
        self.queued = Counter(
            "lanon_member_packets_queued_total",
            "Outbound packets accepted into the queue",
            registry=p,
        )
        self.dropped = Counter(
            "lanon_member_packets_dropped_total",
            "Outbound packets not carried, by reason",
            ["reason"],
            registry=p,
        )
        self.inbound = Counter(
            "lanon_member_inbound_packets_total",
            "Inbound packets injected into this host",
            registry=p,
        )
        self.inbound_rejected = Counter(
            "lanon_member_inbound_rejected_total",
            "Inbound frames for our flows rejected, by reason",
            ["reason"],
            registry=p,
        )
        self.flows = Gauge("lanon_member_flows", "This member's flows", registry=p)
        self.vetoed = Counter(
            "lanon_member_rounds_vetoed_total",
            "Rounds this member put no data in: their roster or key graph did not meet its "
            "anonymity policy",
            ["reason"],
            registry=p,
        )

    def observe(self, e: ev.Event, now: float) -> None:
        match e:
            case ev.Contributed():
                self.contributed.inc()
                self.rounds_rate.tick(now)
                self.in_roster.set(1)
            case ev.OutputSeen():
                self.latency.observe(e.latency)
            case ev.RoundRefused():
                self.refused.labels(e.reason.value).inc()
            case ev.Joining():
                self.in_roster.set(0)
            case ev.FrameRejected() if e.frame == "inbound":
                # Only our own flows' inbound frames are checked: counting their rejections
                # in public would point at the member that owns a flow.
                self.inbound_rejected.labels(e.reason.value).inc()
            case ev.CellDelivered():
                self.delivered.inc()
                self.wait.observe(e.wait)
            case ev.RoundVetoed():
                self.vetoed.labels(e.reason.value).inc()
            case ev.CellRetried():
                self.retries.labels(e.reason.value).inc()
                if e.backoff:
                    self.backoffs.inc()
            case ev.PacketQueued():
                self.queued.inc()
            case ev.PacketDropped():
                self.dropped.labels(e.reason).inc()
            case ev.InboundDelivered():
                self.inbound.inc()
            case _:
                super().observe(e, now)


def snapshot(registry: CollectorRegistry) -> dict[str, float]:
    """Every sample of a registry but histogram buckets, as 'name{label="value"}': value."""
    out = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out
