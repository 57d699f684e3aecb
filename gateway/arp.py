"""ARP for the anonymous addresses a gateway holds: codec, probes and conflicts, sans-IO.

The gateway answers requests for the addresses it holds (proxy ARP: they are on no interface)
and announces them when it claims them. Announcements are request-style (sender = target =
the address): Linux takes a reply as gratuitous only if its target MAC equals its sender MAC,
and receivers with arp_accept=0 update an existing entry from either form but create none.

Before it claims an address, a gateway makes sure no other host uses it (`Prober`).
"""

from __future__ import annotations

import enum
import ipaddress
import math
import struct
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from lanon.common.events import (
    AddressDefended,
    AddressFree,
    AddressRefused,
    ClaimRefusal,
    Command,
    Event,
    SendArp,
)
from lanon.common.wire import BROADCAST

ETHERTYPE_ARP = 0x0806
_ARP = struct.Struct("!HHBBH6s4s6s4s")
OP_REQUEST = 1
OP_REPLY = 2
ZERO_MAC = b"\x00" * 6
ANNOUNCE_DELAYS = (0.0, 0.25, 1.0)  # seconds after a claim: repeat, in case one is lost


@dataclass(frozen=True, slots=True)
class Arp:
    op: int
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes

    def encode(self) -> bytes:
        return _ARP.pack(
            1,
            0x0800,
            6,
            4,
            self.op,
            self.sender_mac,
            self.sender_ip,
            self.target_mac,
            self.target_ip,
        )


def pull_arp(payload: bytes) -> Arp | None:
    """An Ethernet/IPv4 ARP packet, or None for anything else."""
    if len(payload) < _ARP.size:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(payload)
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4) or op not in (OP_REQUEST, OP_REPLY):
        return None
    return Arp(op, sha, spa, tha, tpa)


def reply_to(request: Arp, my_mac: bytes) -> Arp:
    return Arp(OP_REPLY, my_mac, request.target_ip, request.sender_mac, request.sender_ip)


def announcement(my_mac: bytes, address: bytes) -> Arp:
    return Arp(OP_REQUEST, my_mac, address, ZERO_MAC, address)


def probe(my_mac: bytes, address: bytes) -> Arp:
    """An RFC 5227 probe: who has `address`? (sender address 0.0.0.0: no cache learns from it)"""
    return Arp(OP_REQUEST, my_mac, ZERO_IP, ZERO_MAC, address)


ZERO_IP = bytes(4)
PROBE_COUNT = 3  # probes an address gets (RFC 5227 PROBE_NUM)
PROBE_SPACING = 0.15  # seconds between them (RFC 5227 waits 1-2 s; a LAN answers in ms)
PROBE_WAIT = 0.2  # seconds after the last probe before an unanswered address is free
PROBE_SPREAD = 0.5  # seconds over which the first probes of all addresses are spread
REPROBE_INTERVAL = 30.0  # seconds between probes of an address found in use
DEFEND_INTERVAL = 10.0  # RFC 5227 DEFEND_INTERVAL: a second conflict within it gives up
MAX_HEARD = 4  # hosts remembered per address


class State(enum.Enum):
    WAITING = "waiting"  # not probed yet
    PROBING = "probing"
    FREE = "free"  # no other host answered: it may be claimed
    IN_USE = "in_use"  # another host uses it: refused, probed again later
    RESERVED = "reserved"  # the router's or this host's own: refused for good


_MOVES = {
    State.WAITING: {State.PROBING, State.RESERVED},
    State.PROBING: {State.FREE, State.IN_USE, State.RESERVED, State.WAITING},
    State.FREE: {State.IN_USE, State.RESERVED, State.WAITING},
    State.IN_USE: {State.PROBING, State.RESERVED, State.WAITING, State.FREE},
    State.RESERVED: set(),
}


@dataclass(slots=True)
class _Slot:
    state: State = State.WAITING
    due: float = math.inf  # next probe (WAITING, PROBING) or next probe again (IN_USE)
    sent: int = 0
    heard: dict[bytes, float] = field(default_factory=dict)  # MAC -> when it used the address
    reason: ClaimRefusal | None = None  # why it is refused (kept while it is probed again)
    mac: bytes = b""  # in use: by whom
    detail: str = ""
    defended: float = -math.inf


def mac_text(mac: bytes) -> str:
    return mac.hex(":")


