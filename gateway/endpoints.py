"""Which endpoint a service's REGISTER gets (sans-IO, part of the gateway's egress).

Every gateway reads every REGISTER from the round outputs, in the same order, and decides
here alike, so every gateway's flow table binds the same endpoints (a standby takes an
address over with its endpoints, as with its flows). The decision (common/endpoints.py):

- an endpoint the tag already has is refreshed; a random one moves to the port asked for
  once that is free (a service restarted while its old endpoint held its port);
- a pinned endpoint (the coalition's `[[endpoints]]`) goes to a request signed by its key,
  replacing the binding of a service that started earlier (the latest start wins; a copied
  request binds only its own tag, and a copy of the service still running elsewhere is
  refused STALE instead of taking the endpoint back);
- any other gets the port asked for if it is free on the address asked for, else one at
  random (RFC 6056 style, from the tag), never a pinned one, never one a flow or another
  endpoint holds; first come, first served: an endpoint that must stay is pinned;
- at most MAX_SERVICES endpoints a member, lanon-wide (pinned ones aside): the gateways
  cannot tell whose they are, so a member that asks for more takes them from the others only
  up to that bound.

The egress sweeps expired entries before each decision (`Egress._register`), so a gateway
that had not swept them yet decides as one that had.
"""

from __future__ import annotations

from lanon.common.coalition import Coalition, PinnedEndpoint
from lanon.common.endpoints import (
    MAX_SERVICES,
    PIN_TOLERANCE_MS,
    Answer,
    Granted,
    Refusal,
    Refused,
    Register,
    pin_holds,
)
from lanon.common.packet import TCP, UDP
from lanon.gateway.flows import Exhausted, FlowTable


class Registrar:
    def __init__(self, coalition: Coalition, flows: FlowTable) -> None:
        self.c = coalition
        self.flows = flows
        self.pinned: dict[tuple[int, bytes, int], PinnedEndpoint] = {
            e.where: e for e in coalition.endpoints
        }
        self.anonymous = coalition.anonymous_index
        self.limit = MAX_SERVICES * max(1, len(coalition.members))

    def register(self, tag: int, key: bytes, request: Register) -> Answer:
        """Bind (or refresh) the endpoint of service `tag`, whose key is `key`."""
        flows = self.flows
        now = flows.time
        known = flows.by_tag.get(tag)
        if known is not None:
            if not known.endpoint:
                return Refused(Refusal.TAG_IN_USE)
            if known.anon not in self.anonymous:  # a version took its address away
                flows.unbind(known)
                return Refused(Refusal.NOT_ANONYMOUS)
            known.state.last = now
            wanted = (known.proto, known.anon, request.port)
            moves = request.port not in (0, known.port) and not known.pinned_ms
            if moves and flows.free(wanted):
                flows.move(known, request.port)  # the port it asks for is free again
            return Granted(known.proto, known.anon, known.port)
        if request.proto not in (TCP, UDP):
            return Refused(Refusal.PROTOCOL)
        if request.anon not in self.anonymous:
            return Refused(Refusal.NOT_ANONYMOUS)
        where = (request.proto, request.anon, request.port)
        pin = self.pinned.get(where)
        if pin is not None:  # the coalition's: never kept out by the dynamic ones' bound
            return self._pinned(pin, tag, key, request)
        if flows.endpoints - self._pinned_bound() >= self.limit:
            return Refused(Refusal.TOO_MANY)
        try:
            port = flows.endpoint_port(tag, request.proto, request.anon, request.port)
        except Exhausted:
            return Refused(Refusal.EXHAUSTED)
        flows.bind(tag, key, (request.proto, request.anon, port), now)
        return Granted(request.proto, request.anon, port)

    def _pinned_bound(self) -> int:
        return sum(1 for w in self.pinned if w in self.flows.by_port)

    def _pinned(self, pin: PinnedEndpoint, tag: int, key: bytes, request: Register) -> Answer:
        flows = self.flows
        if not pin_holds(pin.public, self.c.identity, tag, request):
            return Refused(Refusal.BAD_PIN)
        if request.since_ms - flows.time * 1000 > PIN_TOLERANCE_MS:
            return Refused(Refusal.STALE)  # a start in the future would win for good
        current = flows.by_port.get(pin.where)
        if current is not None:
            if current.pinned_ms >= request.since_ms:
                return Refused(Refusal.STALE)
            flows.unbind(current)  # the service restarted or moved: the latest start wins
        flows.bind(tag, key, pin.where, flows.time, request.since_ms)
        return Granted(*pin.where)

    def carry(self, old: Registrar) -> None:
        """A new version of the coalition: a pinned endpoint it drops or gives another key
        (a leaked key revoked) is unbound at once."""
        for where, pin in old.pinned.items():
            bound = self.flows.by_port.get(where)
            if bound is not None and bound.endpoint and self.pinned.get(where) != pin:
                self.flows.unbind(bound)
