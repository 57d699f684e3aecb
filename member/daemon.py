"""The member daemon: NFQUEUE, the LAN socket and the TUN device around the member engine."""

from __future__ import annotations

import random
import warnings
from typing import Any

from netfilterqueue import NetfilterQueue
from prometheus_client import CollectorRegistry

from lanon.common import wire
from lanon.common.daemon import DaemonBase
from lanon.common.daemon_config import Loaded
from lanon.common.errors import PrerequisiteError
from lanon.common.events import InjectPacket, SendFrame
from lanon.common.metrics import MemberMetrics, snapshot
from lanon.common.rawsock import LinkSocket
from lanon.member import rules
from lanon.member.config import MemberSettings
from lanon.member.engine import MemberEngine
from lanon.member.tun import Tun

NFQUEUE_MAXLEN = 4096
REFRESH = 1.0  # seconds between refreshes of state gauges


class MemberDaemon(DaemonBase):
    role = "member"

    def __init__(
        self, settings: MemberSettings, loaded: Loaded, registry: CollectorRegistry | None = None
    ) -> None:
        super().__init__(settings, loaded, registry)
        self.s = settings
        self.next_refresh = 0.0
        self.private_registry = CollectorRegistry()
        self.metrics: MemberMetrics = MemberMetrics(
            self.registry, self.private_registry, settings.name, self.c.coalition.name
        )
        now = self.reactor.clock()
        self.engine = MemberEngine(
            self.c,
            settings.name,
            loaded.key,
            now=now,
            wall_offset=self.wall_offset,
            rng=random.SystemRandom(),
            max_queue=settings.max_queue,
            gateways=settings.gateways,
        )

    def run(self) -> None:
        s = self.s
        # Rules first: from here on, nothing leaves with our address, daemon or not.
        if s.manage_rules:
            rules.install(rules.MemberRules(self.c.coalition.lan, s.queue, s.tun))
        elif not rules.installed():
            self.log.warning(
                "manage_rules = false and no lanon rules installed: traffic is not captured"
            )
        self.tun = Tun(s.tun, s.tun_address)
        self.lan = LinkSocket(s.interface, wire.ETHERTYPE)
        self.queue = NetfilterQueue()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self.queue.bind(s.queue, self._on_packet, max_len=NFQUEUE_MAXLEN)
            except OSError as exc:
                raise PrerequisiteError(
                    f"cannot bind NFQUEUE {s.queue} ({exc}); is another daemon using it?"
                ) from None
        for w in caught:
            self.log.info("nfqueue: %s", w.message)
        r = self.reactor
        r.add_reader(self.lan.fileno(), self._on_lan)
        r.add_reader(self.queue.get_fd(), self._on_queue)
        r.add_reader(self.tun.fileno(), self.tun.drain)
        self.serve_metrics()
        self.serve_metrics(s.private_metrics, self.private_registry)
        self.serve_control()
        r.handle_signals()
        self.engine.start(r.clock())
        self._flush(r.clock())
        self.log.info(
            "member %s on %s: queue %d, tun %s, coalition %s (%08x)",
            s.name,
            s.interface,
            s.queue,
            s.tun,
            self.c.coalition.name,
            self.c.id,
        )
        try:
            r.run(self._tick)
        finally:
            self.queue.unbind()
            self.tun.close()
            self.lan.close()
            self.close_serving()
            r.close()
            self.log.info("stopped; the rules stay in place (fail-closed)")

    # --- input --------------------------------------------------------------------------

    def _on_packet(self, pkt: Any) -> None:
        payload = pkt.get_payload()
        pkt.drop()  # the original never leaves: it travels in a cell
        self.engine.submit_packet(payload, self.reactor.clock())

    def _on_queue(self) -> None:
        self.queue.run(block=False)
        self._flush(self.reactor.clock())

    def _on_lan(self) -> None:
        now = self.reactor.clock()
        for src, payload in self.lan.receive():
            self.engine.receive_frame(src, payload, now)
            self._flush(now)

    def _tick(self, now: float) -> float:
        if now >= self.engine.get_timer():
            self.engine.handle_timer(now)
            self._flush(now)
        if now >= self.next_refresh:
            self.next_refresh = now + REFRESH
            self._refresh()
        return min(self.engine.get_timer(), self.next_refresh)

    # --- output -------------------------------------------------------------------------

    def _flush(self, now: float) -> None:
        for cmd in self.engine.pop_commands():
            match cmd:
                case SendFrame():
                    self.lan.send(cmd.dst, cmd.frame)
                case InjectPacket():
                    self.tun.write(cmd.packet)
                case _:
                    raise RuntimeError(f"unexpected command {cmd!r}")
        self.report(self.engine.pop_events(), now)

    def status(self) -> dict[str, Any]:
        self._refresh()
        e = self.engine
        now = self.reactor.clock()
        in_roster = now - e.last_in_roster < 2.0
        return {
            "role": "member",
            "name": self.s.name,
            "coalition": self.c.coalition.name,
            "interface": self.s.interface,
            "in_roster": in_roster,
            "last_round": e.last_round,
            "epoch": e.epoch,
            "round_rate": round(self.metrics.rounds_rate.rate(now), 2),
            "queue_cells": len(e.queue),
            "flows": len(e.flows),
            "members": len(self.c.members),
            "k": self.c.connectivity.k,
            "own": snapshot(self.private_registry),  # this member's own traffic: local only
        }

    def _refresh(self) -> None:
        self.metrics.queue.set(len(self.engine.queue))
        self.metrics.flows.set(len(self.engine.flows))
