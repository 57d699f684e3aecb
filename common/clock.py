"""Wall-clock stamps from the engines' monotonic `now` (the daemon measures the offset once)."""

from __future__ import annotations

KEYS_INTERVAL = 1.0  # seconds between a member's announcements of its ephemeral keys


def wall_ms(now: float, offset: float) -> int:
    """Milliseconds since the epoch: OPEN, HELLO and KEYS freshness."""
    return int((now + offset) * 1000)


def wall_us(now: float, offset: float) -> int:
    """Microseconds since the epoch: where round numbers start."""
    return int((now + offset) * 1e6)
