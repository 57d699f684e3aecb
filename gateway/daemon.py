"""The gateway daemon: packet sockets, ARP and a raw IP socket around the gateway engine."""

from __future__ import annotations

import errno
import random
import socket
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from lanon.common import keygraph, wire
from lanon.common.daemon import DaemonBase
from lanon.common.daemon_config import Loaded
from lanon.common.errors import PrerequisiteError
from lanon.common.events import EmitPacket, MemberState, SendArp, SendFrame
from lanon.common.metrics import GatewayMetrics, protocol
from lanon.common.rawsock import ETH_P_ARP, ETH_P_IP, TRANSIENT_SEND, LinkSocket
from lanon.gateway import rules
from lanon.gateway.config import GatewaySettings
from lanon.gateway.engine import GatewayEngine
from lanon.gateway.leader import Phase

REFRESH = 1.0  # seconds between refreshes of state gauges
LINK_CHECK = 0.05  # seconds between looks at the LAN link's state


class Emitter:
    """Sends IPv4 packets (headers included) through the gateway host's routing."""

    def __init__(self) -> None:
        try:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        except PermissionError:
            raise PrerequisiteError("raw IP sockets need root or CAP_NET_RAW") from None
        self.errors = 0

    def send(self, packet: bytes) -> bool:
        try:
            self.sock.sendto(packet, (socket.inet_ntoa(packet[16:20]), 0))
        except OSError as exc:
            if exc.errno in TRANSIENT_SEND or exc.errno in (errno.EHOSTUNREACH, errno.EPERM):
                self.errors += 1
                return False
            raise
        return True