class Prober:
    """Which anonymous addresses this gateway may claim, from ARP probes and ARP it sees.

    Sans-IO: driven by `start(now)`, `handle_timer(now)`, `observe(arp, now)` (every ARP
    packet received) and `vouch(mac, held)` (every gateway heartbeat); SendArp commands and
    events go to the `command` and `event` callables. Rules:

    - when the gateway starts (and when its link comes back) every anonymous address is
      probed, the first probes spread over PROBE_SPREAD: PROBE_COUNT probes PROBE_SPACING
      apart, then PROBE_WAIT. It is FREE if no host answered but lanon gateways that hold it
      (their heartbeats say so: a gateway answering for an address it holds is normal), else
      IN_USE. All of it fits in the claim policy's listening period, and a takeover needs no
      probe: the addresses were probed at start;
    - an ARP from an anonymous address (as sender) by a host that is not a lanon gateway
      makes the address IN_USE; one we hold we defend once (announce it again) and give up
      at a second conflict within DEFEND_INTERVAL (RFC 5227 2.4 (b)). ARP from gateways'
      MACs outside a probe is theirs to sort out by heartbeats; probes (sender 0.0.0.0) are
      ignored: every gateway probes every address;
    - IN_USE addresses are probed again every REPROBE_INTERVAL and are FREE when nobody
      answers; RESERVED ones (the router's, this host's own: `reserve`) stay refused;
    - `unavailable()`: every address that is not FREE. The claim policy claims none of them
      and releases those it holds.
    """

    def __init__(
        self,
        addresses: tuple[bytes, ...],
        mac: bytes,
        command: Callable[[Command], None],
        event: Callable[[Event], None],
        held: AbstractSet[int],
    ) -> None:
        self.addresses = addresses
        self.mac = mac
        self._command = command
        self._event = event
        self.held = held  # the engine's: the indexes of the addresses it holds
        self.index = {a: i for i, a in enumerate(addresses)}
        self.slots = [_Slot() for _ in addresses]
        self.gateways: dict[bytes, set[int]] = {}  # gateway MAC -> addresses it said it held
        self._due = math.inf
        self._unavailable: frozenset[int] | None = None

    # --- input ------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Probe every address that is not reserved, forgetting what was heard before."""
        n = len(self.slots)
        step = min(0.002, PROBE_SPREAD / n) if n else 0.0
        for i, slot in enumerate(self.slots):
            if slot.state is State.RESERVED:
                continue
            if slot.state is not State.WAITING:
                self._move(slot, State.WAITING)
            slot.heard.clear()
            slot.sent = 0
            slot.due = now + i * step
        self._recompute()

    def carry(self, old: Prober, now: float) -> None:
        """A new version's addresses: what was learned of those it keeps stays; new ones
        are probed now."""
        for i, a in enumerate(self.addresses):
            j = old.index.get(a)
            if j is None:
                self.slots[i].due = now
            else:
                self.slots[i] = old.slots[j]
        for mac, held in old.gateways.items():
            before = [old.addresses[j] for j in held if j < len(old.addresses)]
            self.gateways[mac] = {self.index[a] for a in before if a in self.index}
        self._recompute()

    def reserve(self, address: bytes, reason: ClaimRefusal, detail: str) -> None:
        """Never claim `address` (the router's, this host's own)."""
        i = self.index.get(address)
        if i is None or self.slots[i].state is State.RESERVED:
            return
        slot = self.slots[i]
        self._move(slot, State.RESERVED)
        slot.reason, slot.detail, slot.due = reason, detail, math.inf
        self._event(AddressRefused(self._text(i), reason, "", detail))
        self._recompute()

    def vouch(self, mac: bytes, held: Iterable[int]) -> None:
        """A gateway's heartbeat, sent from `mac`, says it holds `held`. An address it was
        found answering for is free after all (its heartbeat came after the probe ended:
        behind a burst of flow frames, say): heartbeats settle who holds it."""
        held = set(held)
        self.gateways.setdefault(mac, set()).update(held)
        for i in held:
            slot = self.slots[i] if i < len(self.slots) else None
            if slot is None or slot.state is not State.IN_USE or slot.mac != mac:
                continue
            if all(i in self.gateways.get(m, ()) for m in slot.heard):  # no other host's
                self._free(i, slot)

    def observe(self, a: Arp, now: float) -> None:
        """An ARP packet seen on the LAN (not one this host sent)."""
        i = self.index.get(a.sender_ip)
        if i is None or a.sender_mac == self.mac:
            return
        slot = self.slots[i]
        if slot.state is State.RESERVED or i in self.gateways.get(a.sender_mac, ()):
            return
        if slot.state in (State.WAITING, State.PROBING, State.IN_USE):
            self._hear(slot, a.sender_mac, now)  # judged when the probe ends
        elif a.sender_mac in self.gateways:
            return  # a lanon gateway: heartbeats settle who holds what
        elif i not in self.held:
            self._hear(slot, a.sender_mac, now)
            self._in_use(i, slot, a.sender_mac, "sent an ARP from it", now)
            self._recompute()
        elif now - slot.defended >= DEFEND_INTERVAL:
            slot.defended = now
            self._command(SendArp(BROADCAST, announcement(self.mac, a.sender_ip).encode()))
            self._event(AddressDefended(self._text(i), mac_text(a.sender_mac)))
        else:
            self._hear(slot, a.sender_mac, now)
            self._in_use(i, slot, a.sender_mac, "sent ARP from it twice while we held it", now)
            self._recompute()

    def handle_timer(self, now: float) -> None:
        if now < self._due:
            return
        for i, slot in enumerate(self.slots):
            if slot.due > now:
                continue
            if slot.state in (State.WAITING, State.IN_USE):
                if slot.state is State.IN_USE:
                    slot.heard.clear()  # is it still there?
                self._move(slot, State.PROBING)
                slot.sent = 0
            if slot.sent < PROBE_COUNT:
                self._command(SendArp(BROADCAST, probe(self.mac, self.addresses[i]).encode()))
                slot.sent += 1
                slot.due = now + (PROBE_SPACING if slot.sent < PROBE_COUNT else PROBE_WAIT)
            else:
                self._conclude(i, slot, now)
        self._recompute()

    # --- output -----------------------------------------------------------------------------

    def get_timer(self) -> float:
        return self._due

    def unavailable(self) -> frozenset[int]:
        """Addresses that must not be claimed now (and must be released if held)."""
        if self._unavailable is None:
            self._unavailable = frozenset(
                i for i, s in enumerate(self.slots) if s.state is not State.FREE
            )
        return self._unavailable

    def refused(self) -> dict[str, dict[str, str]]:
        """Refused addresses, for `lanon status`: reason, the MAC that uses it, details."""
        return {
            self._text(i): {
                "reason": s.reason.value,
                "mac": mac_text(s.mac) if s.mac else "",
                "detail": s.detail,
            }
            for i, s in enumerate(self.slots)
            if s.reason is not None
        }

    def counts(self) -> dict[ClaimRefusal, int]:
        out = dict.fromkeys(ClaimRefusal, 0)
        for s in self.slots:
            if s.reason is not None:
                out[s.reason] += 1
        return out

    # --- inside -----------------------------------------------------------------------------

    def _conclude(self, i: int, slot: _Slot, now: float) -> None:
        others = [m for m in slot.heard if i not in self.gateways.get(m, ())]
        if others:
            self._in_use(i, slot, others[-1], "answered a probe", now)
            return
        self._free(i, slot)

    def _free(self, i: int, slot: _Slot) -> None:
        self._move(slot, State.FREE)
        slot.due = math.inf
        if slot.reason is ClaimRefusal.IN_USE:
            slot.reason, slot.mac, slot.detail = None, b"", ""
            self._event(AddressFree(self._text(i)))
        self._recompute()

    def _in_use(self, i: int, slot: _Slot, mac: bytes, how: str, now: float) -> None:
        self._move(slot, State.IN_USE)
        slot.due = now + REPROBE_INTERVAL
        if slot.reason is ClaimRefusal.IN_USE and slot.mac == mac:
            return  # still the same host: said already
        slot.reason, slot.mac, slot.detail = ClaimRefusal.IN_USE, mac, f"{mac_text(mac)} {how}"
        self._event(AddressRefused(self._text(i), ClaimRefusal.IN_USE, mac_text(mac), slot.detail))

    def _hear(self, slot: _Slot, mac: bytes, now: float) -> None:
        if mac not in slot.heard and len(slot.heard) >= MAX_HEARD:
            del slot.heard[min(slot.heard, key=slot.heard.__getitem__)]
        slot.heard[mac] = now

    def _move(self, slot: _Slot, state: State) -> None:
        if state is not slot.state and state not in _MOVES[slot.state]:
            raise RuntimeError(f"address probe: {slot.state.value} -> {state.value}")
        slot.state = state
        self._unavailable = None

    def _recompute(self) -> None:
        self._due = min((s.due for s in self.slots), default=math.inf)

    def _text(self, i: int) -> str:
        return str(ipaddress.IPv4Address(self.addresses[i]))
