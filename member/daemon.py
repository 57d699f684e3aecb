"""The member daemon: NFQUEUE, the LAN socket and the TUN device around the member engine."""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from netfilterqueue import NetfilterQueue
from prometheus_client import CollectorRegistry

from lanon.common import __version__, iptables, wire
from lanon.common import events as ev
from lanon.common.clock import wall_ms
from lanon.common.coalition import Schedule
from lanon.common.crypto import KEY_LEN
from lanon.common.daemon import LAN_BATCH, RING_FRAMES, DaemonBase, Stage
from lanon.common.daemon_config import Loaded
from lanon.common.errors import ConfigError, PrerequisiteError
from lanon.common.events import (
    AdoptNextKey,
    FilterInbound,
    FilterSources,
    InjectPacket,
    SaveCoalition,
    SaveWallet,
    SendFrame,
)
from lanon.common.metrics import snapshot
from lanon.common.rawsock import Kind, LinkSocket
from lanon.common.settings import resolve
from lanon.member import drain, health, rules, services
from lanon.member.config import MemberSettings
from lanon.member.drain import InboundDrain, Stop
from lanon.member.engine import MemberEngine
from lanon.member.metrics import MemberMetrics
from lanon.member.pacer import InlinePacer, Mode, ProcessPacer, compiled_loop
from lanon.member.tun import Tun
from lanon.member.veto import AnonymityPolicy
from lanon.member.wallet import Wallet

NFQUEUE_MAXLEN = 4096
# What each of the member's LAN sockets reads (LinkSocket's kind)
_OUTPUT_TYPES = frozenset({wire.MsgType.OUTPUT_HEAD, wire.MsgType.OUTPUT_PART})
OUTPUTS: Kind = (_OUTPUT_TYPES, True)
INBOUND: Kind = (frozenset({wire.MsgType.INBOUND}), True)
ROUNDS: Kind = (_OUTPUT_TYPES | INBOUND[0], False)  # OPENs and everything else
# The outputs' ring (0.8 MiB at a 1500-byte MTU): a round's output is a head and at most a
# few dozen parts, and it is read at the next OPEN; one the daemon fell too far behind to keep
# costs only the retry of its cells, as a lost round does.
OUTPUT_RING_FRAMES = 512
REFRESH = 1.0  # seconds between refreshes of state gauges
# After a read of INBOUND_PAUSE_AFTER frames or more, the INBOUND socket is left alone for
# INBOUND_PAUSE: a download's frames are then read a hundred at a wake-up instead of a few
# (8 members, 50 MB: 34.2-40.7 MB/s against 31.6-37.3 with 1 ms). A ping's reply is one frame.
INBOUND_PAUSE_AFTER = 16
INBOUND_PAUSE = 0.003


