"""The daemons' IO loop: a selector, one timer (the engine's), and clean stop on signals.

Deliberately small (ExaBGP's reactor is the model): callbacks read their socket until it is
empty, feed the engine, and the daemon then carries out the engine's commands.

Timers are kept to the microsecond, because a member answers each round at a fixed moment
(`rounds.answer_delay`, under a millisecond): `select` takes its timeout in microseconds where
`epoll` rounds it up to a whole millisecond, the thread's timer slack is made 1 µs (from the
kernel's default 50 µs), and other threads (metrics, rules watch) give the loop the interpreter
back within 0.5 ms instead of 5.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import selectors
import signal
import socket
import sys
from collections.abc import Callable

from lanon.common.clock import host_clock

log = logging.getLogger("lanon.loop")
PR_SET_TIMERSLACK = 29
SWITCH_INTERVAL = 0.0005  # seconds another thread may hold the interpreter


def precise_timers() -> None:
    """Let this thread's timers fire within microseconds (Linux; elsewhere nothing changes)."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)  # nanoseconds


class Reactor:
    def __init__(
        self,
        clock: Callable[[], float] = host_clock,
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.clock = clock
        # An exception that escapes a callback or the tick is handed here and the loop goes
        # on (the daemons contain each frame and packet; this is the last line of defence).
        self.on_error = on_error
        self.sel = selectors.SelectSelector()  # microsecond timeouts; a handful of sockets
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

    def remove_reader(self, fileobj: int | socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(fileobj)

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
        precise_timers()
        # What start-up made lives as long as the daemon: out of the collector's sight, so
        # that its collections look only at what frames and rounds make.
        gc.collect()
        gc.freeze()
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
