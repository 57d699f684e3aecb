"""Per-source limits on a flooded LAN (sans-IO): who may make us check a signature, and
whose frames are turned away unread.

An Ed25519 check costs ~50 µs, so 20,000 forged frames a second would saturate any daemon.
Every frame that needs a signature check first passes `SignatureGuard.admit`:

- a frame from the Ethernet address its claimed sender was last verified at is always checked
  (the honest path never waits; an attacker spoofing that address costs us CPU, not data);
- any other source (a new host, a host that changed its NIC, an attacker) draws from a token
  bucket of its own, `rate` checks a second with a burst of `burst`; past that its frames are
  dropped unchecked and counted (RejectReason.RATE_LIMITED);
- at most `max_sources` buckets are kept: beyond that the stalest is forgotten, so a flood of
  invented source addresses costs bounded memory (and those share the fate of new sources).

A successful check records the sender's address (`verified`); the guard knows nothing else.

`Door` is the cheapest check of all, before a frame is even parsed: a source whose frames keep
being rejected (past `rate` a second, with a burst of `burst`) is turned away unread until its
budget refills, so that a flood costs a dictionary look-up a frame. Sources that sent a frame
whose signature checked out are never turned away (an attacker who spoofs their address costs
us CPU, not their frames).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

SenderKey = tuple[int, int]  # (kind, index): kind 0 = member, 1 = gateway

MEMBER = 0
GATEWAY = 1


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class _Buckets:
    """Token buckets per source address, at most `max_sources` of them (the stalest go)."""

    def __init__(self, rate: float, burst: float, max_sources: int) -> None:
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: OrderedDict[bytes, _Bucket] = OrderedDict()

    def level(self, src: bytes, now: float) -> _Bucket:
        bucket = self._buckets.get(src)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)
            bucket = self._buckets[src] = _Bucket(self.burst, now)
        else:
            self._buckets.move_to_end(src)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        return bucket


class SignatureGuard:
    def __init__(self, rate: float = 50.0, burst: float = 100.0, max_sources: int = 1024) -> None:
        self._known: dict[SenderKey, bytes] = {}
        self._budgets = _Buckets(rate, burst, max_sources)

    def admit(self, sender: SenderKey, src: bytes, now: float) -> bool:
        """Whether a frame claiming `sender`, received from `src`, may have its signature checked."""
        if src and self._known.get(sender) == src:
            return True
        bucket = self._budgets.level(src, now)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def verified(self, sender: SenderKey, src: bytes) -> None:
        """`sender`'s signature checked out on a frame from `src`: that is where it is now."""
        if src:
            self._known[sender] = src

    def address_of(self, sender: SenderKey) -> bytes | None:
        return self._known.get(sender)


_NONE: frozenset[bytes] = frozenset()


class Door:
    """Turns away, unread, frames from sources whose frames keep being rejected.

    Per source: past `rate` rejections a second (burst `burst`) its frames are dropped until
    its budget refills. All untrusted sources together: past `flood_rate` rejected or turned
    away frames a second (burst `flood_burst`: one host flooding, or a flood from many
    invented addresses) the door shuts for
    `shut_seconds` to everyone but trusted sources, and the engine asks its daemon to do the
    same in the kernel (`filter`: a socket filter that lets only trusted addresses through),
    so that a flood no longer costs us anything. Hosts that are not yet trusted (a member that
    was never verified) cannot join while it is shut; everyone else goes on.
    """

    def __init__(
        self,
        rate: float = 50.0,
        burst: float = 200.0,
        flood_rate: float = 500.0,
        flood_burst: float = 2000.0,
        shut_seconds: float = 5.0,
        max_sources: int = 1024,
    ) -> None:
        self._rejections = _Buckets(rate, burst, max_sources)
        self._all = _Buckets(flood_rate, flood_burst, 1)
        self.shut_seconds = shut_seconds
        self.shut_until = float("-inf")
        self._closed: dict[bytes, float] = {}  # source -> when to look at it again
        self._trusted: set[bytes] = set()
        self.turned_away = 0  # frames dropped unread since the last `take_turned_away`

    def open(self, src: bytes, now: float) -> bool:
        """Whether to read a frame from `src` (False: it is counted and dropped)."""
        if src in self._trusted:
            return True
        if now < self.shut_until:
            self.turned_away += 1
            return False
        until = self._closed.get(src)
        if until is None:
            return True
        if now >= until:
            del self._closed[src]
            return True
        self.turned_away += 1
        self._charge_all(now)  # still a flood, even if cheap for us: the kernel can take it
        return False

    def rejected(self, src: bytes, now: float) -> None:
        """A frame from `src` was rejected: charge it, close the door on it once its budget is
        gone, and shut the door to all untrusted sources once theirs is."""
        if src in self._trusted:
            return
        bucket = self._rejections.level(src, now)
        bucket.tokens -= 1.0
        if bucket.tokens < 1.0:
            if len(self._closed) >= self._rejections.max_sources:
                self._closed.clear()
            self._closed[src] = now + (1.0 - bucket.tokens) / self._rejections.rate
        self._charge_all(now)

    def _charge_all(self, now: float) -> None:
        everyone = self._all.level(b"", now)
        everyone.tokens -= 1.0
        if everyone.tokens < 1.0 and now >= self.shut_until:
            self.shut_until = now + self.shut_seconds
            everyone.tokens = self._all.burst  # after the shut, start with a full budget

    def shut(self, now: float) -> bool:
        return now < self.shut_until

    def closed_sources(self, now: float) -> frozenset[bytes]:
        """The sources whose frames are turned away now (each until its budget refills)."""
        if not self._closed:
            return _NONE
        for src in [s for s, until in self._closed.items() if now >= until]:
            del self._closed[src]
        return frozenset(self._closed)

    def filter(self, now: float) -> frozenset[bytes] | None:
        """The sources the kernel should let through now, or None for all."""
        return frozenset(self._trusted) if self.shut(now) else None

    def trust(self, src: bytes) -> None:
        if src and len(self._trusted) < self._rejections.max_sources:
            self._trusted.add(src)
            self._closed.pop(src, None)

    def trusts(self, src: bytes) -> bool:
        return src in self._trusted

    def take_turned_away(self) -> int:
        n, self.turned_away = self.turned_away, 0
        return n
