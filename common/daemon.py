"""What both daemons share: logging, metrics serving, the control socket, the dispatch loop."""

from __future__ import annotations

import ipaddress
import logging
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, disable_created_metrics, start_http_server

from lanon.common import events as ev
from lanon.common.control import ControlServer
from lanon.common.daemon_config import DaemonSettings, Loaded, control_path
from lanon.common.errors import PrerequisiteError, RejectReason
from lanon.common.loop import Reactor
from lanon.common.metrics import BaseMetrics

LOG_EVERY = 10.0  # seconds between repeated warnings of one kind


def setup_logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
    )


class DaemonBase:
    role = "daemon"

    def __init__(
        self, settings: DaemonSettings, loaded: Loaded, registry: CollectorRegistry | None = None
    ) -> None:
        self.settings = settings
        self.loaded = loaded
        self.c = loaded.coalition
        self.log = logging.getLogger(f"lanon.{self.role}")
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry or CollectorRegistry()
        self.reactor = Reactor()
        self.wall_offset = time.time() - time.monotonic()
        self.control: ControlServer | None = None
        self._http: list[Any] = []
        self._last_warned: dict[str, float] = {}
        self.metrics: BaseMetrics

    # --- serving ----------------------------------------------------------------------------

    def serve_metrics(
        self, listen: str | None = None, registry: CollectorRegistry | None = None
    ) -> None:
        listen = self.settings.metrics if listen is None else listen
        if not listen:
            return
        host, _, port = listen.rpartition(":")
        ipaddress.IPv4Address(host or "0.0.0.0")
        try:
            server, _thread = start_http_server(
                int(port), host or "0.0.0.0", registry=registry or self.registry
            )
        except OSError as exc:
            raise PrerequisiteError(f"cannot serve metrics on {listen}: {exc.strerror}") from None
        self._http.append(server)
        self.log.info("metrics on http://%s:%s/metrics", host or "0.0.0.0", port)

    def serve_control(self) -> None:
        path = control_path(self.settings, self.loaded.path.parent)
        if path is None:
            return
        self.control = ControlServer(path, self._control)
        self.reactor.add_reader(self.control.fileno(), self.control.handle)

    def _control(self, request: str) -> dict[str, Any]:
        if request == "status":
            return self.status()
        return {"error": f"unknown request {request!r}; try 'status'"}

    def status(self) -> dict[str, Any]:
        raise NotImplementedError

    def close_serving(self) -> None:
        if self.control is not None:
            self.control.close()
        for server in self._http:
            server.shutdown()

    # --- events -----------------------------------------------------------------------------

    def report(self, events: list[ev.Event], now: float) -> None:
        for e in events:
            self.metrics.observe(e, now)
            self.log_event(e, now)

    def warn_once(self, key: str, now: float, msg: str, *args: object) -> None:
        if now - self._last_warned.get(key, -LOG_EVERY) >= LOG_EVERY:
            self._last_warned[key] = now
            self.log.warning(msg, *args)

    def log_event(self, e: ev.Event, now: float) -> None:
        match e:
            case ev.FrameRejected(reason=RejectReason.FOREIGN | RejectReason.BAD_AUTH):
                self.warn_once(
                    f"reject-{e.reason.value}",
                    now,
                    "rejected %s frame (%s): %s",
                    e.frame,
                    e.reason.value,
                    e.detail,
                )
            case ev.FrameRejected():
                self.log.debug("rejected %s frame (%s): %s", e.frame, e.reason.value, e.detail)
            case ev.LanonDisbanded():
                self.log.warning("lanon paused: %s", e.detail)
            case ev.LanonResumed():
                self.log.info("lanon running again with %d members", e.present)
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
            case ev.GatewayChanged():
                self.log.info("gateway %s is %s", e.name, "alive" if e.alive else "silent")
            case ev.RoundRefused():
                self.warn_once(
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
            case _:
                pass

    def stop(self) -> None:
        self.reactor.stop()


def default_state_dir() -> Path:
    return Path("/run/lanon")
