"""The member's services at anonymous endpoints (common/endpoints.py), sans-IO.

A service from the member's configuration (`[[services]]`) gets a random service key, and
with it a tag, as a flow would (member/flows.py): its `MemberFlow` carries the key, the
counter and the wrap the cells need. The engine asks for the endpoint in a REGISTER sealed
under that key (`due`), again every REFRESH (the gateways free an endpoint nobody asks for:
`endpoint_timeout`; one restarted has it again), and every RETRY while no answer comes. It
asks for the port of its file each time: a port another endpoint held comes back to it once
free. The first REGISTER waits a random time up to FIRST_ASK: an endpoint that appears the
moment a member joins the rounds would say which member serves it. Inbound packets for the
endpoint arrive under the tag like a flow's replies and go to the service's local address and
port; what the service sends from that port leaves from the endpoint (`serving`).

Nothing of this is public: whoever watches the LAN sees cells and INBOUND frames under a tag
that names no member, and `lanon status` shows the endpoints only on this host.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lanon.common.clock import wall_ms
from lanon.common.coalition import Coalition, PinnedEndpoint
from lanon.common.crypto import HostKey, encode_key, read_private_key
from lanon.common.endpoints import (
    FIRST_ASK,
    MAX_SERVICES,
    REFRESH,
    RETRY,
    Answer,
    Granted,
    Refusal,
    Register,
)
from lanon.common.errors import ConfigError
from lanon.common.flowkey import flow_tag, new_flow_key
from lanon.common.flowstate import FlowState
from lanon.common.services import PROTOCOLS
from lanon.common.settings import REQUIRED, between, is_name, one_of, opt, or_empty, resolve
from lanon.member.flows import MemberFlow

NAMES = {n: p for p, n in PROTOCOLS.items()}


@dataclass(frozen=True)
class ServiceEntry:
    """A `[[services]]` table of the member's file."""

    port: int = opt(
        REQUIRED,
        "the local port the service listens on, at `tun_address` (not on all addresses: the "
        "LAN would find it at this host's own address)",
        between(1, 65535),
    )
    protocol: str = opt("tcp", "'tcp' or 'udp'", one_of("tcp", "udp"))
    name: str = opt("", "a name for lanon status (default PROTOCOL-PORT)", or_empty(is_name))
    public_port: int = opt(
        0,
        "the public port asked for (0: any); one that another endpoint holds gets a random one",
        between(0, 65535),
    )
    endpoint: str = opt(
        "",
        "the coalition's pinned endpoint ([[endpoints]] name) this service serves",
        or_empty(is_name),
    )
    key: str = opt(
        "", "with `endpoint`: path of the endpoint's private key (relative to this file)"
    )


@dataclass(frozen=True)
class ServiceOffer:
    """A service as the engine runs it."""

    name: str
    proto: int
    port: int  # local
    public_port: int = 0  # asked for (0: any)
    pinned: PinnedEndpoint | None = None
    key: HostKey | None = None  # the pinned endpoint's


def offers(
    entries: Sequence[ServiceEntry], coalition: Coalition, base: Path, where: str
) -> list[ServiceOffer]:
    """The `[[services]]` of a member's file, checked against the coalition; ConfigError."""
    if len(entries) > MAX_SERVICES:
        raise ConfigError(f"{where}: {len(entries)} [[services]]: at most {MAX_SERVICES}")
    pinned = {e.name: e for e in coalition.endpoints}
    out: list[ServiceOffer] = []
    for i, e in enumerate(entries):
        what = f"{where}: [[services]] #{i + 1}"
        proto = PROTOCOLS[e.protocol]
        pin, key = None, None
        if e.endpoint:
            pin = pinned.get(e.endpoint)
            if pin is None:
                raise ConfigError(
                    f"{what}: endpoint = {e.endpoint!r}: expected an [[endpoints]] name of "
                    f"{coalition.path} ({', '.join(sorted(pinned)) or 'it pins none'})"
                )
            if pin.proto != proto:
                raise ConfigError(f"{what}: protocol {e.protocol}, endpoint {pin.name} is not")
            if not e.key:
                raise ConfigError(f"{what}: endpoint = {e.endpoint!r} needs key = PATH")
            key = read_private_key(resolve(base, e.key))
            if key.public != pin.public:
                raise ConfigError(
                    f"{what}: key {e.key}: its public key {encode_key(key.public)} is not "
                    f"endpoint {pin.name}'s"
                )
        elif e.key:
            raise ConfigError(f"{what}: key = {e.key!r} is for a pinned endpoint (endpoint =)")
        name = e.name or f"{e.protocol}-{e.port}"
        out.append(ServiceOffer(name, proto, e.port, e.public_port, pin, key))
    seen: set[Any] = set()
    for o in out:
        for k in ((o.proto, o.port), o.name):
            if k in seen:
                raise ConfigError(f"{where}: [[services]] {o.name}: two services share {k}")
            seen.add(k)
    return out


