"""What both daemons share: logging, metrics serving, the control socket, the dispatch loop."""

from __future__ import annotations

import base64
import contextlib
import enum
import ipaddress
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, disable_created_metrics

from lanon.common import events as ev
from lanon.common.coalition import Coalition
from lanon.common.control import ControlServer
from lanon.common.crypto import HostKey, read_private_key
from lanon.common.daemon_config import DaemonSettings, Loaded, control_path, next_key_path
from lanon.common.errors import LanonError, RejectReason
from lanon.common.events import AdoptNextKey, SaveCoalition
from lanon.common.iptables import Jump
from lanon.common.loop import Reactor
from lanon.common.metrics import BaseMetrics
from lanon.common.metrics_http import MetricsServer, parse_listen
from lanon.common.versions import Considered

LOG_EVERY = 10.0  # seconds between repeated warnings of one kind
PAUSE_WARN_AFTER = 5.0  # seconds a pause lasts before it is a WARNING (restarts pause briefly)
# Events of every round or packet that no daemon logs (see the `log_event`s): to the metrics
# only, without going through every `case` of the logs for each.
UNLOGGED = frozenset(
    {
        ev.Contributed,
        ev.OutputSeen,
        ev.CellDelivered,
        ev.PacketQueued,
        ev.PacketEmitted,
        ev.RoundOpened,
        ev.RoundCompleted,
        ev.InboundDelivered,
    }
)
# A lanon socket's receive ring (rawsock.LinkSocket): its slots are allocated at once (3.2 MiB at
# a 1500-byte MTU), and it holds at least what the 4 MiB receive buffer it replaced held (about
# 1,800 frames): a member's INBOUND frames of some 70 ms of a fast download. A gateway's holds
# twice as many: a peer's flow table comes at once (20,000 flows are 1,180 FLOWS frames).
RING_FRAMES = 2048
LAN_BATCH = 512  # frames read from the LAN before the loop looks at its other sockets
EXPECTED_REFUSALS = frozenset({ev.RefuseReason.MISSING_KEY, ev.RefuseReason.STALE_ROUND})


WALL_CHECK = 1.0  # s between two looks at the wall clock against the loop's
WALL_JITTER = 0.002  # s: closer than this, the offset stays (two clock reads a look)
WALL_STEP = 1.0  # s: a move this large is said in the log


class Stage(enum.Enum):
    """Where in a daemon an unexpected error was contained (a metric label)."""

    LAN_FRAME = "lan_frame"  # a lanon frame from the LAN
    PACKET = "packet"  # an outbound packet from NFQUEUE (member)
    CAPTURE = "capture"  # an IPv4 packet captured on the LAN (gateway)
    ARP = "arp"
    TIMER = "timer"
    COMMAND = "command"  # carrying out one engine command (a send, an emission, an injection)
    LOOP = "loop"  # escaped everything else: caught by the reactor


REFUSALS = {  # why the gateways refused a service its endpoint (common/endpoints.py Refusal)
    "stale": "a copy of this service that started later, elsewhere, serves its pinned endpoint",
    "bad_pin": "the endpoint's key in this file is not the one the coalition pins",
    "too_many": "the lanon's endpoints are all taken (8 a member)",
    "exhausted": "no free port on that anonymous address",
    "tag_in_use": "its tag names a flow",
}


def setup_logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
        force=True,  # `lanon member` logs before it has read the daemon's name and level
    )


class Engine(Protocol):
    """What the daemon loop needs of a sans-IO engine."""

    wall_offset: float

    def receive_frame(self, src: bytes, frame: bytes, now: float) -> None: ...
    def pending(self) -> bool: ...
    def get_timer(self) -> float: ...
    def handle_timer(self, now: float) -> None: ...
    def pop_commands(self) -> list[ev.Command]: ...
    def pop_events(self) -> list[ev.Event]: ...
    def ask_for_key(self, key: HostKey, now: float) -> None: ...
    def set_wall_offset(self, offset: float, now: float) -> None: ...
    def offer_version(self, text: str, now: float) -> Considered: ...