class GatewayDaemon(DaemonBase):
    role = "gateway"

    def __init__(
        self, settings: GatewaySettings, loaded: Loaded, registry: CollectorRegistry | None = None
    ) -> None:
        super().__init__(settings, loaded, registry)
        self.s = settings
        self.metrics: GatewayMetrics = GatewayMetrics(
            self.registry, settings.name, self.c.coalition.name
        )
        self.metrics.port_space.set(self.c.flows.port_max - self.c.flows.port_min + 1)
        self.next_refresh = 0.0
        self.next_link_check = 0.0

    def run(self) -> None:
        s = self.s
        _check_sysctls(s.interface, self.log)
        if s.manage_rules:
            rules.install(sorted({str(a) + "/32" for a in self.c.anonymous}))
        self.lan = LinkSocket(s.interface, wire.ETHERTYPE)
        self.ip = LinkSocket(s.interface, ETH_P_IP, rcvbuf=16 << 20)
        self.arp = LinkSocket(s.interface, ETH_P_ARP)
        if s.promiscuous:
            self.ip.promiscuous()
        self.emitter = Emitter()
        r = self.reactor
        now = r.clock()
        self.engine = GatewayEngine(
            self.c,
            s.name,
            self.loaded.key,
            self.lan.mac,
            now=now,
            wall_offset=self.wall_offset,
            rng=random.SystemRandom(),
        )
        r.add_reader(self.lan.fileno(), self._on_lan)
        r.add_reader(self.ip.fileno(), self._on_ip)
        r.add_reader(self.arp.fileno(), self._on_arp)
        self.serve_metrics()
        self.serve_control()
        r.handle_signals()
        self.engine.start(now)
        self._flush(now)
        self.log.info(
            "gateway %s on %s (%s): share %s, coalition %s (%08x)",
            s.name,
            s.interface,
            self.lan.mac.hex(":"),
            ", ".join(str(a) for a in self.engine.me.addresses),
            self.c.coalition.name,
            self.c.id,
        )
        try:
            r.run(self._tick)
        finally:
            now = r.clock()
            self.engine.shutdown(now)  # hand over at once: a goodbye, not a silence
            self._flush(now)
            for sock in (self.lan, self.ip, self.arp):
                sock.close()
            self.close_serving()
            r.close()
            self.log.info("stopped")

    # --- input ------------------------------------------------------------------------------

    def _on_lan(self) -> None:
        now = self.reactor.clock()
        for src, payload in self.lan.receive():
            self.engine.receive_frame(src, payload, now)
            self._flush(now)

    def _on_ip(self) -> None:
        now = self.reactor.clock()
        for packet, checksum_ready in self.ip.receive_checked():
            self.engine.receive_packet(packet, now, checksum_ready)
        self._flush(now)

    def _on_arp(self) -> None:
        now = self.reactor.clock()
        for src, payload in self.arp.receive():
            self.engine.receive_arp(src, payload, now)
        self._flush(now)

    def _tick(self, now: float) -> float:
        if now >= self.next_link_check:
            self.next_link_check = now + LINK_CHECK
            self.engine.set_link(self.lan.link_up(), now)
            self._flush(now)
        if now >= self.engine.get_timer():
            self.engine.handle_timer(now)
            self._flush(now)
        if now >= self.next_refresh:
            self.next_refresh = now + REFRESH
            self._refresh()
        return min(self.engine.get_timer(), self.next_refresh, self.next_link_check)

    # --- output -----------------------------------------------------------------------------

    def _flush(self, now: float) -> None:
        for cmd in self.engine.pop_commands():
            match cmd:
                case SendFrame():
                    self.lan.send(cmd.dst, cmd.frame)
                case EmitPacket():
                    self.emitter.send(cmd.packet)
                case SendArp():
                    self.arp.send(cmd.dst, cmd.payload)
                case _:
                    raise RuntimeError(f"unexpected command {cmd!r}")
        self.report(self.engine.pop_events(), now)

    def _refresh(self) -> None:
        """State gauges, set from the loop thread (the HTTP thread only reads them)."""
        e, m = self.engine, self.metrics
        counts = {state: 0 for state in MemberState}
        for rec in e.leader.members:
            counts[rec.state] += 1
        for state, n in counts.items():
            m.members.labels(state.value).set(n)
        m.k.set(keygraph.connectivity(e.leader.present, self.c.edges).k)
        m.held.set(len(e.held))
        m.gateways_alive.set(len(e.policy.alive(self.reactor.clock())))
        # Every gateway tracks every flow (a standby must); each reports those of the
        # addresses it holds, so that sums over gateways count each flow once.
        usage = e.flows.usage()
        for i, a in enumerate(self.c.anonymous):
            for proto in (6, 17, 1):
                held = usage.get((proto, a.packed), 0) if i in e.held else 0
                m.flows.labels(str(a), protocol(proto)).set(held)

    def status(self) -> dict[str, Any]:
        e = self.engine
        now = self.reactor.clock()
        leader = e.leader
        present = sorted(self.c.members[i].name for i in leader.present)
        states = {self.c.members[i].name: rec.state.value for i, rec in enumerate(leader.members)}
        m = self.metrics
        value = self.registry.get_sample_value
        return {
            "role": "gateway",
            "name": self.s.name,
            "coalition": self.c.coalition.name,
            "interface": self.s.interface,
            "leading": e.leading,
            "phase": leader.phase.value,
            "disbanded": leader.phase is Phase.DISBANDED,
            "round": leader.round if e.leading else e.seen_round,
            "epoch": leader.epoch,
            "round_rate": round(m.rounds_rate.rate(now), 2),
            "rounds_completed": int(value("lanon_rounds_completed_total") or 0),
            "rounds_aborted": int(
                sum(
                    value("lanon_rounds_aborted_total", {"reason": r}) or 0
                    for r in ("deadline", "leader_change", "shutdown")
                )
            ),
            "members_present": present,
            "members": states,
            "k": keygraph.connectivity(leader.present, self.c.edges).k,
            "k_configured": self.c.connectivity.k,
            "reservation_collisions": int(value("lanon_reservation_collisions_total") or 0),
            "data_collisions": int(value("lanon_data_collisions_total") or 0),
            "flows": len(e.flows),
            "held": [str(self.c.anonymous[i]) for i in sorted(e.held)],
            "gateways_alive": sorted(self.c.gateways[g].name for g in e.policy.alive(now)),
            "emitted_packets": int(value("lanon_emitted_packets_total") or 0),
            "inbound_packets": int(value("lanon_inbound_broadcast_packets_total") or 0),
            "rejected": {
                k[len("rejected_") :]: v for k, v in m.local.items() if k.startswith("rejected_")
            },
            "link": e.link,
            "takeovers": [{"address": a, "silence_ms": round(t * 1000)} for a, t in m.takeovers],
        }


def _check_sysctls(ifname: str, log: Any) -> None:
    """A gateway must not forward or proxy-ARP by itself: its stack stays out of lanon traffic."""
    base = Path("/proc/sys/net/ipv4")
    for path, bad in ((base / "ip_forward", "1"), (base / "conf" / ifname / "proxy_arp", "1")):
        try:
            if path.read_text().strip() == bad:
                log.warning(
                    "%s is %s: the kernel may forward or answer for anonymous addresses; set it to 0",
                    path,
                    bad,
                )
        except OSError:
            pass
