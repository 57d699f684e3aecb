"""A whole coalition in memory: members and gateways wired by a simulated Ethernet.

No sockets, no sleeps: frames are delivered in FIFO order (after `latency`, one at a time per
switch port if `bandwidth` is set) and the clock jumps to the next timer any engine asks for.
An optional `internet` function answers emitted packets (`lanon.lab.packets.echo_internet`
is a small one). The tests (tests/harness.py re-exports this module) and the benchmark drive
their coalitions here.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lanon.common import admin, blindrsa, wire
from lanon.common import coalition as coalition_mod
from lanon.common.crypto import HostKey, encode_key
from lanon.common.errors import RemoteProtocolError
from lanon.common.events import (
    AdoptNextKey,
    Command,
    EmitPacket,
    Event,
    FilterInbound,
    FilterSources,
    InjectPacket,
    KeepSequence,
    MakeCredentialKey,
    OutputSeen,
    SaveCoalition,
    SaveWallet,
    SendArp,
    SendFrame,
)
from lanon.common.sodium import AES_GCM_MISSING
from lanon.common.templates import toml_value
from lanon.common.wire import BROADCAST
from lanon.gateway.engine import GatewayEngine
from lanon.lab.packets import echo_internet
from lanon.member.choice import Priorities
from lanon.member.engine import MemberEngine
from lanon.member.pacer import LATE_AFTER
from lanon.member.services import ServiceOffer

WALL = 1_800_000_000.0  # the simulated wall clock starts here
SIM_KEY_BITS = 1024  # the simulated issuer's credential keys: quick to make


def coalition_dict(
    members: list[tuple[str, HostKey]],
    gateways: list[tuple[str, HostKey, list[str]]],
    **sections: Any,
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "coalition": {
            "name": "test",
            "lan": "198.18.0.0/24",
            "cell_size": 1280,  # as the template says
            # and this, where this machine has it (tests/common/test_flowkey.py says if not)
            "inbound_cipher": "aes256-gcm" if AES_GCM_MISSING is None else "chacha20-poly1305",
            **sections.pop("coalition", {}),
        },
        "members": [{"name": n, "public_key": encode_key(k.public)} for n, k in members],
        "gateways": [
            {"name": n, "public_key": encode_key(k.public), "addresses": a} for n, k, a in gateways
        ],
    }
    raw.update(sections)
    return raw


def make_coalition(
    n_members: int = 3, n_gateways: int = 1, *, seed: int = 1, **sections: Any
) -> tuple[coalition_mod.Coalition, dict[str, HostKey]]:
    """A coalition of `n_members` and `n_gateways` with keys from `seed`, and those keys by
    host name; `sections` are tables of the coalition file (e.g. rounds={"schedule": "tree"})."""
    rng = random.Random(seed)
    keys = {f"member{i + 1}": HostKey(rng.randbytes(32)) for i in range(n_members)}
    gkeys = {f"gateway{j + 1}": HostKey(rng.randbytes(32)) for j in range(n_gateways)}
    shares = [[f"198.18.0.{192 + 4 * j}/30"] for j in range(n_gateways)]
    raw = coalition_dict(
        list(keys.items()),
        [(n, k, shares[j]) for j, (n, k) in enumerate(gkeys.items())],
        **sections,
    )
    return coalition_mod.parse(raw, Path("test-coalition.toml")), {**keys, **gkeys}


def toml_text(raw: dict[str, Any]) -> str:
    """A coalition file's text from its tables (plain values: what these tests write)."""
    lines: list[str] = []
    for table, value in raw.items():
        if isinstance(value, list):
            for entry in value:
                lines += ["", f"[[{table}]]"] + [f"{k} = {toml_value(v)}" for k, v in entry.items()]
        else:
            lines += ["", f"[{table}]"] + [f"{k} = {toml_value(v)}" for k, v in value.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


ADMIN = HostKey(bytes([9]) * 32)  # the administrator of versioned test coalitions


def make_versioned(
    n_members: int = 3, n_gateways: int = 1, *, seed: int = 1, **sections: Any
) -> tuple[coalition_mod.Coalition, dict[str, HostKey]]:
    """`make_coalition`, as version 1 of a coalition with ADMIN as its administrator."""
    rng = random.Random(seed)
    keys = {f"member{i + 1}": HostKey(rng.randbytes(32)) for i in range(n_members)}
    gkeys = {f"gateway{j + 1}": HostKey(rng.randbytes(32)) for j in range(n_gateways)}
    shares = [[f"198.18.0.{192 + 4 * j}/30"] for j in range(n_gateways)]
    coalition = {"version": 1, **sections.pop("coalition", {})}
    raw = coalition_dict(
        list(keys.items()),
        [(n, k, shares[j]) for j, (n, k) in enumerate(gkeys.items())],
        coalition=coalition,
        admin={"keys": [encode_key(ADMIN.public)]},
        **sections,
    )
    path = Path("test-coalition.toml")
    text = admin.sign(toml_text(raw), path, ADMIN)
    return coalition_mod.loads(text, path), {**keys, **gkeys}


def local_address(i: int) -> bytes:
    """The i-th member's own address on a simulated LAN (198.18.0.11 for the first)."""
    return bytes((198, 18, 0, 11 + i))


def mac_of(i: int) -> bytes:
    return bytes((2, 0, 0, 0, 0, i))


@dataclass
class FromInternet(Command):
    """Replies of the Internet, on their way back through a slow gateway's uplink."""

    packets: tuple[bytes, ...]


@dataclass
class Host:
    name: str
    mac: bytes
    engine: Any
    events: list[Event] = field(default_factory=list)
    injected: list[bytes] = field(default_factory=list)
    down: bool = False
    wallet: str = ""  # the member's wallet file, as last saved
    sequence_mark: int = 0  # the gateway's sequence file, as last kept (a restart reads it)
    allow: frozenset[bytes] | None = None  # its kernel filter: only these sources reach it
    tags: frozenset[int] | None = None  # and only the INBOUND frames of these flow tags
    held: list[tuple[float, int, SendFrame]] = field(default_factory=list)  # answers, by moment

    def takes(self, frame: bytes) -> bool:
        """Whether its INBOUND filter lets `frame` through (exactly: the kernel's lets
        through a few more, which the member's checks take)."""
        if self.tags is None or len(frame) < 2 or frame[1] != wire.MsgType.INBOUND:
            return True
        try:
            return wire.peek_inbound_tag(frame) in self.tags
        except RemoteProtocolError:
            return False


class Lan:
    def __init__(
        self,
        coalition: coalition_mod.Coalition,
        keys: dict[str, HostKey],
        *,
        seed: int = 7,
        start: float = 100.0,
        internet: Callable[[bytes], list[bytes]] | None = None,
        latency: float = 0.0,
        bandwidth: float | None = None,
        services: dict[str, list[ServiceOffer]] | None = None,
        priorities: dict[str, Priorities] | None = None,
        filter_inbound: Collection[str] = (),
    ) -> None:
        """`priorities`: members' [providers] tables, by name; `services`: members' services
        (member/services.py), by member name; `filter_inbound`: the members whose kernel
        drops others' INBOUND frames (`Host.takes`). A member's own address is
        `local_address(i)` for the i-th member."""
        self.c = coalition
        self.keys = keys
        self.now = start
        self.rng = random.Random(seed)
        self.internet = internet
        self.hosts: dict[bytes, Host] = {}
        self.emitted: list[tuple[str, bytes]] = []
        self.wire_log: list[tuple[bytes, bytes, bytes]] = []  # (src, dst, frame)
        self.latency = latency  # seconds each frame takes to arrive (0: at once)
        self.queue: list[tuple[float, int, bytes, bytes | None, Command]] = []  # heap by arrival
        self.bandwidth = bandwidth  # bytes/s of each switch port (None: no limit)
        self._link_free: dict[bytes, float] = {}
        self._seq = 0
        self.dropped_frames = 0
        self.slow: dict[str, float] = {}  # gateway -> seconds its Internet replies take
        self._start = start
        offset = WALL - start
        n = 0
        for g in coalition.gateways:
            n += 1
            gateway = GatewayEngine(
                coalition,
                g.name,
                keys[g.name],
                mac_of(n),
                now=self.now,
                wall_offset=offset,
                rng=random.Random(self.rng.random()),
            )
            self.hosts[mac_of(n)] = Host(g.name, mac_of(n), gateway)
        for m in coalition.members:
            n += 1
            member = MemberEngine(
                coalition,
                m.name,
                keys[m.name],
                now=self.now,
                wall_offset=offset,
                rng=random.Random(self.rng.random()),
                services=(services or {}).get(m.name, ()),
                local=local_address(m.index),
                priorities=(priorities or {}).get(m.name),
                filter_inbound=m.name in filter_inbound,
            )
            self.hosts[mac_of(n)] = Host(m.name, mac_of(n), member)
        for h in self.hosts.values():
            h.engine.start(self.now)
        self.collect()

    # --- access ---------------------------------------------------------------------------

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts.values() if h.name == name)

    def member(self, name: str) -> MemberEngine:
        eng = self.host(name).engine
        assert isinstance(eng, MemberEngine)
        return eng

    def gateway(self, name: str = "gateway1") -> GatewayEngine:
        eng = self.host(name).engine
        assert isinstance(eng, GatewayEngine)
        return eng

    def events(self, name: str, kind: type[Event] | None = None) -> list[Event]:
        evs = self.host(name).events
        return [e for e in evs if kind is None or isinstance(e, kind)]

    def all_events(self, kind: type[Event]) -> list[Event]:
        return [e for h in self.hosts.values() for e in h.events if isinstance(e, kind)]

    # --- driving --------------------------------------------------------------------------

    def _push(self, at: float, src: bytes, target: bytes | None, cmd: Command) -> None:
        self._seq += 1
        heapq.heappush(self.queue, (at, self._seq, src, target, cmd))

    def collect(self) -> None:
        """Take every host's pending commands onto the LAN (or into its host), now."""
        for h in self.hosts.values():
            for cmd in h.engine.pop_commands():
                if h.down:
                    continue
                if isinstance(cmd, FilterInbound):  # the daemon attaches it at once
                    h.tags = cmd.tags
                elif not isinstance(cmd, SendFrame):
                    self._push(self.now + self.latency, h.mac, None, cmd)
                elif cmd.at > self.now:  # the pacer keeps it until its moment
                    self._seq += 1
                    heapq.heappush(h.held, (cmd.at, self._seq, cmd))
                else:
                    self._wire(h, cmd)
            h.events.extend(h.engine.pop_events())

    def _wire(self, h: Host, cmd: SendFrame) -> None:
        self.wire_log.append((h.mac, cmd.dst, cmd.frame))
        targets = (
            [m for m in self.hosts if m != h.mac]
            if cmd.dst == BROADCAST
            else [cmd.dst]
            if cmd.dst in self.hosts
            else []
        )
        for target in targets:
            at = self.now + self.latency
            if self.bandwidth:  # the switch port towards `target` carries one frame at a time
                at = max(at, self._link_free.get(target, 0.0)) + len(cmd.frame) / self.bandwidth
                self._link_free[target] = at
            self._push(at, h.mac, target, cmd)

    def release(self) -> None:
        """The answers whose moment has come leave (each host's pacer)."""
        for h in self.hosts.values():
            if h.held and h.held[0][0] <= self.now:
                cmd = h.held[0][2]
                while h.held and h.held[0][0] <= self.now:
                    frame = heapq.heappop(h.held)[2]
                    if not h.down:
                        self._wire(h, frame)
                if not h.down and self.now - cmd.at > LATE_AFTER:
                    h.engine.answers_late(1, cmd.round, self.now - cmd.at)
                    h.events.extend(h.engine.pop_events())

    def deliver(self) -> None:
        """Carry out every command due by now (and what it causes, if it is due too)."""
        self.release()
        while self.queue and self.queue[0][0] <= self.now:
            _, _, src, target, cmd = heapq.heappop(self.queue)
            sender = self.hosts[src]
            if isinstance(cmd, SendFrame):
                assert target is not None
                h = self.hosts[target]
                if not h.down and (h.allow is None or src in h.allow) and h.takes(cmd.frame):
                    if isinstance(h.engine, GatewayEngine):  # as its daemon, before it reads
                        h.engine.notice_pause(self.now)
                    h.engine.receive_frame(src, cmd.frame, self.now)
            elif isinstance(cmd, EmitPacket):
                self.emitted.append((sender.name, cmd.packet))
                if self.internet is not None:
                    replies = self.internet(cmd.packet)
                    delay = self.slow.get(sender.name, 0.0)
                    if delay:  # its uplink is slow: the replies come back later
                        self._push(self.now + delay, src, None, FromInternet(tuple(replies)))
                    else:
                        self._from_internet(replies)
            elif isinstance(cmd, FromInternet):
                self._from_internet(list(cmd.packets))
            elif isinstance(cmd, InjectPacket):
                sender.injected.append(cmd.packet)
            elif isinstance(cmd, SendArp | SaveCoalition | AdoptNextKey):
                pass
            elif isinstance(cmd, SaveWallet):
                sender.wallet = cmd.text
            elif isinstance(cmd, KeepSequence):
                sender.sequence_mark = cmd.mark
            elif isinstance(cmd, MakeCredentialKey):  # (the daemon makes it in a thread)
                key = blindrsa.generate(SIM_KEY_BITS)
                sender.engine.credential_key(cmd.period, key, self.now)
            elif isinstance(cmd, FilterSources):
                sender.allow = cmd.allow
            else:
                raise RuntimeError(f"unexpected command {cmd!r}")
            self.collect()

    def _from_internet(self, replies: list[bytes]) -> None:
        for reply in replies:
            for h in self.hosts.values():
                if isinstance(h.engine, GatewayEngine) and not h.down:
                    h.engine.notice_pause(self.now)
                    h.engine.receive_packet(reply, self.now)

    def advance(self) -> None:
        """Jump to the earliest timer and fire every timer that is due."""
        self.deliver()
        timers = [
            t for h in self.hosts.values() if not h.down and (t := h.engine.get_timer()) is not None
        ]
        if self.queue:
            timers.append(self.queue[0][0])
        timers += [h.held[0][0] for h in self.hosts.values() if h.held]
        self.now = max(self.now, min(timers))
        self.deliver()
        for h in self.hosts.values():  # as the daemons do: a host's timer fires when it is due
            if not h.down and (t := h.engine.get_timer()) is not None and t <= self.now:
                h.engine.handle_timer(self.now)
        self.collect()
        self.deliver()

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.advance()

    def run_until(self, predicate: Callable[[], bool], limit: float = 30.0) -> None:
        end = self.now + limit
        while not predicate():
            if self.now > end:
                raise AssertionError(f"condition not met within {limit} simulated seconds")
            self.advance()

    def submit(self, name: str, packet: bytes) -> None:
        self.member(name).submit_packet(packet, self.now)
        self.collect()
        self.deliver()

    def kill(self, name: str) -> None:
        self.host(name).down = True

    def resume(self, name: str) -> None:
        """A frozen host (SIGSTOP, a VM migration) runs again with all it had; what was sent to
        it meanwhile is lost."""
        self.host(name).down = False

    def restart(self, name: str, clock_ahead: float = 0.0) -> None:
        """The host comes back as a new process: same key, no memory; its wall clock
        `clock_ahead` seconds ahead of everyone's (a host whose clock NTP has not set yet)."""
        h = self.host(name)
        h.down = False
        h.held.clear()  # its pacer ended with it
        h.tags = None  # and its sockets: the new ones take every frame until it says
        old = h.engine
        offset = WALL - self._start + clock_ahead
        if isinstance(old, MemberEngine):
            h.engine = MemberEngine(
                self.c,
                name,
                old.key,
                now=self.now,
                wall_offset=offset,
                rng=random.Random(self.rng.random()),
                services=[s.offer for s in old.services],
                local=old.services.local,
                filter_inbound=old.filter_inbound,
            )
        else:
            h.engine = GatewayEngine(
                self.c,
                name,
                old.key,
                h.mac,
                now=self.now,
                wall_offset=offset,
                rng=random.Random(self.rng.random()),
                sequence_mark=h.sequence_mark,
            )
        h.engine.start(self.now)
        self.collect()

    def add_member(self, name: str, key: HostKey, coalition: coalition_mod.Coalition) -> None:
        """A new member host, running `coalition` from now on (a version that lists it, or
        one that does not: it asks to join)."""
        mac = mac_of(len(self.hosts) + 1)
        member = MemberEngine(
            coalition,
            name,
            key,
            now=self.now,
            wall_offset=WALL - self._start,
            rng=random.Random(self.rng.random()),
        )
        self._add(Host(name, mac, member), key)

    def add_gateway(self, name: str, key: HostKey, coalition: coalition_mod.Coalition) -> None:
        """A new gateway host, running `coalition` (a version that lists it)."""
        mac = mac_of(len(self.hosts) + 1)
        gateway = GatewayEngine(
            coalition,
            name,
            key,
            mac,
            now=self.now,
            wall_offset=WALL - self._start,
            rng=random.Random(self.rng.random()),
        )
        self._add(Host(name, mac, gateway), key)

    def _add(self, host: Host, key: HostKey) -> None:
        self.hosts[host.mac] = host
        self.keys[host.name] = key
        host.engine.start(self.now)
        self.collect()

    def frames(self, mtype: int) -> list[tuple[bytes, bytes, bytes]]:
        return [(src, dst, f) for src, dst, f in self.wire_log if len(f) > 1 and f[1] == mtype]


def running_lan(
    members: int = 3,
    gateways: int = 1,
    *,
    latency: float = 0.0,
    echo: bool = True,
    services: dict[str, list[ServiceOffer]] | None = None,
    priorities: dict[str, Priorities] | None = None,
    filter_inbound: Collection[str] = (),
    **sections: Any,
) -> Lan:
    """A coalition in memory whose rounds already run (each member has seen three outputs);
    `echo`: a little Internet that answers UDP, pings and SYNs."""
    c, keys = make_coalition(members, gateways, seed=1, **sections)
    lan = Lan(
        c,
        keys,
        internet=echo_internet if echo else None,
        latency=latency,
        services=services,
        priorities=priorities,
        filter_inbound=filter_inbound,
    )
    lan.run_until(lambda: len(lan.all_events(OutputSeen)) >= 3 * members)
    return lan
