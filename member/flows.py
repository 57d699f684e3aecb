"""The member's flow table: its own connections, each with a random key and the tag it names.

A flow's key is 32 random bytes drawn here; its tag, carried in cells and in the gateways'
inbound broadcasts, is the key's BLAKE2b-64 (common/flowkey.py), so it links to no member.
Only this member knows which local address and port a tag stands for; inbound broadcasts with
a tag not in this table are someone else's, and cost us the same work as ours.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lanon.common.coalition import FlowSection
from lanon.common.flowkey import flow_tag, new_flow_key
from lanon.common.flowstate import FlowState
from lanon.common.packet import Flow

if TYPE_CHECKING:
    from lanon.member.contributor import Pending

FlowKey = tuple[
    int, bytes, int, bytes, int
]  # proto, local address, local port, remote, remote port


WRAPPED_PACKETS = 8  # the first packets carry the key wrap, until an answer shows it arrived
REWRAP_INTERVAL = 10.0  # and one packet every this many seconds (a gateway may have restarted)


@dataclass(slots=True)
class MemberFlow:
    tag: int
    key: FlowKey
    anon: bytes  # the anonymous address this flow leaves under
    state: FlowState
    secret: bytes  # the flow key, shared with the gateways only
    sent: int = 0  # packets sealed: the counter of the next is sent + 1
    wrap: bytes = b""  # the key wrapped to the gateways, made for the first packet
    wrapped_at: float = float("-inf")
    answered: bool = False  # an inbound packet came: a gateway has the key
    inbound_seq: dict[int, int] | None = None  # per gateway, the last sequence number taken
    # The last pure ACK queued (and its number): while no round has taken it, a later ACK of
    # the flow takes its place instead of queueing behind it (ACK filtering).
    ack: Pending | None = None
    ack_no: int = 0
    ack_first: int = 0  # the counter the queued ACK's place was first taken with
    last_ack: int | None = None  # TCP: the last ACK number our stack sent (what it expects)
    opened_at: float | None = None  # its first packet queued: its first answer times it
    moved: int = 0  # bytes, both ways: what its provider meters (member/market.py)
    paid: int = 0  # bytes its tokens paid for

    def wants_wrap(self, now: float) -> bool:
        """Whether the next packet should carry the key wrap."""
        if not self.answered and self.sent < WRAPPED_PACKETS:
            return True
        return now - self.wrapped_at >= REWRAP_INTERVAL

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
        self.changes = 0  # tags that came or went, ever (member/drain.py follows it)
        self._told = 0  # `changes` at the last `take_changed`

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
        secret = new_flow_key(self.rng)
        tag = flow_tag(secret)
        while tag in self._by_tag:  # pragma: no cover - 64 bits: a clash is one in 2**64/n
            secret = new_flow_key(self.rng)
            tag = flow_tag(secret)
        entry = MemberFlow(tag, key, self.choose_address(flow), FlowState(flow.proto, now), secret)
        self._by_key[key] = entry
        self._by_tag[tag] = entry
        self.changes += 1
        return entry

    def by_tag(self, tag: int) -> MemberFlow | None:
        return self._by_tag.get(tag)

    def expire(self, now: float) -> list[MemberFlow]:
        gone = [f for f in self._by_key.values() if f.state.expired(self.settings, now)]
        for f in gone:
            del self._by_key[f.key]
            del self._by_tag[f.tag]
        self.changes += len(gone)
        return gone

    def clear(self) -> list[MemberFlow]:
        gone = list(self._by_key.values())
        self._by_key.clear()
        self._by_tag.clear()
        self.changes += len(gone)
        return gone

    def __iter__(self) -> Iterator[MemberFlow]:
        return iter(self._by_tag.values())

    def tags(self) -> Iterator[int]:
        return iter(self._by_tag)

    def take_changed(self) -> bool:
        """Whether a flow (so a tag) came or went since the last call."""
        changed, self._told = self.changes != self._told, self.changes
        return changed

    def __len__(self) -> int:
        return len(self._by_key)