class MemberDaemon(DaemonBase):
    role = "member"
    engine: MemberEngine
    lan: LinkSocket
    outputs: LinkSocket

    def __init__(
        self, settings: MemberSettings, loaded: Loaded, registry: CollectorRegistry | None = None
    ) -> None:
        super().__init__(settings, loaded, registry)
        self.s = settings
        self.next_refresh = 0.0
        self.health_log = health.HealthLog(self.log)
        self._started: float | None = None  # the first look at its health, once it runs
        self._foreign = (0.0, float("-inf"))  # frames of other coalitions: (count, last change)
        self.drain: InboundDrain | None = None  # the compiled INBOUND path, once running
        self._owned_seen = -1  # the engine's `owned_changes` the drain was told of
        self.inbound_paused_until: float | None = None  # INBOUND left alone until then
        self.private_registry = CollectorRegistry()
        self.metrics: MemberMetrics = MemberMetrics(
            self.registry, self.private_registry, settings.name, self.c.coalition.name
        )
        now = self.reactor.clock()
        offers = services.offers(settings.services, self.c, loaded.path.parent, str(loaded.path))
        # Services' inbound packets go to the TUN address, which the rules keep the LAN from:
        # a service on this host's LAN address could be found there by any LAN host.
        local = IPv4Address(settings.tun_address).packed
        self.engine = MemberEngine(
            self.c,
            settings.name,
            loaded.key,
            now=now,
            wall_offset=self.wall_offset,
            rng=random.SystemRandom(),
            max_queue=settings.max_queue,
            gateways=settings.gateways,
            policy=AnonymityPolicy(
                settings.min_anonymity_set,
                settings.min_anonymity_fraction,
                settings.min_anonymity_k,
                settings.presence_window,
            ),
            services=offers,
            local=local,
            priorities=settings.providers,
            wallet=self._load_wallet(),
            filter_inbound=settings.filter_inbound,
        )
        self.metrics.version.set(self.c.version)
        if loaded.next_key is not None:
            self.engine.ask_for_key(loaded.next_key, now)
        # Until the pacer process runs (and if it cannot), the loop sends answers itself.
        self.pacer: InlinePacer | ProcessPacer = self._inline_pacer()

    @property
    def wallet_path(self) -> Path:
        return resolve(self.loaded.path.parent, self.s.wallet)

    def _load_wallet(self) -> Wallet:
        path = self.wallet_path
        try:
            return Wallet(path.read_text())
        except FileNotFoundError:
            return Wallet()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the wallet: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def _save_wallet(self, cmd: SaveWallet) -> None:
        """Atomically, owner-only: tokens are money. A wallet we cannot write is said."""
        self.write_state(self.wallet_path, cmd.text, "wallet")

    def run(self) -> None:
        s = self.s
        # Rules first (`lanon member` put them in before reading the key; this refreshes
        # them): from here on, nothing leaves with our address, daemon or not. A watch puts
        # them back within a second if anything removes them (a firewall reload, iptables -F).
        self.watch: iptables.Watch | None = None
        if s.manage_rules:
            own = rules.MemberRules(
                self.c.coalition.lan,
                s.queue,
                s.tun,
                s.dhcp_server,
                tuple(self.c.lan_services.direct),
                s.tun_address,
            )
            rules.install(own)
            self.watch = iptables.Watch(own.rulesets(), self.rules_restored)
        elif not rules.installed():
            self.log.warning(
                "manage_rules = false and no lanon rules installed: traffic is not captured"
            )
        self.tun = Tun(s.tun, s.tun_address)
        # Three sockets, filtered in the kernel: the rounds' frames and all else; their
        # outputs, read when a frame wakes us (`on_lan`, `_tick`), never waking us (no answer
        # waits on them: a round's output is read before the next OPEN, which it came before);
        # and INBOUND.
        self.lan = LinkSocket(s.interface, wire.ETHERTYPE, kind=ROUNDS, ring=RING_FRAMES)
        self.outputs = LinkSocket(
            s.interface, wire.ETHERTYPE, kind=OUTPUTS, ring=OUTPUT_RING_FRAMES
        )
        self.inbound = LinkSocket(s.interface, wire.ETHERTYPE, kind=INBOUND, ring=RING_FRAMES)
        self.say_without_ring(self.lan, self.outputs, self.inbound)
        self.drain = self._make_drain()
        self._start_pacer()
        self.handlers = {
            SendFrame: self._send,
            FilterSources: self._filter_sources,
            FilterInbound: self._filter_inbound,
            InjectPacket: lambda cmd: self.tun.write(cmd.packet),
            SaveCoalition: self.save_coalition,
            SaveWallet: self._save_wallet,
            AdoptNextKey: self.adopt_next_key,
        }
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
        r.add_reader(self.lan.fileno(), self.on_lan)  # first: the rounds before INBOUND
        r.add_reader(self.inbound.fileno(), self._on_inbound)
        r.add_reader(self.queue.get_fd(), self._on_queue)
        r.add_reader(self.tun.fileno(), self.tun.drain)
        self.serve_metrics()
        self.serve_metrics(s.private_metrics, self.private_registry)
        self.serve_control()
        r.handle_signals()
        self.engine.start(r.clock())
        self.flush(r.clock())
        self.log.info(
            "member %s on %s: queue %d, tun %s, coalition %s (fingerprint %s), lanon %s "
            "(wire version %d)",
            s.name,
            s.interface,
            s.queue,
            s.tun,
            self.c.coalition.name,
            self.c.fingerprint.hex(),
            __version__,
            wire.VERSION,
        )
        if self.watch is not None:
            self.watch.start()
        try:
            r.run(self._tick)
        finally:
            if self.watch is not None:
                self.watch.stop()
            self.queue.unbind()
            self.pacer.close()
            self.tun.close()
            self.lan.close()
            self.outputs.close()
            self.inbound.close()
            self.close_serving()
            r.close()
            self.log.info("stopped; the rules stay in place (fail-closed)")

    # --- input --------------------------------------------------------------------------

    def _on_packet(self, pkt: Any) -> None:
        try:
            payload = pkt.get_payload()
        finally:
            pkt.drop()  # the original never leaves: it travels in a cell
        now = self.reactor.clock()
        try:
            self.engine.submit_packet(payload, now)
        except Exception as exc:
            self.contain(Stage.PACKET, exc)
        # Between two packets of a burst: an OPEN that came meanwhile is taken up soon, and a
        # round's answer leaves at its moment.
        self._look_at_rounds()
        self.run_timers(self.reactor.clock())

    def _make_drain(self) -> InboundDrain | None:
        """The compiled reader of the INBOUND ring, if it was built (and both sockets have a
        ring: it looks at the rounds' between two frames)."""
        ring, rounds = self.inbound.ring, self.lan.ring
        if ring is None or rounds is None:
            return None  # (said already: see say_without_ring)
        native, why = drain.load()
        try:
            if native is not None:
                return InboundDrain(
                    native,
                    ring,
                    rounds,
                    os.urandom(KEY_LEN),
                    self.inbound.sock,
                    cipher=self.c.coalition.inbound_cipher,
                )
        except Exception as exc:  # (a module built from another version's source)
            why = f"unusable ({exc})"
        self.log.warning(
            "the compiled INBOUND path is %s: every INBOUND frame is read in Python, at "
            "several times the CPU (reinstall lanon: pip builds it with gcc and python3-dev)",
            why,
        )
        return None

    def _on_inbound(self) -> None:
        """INBOUND frames (every member's replies, broadcast), with a look at the rounds'
        socket after each: an OPEN never waits behind a download's packets, this member's or
        another's, or its answer would be later than others'. Nothing times an INBOUND's
        arrival: read without a stamp.

        After a busy read, the socket is left alone for INBOUND_PAUSE: the frames that come
        meanwhile are read together, one wake-up for many (a download brings thousands a
        second to every member). Every member does the same with the same frames, the one
        they are for too: were it to read on, its ACKs would catch rounds sooner (a 5 MB
        download, 8 members: 3% faster; with `filter_inbound` more, BENCHMARKS.md), and so
        would every other flow of its, while and only while it downloads: a server or the
        switch timing a flow's answers would link them."""
        if self.drain is not None and self.engine.drain_may_read():
            read = self._drain_inbound(self.drain)
        else:
            read = self._read_in_python(LAN_BATCH)
        if INBOUND_PAUSE_AFTER <= read < LAN_BATCH:  # (not when behind: read on)
            self.reactor.remove_reader(self.inbound.fileno())
            self.inbound_paused_until = self.reactor.clock() + INBOUND_PAUSE

    def _drain_inbound(self, d: InboundDrain) -> int:
        """The INBOUND frames waiting, up to LAN_BATCH, read by `d` (member/drain.py) where
        the engine lets it: a fresh frame of ours goes to the engine opened, a frame `d`
        leaves goes the engine's way (`take_all`), and between two frames the rounds' frames
        and the timers are looked at as `take_all` looks at them."""
        e, clock = self.engine, self.reactor.clock
        read = 0
        while read < LAN_BATCH:
            now = clock()
            if not e.drain_may_read():  # (we left, or took more flows, meanwhile)
                return read + self._read_in_python(LAN_BATCH - read)
            if d.follow(self.c.id, len(self.c.gateways)) or e.owned_changes != self._owned_seen:
                self._owned_seen = e.owned_changes
                d.set_owned(e.owned_keys())
            d.set_door(e.door.closed_sources(now), e.door.filter(now))
            each = self.timers_each_frame
            due = min(e.get_timer(), self.pacer.due) if each else math.inf
            stop, taken = d.drain(LAN_BATCH - read, due)
            if stop is Stop.EMPTY and not taken and not read:
                d.clear_error()  # woken for nothing: maybe the link went down
            read += taken
            if stop is Stop.ROUNDS:  # (an OPEN before our own frames)
                self.on_lan()
            self._take_opened(d, each, stop is Stop.FULL)
            if stop is Stop.TIMER:
                now = clock()
                self.run_timers(now)
                self.hold(now)
            elif stop is Stop.PYTHON:
                taken = self._read_in_python(1)
                if not taken:
                    break  # (a slot the ring dropped: the rest at the next wake-up)
                read += taken
            elif stop is Stop.EMPTY or stop is Stop.LIMIT:
                break
        self.run_timers(clock())
        return read

    def _read_in_python(self, limit: int) -> int:
        """INBOUND frames through the engine's own path, up to `limit`; first, the parts of a
        packet the compiled path kept for its rest (its output was full), which the engine
        now puts together with the rest."""
        if self.drain is not None and self.drain.holding:
            self._take_opened(self.drain, self.timers_each_frame, False)
        return self.take_all(self.inbound, self._look_at_rounds, stamped=False, limit=limit)

    def _take_opened(self, d: InboundDrain, each: bool, more: bool) -> None:
        """Our frames `d` read, to the engine, each as `take_all` hands a frame over (`more`:
        more wait in the ring)."""
        e, clock = self.engine, self.reactor.clock
        bad_seals, replays = d.take_refused()
        if bad_seals or replays:
            e.inbound_refused(bad_seals, replays)
        for opened in d.take_ours(more):
            now = clock()
            try:
                e.receive_opened(opened, now)
            except Exception as exc:
                self.contain(Stage.LAN_FRAME, exc)
            if e.pending():
                self.flush(now)
            if each:
                self.run_timers(now)
                self.hold(now)
            self._look_at_rounds()
        if e.pending():
            self.flush(clock())

    def on_lan(self) -> None:
        """The outputs waiting first (they came before what woke us), their events reported
        after the answer to an OPEN is handed over, as every member's are."""
        if self.outputs.waiting():
            self.take_all(self.outputs, flush=False)
        self.take_all(self.lan)
        if self.engine.pending():
            self.flush(self.reactor.clock())

    def _look_at_rounds(self) -> None:
        """The rounds' frames waiting, if any: a look at the ring, no system call (without a
        ring, a poll: a read that finds nothing costs a failed call and an exception)."""
        if self.lan.waiting():
            self.on_lan()

    @property
    def timers_each_frame(self) -> bool:  # type: ignore[override]
        """Timers between two frames only where this loop keeps a moment: its own answers
        (no pacer process), or a relay's in a tree (sent once its children's parts are in)."""
        return self.pacer.mode is Mode.INLINE or self.c.rounds.schedule is Schedule.TREE

    def hold(self, now: float) -> None:
        """A round's answer due within `answer_delay` and sent by this loop (no pacer
        process): sleep until its moment and send it, rather than start on a packet or a
        frame that could make it late. The loop is idle for at most answer_delay a round."""
        due = self.pacer.due
        if now < due <= now + self.c.rounds.answer_delay:
            time.sleep(due - now)
            self.run_timers(self.reactor.clock())

    def run_timers(self, now: float) -> None:
        super().run_timers(now)
        self.pacer.run(self.reactor.clock())  # (the timers may have taken a while)

    def flush(self, now: float) -> None:
        # An answer's frames go to the pacer together, before the events are reported: with
        # a host's cores shared, every step before the hand-over can make the answer late.
        self.carry_out()
        self.pacer.hand_over()
        self.report_events(now)

    # --- the answers' moment ------------------------------------------------------------

    def _start_pacer(self) -> None:
        try:
            pacer = ProcessPacer(
                self.lan.sock,
                self._answers_late,
                self._pacer_lost,
                self.reactor.clock,
                self.lan.send_frame,
            )
        except OSError as exc:
            self.log.warning(
                "no pacer process (%s): this daemon sends its answers itself, and its own "
                "load may show in their timing",
                exc,
            )
            return
        self.pacer = pacer
        self.reactor.add_reader(pacer.fileno(), pacer.on_readable)
        _, missing = compiled_loop()
        if missing is not None:
            self.log.warning(
                "the pacer's compiled loop is %s: it runs in Python, at several times the CPU "
                "a round (reinstall lanon: pip builds it with gcc and python3-dev)",
                missing,
            )
        if pacer.mode is Mode.PROCESS:
            self.log.warning(
                "the pacer runs without real-time priority (not granted here): under load, "
                "answers may leave late (lanon status: answers late)"
            )

    def _pacer_lost(self) -> None:
        if not isinstance(self.pacer, ProcessPacer):
            return
        lost, self.pacer = self.pacer, self._inline_pacer()
        self.reactor.remove_reader(lost.fileno())
        lost.close()
        if not self.reactor.stopping:
            self.log.warning("the pacer process ended: this daemon sends its answers itself")

    def _inline_pacer(self) -> InlinePacer:
        return InlinePacer(lambda frame: self.lan.send_frame(frame), self._answers_late)

    def _answers_late(self, count: int, rnd: int, late_by: float) -> None:
        self.engine.answers_late(count, rnd, late_by)
        self.flush(self.reactor.clock())

    def _filter_inbound(self, cmd: FilterInbound) -> None:
        self.inbound.allow_tags(cmd.tags)
        if self.inbound.tags_refused:  # (no count: it would say how many flows)
            self.warn_once(
                "tags-refused",
                self.reactor.clock(),
                "filter_inbound: the kernel refused a filter of flow tags (net.core.optmem_max)"
                ": this member reads every INBOUND frame while that lasts",
            )

    def _filter_sources(self, cmd: FilterSources) -> None:
        self.filter_sources(cmd.allow, self.lan, self.outputs, self.inbound)

    def _send(self, cmd: SendFrame) -> None:
        if cmd.at:
            self.pacer.submit(cmd.at, cmd.round, self.lan.frame(cmd.dst, cmd.frame))
        else:
            self.lan.send(cmd.dst, cmd.frame)

    def _on_queue(self) -> None:
        self.queue.run(block=False)
        self.flush(self.reactor.clock())

    def _tick(self, now: float) -> float:
        if self.outputs.waiting():  # (woken by anything else: the outputs come first)
            self.take_all(self.outputs)
        paused = self.inbound_paused_until
        if paused is not None and now >= paused:
            paused = self.inbound_paused_until = None
            self.reactor.add_reader(self.inbound.fileno(), self._on_inbound)
        self.run_timers(now)
        if now >= self.next_refresh:
            self.next_refresh = now + REFRESH
            self._refresh()
        due = min(self.engine.get_timer(), self.next_refresh, self.pacer.due)
        return due if paused is None else min(due, paused)

    # --- output -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        self._refresh()
        e = self.engine
        now = self.reactor.clock()
        h = self.health(now)
        running = h.state is health.State.RUNNING
        return {
            "role": "member",
            "name": self.s.name,
            "coalition": self.c.coalition.name,
            "fingerprint": self.c.fingerprint.hex(),
            "version": __version__,
            "wire_version": wire.VERSION,
            "coalition_version": self.c.version,
            "mode": self.c.coalition.mode.value,  # dcnet, or trusted (the gateways know who sends)
            "behind": e.behind,  # a newer version a leader runs, not heard whole here yet
            "interface": self.s.interface,
            "state": h.state.value,
            "condition": h.message,
            "in_roster": running,
            "last_round": e.last_round,
            "epoch": e.epoch,
            "round_rate": round(self.metrics.rounds_rate.rate(now), 2) if running else 0.0,
            "queue_cells": len(e.queue),
            "flows": len(e.flows),
            # who reads the INBOUND frames: the compiled path (member/drain.py) or Python
            "inbound_read": "compiled"
            if self.drain is not None and e.drain_may_read()
            else "python",
            "members": len(self.c.members),
            "members_heard": None if e.retired else self._members_heard(now),
            "min_members": self.c.coalition.min_members,
            "k": self.c.connectivity.k,
            "own": snapshot(self.private_registry),  # this member's own traffic: local only
            "answers": {  # how often this host kept the answer's moment: local only
                "sent": e.rounds.answered,
                "late": e.rounds.late,
                "paced": self.pacer.mode.value,  # realtime, process or inline
            },
            "services": [s.status() for s in e.services],  # our endpoints: local only
            # the providers as this member sees them, and its choice: local only
            "providers": {
                **e.choice.status(now, wall_ms(now, self.wall_offset)),
                **e.market.status(now),
            },
            "corrupted_slots": e.rounds.corrupted,  # someone wrote into ours: local only
            "blame": {  # verdicts this member checked itself (member/revealer.py)
                "excluded": [self.c.members[m].name for m in sorted(e.blame.excluded)],
                "verdicts": dict(e.blame.tally),
            },
            "anonymity": {  # the weakest rounds this member's cells went out in: local only
                "smallest_set": e.veto.smallest_set,
                "smallest_k": e.veto.smallest_k,
                "vetoed_rounds": e.veto.vetoed,
            },
        }

    def log_event(self, e: ev.Event, now: float) -> None:
        match e:
            case ev.VerdictChecked(agrees=False):
                self.log.error(
                    "blame: the verdict on round %d does not hold: its evidence does not show "
                    "what the leading gateway says (%s, naming %s): %s",
                    e.round,
                    e.outcome,
                    ", ".join(e.named) or "nobody",
                    e.detail or "it names others than the evidence shows",
                )
            case ev.VerdictChecked(outcome="disruptor"):
                self.log.warning(
                    "blame: %s wrote into slots not its own (round %d; checked here against "
                    "the evidence): excluded",
                    ", ".join(e.named),
                    e.round,
                )
            case ev.BlameAnswered(refused=refused) if refused:
                self.log.info("blame: nothing revealed for round %d: %s", e.round, refused)
            case ev.ProviderChosen():
                self.log.info(
                    "providers: new flows leave through %s (%s)", e.operator or "any", e.reason
                )
            case ev.WalletChanged(detail=detail) if detail.startswith("no token"):
                self.warn_once(
                    f"no-token-{e.operator}",
                    now,
                    "%s takes tokens and this member has none: flows through it stop after its "
                    "free allowance (set [providers] keep_tokens to buy them)",
                    e.operator,
                )
            case ev.WalletChanged():
                self.log.info(
                    "tokens of %s: %s (%d held, %d spent)", e.operator, e.detail, e.held, e.spent
                )
            case _:
                super().log_event(e, now)

    def health(self, now: float) -> health.Health:
        """How the lanon looks from here (member/health.py), from the engine's times."""
        e = self.engine
        if self._started is None:
            self._started = now
        foreign = self.registry.get_sample_value(
            "lanon_frames_rejected_total", {"reason": "foreign"}
        )
        if foreign and foreign != self._foreign[0]:
            self._foreign = (foreign, now)
        return health.assess(
            health.Observation(
                now=now,
                started=self._started,
                last_open=e.last_open,
                last_in_roster=e.last_in_roster,
                last_heartbeat=e.last_heartbeat,
                members_heard=self._members_heard(now),
                members=len(self.c.members),
                min_members=self.c.coalition.min_members,
                foreign=now - self._foreign[1] < health.PROBLEM_AFTER * 2,
                excluded=e.blame.we_are_excluded,
                outside="asking" if e.joining else "removed" if e.retired else "",
                version=self.c.version,
                behind=e.behind,
            )
        )

    def _members_heard(self, now: float) -> int | None:
        heard = self.engine.members_heard
        return 1 + sum(
            1
            for i, t in heard.items()
            if i != self.engine.me.index and now - t < health.MEMBER_HEARD
        )

    def _refresh(self) -> None:
        self.metrics.queue.set(len(self.engine.queue))
        self.metrics.flows.set(len(self.engine.flows))
        now = self.reactor.clock()
        self.health_log.update(self.health(now), now)
