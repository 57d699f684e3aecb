"""What the bounded reassemblers share: entries waiting to be completed, oldest first, given up
by reason and counted (the gateway's IPv4 defragmenter, the cell reassembler)."""

from __future__ import annotations

from collections import Counter
from typing import Generic, Protocol, TypeVar

K = TypeVar("K")
R = TypeVar("R")


class Begun(Protocol):
    first: float  # when the entry's first piece arrived


E = TypeVar("E", bound=Begun)


class Pending(Generic[K, E, R]):
    """Subclasses keep `_pending` in insertion order (oldest first) and say how to `_forget` an
    entry (its bytes and indexes); giving up, counting and expiry are done here."""

    def __init__(self, timeout: float, timeout_reason: R) -> None:
        self.timeout = timeout
        self._timeout_reason = timeout_reason
        self._pending: dict[K, E] = {}
        self.drops: Counter[R] = Counter()  # since the start, by reason
        self._reported: Counter[R] = Counter()

    def _forget(self, key: K) -> None:
        raise NotImplementedError

    def _give_up(self, key: K, reason: R) -> None:
        self._forget(key)
        self.drops[reason] += 1

    def take_drops(self) -> Counter[R]:
        """What was given up since the last call, by reason (for events and metrics)."""
        new = self.drops - self._reported
        self._reported = self.drops.copy()
        return new

    def expire(self, now: float) -> int:
        """Give up entries begun more than `timeout` seconds ago; how many."""
        n = 0
        while self._pending:  # oldest first: stop at the first fresh one
            key = next(iter(self._pending))
            if now - self._pending[key].first <= self.timeout:
                break
            self._give_up(key, self._timeout_reason)
            n += 1
        return n

    def __len__(self) -> int:
        return len(self._pending)