class ServiceState(enum.Enum):
    ASKING = "asking"  # no endpoint yet
    SERVING = "serving"
    REFUSED = "refused"  # the gateways said no (asked again every REFRESH)


@dataclass(slots=True)
class OfferedService:
    offer: ServiceOffer
    flow: MemberFlow  # its key, tag, counter and wrap; `anon` is the address asked for
    state: ServiceState = ServiceState.ASKING
    port: int = 0  # the endpoint's, once granted
    refusal: Refusal | None = None
    next_ask: float = 0.0
    granted_at: float | None = None
    answers: int = field(default=0)

    @property
    def tag(self) -> int:
        return self.flow.tag

    @property
    def endpoint(self) -> str:
        if self.state is not ServiceState.SERVING:
            return ""
        return f"{'.'.join(str(b) for b in self.flow.anon)}:{self.port}"

    def status(self) -> dict[str, Any]:
        o = self.offer
        return {
            "name": o.name,
            "protocol": NAMES[o.proto],
            "port": o.port,
            "public_port": o.public_port,
            "pinned": o.pinned.name if o.pinned else "",
            "state": self.state.value,
            "endpoint": self.endpoint,
            "refused": self.refusal.label if self.refusal else "",
        }


class MemberServices:
    def __init__(
        self,
        offers: Sequence[ServiceOffer],
        choose_address: Callable[[], bytes],
        local: bytes,
        rng: random.Random,
        now: float,
    ) -> None:
        self.local = local  # the TUN address: where inbound packets go
        self.since = now  # when these services started (a REGISTER says it in wall-clock ms)
        self.choose_address = choose_address
        self._by_tag: dict[int, OfferedService] = {}
        self._by_port: dict[tuple[int, int], OfferedService] = {}
        for o in offers:
            secret = new_flow_key(rng)
            anon = o.pinned.address if o.pinned else choose_address()
            flow = MemberFlow(
                flow_tag(secret),
                (o.proto, local, o.port, bytes(4), 0),
                anon,
                FlowState(o.proto, now),
                secret,
            )
            s = OfferedService(o, flow, next_ask=now + rng.uniform(0, FIRST_ASK))
            self._by_tag[s.tag] = s
            self._by_port[(o.proto, o.port)] = s

    def __iter__(self) -> Iterator[OfferedService]:
        return iter(self._by_tag.values())

    def __len__(self) -> int:
        return len(self._by_tag)

    def by_tag(self, tag: int) -> OfferedService | None:
        return self._by_tag.get(tag)

    def serving(self, proto: int, sport: int) -> OfferedService | None:
        """The service an outbound packet from local port `sport` answers for, if any."""
        return self._by_port.get((proto, sport)) if self._by_port else None

    def due(self, now: float, wall_offset: float) -> list[tuple[OfferedService, Register]]:
        """The REGISTERs to send now (signed, for a pinned endpoint, by the caller). Their start
        is in the wall clock as it is now (NTP may have set it since)."""
        since_ms = wall_ms(self.since, wall_offset)
        out = []
        for s in self._by_tag.values():
            if now < s.next_ask:
                continue
            s.next_ask = now + (RETRY if s.state is ServiceState.ASKING else REFRESH)
            o = s.offer
            port = o.pinned.port if o.pinned else o.public_port
            out.append((s, Register(o.proto, s.flow.anon, port, since_ms)))
        return out

    def answered(self, s: OfferedService, answer: Answer, now: float) -> bool:
        """The gateways' answer to our REGISTER; whether it changed what we serve at."""
        before = (s.state, s.port, s.refusal)
        s.answers += 1
        if isinstance(answer, Granted):
            if (answer.proto, answer.anon) != (s.offer.proto, s.flow.anon):
                return False  # not what we asked for: a gateway's bug
            s.state, s.port, s.refusal = ServiceState.SERVING, answer.port, None
            if s.granted_at is None:
                s.granted_at = now
        else:
            s.state, s.port, s.refusal = ServiceState.REFUSED, 0, answer.why
            if answer.why is Refusal.NOT_ANONYMOUS and s.offer.pinned is None:
                s.flow.anon = self.choose_address()  # a version took the address away
                s.next_ask = now
        return (s.state, s.port, s.refusal) != before
