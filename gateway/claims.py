"""Which anonymous addresses a gateway holds and whether it leads rounds: a pure policy.

Every gateway broadcasts a heartbeat (addresses held, leading or not). From the heartbeats
heard within `gateway_timeout`, each gateway decides by the same rules:

- after a start-up listening period, claim the addresses of your share that nobody holds;
- an address nobody alive holds goes to its owner if alive, else to the lowest-index alive
  gateway (takeover); a gateway not heard since our start gets BOOT_GRACE to come up first
  (gateways booting one after the other must not take each other's shares);
- an address held by two gateways stays with the lower index (the other releases it);
- a gateway that comes back finds its addresses held and does not take them back (no flapping),
  whether it restarted or its process was frozen for longer than a gateway timeout;
- never claim an address its prober calls unavailable (not probed yet, used by another host,
  the router's or the gateway host's own: see arp.Prober), and release one that becomes so;
- leadership: a leader keeps leading unless a lower-index gateway leads too; with no leader
  alive, the lowest-index alive gateway starts leading.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lanon.common.clock import KEYS_INTERVAL
from lanon.common.coalition import Coalition

BOOT_GRACE = 3.0  # seconds after our listening period before we take a never-heard gateway's share


@dataclass(slots=True)
class PeerView:
    last_seen: float
    seq: int
    leader: bool
    held: frozenset[int]
    round: int
    leaving: bool = False  # it said goodbye: gone now
    started_ms: int = 0  # its process start, to tell a restart from a pause


@dataclass(frozen=True, slots=True)
class Decision:
    claim: frozenset[int]
    release: frozenset[int]
    lead: bool


class ClaimPolicy:
    def __init__(self, coalition: Coalition, me: int, now: float) -> None:
        self.c = coalition
        self.me = me
        index = coalition.anonymous_index
        self.owner = {index[a.packed]: g.index for g in coalition.gateways for a in g.addresses}
        self.share = frozenset(i for i, g in self.owner.items() if g == me)
        self.peers: dict[int, PeerView] = {}
        self.listen_until = 0.0
        self.restart(now)

    def restart(self, now: float) -> None:
        """Start over as a gateway that just came: forget the peers, listen before claiming
        (long enough to hear other gateways and the members' key announcements)."""
        self.peers.clear()
        self.heard_since_start: set[int] = set()
        self.listen_until = now + self.c.rounds.gateway_timeout + KEYS_INTERVAL

    def carry(self, old: ClaimPolicy, now: float) -> None:
        """A new version: the other gateways still in it stay as they were heard (their
        held addresses by address), and no new listening period."""
        index = self.c.anonymous_index
        by_name = {g.name: g.index for g in self.c.gateways}
        for g, view in old.peers.items():
            j = by_name.get(old.c.gateways[g].name)
            if j is None or j == self.me:
                continue
            before = old.c.anonymous
            held = frozenset(
                index[before[i].packed]
                for i in view.held
                if i < len(before) and before[i].packed in index
            )
            self.peers[j] = dataclasses.replace(view, held=held)
            if g in old.heard_since_start:
                self.heard_since_start.add(j)
        self.listen_until = min(self.listen_until, old.listen_until)

    def heard(self, gateway: int, view: PeerView) -> None:
        self.peers[gateway] = view
        self.heard_since_start.add(gateway)

    def alive(self, now: float) -> frozenset[int]:
        timeout = self.c.rounds.gateway_timeout
        return frozenset(
            {self.me}
            | {g for g, p in self.peers.items() if now - p.last_seen <= timeout and not p.leaving}
        )

    def decide(
        self,
        now: float,
        held: frozenset[int],
        leading: bool,
        unavailable: frozenset[int] = frozenset(),
    ) -> Decision:
        if now < self.listen_until:
            return Decision(frozenset(), frozenset(), leading)
        alive = self.alive(now)
        others = alive - {self.me}
        holders: dict[int, set[int]] = {}
        for g in others:
            for a in self.peers[g].held:
                holders.setdefault(a, set()).add(g)
        claim, release = set(), set()
        for a, owner in self.owner.items():
            other_holders = holders.get(a, set())
            if a in held:
                if a in unavailable or (other_holders and min(other_holders) < self.me):
                    release.add(a)
            elif not other_holders and a not in unavailable:
                responsible = owner if owner in alive else min(alive)
                booting = (
                    owner not in self.heard_since_start and now < self.listen_until + BOOT_GRACE
                )
                if responsible == self.me and (owner == self.me or not booting):
                    claim.add(a)
        leaders = {g for g in others if self.peers[g].leader}
        if leading:
            lead = not (leaders and min(leaders) < self.me)
        else:
            lead = not leaders and self.me == min(alive)
        return Decision(frozenset(claim), frozenset(release), lead)

    def previous_holder_silence(self, address: int, now: float) -> float:
        """Seconds since the last heartbeat of a gateway that held `address` (0 if none did)."""
        heard = [p.last_seen for p in self.peers.values() if address in p.held]
        return now - max(heard) if heard else 0.0

    def highest_round(self) -> int:
        return max((p.round for p in self.peers.values()), default=0)