class LanSocket(Protocol):
    sources_refused: bool
    ring_refused: str | None

    def receive_stamped(self) -> Iterator[tuple[bytes, bytes, float]]: ...

    def receive_unstamped(self) -> Iterator[tuple[bytes, bytes, float]]: ...

    def take_truncated(self) -> int: ...

    def waiting(self) -> bool: ...

    def allow_only(self, sources: frozenset[bytes] | None) -> None: ...


class DaemonBase:
    """The loop around an engine: frames from the LAN in, timers, and the engine's commands
    out through `handlers` (one per command type); every frame, timer and command contained."""

    role = "daemon"
    # Timers between two frames of a batch (a member's answer may fall due there), or once
    # after it: a batch takes far less than any timer's slack (a gateway's)
    timers_each_frame = True
    engine: Engine
    lan: LanSocket
    handlers: dict[type[ev.Command], Callable[[Any], object]]

    def __init__(
        self, settings: DaemonSettings, loaded: Loaded, registry: CollectorRegistry | None = None
    ) -> None:
        self.settings = settings
        self.loaded = loaded
        self._started_with = loaded.coalition
        self.log = logging.getLogger(f"lanon.{self.role}")
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry or CollectorRegistry()
        self.reactor = Reactor(on_error=self._loop_error)
        self.wall_offset = time.time() - self.reactor.clock()
        self._wall_checked = self.reactor.clock()
        self.control: ControlServer | None = None
        self._http: list[Any] = []
        self._last_warned: dict[str, float] = {}
        self._paused: tuple[float, str] | None = None  # since when, and why (LanonDisbanded)
        self._paused_warned = False
        self.too_long = 0  # frames the receive rings dropped, longer than a slot
        self.metrics: BaseMetrics

    @property
    def c(self) -> Coalition:
        """The coalition as the engine runs it now (a version may have replaced the file's)."""
        c: Coalition = getattr(getattr(self, "engine", None), "c", self._started_with)
        return c

    # --- versions ---------------------------------------------------------------------------

    def save_coalition(self, cmd: SaveCoalition) -> None:
        """Write the version just applied over the coalition file, atomically, so that the
        next start runs it; a file we cannot write is said, and the daemon goes on."""
        path = self._started_with.path
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        try:
            tmp.write_text(cmd.text)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            self.log.warning(
                "cannot write the new version to %s (%s): it runs, but a restart would run "
                "the old one until a gateway repeats the new",
                path,
                exc.strerror,
            )

    def adopt_next_key(self, _cmd: AdoptNextKey) -> None:
        """A version gave us the key lanon rekey made: it is our key from now on, on disk too."""
        key_path = self.loaded.key_path
        if key_path is None:
            return
        try:
            next_key_path(key_path).replace(key_path)
        except OSError as exc:
            self.log.warning("cannot replace %s with the new key: %s", key_path, exc.strerror)
            return
        self.log.warning("the new key of this host is in use (%s)", key_path)

    def _ask_for_next_key(self) -> dict[str, Any]:
        """lanon rekey made KEY.next: the engine asks for it (JOIN, signed by both keys)."""
        key_path = self.loaded.key_path
        path = next_key_path(key_path) if key_path is not None else None
        if path is None or not path.exists():
            return {"error": "no new key to ask for (lanon rekey makes one)"}
        try:
            key = read_private_key(path)
        except LanonError as exc:
            return {"error": str(exc)}
        self.engine.ask_for_key(key, self.reactor.clock())
        self.flush(self.reactor.clock())
        return {"asking": True}

    # --- serving ----------------------------------------------------------------------------

    def serve_metrics(
        self, listen: str | None = None, registry: CollectorRegistry | None = None
    ) -> None:
        listen = self.settings.metrics if listen is None else listen
        if not listen:
            return
        lan = self.c.lan
        address, port = parse_listen(listen, self.settings.interface, lan)
        clients = [ipaddress.IPv4Network(p) for p in self.settings.metrics_clients] or [lan]
        server = MetricsServer(address, port, registry or self.registry, clients)
        self._http.append(server)
        try:
            local_only = ipaddress.ip_address(address).is_loopback
        except ValueError:  # a name such as localhost
            local_only = False
        # bound to loopback (a member's private_metrics), only this host can connect at all
        who = (
            "loopback only" if local_only else ", ".join(str(c) for c in clients) + " and loopback"
        )
        self.log.info("metrics on %s for %s", server.url, who)

    def serve_control(self) -> None:
        path = control_path(self.settings, self.loaded.path.parent)
        if path is None:
            return
        self.control = ControlServer(path, self._control)
        self.reactor.add_reader(self.control.fileno(), self.control.handle)

    def _control(self, request: str) -> dict[str, Any]:
        verb, _, arg = request.partition(" ")
        if verb == "status":
            return self.status()
        if verb == "rekey":
            return self._ask_for_next_key()
        if verb == "coalition":  # the file this daemon runs: what lanon admin edits
            return {"version": self.c.version, "text": self.c.text, "path": str(self.c.path)}
        if verb == "publish":  # a signed version an administrator gives (lanon admin publish)
            try:
                text = base64.b64decode(arg, validate=True).decode()
            except ValueError:
                return {"error": "publish: expected the file's text in base64"}
            considered = self.engine.offer_version(text, self.reactor.clock())
            self.flush(self.reactor.clock())
            return {"outcome": considered.outcome.value, "detail": considered.detail}
        return {"error": f"unknown request {verb!r}; try 'status'"}

    def status(self) -> dict[str, Any]:
        raise NotImplementedError

    def close_serving(self) -> None:
        if self.control is not None:
            self.control.close()
        for server in self._http:
            server.shutdown()

    # --- containment ------------------------------------------------------------------------

    @contextlib.contextmanager
    def contained(self, stage: Stage) -> Iterator[None]:
        """Whatever one frame, packet, timer or command does wrong stays with it: counted by
        stage, logged (with its traceback, at most every LOG_EVERY seconds a stage), and the
        daemon goes on with the next one."""
        try:
            yield
        except Exception as exc:
            self.contain(stage, exc)

    def contain(self, stage: Stage, exc: Exception) -> None:
        """`contained`'s work, for the hot paths' own `try` (a context manager costs each
        frame a generator)."""
        self.metrics.internal_errors.labels(stage.value).inc()
        now = self.reactor.clock()
        if now - self._last_warned.get(f"internal-{stage.value}", -LOG_EVERY) >= LOG_EVERY:
            self._last_warned[f"internal-{stage.value}"] = now
            self.log.error(
                "internal error in %s handling (contained, going on): %r",
                stage.value,
                exc,
                exc_info=exc,
            )

    def on_lan(self) -> None:
        """The frames waiting (up to LAN_BATCH), each with the time it arrived (the kernel's
        stamp, so that the engine's deadlines count from the frame, not from when this loop got
        to it); a timer that falls due meanwhile fires between two frames where the loop keeps
        a moment (`timers_each_frame`), else after them."""
        self.take_all(self.lan)

    def take_all(
        self,
        lan: LanSocket,
        between: Callable[[], None] | None = None,
        stamped: bool = True,
        limit: int = LAN_BATCH,
        flush: bool = True,
    ) -> int:
        """Every frame waiting on `lan` (up to `limit`), `between` called after each;
        not `stamped`: each arrived when read (for frames whose arrival nothing times); not
        `flush`: the engine's commands, events and timers wait for the caller's flush.
        Returns how many were read.

        Lean, since a member reads every frame of every download, most of them another's
        that leave nothing behind: a flush only where the engine has commands or events
        waiting, the timers once after the batch unless this loop keeps a moment (asked
        again after a flush: a member whose pacer was lost keeps it from then on)."""
        clock, engine = self.reactor.clock, self.engine
        now = clock()
        offset = time.time() - now  # wall clock -> the loop's, for the kernel's stamps
        each = flush and self.timers_each_frame
        frames = lan.receive_stamped() if stamped else lan.receive_unstamped()
        read = 0
        for src, payload, stamp in itertools.islice(frames, limit):
            read += 1
            arrived = min(now, max(stamp - offset, now - 1.0)) if stamp else now
            try:
                engine.receive_frame(src, payload, arrived)
            except Exception as exc:
                self.contain(Stage.LAN_FRAME, exc)
            now = clock()
            if flush and engine.pending():
                self.flush(now)
                each = self.timers_each_frame
            if each:
                self.run_timers(now)
                self.hold(now)
            if between is not None:
                between()
        if flush and not each:
            self.run_timers(now)
        if truncated := lan.take_truncated():
            self.too_long += truncated
            self.warn_once(
                "truncated",
                now,
                "%d frames dropped in all, longer than a slot of the receive ring (the LAN "
                "interface's MTU when this daemon started: if it was raised, restart the daemon)",
                self.too_long,
            )
        return read

    def say_without_ring(self, *socks: LanSocket) -> None:
        """Say which sockets read a system call a frame: the kernel made them no ring."""
        for sock in socks:
            if sock.ring_refused is not None:
                self.log.warning(
                    "no receive ring on a LAN socket (%s): it reads a system call a frame",
                    sock.ring_refused,
                )

    def filter_sources(self, allow: frozenset[bytes] | None, *socks: LanSocket) -> None:
        """The door's kernel filter on these sockets. Where the kernel refuses it (more
        sources than net.core.optmem_max leaves room for), a socket keeps its kind's filter
        only, and the engine's door turns the other sources away itself (`warn_once`)."""
        for sock in socks:
            sock.allow_only(allow)
        if any(s.sources_refused for s in socks):
            self.warn_once(
                "sources-refused",
                self.reactor.clock(),
                "the kernel refused a filter of trusted sources (net.core.optmem_max): this "
                "daemon turns the others away itself, frame by frame",
            )

    def hold(self, now: float) -> None:
        """Wait here for a moment that must be kept exactly, rather than start other work
        (the member's answer); nothing to wait for by default."""

    def run_timers(self, now: float) -> None:
        if now >= self._wall_checked + WALL_CHECK:
            self.follow_wall_clock(now)
        if now >= self.engine.get_timer():
            with self.contained(Stage.TIMER):
                self.engine.handle_timer(now)
            self.flush(now)

    def write_state(self, path: Path, text: str, what: str) -> bool:
        """`text` into `path`, atomically, owner-only and on the disk when it returns (a crash
        or a power cut leaves the old file or the new one, never half of it); one we cannot
        write is said in the log."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            now = self.reactor.clock()
            self.warn_once(what, now, "cannot write the %s %s (%s)", what, path, exc.strerror)
            return False
        return True

    def follow_wall_clock(self, now: float) -> None:
        """The wall clock against the loop's, measured again: NTP may step it after this daemon
        started (at boot, typically), and the engine's stamps (OPEN, HELLO, KEYS) must follow,
        or the other hosts would take them for stale or from the future, and ours theirs."""
        self._wall_checked = now
        offset = time.time() - now
        moved = offset - self.wall_offset
        if abs(moved) <= WALL_JITTER:
            return
        self.wall_offset = offset
        self.engine.set_wall_offset(offset, now)
        if abs(moved) >= WALL_STEP:
            self.log.warning(
                "the wall clock moved by %+.3f s (NTP, or a hand): this daemon's stamps follow it",
                moved,
            )

    def flush(self, now: float) -> None:
        """Carry out the engine's commands, then report its events."""
        self.carry_out()
        self.report_events(now)

    def carry_out(self) -> None:
        """The engine's commands, in order."""
        for cmd in self.engine.pop_commands():
            handler = self.handlers.get(type(cmd))
            if handler is None:
                raise RuntimeError(f"unexpected command {cmd!r}")
            try:
                handler(cmd)
            except Exception as exc:
                self.contain(Stage.COMMAND, exc)

    def report_events(self, now: float) -> None:
        events = self.engine.pop_events()
        if events:
            self.report(events, now)

    def _loop_error(self, where: str, exc: BaseException) -> None:
        with self.contained(Stage.LOOP):
            raise exc

    # --- events -----------------------------------------------------------------------------

    def report(self, events: list[ev.Event], now: float) -> None:
        for e in events:
            self.metrics.observe(e, now)
            if type(e) not in UNLOGGED:
                self.log_event(e, now)

    def warn_once(self, key: str, now: float, msg: str, *args: object) -> None:
        self.say_once(logging.WARNING, key, now, msg, *args)

    def warn_if_paused(self, now: float) -> None:
        """A WARNING once a pause has lasted PAUSE_WARN_AFTER seconds (called periodically)."""
        if self._paused is None or self._paused_warned:
            return
        since, detail = self._paused
        if now - since >= PAUSE_WARN_AFTER:
            self._paused_warned = True
            self.log.warning("lanon paused for %.0f s: %s", now - since, detail)

    def say_once(self, level: int, key: str, now: float, msg: str, *args: object) -> None:
        """Log at most once every LOG_EVERY seconds for `key`."""
        if now - self._last_warned.get(key, -LOG_EVERY) >= LOG_EVERY:
            self._last_warned[key] = now
            self.log.log(level, msg, *args)

    def log_event(self, e: ev.Event, now: float) -> None:
        match e:
            case ev.FrameRejected(reason=RejectReason.FOREIGN | RejectReason.BAD_AUTH):
                self.warn_once(
                    f"reject-{e.reason.value}",
                    now,
                    "rejected %s frame (%s): %s",
                    e.frame,
                    e.reason.value,
                    # the detail is the error's text, "REASON: ...": the reason is said once
                    e.detail.removeprefix(f"{e.reason.value}: "),
                )
            case ev.FrameRejected():
                self.log.debug(
                    "rejected %s frame (%s): %s",
                    e.frame,
                    e.reason.value,
                    e.detail.removeprefix(f"{e.reason.value}: "),
                )
            case ev.LanFlooded(active=True):
                self.log.warning(
                    "the LAN is flooded with frames we reject: for a while only the %d hosts "
                    "already verified are heard (a kernel filter); hosts not yet verified "
                    "cannot join until it ends",
                    e.trusted,
                )
            case ev.LanFlooded():
                self.log.info("the flood has stopped for now: every host is heard again")
            case ev.LanonDisbanded():
                # Every start begins paused until members say HELLO, and a member's restart
                # pauses a lanon of min_members for a second: a WARNING only if it lasts
                # (warn_if_paused).
                self._paused, self._paused_warned = (now, e.detail), False
                self.log.info("lanon paused: %s", e.detail)
            case ev.LanonResumed():
                if self._paused is not None and self._paused_warned:
                    self.log.info(
                        "lanon running again with %d members (paused for %.0f s)",
                        e.present,
                        now - self._paused[0],
                    )
                else:
                    self.log.info("lanon running again with %d members", e.present)
                self._paused = None
            case ev.MemberChanged():
                self.log.info("member %s is %s", e.name, e.state.value)
            case ev.RoundAborted():
                self.log.info(
                    "round %d aborted (%s), missing: %s",
                    e.round,
                    e.reason.name.lower(),
                    ", ".join(e.missing) or "-",
                )
            case ev.LeadershipChanged():
                self.log.info(
                    "%s rounds (from round %d)",
                    "leading" if e.leader else "no longer leading",
                    e.round,
                )
            case ev.AddressClaimed() if e.takeover:
                self.log.warning(
                    "took over %s, %.0f ms after its gateway fell silent",
                    e.address,
                    e.silence * 1000,
                )
            case ev.AddressClaimed():
                self.log.info("claimed %s", e.address)
            case ev.LinkChanged():
                (self.log.info if e.up else self.log.warning)(
                    "LAN link %s",
                    "up: listening before claiming" if e.up else "down: released every address",
                )
            case ev.AddressReleased():
                self.log.info("released %s", e.address)
            case ev.FlowsReceived():
                self.log.info(
                    "learned %d flows from %s (%d refused: port taken)",
                    e.added,
                    e.sender,
                    e.refused,
                )
            case ev.VersionApplied():
                changed = [
                    f"{what} {', '.join(names)}"
                    for what, names in (
                        ("added", e.joined),
                        ("removed", e.left),
                        ("new key for", e.rekeyed),
                    )
                    if names
                ]
                self.log.warning(
                    "coalition version %d applied (was %d), without a restart%s",
                    e.new,
                    e.old,
                    ": " + "; ".join(changed) if changed else "",
                )
            case ev.VersionRefused():
                self.say_once(
                    logging.INFO if e.outcome in ("older", "busy") else logging.WARNING,
                    f"version-{e.outcome}",
                    now,
                    "refused a coalition file heard on the LAN (%s): %s",
                    e.outcome,
                    e.detail or "-",
                )
            case ev.JoinRequested():
                self.say_once(
                    logging.WARNING,
                    "join-requested",
                    now,
                    "%s asks %s (lanon admin pending lists every request; lanon admin approve "
                    "%s adds it)",
                    e.name,
                    "for a new key" if e.rotation else "to join",
                    e.name,
                )
            case ev.Retired():
                self.log.error(
                    "version %d of the coalition file leaves this host out: it takes no part "
                    "from now on (its rules stay: nothing leaves with its address)",
                    e.version,
                )
            case ev.FlowsEnded():
                self.log.warning(
                    "no rounds for %.0f s (disband_timeout): %d flows ended%s",
                    self.c.coalition.disband_timeout,
                    e.flows,
                    f", {e.reset} TCP connections reset inside this host" if e.reset else "",
                )
            case ev.GatewayChanged():
                self.log.info("gateway %s is %s", e.name, "alive" if e.alive else "silent")
            case ev.RoundRefused():
                # A missing key or a stale round is what a restart or a leader change looks
                # like for a moment; if it lasts, the member's health says so (joining).
                self.say_once(
                    logging.INFO if e.reason in EXPECTED_REFUSALS else logging.WARNING,
                    f"refuse-{e.reason.value}",
                    now,
                    "refused round %d: %s (%s)",
                    e.round,
                    e.reason.value,
                    e.detail,
                )
            case ev.PortExhausted():
                self.warn_once(
                    "exhausted", now, "port space of %s full for protocol %d", e.address, e.proto
                )
            case ev.EpochChanged():
                self.log.debug("epoch %d", e.epoch)
            case ev.ServiceChanged(state="serving"):  # this host's log only
                self.log.info("service %s: serving at %s", e.name, e.endpoint)
            case ev.ServiceChanged():
                self.log.warning(
                    "service %s: %s (%s; asked again every 10 s)",
                    e.name,
                    e.state,
                    REFUSALS.get(e.refused, e.refused),
                )
            case ev.EndpointAsked(outcome=outcome) if outcome != "bound":
                self.warn_once(
                    f"endpoint-{outcome}", now, "a service's endpoint refused: %s", outcome
                )
            case ev.SlotCorrupted():
                # This host's log only: it says this member had a reserved slot in that round.
                self.warn_once(
                    "slot-corrupted",
                    now,
                    "a reserved slot of ours emerged corrupted in round %d: a member is writing "
                    "into slots not its own (the cell is sent again; blame does not yet name it)",
                    e.round,
                )
            case _:
                pass

    def rules_restored(self, jumps: list[Jump]) -> None:
        """Called from the rules watch's thread: something removed or altered our rules, and
        the watch has put them back."""
        self.metrics.rules_restored.inc()
        self.log.warning(
            "the lanon rules were removed or altered (%s); put them back",
            "missing jumps: " + ", ".join(map(str, jumps)) if jumps else "rules in our chains",
        )

    def stop(self) -> None:
        self.reactor.stop()
