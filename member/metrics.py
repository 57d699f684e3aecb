"""A member's metrics: the shared ones (`lanon.common.metrics.BaseMetrics`) and its own, in a
public and a private registry (see `MemberMetrics`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lanon.common import events as ev
from lanon.common.metrics import ROUND_BUCKETS, BaseMetrics

WAIT_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class MemberMetrics(BaseMetrics):
    """A member's metrics in two registries.

    `registry` (public, scraped over the LAN) holds only what every member shares: the rounds
    it took part in and their latency, refusals, rejected round frames. `private` (served on
    127.0.0.1 by default, and shown by `lanon status` on the member) holds this member's own
    traffic: queue, waits, retries, flows. Those would tell whoever scrapes them which member is
    busy, so they never go to the public one.
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
        self.verdicts = Counter(
            "lanon_verdicts_checked_total",
            "Blame verdicts this member checked against their evidence: agreed (the leader "
            "named whom the evidence shows), refuted (it did not: a leader to distrust)",
            ["checked", "outcome"],
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
        self.acks_replaced = Counter(
            "lanon_member_acks_replaced_total",
            "Pure TCP ACKs that took the place of their flow's earlier one still queued",
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
            "Inbound frames of our own flows not taken, by reason",
            ["reason"],
            registry=p,
        )
        self.late = Counter(
            "lanon_member_answers_late_total",
            "Round answers that left after their moment (rounds.answer_delay too short for "
            "this host): their timing may tell the switch this member was busy",
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
            case ev.AnswerLate():
                self.late.inc(e.count)
            case ev.VerdictChecked():
                self.verdicts.labels("agreed" if e.agrees else "refuted", e.outcome).inc()
            case ev.RoundRefused():
                self.refused.labels(e.reason.value).inc()
            case ev.Joining():
                self.in_roster.set(0)
            case ev.InboundRefused():
                # Only our own flows' inbound frames can be checked: counting their refusals
                # in public would point at the member that owns a flow.
                self.inbound_rejected.labels(e.reason.value).inc(e.count)
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
            case ev.AckReplaced():
                self.acks_replaced.inc()
            case ev.PacketDropped():
                self.dropped.labels(e.reason.value).inc()
            case ev.InboundDelivered():
                self.inbound.inc()
            case _:
                super().observe(e, now)
