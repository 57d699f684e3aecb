"""Prometheus metrics, fed by engine events; the registry is passed in, never a module global.

Names follow the Prometheus conventions: `lanon_` prefix, base units, `_total` counters,
`_seconds` histograms. Label values are bounded (reasons, protocols, the coalition's own
anonymous addresses and member names); nothing is labelled per flow or per port.

This module holds what both roles export (`BaseMetrics`); each role adds its own beside it:
`lanon.member.metrics.MemberMetrics` (which keeps a member's own traffic out of the public
registry) and `lanon.gateway.metrics.GatewayMetrics`.
"""

from __future__ import annotations

from collections import Counter as PyCounter
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge

from lanon.common import __version__
from lanon.common import events as ev

ROUND_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


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
        self.versions = Counter(
            "lanon_versions_total",
            "Coalition file versions applied, and those refused by why (older: a replay or a "
            "host behind; forged: not signed by enough administrators; conflict: our number "
            "with other content; foreign; invalid; busy)",
            ["outcome"],
            registry=r,
        )
        self.version = Gauge(
            "lanon_coalition_version", "Version of the coalition file this host runs", registry=r
        )
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
        elif isinstance(e, ev.VersionApplied):
            self.versions.labels("applied").inc()
            self.version.set(e.new)
        elif isinstance(e, ev.VersionRefused):
            self.versions.labels(e.outcome).inc()
        elif isinstance(e, ev.LanFlooded):
            self.lan_filtered.set(1 if e.active else 0)


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
