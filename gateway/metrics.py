"""A gateway's metrics: rounds it led, reservations, addresses held, flows, packets carried,
all in one public registry. The shared part is `lanon.common.metrics.BaseMetrics`."""

from __future__ import annotations

from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lanon.common import events as ev
from lanon.common.metrics import ROUND_BUCKETS, BaseMetrics
from lanon.common.packet import ICMP, TCP, UDP

SLOT_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64)
PROTOCOLS = {TCP: "tcp", UDP: "udp", ICMP: "icmp"}


def protocol(proto: int) -> str:
    return PROTOCOLS.get(proto, "other")


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
        self.offer_price = Gauge(
            "lanon_offer_price",
            "What this gateway's operator charges, in the coalition's [providers] unit",
            ["kind"],
            registry=r,
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
        self.endpoints = Gauge(
            "lanon_endpoints",
            "Services' endpoints bound lanon-wide (the leader's count; never whose they are)",
            registry=r,
        )
        self.tokens_issued = Counter(
            "lanon_tokens_issued_total",
            "Blind signatures this gateway gave members who bought (kind: payment, credential); "
            "refused requests by reason",
            ["kind", "refusal"],
            registry=r,
        )
        self.tokens_redeemed = Counter(
            "lanon_tokens_redeemed_total",
            "Payment tokens read in round outputs, by outcome (accepted, double_spent, bad)",
            ["outcome"],
            registry=r,
        )
        self.ratings_relayed = Counter(
            "lanon_ratings_relayed_total",
            "Ratings this gateway passed on to the members (anonymous: members', or agency)",
            ["kind"],
            registry=r,
        )
        self.endpoint_requests = Counter(
            "lanon_endpoint_requests_total",
            "Services' endpoint requests read in round outputs, by outcome: bound (a new "
            "endpoint; refreshes are not counted), or why refused",
            ["outcome"],
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

        self.accusations = Counter(
            "lanon_accusations_total",
            "Slot owners' accusations read in round outputs, by judgement: proven (someone "
            "wrote into a reserved slot not theirs), or why refused",
            ["judgement"],
            registry=r,
        )

        self.traces = Counter(
            "lanon_traces_total",
            "Accused bits traced (blame), by outcome: disruptor (someone named and excluded), "
            "incomplete (a member silent, or a dispute nobody proved: nobody named), clean, "
            "untraceable (schedule tree), unkept (the round's contributions are gone: another "
            "leader's round, or too old)",
            ["outcome"],
            registry=r,
        )
        self.trace_seconds = Histogram(
            "lanon_trace_seconds",
            "Seconds from an accused round's opening to its trace's verdict",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0),
            registry=r,
        )
        self.excluded = Gauge(
            "lanon_members_excluded",
            "Members a verdict excluded, kept out of rosters until readmitted (lanon readmit)",
            registry=r,
        )
        self.join_requests = Gauge(
            "lanon_join_requests",
            "Hosts asking to join (or for a new key), waiting for an administrator",
            registry=r,
        )

    def observe(self, e: ev.Event, now: float) -> None:
        match e:
            case ev.AccusationJudged():
                self.accusations.labels(e.judgement).inc()
            case ev.TraceEnded():
                self.traces.labels(e.outcome).inc()
                if e.outcome not in ("untraceable", "unkept"):
                    self.trace_seconds.observe(e.since_round)
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
            case ev.EndpointAsked():
                self.endpoint_requests.labels(e.outcome).inc()
            case ev.TokensIssued():  # (counted by kind, never by member)
                self.tokens_issued.labels(e.kind, e.refusal or "none").inc(max(e.count, 1))
            case ev.TokenRedeemed():
                self.tokens_redeemed.labels(e.outcome).inc()
            case ev.RatingRelayed():
                self.ratings_relayed.labels(e.kind).inc()
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
                self.dropped.labels(e.reason.value).inc()
            case ev.AddressRefused(reason=ev.ClaimRefusal.IN_USE) | ev.AddressDefended():
                self.conflicts.inc()
            case _:
                super().observe(e, now)
