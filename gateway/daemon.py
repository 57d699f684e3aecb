"""The gateway daemon: packet sockets, ARP and a raw IP socket around the gateway engine."""

from __future__ import annotations

import errno
import ipaddress
import random
import socket
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from lanon.common import __version__, blindrsa, flowkey, iptables, keygraph, wire
from lanon.common import events as ev
from lanon.common.crypto import Verifier, decode_public_key
from lanon.common.daemon import RING_FRAMES, DaemonBase, Stage
from lanon.common.daemon_config import Loaded
from lanon.common.errors import ConfigError, PrerequisiteError
from lanon.common.events import (
    AdoptNextKey,
    ClaimRefusal,
    EmitPacket,
    FilterSources,
    KeepSequence,
    MakeCredentialKey,
    MemberState,
    SaveCoalition,
    SendArp,
    SendFrame,
)
from lanon.common.rawsock import ETH_P_ARP, ETH_P_IP, LinkSocket
from lanon.common.settings import resolve
from lanon.common.tokens import agency_signed, pull_agency
from lanon.gateway import rules
from lanon.gateway.config import GatewaySettings
from lanon.gateway.engine import GatewayEngine
from lanon.gateway.leader import Phase
from lanon.gateway.metrics import GatewayMetrics, protocol
from lanon.gateway.provider import (
    CREDENTIAL_KEY_BITS,
    Provision,
    issuer_needs_offer,
    provision,
)

REFRESH = 1.0  # seconds between refreshes of state gauges
LINK_CHECK = 0.05  # seconds between looks at the LAN link's state
# Seconds of the Internet's packets read before the loop looks at the LAN and the timers: a
# download brings packets of up to 64 KiB (segmentation offload, GRO), 45 INBOUND frames each,
# and a whole batch of them (MAX_BATCH) could keep a round's answers unread past its deadline.
IP_BATCH_TIME = 0.01
# (Rounds wait for a batch: the leader's next OPEN came 5-13 ms after an output during a
# download's bursts. Looking at the LAN and the timers between two packets kept rounds on time,
# 270 a second instead of 186 in the 8-member lab, and slowed the download: 5 MB 39 MB/s against
# 45, 50 MB 49 against 69, as every round costs every host's CPU, which the lab's hosts share.)


MAX_SEQUENCE_MARK = 1 << 63  # (nonces are 64-bit: far from it for a long while)


class Emitter:
    """Sends IPv4 packets (headers included) through the gateway host's routing."""

    def __init__(self) -> None:
        try:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        except PermissionError:
            raise PrerequisiteError("raw IP sockets need root or CAP_NET_RAW") from None

    def send(self, packet: bytes) -> str | None:
        """None if sent, else why not (an errno name). Whatever the kernel says about one
        packet (EACCES for a broadcast, EPERM from a firewall, ENETUNREACH, EMSGSIZE,
        ENOBUFS...) costs that packet only: a member's packet never stops the gateway."""
        try:
            self.sock.sendto(packet, (socket.inet_ntoa(packet[16:20]), 0))
        except OSError as exc:
            return errno.errorcode.get(exc.errno or 0, "unknown")
        return None


