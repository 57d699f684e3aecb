"""The daemons' clock, and wall-clock stamps from the engines' `now`.

`now` is CLOCK_BOOTTIME: monotonic, and it counts the time the host was suspended, as the other
hosts' clocks did. With CLOCK_MONOTONIC a laptop that slept an hour would wake with its timers
an hour behind (a gateway would not know it had been away and that others took over), and
every wall-clock stamp it made from `now` an hour old. The wall clock itself is `now` plus an
offset the daemon measures again as it runs, since NTP may step it after the daemon started.
"""

from __future__ import annotations

import time

_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)  # (Linux has it)
CLOCK_ID = _CLOCK  # (for compiled code that reads the same clock: member/drain.py)


def host_clock() -> float:
    """Seconds, monotonic, the host's suspended time included: the daemons' `now`."""
    return time.clock_gettime(_CLOCK)


def host_clock_ns() -> int:
    """The same clock in nanoseconds (the pacer's)."""
    return time.clock_gettime_ns(_CLOCK)


KEYS_INTERVAL = 1.0  # seconds between a member's announcements of its ephemeral keys


def wall_ms(now: float, offset: float) -> int:
    """Milliseconds since the epoch: OPEN, HELLO and KEYS freshness."""
    return int((now + offset) * 1000)


def wall_us(now: float, offset: float) -> int:
    """Microseconds since the epoch: where round numbers start."""
    return int((now + offset) * 1e6)
