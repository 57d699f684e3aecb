"""The member's flow table: its own connections, each named by a random tag.

A tag links to no member: it is 64 random bits chosen here, carried in cells and in the
gateway's inbound broadcasts. Only this member knows which local address and port it stands
for; inbound broadcasts with a tag not in this table are someone else's and are ignored.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from lanon.common.coalition import FlowSection
from lanon.common.flowstate import FlowState
from lanon.common.packet import Flow

FlowKey = tuple[
    int, bytes, int, bytes, int
]  # proto, local address, local port, remote, remote port


@dataclass(slots=True)
class MemberFlow:
    tag: int
    key: FlowKey
    anon: bytes  # the anonymous address this flow leaves under
    state: FlowState

    @property
    def local_addr(self) -> bytes:
        return self.key[1]

    @property
    def local_port(self) -> int:
        return self.key[2]

    @property
    def remote(self) -> bytes:
        return self.key[3]


class MemberFlows:
    def __init__(
        self,
        settings: FlowSection,
        choose_address: Callable[[Flow], bytes],
        rng: random.Random,
        max_flows: int = 65536,
    ) -> None:
        self.settings = settings
        self.choose_address = choose_address
        self.rng = rng
        self.max_flows = max_flows
        self._by_key: dict[FlowKey, MemberFlow] = {}
        self._by_tag: dict[int, MemberFlow] = {}

    def outbound(self, flow: Flow, now: float) -> MemberFlow | None:
        """The entry for an outbound packet, created if new; None if the table is full."""
        key = (flow.proto, flow.src, flow.sport, flow.dst, flow.dport)
        entry = self._by_key.get(key)
        if entry is not None:
            return entry
        if len(self._by_key) >= self.max_flows:
            self.expire(now)
            if len(self._by_key) >= self.max_flows:
                return None
        tag = self.rng.getrandbits(64)
        while tag == 0 or tag in self._by_tag:
            tag = self.rng.getrandbits(64)
        entry = MemberFlow(tag, key, self.choose_address(flow), FlowState(flow.proto, now))
        self._by_key[key] = entry
        self._by_tag[tag] = entry
        return entry

    def by_tag(self, tag: int) -> MemberFlow | None:
        return self._by_tag.get(tag)

    def expire(self, now: float) -> list[MemberFlow]:
        gone = [f for f in self._by_key.values() if f.state.expired(self.settings, now)]
        for f in gone:
            del self._by_key[f.key]
            del self._by_tag[f.tag]
        return gone

    def __len__(self) -> int:
        return len(self._by_key)