class GatewayDaemon(DaemonBase):
    role = "gateway"
    timers_each_frame = False  # its rounds, heartbeats and probes keep to a batch
    engine: GatewayEngine
    lan: LinkSocket

    def __init__(
        self, settings: GatewaySettings, loaded: Loaded, registry: CollectorRegistry | None = None
    ) -> None:
        super().__init__(settings, loaded, registry)
        self.s = settings
        self.metrics: GatewayMetrics = GatewayMetrics(
            self.registry, settings.name, self.c.coalition.name
        )
        self.metrics.port_space.set(self.c.flows.port_max - self.c.flows.port_min + 1)
        self.metrics.version.set(self.c.version)
        self.next_refresh = 0.0
        self.next_link_check = 0.0
        self.provision: Provision | None = None
        self.keys_made = ThreadPoolExecutor(1, thread_name_prefix="lanon-keys")
        self.key_jobs: dict[int, Future[blindrsa.PrivateKey]] = {}
        self.sequence_mark = self._load_sequence()  # (a bad file: said before anything starts)

    def run(self) -> None:
        s = self.s
        _check_sysctls(s.interface, self.log)
        # The quiet-stack rules before any address is claimed; a watch puts them back within
        # a second if anything removes them (a firewall reload, iptables -t raw -F).
        self.watch: iptables.Watch | None = None
        self._rules_for: list[str] = []
        if s.manage_rules:
            self._install_rules()
        self.lan = LinkSocket(s.interface, wire.ETHERTYPE, ring=2 * RING_FRAMES)
        self.ip = LinkSocket(s.interface, ETH_P_IP, rcvbuf=16 << 20)
        self.arp = LinkSocket(s.interface, ETH_P_ARP)
        self.say_without_ring(self.lan)
        if s.promiscuous:
            self.ip.promiscuous()
        self.emitter = Emitter()
        self.handlers = {
            SendFrame: lambda cmd: self.lan.send(cmd.dst, cmd.frame),
            FilterSources: lambda cmd: self.filter_sources(cmd.allow, self.lan),
            EmitPacket: self._emit,
            SendArp: lambda cmd: self.arp.send(cmd.dst, cmd.payload),
            SaveCoalition: self.save_coalition,
            AdoptNextKey: self.adopt_next_key,
            MakeCredentialKey: self._make_credential_key,
            KeepSequence: self._keep_sequence,
        }
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
            sequence_mark=self.sequence_mark,
        )
        path = self.sequence_path
        if path is not None and not self.write_state(
            path, f"{self.engine.marked}\n", "sequence file"
        ):
            raise PrerequisiteError(
                f"{path}: cannot write the sequence file (see above), which keeps this gateway's "
                "nonces from repeating across restarts; sequence_file = '' runs without it"
            )
        if path is None and self.c.coalition.inbound_cipher is flowkey.InboundCipher.AES256_GCM:
            self.log.warning(
                "sequence_file = '': after a restart this gateway's inbound numbers follow the "
                "wall clock alone; with inbound_cipher = 'aes256-gcm' one number used twice under "
                "a flow's key (the clock set back across a restart) would let any LAN host forge "
                "that flow's replies: keep a sequence file"
            )
        issuer_needs_offer(self.c, self.engine.me, s.offer is not None)
        if s.offer is not None:
            p = provision(s.offer, self.loaded.path.parent, self.c, self.engine.me)
            self.provision = p
            self.engine.provide(p.offer, p.cashier, p.issuer)
            self.metrics.offer_price.labels("per_gb").set(s.offer.per_gb)
            self.metrics.offer_price.labels("per_month").set(s.offer.per_month)
        if self.loaded.next_key is not None:
            self.engine.ask_for_key(self.loaded.next_key, now)
        self._refuse_host_addresses()
        r.add_reader(self.lan.fileno(), self.on_lan)
        r.add_reader(self.ip.fileno(), self._on_ip)
        r.add_reader(self.arp.fileno(), self._on_arp)
        self.serve_metrics()
        self.serve_control()
        r.handle_signals()
        self.engine.start(now)
        self.flush(now)
        self.log.info(
            "gateway %s on %s (%s): share %s, coalition %s (fingerprint %s), lanon %s "
            "(wire version %d)",
            s.name,
            s.interface,
            self.lan.mac.hex(":"),
            ", ".join(str(a) for a in self.engine.me.addresses),
            self.c.coalition.name,
            self.c.fingerprint.hex(),
            __version__,
            wire.VERSION,
        )
        if flowkey.NOT_COMPILED is not None:
            self.log.warning(
                "the compiled INBOUND sealing is %s: every INBOUND frame is sealed in Python, "
                "at about twice the CPU (reinstall lanon: pip builds it with gcc and python3-dev)",
                flowkey.NOT_COMPILED,
            )
        if self.watch is not None:
            self.watch.start()
        try:
            r.run(self._tick)
        finally:
            if self.watch is not None:
                self.watch.stop()
            now = r.clock()
            self.engine.shutdown(now)  # hand over at once: a goodbye, not a silence
            self.flush(now)
            for sock in (self.lan, self.ip, self.arp):
                sock.close()
            self.close_serving()
            r.close()
            self.log.info("stopped")

    # --- input ------------------------------------------------------------------------------

    def on_lan(self) -> None:
        self._awake(self.reactor.clock())
        super().on_lan()

    def _awake(self, now: float) -> None:
        """Before reading what queued up while this process was frozen, if it was: as it
        stood before the freeze, it would lead, emit and answer ARP for what another gateway
        took over meanwhile."""
        self.engine.notice_pause(now)
        self.flush(now)

    def _on_ip(self) -> None:
        """The Internet's packets waiting, for IP_BATCH_TIME at most: the rest stay queued
        in the kernel for the next turn of the loop, after the LAN's frames and the timers.
        Each packet's frames leave once it is sealed, not after the batch's last: the members
        open the first frames of a server's window while this process seals the rest."""
        clock = self.reactor.clock
        now = start = clock()
        self._awake(now)
        for packet, checksum_ready in self.ip.receive_checked():
            try:
                self.engine.receive_packet(packet, now, checksum_ready)
            except Exception as exc:
                self.contain(Stage.CAPTURE, exc)
            self.flush(now)
            if clock() - start >= IP_BATCH_TIME:
                break

    def _on_arp(self) -> None:
        now = self.reactor.clock()
        self._awake(now)
        for src, payload in self.arp.receive():
            with self.contained(Stage.ARP):
                self.engine.receive_arp(src, payload, now)
        self.flush(now)

    def _tick(self, now: float) -> float:
        if now >= self.next_link_check:
            self.next_link_check = now + LINK_CHECK
            with self.contained(Stage.TIMER):
                self.engine.set_link(self.lan.link_up(), now)
            self.flush(now)
        self.run_timers(now)
        if now >= self.next_refresh:
            self.next_refresh = now + REFRESH
            self._take_keys(now)
            self._refresh()
        return min(self.engine.get_timer(), self.next_refresh, self.next_link_check)

    # --- output -----------------------------------------------------------------------------

    @property
    def sequence_path(self) -> Path | None:
        s = self.s.sequence_file
        return resolve(self.loaded.path.parent, s) if s else None

    def _load_sequence(self) -> int:
        """The mark the last run left: every inbound number it used is below it."""
        path = self.sequence_path
        if path is None:
            return 0
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the sequence file: {exc.strerror}") from None
        except UnicodeDecodeError:
            text = ""
        mark = text.strip()
        if not (mark.isascii() and mark.isdigit()) or int(mark) >= MAX_SEQUENCE_MARK:
            raise ConfigError(
                f"{path}: not a sequence mark (a number below 2**63). This daemon writes it: "
                "remove it only with this host's clock right and this gateway stopped for a "
                "few minutes"
            )
        return int(mark)

    def _keep_sequence(self, cmd: KeepSequence) -> None:
        path = self.sequence_path
        if path is not None:
            self.write_state(path, f"{cmd.mark}\n", "sequence file")

    def _make_credential_key(self, cmd: MakeCredentialKey) -> None:
        """Off the loop: an RSA key takes a few hundred ms of Python arithmetic."""
        bits = CREDENTIAL_KEY_BITS
        self.key_jobs[cmd.period] = self.keys_made.submit(blindrsa.generate, bits)

    def _take_keys(self, now: float) -> None:
        for period, job in list(self.key_jobs.items()):
            if job.done():
                del self.key_jobs[period]
                with self.contained(Stage.TIMER):
                    self.engine.credential_key(period, job.result(), now)
                self.flush(now)

    def _emit(self, cmd: EmitPacket) -> None:
        error = self.emitter.send(cmd.packet)
        if error is not None:
            self.metrics.emit_errors.labels(error).inc()
            self.warn_once(
                f"emit-{error}",
                self.reactor.clock(),
                "could not emit a packet to %s: %s (counted, going on)",
                socket.inet_ntoa(cmd.packet[16:20]),
                error,
            )

    def _refuse_host_addresses(self) -> None:
        """This host's own addresses are never claimed nor emitted to; the routers its routes
        go through are never claimed (the coalition file may not name the router)."""
        try:
            own, routers = _host_addresses()
        except Exception as exc:  # pyroute2 raises netlink errors of its own
            self.log.warning("cannot read this host's addresses and routes: %r", exc)
            return
        self.engine.egress.destinations.refuse_local(own)
        probes = self.engine.probes
        for a in own:
            probes.reserve(a.packed, ClaimRefusal.OWN_ADDRESS, "an address of this host")
        for a in routers:
            probes.reserve(a.packed, ClaimRefusal.ROUTER, "a router this host's routes go through")

    def log_event(self, e: ev.Event, now: float) -> None:
        match e:
            case ev.OfferMismatch():
                self.warn_once(
                    f"offer-{e.gateway}",
                    now,
                    "%s, of our operator, offers other %s than this gateway: give every gateway "
                    "of an operator the same [offer] and token key",
                    e.gateway,
                    e.what,
                )
            case ev.AddressRefused(reason=ClaimRefusal.IN_USE):
                self.log.warning("not claiming %s: in use, %s", e.address, e.detail)
            case ev.AddressRefused():
                self.log.warning(
                    "not claiming %s: %s (%s)",
                    e.address,
                    e.reason.value.replace("_", " "),
                    e.detail,
                )
            case ev.AddressDefended():
                self.log.warning(
                    "%s sent an ARP from %s, which this gateway holds: announced it again",
                    e.mac,
                    e.address,
                )
            case ev.AddressFree():
                self.log.info(
                    "%s is free again (nobody answered a probe): it may be claimed", e.address
                )
            case ev.AccusationJudged(judgement="proven"):
                self.warn_once(
                    "accused",
                    now,
                    "an accusation holds up: the owner of slot %d of round %d proved it and bit "
                    "%d emerged as 1 where it says it wrote 0: the leader of that round traces "
                    "it (lanon status: blame)",
                    e.slot,
                    e.round,
                    e.bit,
                )
            case ev.TraceEnded(outcome="disruptor"):
                self.log.warning(
                    "blame: bit %d of round %d was written by %s (traced in %.0f ms from the "
                    "round; the evidence went to every member, who check it)",
                    e.bit,
                    e.round,
                    ", ".join(e.named),
                    e.since_round * 1000,
                )
            case ev.TraceEnded():
                self.log.info(
                    "blame: round %d traced, %s%s: nobody named",
                    e.round,
                    e.outcome,
                    f" (silent, out until the epoch ends: {', '.join(e.silent)})"
                    if e.silent
                    else "",
                )
            case ev.MemberExcluded():
                self.log.warning(
                    "member %s is excluded after blame: out of every roster until an operator "
                    "readmits it (lanon readmit %s, on any gateway)",
                    e.name,
                    e.name,
                )
            case ev.MemberReadmitted():
                self.log.warning("member %s is readmitted", e.name)
            case _:
                super().log_event(e, now)

    def _refresh(self) -> None:
        """State gauges, set from the loop thread (the HTTP thread only reads them)."""
        e, m = self.engine, self.metrics
        self.warn_if_paused(self.reactor.clock())
        counts = {state: 0 for state in MemberState}
        for rec in e.leader.members:
            counts[rec.state] += 1
        for state, n in counts.items():
            m.members.labels(state.value).set(n)
        m.k.set(keygraph.connectivity(e.leader.present, self.c.edges).k)
        m.excluded.set(len(e.tracer.exclusions.members))
        m.join_requests.set(len(e.joins.requests))
        m.held.set(len(e.held))
        m.endpoints.set(e.flows.endpoints)
        m.gateways_alive.set(len(e.policy.alive(self.reactor.clock())))
        for reason, n in e.probes.counts().items():
            m.refused_addresses.labels(reason.value).set(n)
        # Every gateway tracks every flow (a standby must); each reports those of the
        # addresses it holds, so that sums over gateways count each flow once.
        usage = e.flows.usage()
        for i, a in enumerate(self.c.anonymous):
            for proto in (6, 17, 1):
                held = usage.get((proto, a.packed), 0) if i in e.held else 0
                m.flows.labels(str(a), protocol(proto)).set(held)

    def _blame_status(self) -> dict[str, Any]:
        t = self.engine.tracer
        return {
            "traces": dict(t.outcomes),  # by outcome (gateway/tracer.py)
            "excluded": _names(self.c, t.exclusions.members),  # until `lanon readmit`
            "held_out": _names(self.c, t.exclusions.held),  # silent in blame: out this epoch
            "tracing": t.active is not None,
            # the last verdict that named someone, in ms from its accused round's opening
            "last_exclusion_ms": None
            if t.last_exclusion is None
            else round(t.last_exclusion * 1000, 1),
        }

    def _install_rules(self) -> bool:
        """The quiet-stack rules for the anonymous addresses of the coalition as it runs now
        (a version may change the shares), watched (the watch not started yet); False if
        they were in place already."""
        own = rules.prefixes(self.c)
        if own == self._rules_for:
            return False
        if self.watch is not None:
            self.watch.stop()
        rules.install(own)
        self._rules_for = own
        self.watch = iptables.Watch(rules.rulesets(own), self.rules_restored)
        return True

    def report(self, events: list[ev.Event], now: float) -> None:
        super().report(events, now)
        versions = any(isinstance(e, ev.VersionApplied) for e in events)
        if versions and self.s.manage_rules and self._install_rules() and self.watch is not None:
            self.watch.start()

    def _control(self, request: str) -> dict[str, Any]:
        verb, _, name = request.partition(" ")
        if verb == "pending":
            return {"pending": self.engine.joins.as_list(self.reactor.clock())}
        if verb == "agency":  # an agency's signed rating to pass on (lanon providers publish)
            return self._relay_agency(name)
        if verb != "readmit":
            return super()._control(request)
        e = self.engine
        if name not in {m.name for m in self.c.members}:
            return {"error": f"no member {name!r} in {self.c.path}"}
        if not e.readmit(name, self.reactor.clock()):
            return {"error": f"{name} is not excluded"}
        self.flush(self.reactor.clock())
        return {"readmitted": name}

    def _relay_agency(self, text: str) -> dict[str, Any]:
        try:
            statement = bytes.fromhex(text)
            rating, raw, key, sig = pull_agency(statement)
        except ValueError as exc:
            return {"error": f"not an agency's rating: {exc}"}
        agencies = {decode_public_key(k, "agency") for k in self.c.providers.agencies}
        if key not in agencies:
            return {"error": f"{self.c.path} lists no such agency in [providers] agencies"}
        if not Verifier().verify(key, agency_signed(raw, key), sig):
            return {"error": "the agency's signature does not hold"}
        self.engine.relay_agency(statement)
        self.flush(self.reactor.clock())
        return {"relayed": len(rating.scores), "period": rating.period}

    def _provider_status(self) -> dict[str, Any] | None:
        p = self.provision
        if p is None:
            return None
        sold, credentials, spent = p.ledger.totals() if p.ledger is not None else (0, 0, 0)
        return {
            "operator": self.engine.me.operator,
            "per_gb": p.offer.price.per_gb,
            "per_month": p.offer.price.per_month,
            "takes_tokens": p.cashier is not None,
            "free_mb": p.offer.free_mb,
            "mb_per_token": p.offer.mb_per_token,
            "tokens_sold": sold,  # all time (the ledger's), to members it knows
            "tokens_spent": spent,  # by whom, nobody here knows
            "credentials_issued": credentials,
            "issues_credentials": p.issuer is not None,
        }

    def status(self) -> dict[str, Any]:
        e = self.engine
        now = self.reactor.clock()
        leader = e.leader
        present = sorted(self.c.members[i].name for i in leader.present)
        states = {self.c.members[i].name: rec.state.value for i, rec in enumerate(leader.members)}
        m = self.metrics
        value = self.registry.get_sample_value
        disbanded = leader.phase is Phase.DISBANDED
        if e.retired:
            state = "removed"
            condition = (
                f"removed: version {self.c.version} of the coalition file leaves this gateway "
                "out; it holds no address and leads no round"
            )
        elif disbanded:
            state = "paused"
            condition = (
                f"paused: {len(present)} of {len(self.c.members)} members present "
                f"(min {self.c.coalition.min_members})"
            )
        elif e.leading:
            state, condition = "leading", "leading rounds"
        else:
            state, condition = "standby", "standby: following the leading gateway"
        return {
            "role": "gateway",
            "name": self.s.name,
            "coalition": self.c.coalition.name,
            "fingerprint": self.c.fingerprint.hex(),
            "version": __version__,
            "wire_version": wire.VERSION,
            "coalition_version": self.c.version,
            "mode": self.c.coalition.mode.value,  # dcnet, or trusted (the gateways know who sends)
            "host_versions": dict(sorted(e.host_versions.items())),
            "pending": e.joins.as_list(now),  # join requests for the administrator
            "shortfall": self.c.shortfall,  # why this version cannot run rounds, if it cannot
            "interface": self.s.interface,
            "state": state,
            "condition": condition,
            "leading": e.leading,
            "phase": leader.phase.value,
            "disbanded": disbanded,
            "round": leader.round if e.leading else e.seen_round,
            "epoch": leader.epoch,
            "round_rate": round(m.rounds_rate.rate(now), 2),
            "rounds_completed": int(value("lanon_rounds_completed_total") or 0),
            "rounds_aborted": int(
                sum(
                    value("lanon_rounds_aborted_total", {"reason": r.name.lower()}) or 0
                    for r in wire.AbortReason
                )
            ),
            "members_present": present,
            "members": states,
            "k": keygraph.connectivity(leader.present, self.c.edges).k,
            "k_configured": self.c.connectivity.k,
            "reservation_collisions": int(value("lanon_reservation_collisions_total") or 0),
            "data_collisions": int(value("lanon_data_collisions_total") or 0),
            "flows": len(e.flows),
            "endpoints": e.flows.endpoints,
            "held": [str(self.c.anonymous[i]) for i in sorted(e.held)],
            "gateways_alive": sorted(self.c.gateways[g].name for g in e.policy.alive(now)),
            "emitted_packets": int(value("lanon_emitted_packets_total") or 0),
            "inbound_packets": int(value("lanon_inbound_broadcast_packets_total") or 0),
            "rejected": {
                k[len("rejected_") :]: v for k, v in m.local.items() if k.startswith("rejected_")
            },
            "link": e.link,
            "takeovers": [{"address": a, "silence_ms": round(t * 1000)} for a, t in m.takeovers],
            # slot owners' accusations by judgement (gateway/accusations.py): proven ones
            # mean a member disrupts the rounds
            "accusations": {j.value: n for j, n in e.egress.accusations.judged.items() if n},
            "blame": self._blame_status(),
            "refused": e.probes.refused(),  # addresses it will not claim, and why
            "provider": self._provider_status(),  # its operator's offer and books
            "emit_errors": {
                s.labels["reason"]: int(s.value)
                for f in m.emit_errors.collect()
                for s in f.samples
                if s.name.endswith("_total")
            },
        }


def _names(c: Any, members: Iterable[int]) -> list[str]:
    return [c.members[m].name for m in sorted(members)]


def _host_addresses() -> tuple[list[ipaddress.IPv4Address], list[ipaddress.IPv4Address]]:
    """This host's IPv4 addresses (every interface) and the gateways of its routes."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        own = [ipaddress.IPv4Address(a.get_attr("IFA_LOCAL")) for a in ipr.get_addr(family=2)]
        routers = {
            ipaddress.IPv4Address(gw)
            for r in ipr.get_routes(family=2)
            if (gw := r.get_attr("RTA_GATEWAY"))
        }
    return own, sorted(routers)


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
