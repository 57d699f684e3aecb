"""The daemons' IO loop: a selector, one timer (the engine's), and clean stop on signals.

Deliberately small (ExaBGP's reactor is the model): callbacks read their socket until it is
empty, feed the engine, and the daemon then carries out the engine's commands.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import signal
import socket
import time
from collections.abc import Callable

log = logging.getLogger("lanon.loop")


class Reactor:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.clock = clock
        # An exception that escapes a callback or the tick is handed here and the loop goes
        # on (the daemons contain each frame and packet; this is the last line of defence).
        self.on_error = on_error
        self.sel = selectors.DefaultSelector()
        self.stopping = False
        # The wake-up pair (for signals) is made when the loop runs: a daemon that fails its
        # configuration before that leaves nothing open.
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    def _wake_pair(self) -> None:
        if self._wake_r is None:
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self.sel.register(self._wake_r, selectors.EVENT_READ, self._drain_wake)

    def add_reader(self, fileobj: int | socket.socket, callback: Callable[[], None]) -> None:
        self.sel.register(fileobj, selectors.EVENT_READ, callback)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r is not None and self._wake_r.recv(64):
                pass
        except BlockingIOError:
            pass

    def stop(self) -> None:
        self.stopping = True
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    def handle_signals(self) -> None:
        self._wake_pair()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda signum, frame: self.stop())

    def run(self, tick: Callable[[float], float | None]) -> None:
        """Run until stop(); `tick(now)` fires due timers and returns the next deadline."""
        self._wake_pair()
        deadline: float | None = None
        while not self.stopping:
            try:
                deadline = tick(self.clock())
            except Exception as exc:
                self._failed("tick", exc)
                deadline = self.clock() + 0.01  # try again soon, without spinning
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            for key, _ in self.sel.select(timeout):
                try:
                    key.data()
                except Exception as exc:
                    self._failed("callback", exc)
                if self.stopping:
                    break

    def _failed(self, where: str, exc: Exception) -> None:
        if self.on_error is None:
            raise exc
        self.on_error(where, exc)

    def close(self) -> None:
        self.sel.close()
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
