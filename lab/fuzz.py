"""Fuzzing lanon: seeded, reproducible inputs for every decoder and every engine entry point.

tests/common/test_fuzz.py runs a few thousand inputs per target; `./run bench --fuzz N` runs N in
all and prints, per target, inputs, rejections, time and crashes. A crash names its target, its
batch seed and its index in the batch; `python -m lanon.lab.fuzz TARGET SEED INDEX` replays the
batch up to it and lets the exception through, with its traceback.

What a target must do with any input ("crash" is anything else):

    wire.*           the frame decoders: return, or raise RemoteProtocolError
    packet.*         return, or raise PacketError; after a successful parse, rewriting never raises
    defrag, cell.*   never raise, and stay within their bounds
    arp.pull_arp     never raises
    member.*, gateway.*
                     the engines' entry points, in the state a running coalition left them in:
                     never raise (a bad frame becomes a FrameRejected event, a bad packet a
                     PacketDropped), and never send a frame that their peers' decoders refuse
    lan.*            the same, one hostile input at a time into a whole coalition that runs on

Inputs are random bytes and mutations of what an in-memory coalition really sent and received
(bit flips, cuts, extensions, splices, fields set to 0 or their maximum, real headers with
garbage bodies), and frames made for the round under way: decoded, made current (round, clock,
sequence number), one or two fields set to odd values (counts, epochs, members of a bitmap),
encoded again. The fuzzer holds every host's key, so most frames are signed or MACed as their
claimed sender would: they reach the state machines behind authentication, as a malicious
member's or a compromised gateway's frames would. Engines start every batch from the same
snapshot, so an input depends only on (target, seed, index).

Everything is deterministic: the coalition's keys and its ephemeral keys come from seeded
generators (see `deterministic_ephemeral_keys`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import heapq
import random
import struct
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lanon.common import admin, crypto, endpoints, flowkey, tokens, wire
from lanon.common.accusation import Accusation
from lanon.common.cell import (
    CELL_HEADER_LEN,
    Cell,
    Reassembler,
    SlotState,
    decode_slot,
    encode_cell,
)
from lanon.common.clock import wall_us
from lanon.common.coalition import Coalition, Schedule, loads
from lanon.common.crypto import HostKey
from lanon.common.engine import maced, signed
from lanon.common.errors import RejectReason, RemoteProtocolError
from lanon.common.events import (
    EmitPacket,
    Event,
    FrameRejected,
    InboundDelivered,
    InjectPacket,
    OutputSeen,
    PacketDropped,
    SendArp,
    SendFrame,
)
from lanon.common.offers import Offer, Price, pull_offer
from lanon.common.packet import (
    ICMP,
    TCP,
    UDP,
    PacketError,
    checksum,
    clamp_mss,
    fill_l4_checksum,
    fragment,
    icmp_error,
    normalize_for_emission,
    parse,
    restore_icmp_error,
    set_destination,
    set_source,
)
from lanon.common.reservation import ENTRY_LEN
from lanon.common.tree import place, root
from lanon.common.versions import PendingJoins, VersionBook, chunks, join_frame
from lanon.gateway import arp
from lanon.gateway.defrag import MAX_DATAGRAM, Defragmenter
from lanon.gateway.engine import GatewayEngine
from lanon.gateway.flows import RECORD
from lanon.lab.sim import ADMIN, WALL, make_coalition, make_versioned
from lanon.member.engine import MemberEngine

Engine = MemberEngine | GatewayEngine
START = 100.0  # the engines' clock when the coalition starts (at WALL on the wall clock)
SERVER = bytes((203, 0, 113, 10))
BATCH = 100  # inputs per batch: engines start each batch from their snapshot


# --- packets, built by hand (malformed ones too) -----------------------------------------------


def ipv4(
    src: bytes, dst: bytes, proto: int, l4: bytes, *, ident: int = 0, df: bool = True
) -> bytes:
    hdr = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(l4),
            ident,
            0x4000 if df else 0,
            64,
            proto,
            0,
            src,
            dst,
        )
    )
    hdr[10:12] = struct.pack("!H", checksum(hdr))
    return bytes(hdr) + l4


def _l4_checksum(src: bytes, dst: bytes, proto: int, seg: bytearray, off: int) -> bytes:
    pseudo = src + dst + struct.pack("!BBH", 0, proto, len(seg))
    c = checksum(pseudo + bytes(seg))
    seg[off : off + 2] = struct.pack("!H", 0xFFFF if proto == UDP and c == 0 else c)
    return bytes(seg)


def udp(src: bytes, dst: bytes, sport: int, dport: int, data: bytes, df: bool = True) -> bytes:
    seg = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data)
    return ipv4(src, dst, UDP, _l4_checksum(src, dst, UDP, seg, 6), df=df)


def tcp(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    flags: int,
    options: bytes = b"",
    data: bytes = b"",
    seq: int = 1000,
    ack: int = 0,
) -> bytes:
    options += bytes(-len(options) % 4)
    head = struct.pack(
        "!HHIIBBHHH", sport, dport, seq, ack, (20 + len(options)) // 4 << 4, flags, 65535, 0, 0
    )
    seg = bytearray(head + options + data)
    return ipv4(src, dst, TCP, _l4_checksum(src, dst, TCP, seg, 16))


def icmp(src: bytes, dst: bytes, kind: int, code: int, rest: bytes, data: bytes) -> bytes:
    msg = bytearray(struct.pack("!BBH", kind, code, 0) + rest + data)
    msg[2:4] = struct.pack("!H", checksum(msg))
    return ipv4(src, dst, ICMP, bytes(msg))


SYN_OPTIONS = (
    bytes.fromhex("020405b4") + bytes.fromhex("0402080a0000000100000000") + b"\x01\x03\x03\x07"
)


# --- a coalition in memory ------------------------------------------------------------------


@contextmanager
def deterministic_ephemeral_keys(seed: int) -> Iterator[None]:
    """Ephemeral keys from a seeded generator instead of the OS (fuzzing only)."""
    rng = random.Random(seed)
    names = vars(crypto)  # crypto.Ephemeral draws its scalars through crypto._ephemeral_seed
    saved = names["_ephemeral_seed"]
    names["_ephemeral_seed"] = lambda: rng.randbytes(64)
    try:
        yield
    finally:
        names["_ephemeral_seed"] = saved


def member_address(index: int) -> bytes:
    return bytes((198, 18, 0, 11 + index))


class Internet:
    """Answers what gateways emit, like servers would: UDP echo (port 9: port unreachable),
    ping, SYN-ACKs with the usual options, data for other TCP segments; large UDP answers come
    in fragments."""

    def __init__(self) -> None:
        self.defrag = Defragmenter()

    def answer(self, packet: bytes) -> list[bytes]:
        try:
            p = parse(packet)
        except PacketError:
            whole = self.defrag.add(packet, 0.0)
            if whole is None:
                return []
            packet, p = whole, parse(whole)
        f, ihl = p.flow, p.ihl
        if f.proto == UDP:
            if f.dport == 9:
                return [icmp(f.dst, f.src, 3, 3, bytes(4), packet[: ihl + 8])]
            reply = udp(f.dst, f.src, f.dport, f.sport, packet[ihl + 8 :], df=False)
            return fragment(reply, 576) if len(reply) > 1200 else [reply]
        if f.proto == ICMP:
            return [icmp(f.dst, f.src, 0, 0, packet[ihl + 4 : ihl + 8], packet[ihl + 8 :])]
        if p.tcp_flags & 0x02:
            return [tcp(f.dst, f.src, f.dport, f.sport, 0x12, SYN_OPTIONS, ack=1)]
        return [tcp(f.dst, f.src, f.dport, f.sport, 0x18, data=b"reply" * 40, ack=2)]


class World:
    """Engines on one simulated Ethernet, with an Internet behind the gateways; it records
    every frame, packet and ARP payload that passes, as the fuzzer's raw material."""

    def __init__(
        self,
        coalition: Coalition,
        keys: dict[str, HostKey],
        seed: int,
        latency: float = 0.0005,
        skew: dict[str, float] | None = None,
    ) -> None:
        self.c = coalition
        self.keys = keys
        self.now = START
        self.latency = latency
        self.offset = WALL - START
        rng = random.Random(seed)
        self.engines: dict[bytes, Engine] = {}
        self.macs: dict[str, bytes] = {}
        for j, g in enumerate(coalition.gateways):
            mac = bytes((2, 0, 0, 0, 1, j))
            self.macs[g.name] = mac
            self.engines[mac] = GatewayEngine(
                coalition,
                g.name,
                keys[g.name],
                mac,
                now=self.now,
                wall_offset=self.offset,
                rng=random.Random(rng.random()),
            )
        for i, m in enumerate(coalition.members):
            mac = bytes((2, 0, 0, 0, 2, i))
            self.macs[m.name] = mac
            self.engines[mac] = MemberEngine(
                coalition,
                m.name,
                keys[m.name],
                now=self.now,
                wall_offset=self.offset + (skew or {}).get(m.name, 0.0),
                rng=random.Random(rng.random()),
            )
        self.internet = Internet()
        self.down: set[bytes] = set()
        self.frames: list[tuple[bytes, bytes, bytes]] = []  # (src, dst, frame)
        self.outbound: list[bytes] = []  # what members' hosts sent
        self.inbound: list[bytes] = []  # what the Internet answered
        self.arp: list[bytes] = []
        self.counts: Counter[tuple[str, str]] = Counter()  # (host, event class) seen
        self.round = 0  # the last round a leader opened
        self.check = True  # every frame sent must decode (check_sent)
        self._heap: list[tuple[float, int, bytes, bytes, bytes]] = []
        self._seq = 0
        for e in self.engines.values():
            e.start(self.now)
        self._collect()

    def name(self, mac: bytes) -> str:
        return next(n for n, m in self.macs.items() if m == mac)

    def engine(self, name: str) -> Engine:
        return self.engines[self.macs[name]]

    def _collect(self) -> None:
        for mac, e in self.engines.items():
            for cmd in e.pop_commands():
                if mac in self.down:
                    continue
                if isinstance(cmd, SendFrame):
                    if self.check:
                        check_sent(cmd.frame, len(self.c.members))
                    self.frames.append((mac, cmd.dst, cmd.frame))
                    if cmd.frame[1] == wire.MsgType.OPEN:
                        self.round = max(self.round, int.from_bytes(cmd.frame[8:16], "big"))
                    targets = [cmd.dst] if cmd.dst != wire.BROADCAST else list(self.engines)
                    for t in targets:
                        if t != mac and t in self.engines:
                            self._seq += 1
                            at = self.now + self.latency
                            heapq.heappush(self._heap, (at, self._seq, mac, t, cmd.frame))
                elif isinstance(cmd, EmitPacket):
                    for reply in self.internet.answer(cmd.packet):
                        self.inbound.append(reply)
                        for g in self.engines.values():
                            if isinstance(g, GatewayEngine):
                                g.receive_packet(reply, self.now)
                elif isinstance(cmd, InjectPacket):
                    pass
                elif isinstance(cmd, SendArp):
                    self.arp.append(cmd.payload)
            name = self.name(mac)
            for ev in e.pop_events():
                self.counts[name, type(ev).__name__] += 1

    def deliver(self) -> None:
        while self._heap and self._heap[0][0] <= self.now:
            _, _, src, dst, frame = heapq.heappop(self._heap)
            if dst not in self.down:
                self.engines[dst].receive_frame(src, frame, self.now)
            self._collect()

    def advance(self) -> None:
        self.deliver()
        timers = [e.get_timer() for m, e in self.engines.items() if m not in self.down]
        if self._heap:
            timers.append(self._heap[0][0])
        self.now = max(self.now, min(t for t in timers if t is not None))
        self.deliver()
        for mac, e in self.engines.items():
            if mac not in self.down:
                e.handle_timer(self.now)
        self._collect()
        self.deliver()

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.advance()

    def run_until(self, done: Callable[[], bool], limit: float = 30.0) -> None:
        end = self.now + limit
        while not done():
            if self.now > end:
                raise RuntimeError(f"the fuzz coalition did not get going in {limit} s")
            self.advance()

    def submit(self, name: str, packet: bytes) -> None:
        e = self.engine(name)
        assert isinstance(e, MemberEngine)
        self.outbound.append(packet)
        e.submit_packet(packet, self.now)
        self._collect()

    def seen(self, name: str, event: type[Event]) -> int:
        return self.counts[name, event.__name__]

    def rejections(self) -> int:
        return sum(n for (_h, kind), n in self.counts.items() if kind == "FrameRejected")

    def snapshot(self) -> World:
        """A copy without the records of what passed (cheap to copy again)."""
        logs = self.frames, self.outbound, self.inbound, self.arp
        self.frames, self.outbound, self.inbound, self.arp = [], [], [], []
        try:
            return copy.deepcopy(self)
        finally:
            self.frames, self.outbound, self.inbound, self.arp = logs


def _traffic(world: World, name: str, index: int) -> None:
    src = member_address(index)
    world.submit(name, udp(src, SERVER, 40000 + index, 7, b"hello from " + name.encode()))
    world.submit(name, udp(src, SERVER, 40100 + index, 9, b"nobody listens"))
    world.submit(name, tcp(src, SERVER, 40200 + index, 80, 0x02, SYN_OPTIONS))
    world.submit(name, icmp(src, SERVER, 8, 0, struct.pack("!HH", 77 + index, 1), b"x" * 56))
    world.submit(name, udp(src, SERVER, 40300 + index, 7, bytes(range(256)) * 10, df=False))


def build_world(
    members: int, gateways: int, seed: int, *, skew: dict[str, float] | None = None, **sections: Any
) -> World:
    """A coalition that has run rounds, carried traffic both ways, and seen a member vanish."""
    c, keys = make_coalition(members, gateways, seed=seed, coalition={"name": "fuzz"}, **sections)
    world = World(c, keys, seed, skew=skew)
    for i, g in enumerate(c.gateways):  # providers' offers (common/offers.py)
        gateway = world.engine(g.name)
        assert isinstance(gateway, GatewayEngine)
        gateway.offer = Offer(0, Price(0.5 + i, 3.0), 0, None, 10, 100, bytes(range(i + 8)))
    names = [m.name for m in c.members if not (skew or {}).get(m.name)]
    world.run_until(lambda: all(world.seen(n, OutputSeen) >= 3 for n in names))
    for i, n in enumerate(names):
        _traffic(world, n, i)
    world.run_until(lambda: world.seen(names[0], InboundDelivered) >= 3)
    world.run(0.5)
    last = world.macs[names[-1]]
    world.down.add(last)  # a member goes silent: rounds are aborted and redone without it
    world.run(1.0)
    world.down.discard(last)
    world.run(1.0)
    return world


# --- the raw material -----------------------------------------------------------------------

SIGNED = frozenset(
    {
        wire.MsgType.OPEN,
        wire.MsgType.OUTPUT_HEAD,
        wire.MsgType.ABORT,
        wire.MsgType.HELLO,
        wire.MsgType.HEARTBEAT,
        wire.MsgType.KEYS,
        wire.MsgType.FLOWS,
        wire.MsgType.BLAME,
        wire.MsgType.REVEAL,
        wire.MsgType.PROOF,
        wire.MsgType.VERDICT,
        wire.MsgType.OFFER,
        wire.MsgType.BUY,
        wire.MsgType.ISSUE,
        wire.MsgType.RATING,
    }
)
MACED = frozenset({wire.MsgType.CONTRIB, wire.MsgType.REFUSE, wire.MsgType.TREE_PART})
SIGNED_MACED = frozenset({wire.MsgType.ATTEST})  # signed, then MACed to the leader
BY_MEMBERS = frozenset(
    {
        wire.MsgType.HELLO,
        wire.MsgType.KEYS,
        wire.MsgType.CONTRIB,
        wire.MsgType.REFUSE,
        wire.MsgType.TREE_PART,
        wire.MsgType.ATTEST,
        wire.MsgType.REVEAL,
        wire.MsgType.PROOF,
        wire.MsgType.BUY,
    }
)


SEALED = frozenset({wire.MsgType.OPEN, wire.MsgType.OUTPUT_HEAD})  # a MAC table, then signed


def auth_len(mtype: int, nmembers: int) -> int:
    """The bytes after a frame's body: a sealed frame's MAC table (one MAC per member of the
    coalition) and signature, a signature, a MAC, or nothing."""
    if mtype in SEALED:
        return nmembers * wire.MAC_LEN + wire.SIG_LEN
    if mtype in SIGNED_MACED:
        return wire.SIG_LEN + wire.MAC_LEN
    return wire.SIG_LEN if mtype in SIGNED else wire.MAC_LEN if mtype in MACED else 0


def body_of(frame: bytes, nmembers: int) -> bytes:
    """A frame of a coalition of `nmembers` without its authenticator (what the decoders
    take)."""
    n = auth_len(frame[1], nmembers) if len(frame) > 1 else 0
    return frame[:-n] if n and len(frame) >= n else frame


@dataclass
class Corpus:
    star: World  # 4 members (one with a skewed clock, which refuses rounds), 2 gateways
    tree: World  # 4 members, 1 gateway, schedule = "tree"
    snapshots: dict[str, Engine]  # "star/member1", "tree/gateway1", …: engines as they were
    lans: dict[str, World]  # "star", "tree": whole coalitions as they were
    frames: dict[int, list[bytes]]  # real frames by type (both worlds)
    packets: list[bytes]  # outbound and inbound IPv4 packets, whole
    fragments: list[bytes]
    cells: list[Cell]  # cells from real round outputs
    slots: list[bytes]
    versioned: Coalition  # version 1 of a versioned coalition (COALITION frames: its next)

    @classmethod
    def build(cls, seed: int = 1) -> Corpus:
        with deterministic_ephemeral_keys(seed):
            star = build_world(4, 2, seed, skew={"member4": 30.0}, rounds={"epoch_rounds": 40})
            tree = build_world(4, 1, seed + 1, rounds={"schedule": "tree", "tree_fanout": 2})
            _blame(star)
        snapshots = {
            f"{label}/{name}": copy.deepcopy(w.engine(name))
            for label, w in (("star", star), ("tree", tree))
            for name in w.macs
        }
        lans = {"star": star.snapshot(), "tree": tree.snapshot()}
        frames: dict[int, list[bytes]] = {t: [] for t in wire.MsgType}
        for w in (star, tree):
            for _src, _dst, f in w.frames:
                pool = frames[f[1]]
                if len(pool) < 400:
                    pool.append(f)
        _attest_frames(star, frames)
        gw = star.engine("gateway1")
        assert isinstance(gw, GatewayEngine)
        records = gw.flows.export()[:8]
        flows = wire.Flows(1 << 40, len(records), RECORD.size, b"")
        head = flows.head(star.c.id, 0)
        pair = crypto.gateway_pair_key(star.keys["gateway1"], star.keys["gateway2"].public)
        frame = head + flowkey.seal_part(pair, 0, 1 << 40, head, b"".join(records), flowkey.CHACHA)
        frames[wire.MsgType.FLOWS].append(frame + star.keys["gateway1"].sign(frame))
        _market_frames(star, frames)
        versioned = _version_frames(frames)
        cells = _cells_of(star)
        cs = star.c.coalition.cell_size
        slots = [encode_cell(cs, c.tag, c.packet_id, c.index, c.count, c.data) for c in cells]
        packets = star.outbound + star.inbound + tree.outbound + tree.inbound
        whole = [p for p in packets if not p[6] & 0x20 and not (p[6] & 0x1F or p[7])]
        frags = [p for p in packets if p not in whole]
        for p in whole:
            if len(p) > 600:
                frags += fragment(bytes(p[:6]) + b"\0\0" + p[8:], 300)
        return cls(star, tree, snapshots, lans, frames, whole, frags, cells, slots, versioned)


def _attest_frames(world: World, frames: dict[int, list[bytes]]) -> None:
    """ATTEST frames of their own, as a member sends one when its last part has no room for
    it: the ATTESTs at the end of real last parts, MACed to the leader."""
    pool = frames[wire.MsgType.ATTEST]
    for f in frames[wire.MsgType.CONTRIB]:
        part = wire.pull_part(f[: -wire.MAC_LEN])
        engine = world.engine(world.c.members[wire.pull_header(f).sender].name)
        if part.index != part.count - 1 or not isinstance(engine, MemberEngine):
            continue
        signed_attest = part.payload[-wire.ATTEST_LEN :]
        with contextlib.suppress(RemoteProtocolError):  # (a last part without one)
            wire.pull_attest(signed_attest[: -wire.SIG_LEN])
            if len(pool) < 400:
                pool.append(maced(engine.rounds.mac_keys[0], signed_attest))


def _market_frames(world: World, frames: dict[int, list[bytes]]) -> None:
    """BUY, ISSUE and RATING frames (common/tokens.py), signed as their senders sign them."""
    cid, member, gateway = world.c.id, world.keys["member1"], world.keys["gateway1"]
    token = tokens.Token(b"p" * 64, b"s" * 128)
    scores = (("gateway1", 80), ("gateway2", 20))
    rating = tokens.Rating(5, scores, "gateway1", token, bytes(64))
    for kind in tokens.TokenKind:
        buy = tokens.Buy(
            kind, 0, 7, 5 if kind is tokens.TokenKind.CREDENTIAL else 0, (bytes(128),) * 2
        )
        frames[wire.MsgType.BUY].append(signed(member, buy.encode(cid, 0)))
        issue = tokens.Issue(kind, 0, 7, tokens.Refusal.NONE, (bytes(128),) * 2)
        frames[wire.MsgType.ISSUE].append(signed(gateway, issue.encode(cid, 0)))
    for relay in (
        tokens.Relay(tokens.RatingKind.ANONYMOUS, rating.encode()),
        tokens.Relay(tokens.RatingKind.AGENCY, tokens.Rating(5, scores).encode() + bytes(96)),
    ):
        frames[wire.MsgType.RATING].append(signed(gateway, relay.encode(cid, 0)))


def _version_frames(frames: dict[int, list[bytes]]) -> Coalition:
    """COALITION frames of a versioned coalition's next versions (signed, unsigned, with a
    member more or less) and JOIN requests; version 1 of that coalition."""
    c, keys = make_versioned(4, 2)
    path = c.path
    newcomer = crypto.HostKey(bytes([44]) * 32)
    added = admin.member_added(c, "member5", newcomer.public)
    texts = [admin.sign(added, path, ADMIN), added, admin.member_removed(c, "member2")]
    for text in texts:
        frames[wire.MsgType.COALITION] += chunks(loads(text, path, signatures=False))
    wall = 1_800_000_000_000
    frames[wire.MsgType.JOIN] += [
        join_frame(c, "member5", newcomer, wall, None),
        join_frame(c, "member1", newcomer, wall, keys["member1"]),
    ]
    return c


def _blame(world: World) -> None:
    """A trace of a kept round, for BLAME, REVEAL and VERDICT frames (slot 0's owner refuses
    to reveal at a bit it did not accuse at), and a member's PROOF."""
    leader = next(
        e for n in world.macs if isinstance(e := world.engine(n), GatewayEngine) and e.leading
    )
    first = world.c.members[0].name
    before = max(leader.leader.kept, default=0)
    for i in range(6):  # more than an express slot takes: reserved slots
        world.submit(first, udp(member_address(0), SERVER, 40400 + i, 7, b"a round to trace"))
    express = world.c.rounds.express_slots

    def reserved() -> int:  # the newest kept round with reserved slots since `before`
        return max(
            (
                r
                for r, k in leader.leader.kept.items()
                if r > before and wire.pull_open(k.opened).nslots > express
            ),
            default=0,
        )

    # Traced at once: epochs are short here, and members forget a past epoch's keys.
    world.run_until(lambda: reserved() > 0)
    rnd = reserved()
    kept = leader.leader.kept[rnd]
    o = wire.pull_open(kept.opened)
    bit = o.nentries * ENTRY_LEN * 8 + 3
    leader.tracer.start(Accusation(rnd, 0, bit, bytes(16)), world.now)
    member = world.engine(world.c.members[0].name)
    assert isinstance(member, MemberEngine)
    peer = next(j for j in sorted(kept.roster) if j != 0)
    proven = member.keys.pads.prove(kept.epoch, peer, o.key_of())
    if proven is not None:
        proof = wire.ProofMsg(rnd, bit, peer, *proven).encode(world.c.id, 0)
        signature = world.keys[world.c.members[0].name].sign(proof)
        world.frames.append((b"", wire.BROADCAST, proof + signature))
    world.run(0.5)


def _cells_of(world: World) -> list[Cell]:
    """The cells of every complete round output a member saw."""
    heads: dict[int, wire.OutputHead] = {}
    parts: dict[int, dict[int, bytes]] = {}
    for _src, _dst, f in world.frames:
        try:
            if f[1] == wire.MsgType.OUTPUT_HEAD:
                h = wire.pull_output_head(body_of(f, len(world.c.members)))
                heads[h.round] = h
            elif f[1] == wire.MsgType.OUTPUT_PART:
                p = wire.pull_part(f)
                parts.setdefault(p.round, {})[p.index] = p.payload
        except RemoteProtocolError:
            continue
    cs = world.c.coalition.cell_size
    cells: list[Cell] = []
    for rnd, h in heads.items():
        got = parts.get(rnd, {})
        if len(got) != len(h.digests):
            continue
        vector = b"".join(got[i] for i in range(len(h.digests)))
        base = h.nentries * ENTRY_LEN
        for s in range(h.nslots):
            state, cell = decode_slot(vector[base + s * cs : base + (s + 1) * cs])
            if state is SlotState.CELL and cell is not None:
                cells.append(cell)
    return cells


# --- mutations ------------------------------------------------------------------------------

INTERESTING = {
    1: (0, 1, 0x7F, 0x80, 0xFE, 0xFF),
    2: (0, 1, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF, 64, 1500),
    4: (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFD, 0xFFFFFFFE, 0xFFFFFFFF),
    8: (0, 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 2, (1 << 64) - 1),
}


def mutate(rng: random.Random, data: bytes, pool: Sequence[bytes], start: int = 0) -> bytes:
    """One to three byte-level mutations of data, at offsets from `start` on (mostly)."""
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        lo = start if rng.random() < 0.9 and len(buf) > start else 0
        n = len(buf)
        op = rng.randrange(10)
        if op == 0 and n > lo:  # bit flips
            for _ in range(rng.randrange(1, 9)):
                i = rng.randrange(lo, n)
                buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n > lo:  # a field set to an interesting value
            width = rng.choice((1, 2, 4, 8))
            i = rng.randrange(lo, n)
            value = rng.choice(INTERESTING[width])
            if rng.random() < 0.3:
                old = int.from_bytes(buf[i : i + width].ljust(width, b"\0"), "big")
                value = (old + rng.choice((-1, 1))) % (1 << (8 * width))
            buf[i : i + width] = value.to_bytes(width, "big")[: n - i]
        elif op == 2:  # cut
            buf = buf[: rng.randrange(lo, n + 1)] if n > lo else buf
        elif op == 3:  # extend
            buf += rng.randbytes(rng.choice((1, 2, 4, 8, 16, 100, 1500)))
        elif op == 4 and pool:  # splice from another input
            other = rng.choice(pool)
            a = rng.randrange(lo, n + 1) if n >= lo else n
            b = rng.randrange(len(other) + 1)
            buf = buf[:a] + other[b : b + rng.randrange(1, 64)] + buf[a + rng.randrange(0, 64) :]
        elif op == 5 and n > lo:  # delete a range
            a = rng.randrange(lo, n)
            del buf[a : a + rng.randrange(1, 32)]
        elif op == 6 and n > lo:  # duplicate a range
            a = rng.randrange(lo, n)
            buf[a:a] = buf[a : a + rng.randrange(1, 32)]
        elif op == 7 and n > lo:  # random bytes over a range
            a = rng.randrange(lo, n)
            k = min(rng.randrange(1, 16), n - a)
            buf[a : a + k] = rng.randbytes(k)
        elif op == 8:  # everything after `lo` random, of a typical length
            buf = buf[:lo] + bytearray(rng.randbytes(rng.randrange(0, max(2, n - lo) * 2)))
        elif n > lo:  # all zeros or all ones from some point
            a = rng.randrange(lo, n)
            buf[a:] = bytes([rng.choice((0, 0xFF))]) * (n - a)
    return bytes(buf)


def random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice((0, 1, 7, 8, 9, 20, 28, 40, 64, 100, rng.randrange(1600))))


def mutate_packet(rng: random.Random, pkt: bytes, pool: Sequence[bytes]) -> bytes:
    """A mutated IPv4 packet: byte-level, or one header field of IP or its L4 header set to
    something odd; the total length often made to agree again, to get past parse()."""
    r = rng.random()
    if r < 0.05:
        return random_bytes(rng)
    if r < 0.55:
        out = bytearray(mutate(rng, pkt, pool, 0 if rng.random() < 0.3 else 20))
    else:
        out = bytearray(pkt)
        ihl = (out[0] & 0x0F) * 4 if out else 20
        field_ = rng.randrange(9)
        if field_ == 0 and out:
            out[0] = (out[0] & 0xF0) | rng.randrange(16)  # IHL
        elif field_ == 1 and len(out) >= 4:
            out[2:4] = struct.pack("!H", rng.choice((0, 19, 20, 0xFFFF, rng.randrange(65536))))
        elif field_ == 2 and len(out) >= 8:
            out[6:8] = struct.pack("!H", rng.randrange(65536))  # flags, fragment offset
        elif field_ == 3 and len(out) >= 10:
            out[9] = rng.choice((ICMP, TCP, UDP, 0, 41, 255))
        elif field_ == 4 and len(out) > ihl + 12:
            out[ihl + 12] = rng.randrange(256)  # TCP data offset (and reserved bits)
        elif field_ == 5 and len(out) > ihl + 20:  # TCP options: garbage, or a lying MSS
            k = rng.randrange(1, 41)
            opts = rng.choice(
                (
                    rng.randbytes(k),
                    b"\x02" + bytes([rng.randrange(256)]) + rng.randbytes(2),
                    b"\x01" * k,
                    b"\x02\x04\xff\xff",
                    b"\x03",
                    b"\x08\xff",
                )
            )
            out[ihl + 20 : ihl + 20] = opts
            if rng.random() < 0.7:
                out[ihl + 12] = (min(15, (20 + len(opts) + 3) // 4 + rng.randrange(-1, 3))) << 4
        elif field_ == 6 and len(out) > ihl:
            out[ihl] = rng.choice((0, 3, 8, 11, 12, 5, rng.randrange(256)))  # ICMP type
        elif field_ == 7 and len(out) > ihl + 8:  # the quoted header of an ICMP error
            i = rng.randrange(ihl + 8, len(out))
            out[i] = rng.randrange(256)
        else:
            out += rng.randbytes(rng.randrange(1, 64))
    if len(out) >= 4 and rng.random() < 0.6:
        out[2:4] = struct.pack("!H", min(len(out), 0xFFFF))
    return bytes(out)


@dataclass
class Signer:
    """Authenticates frames as their claimed sender would (the fuzzer holds every key)."""

    c: Coalition
    keys: dict[str, HostKey]
    receiver: bytes  # public key of the engine under test (MACs are pairwise)
    _macs: dict[tuple[int, bool], bytes] = field(default_factory=dict)
    _tables: dict[int, list[bytes]] = field(default_factory=dict)  # gateway -> members' MAC keys

    def auth(self, body: bytes) -> bytes | None:
        if len(body) < wire.HEADER.size:
            return None
        mtype, sender = body[1], struct.unpack_from("!H", body, 6)[0]
        by_member = mtype in BY_MEMBERS
        peers = self.c.members if by_member else self.c.gateways
        if sender >= len(peers):
            return None
        key = self.keys[peers[sender].name]
        if mtype in SEALED:  # one MAC per member, then the signature over body and table
            keys = self._tables.get(sender)
            if keys is None:
                members = self.c.members
                keys = self._tables[sender] = [crypto.mac_key(key, m.public) for m in members]
            table = b"".join(crypto.mac(k, body) for k in keys)
            return table + key.sign(body + table)
        if mtype in SIGNED:
            return key.sign(body)
        if mtype in MACED or mtype in SIGNED_MACED:
            sig = key.sign(body) if mtype in SIGNED_MACED else b""
            mk = self._macs.get((sender, by_member))
            if mk is None:
                mk = self._macs[sender, by_member] = crypto.mac_key(key, self.receiver)
            return sig + crypto.mac(mk, body + sig)
        return b""


def mutate_frame(
    rng: random.Random, frames: Sequence[bytes], pool: Sequence[bytes], signer: Signer
) -> bytes:
    """A real frame mutated; most often authenticated again by its (claimed) sender."""
    r = rng.random()
    if r < 0.04:
        return random_bytes(rng)
    frame = rng.choice(frames)
    n = auth_len(frame[1], len(signer.c.members))
    body, tag = (frame[:-n], frame[-n:]) if n and len(frame) > n else (frame, b"")
    if r < 0.10:  # a real frame as it was: a replay
        return frame
    if r < 0.20:  # a header field changed: type, sender, coalition, version
        hdr = bytearray(body[: wire.HEADER.size])
        which = rng.randrange(4)
        if which == 0:
            hdr[1] = rng.choice((*wire.MsgType, 0, 13, 255))
        elif which == 1:
            hdr[6:8] = struct.pack("!H", rng.choice((0, 1, 2, 3, 4, 5, 0xFFFF)))
        elif which == 2:
            hdr[2:6] = rng.randbytes(4)
        else:
            hdr[0] = rng.randrange(256)
        body = bytes(hdr) + body[wire.HEADER.size :]
    elif r < 0.30:  # a real header, a garbage body
        body = body[: wire.HEADER.size] + random_bytes(rng)
    else:
        body = mutate(rng, body, pool, wire.HEADER.size)
    if rng.random() < 0.75:
        auth = signer.auth(body)
        if auth is not None:
            return body + auth
    return body + (tag if rng.random() < 0.5 else rng.randbytes(n))


# --- targets --------------------------------------------------------------------------------


class Crashed(Exception):
    """A target broke its contract (raised what it may not, or left its bounds)."""


@dataclass
class Target:
    """One thing to fuzz. `fresh` makes its state for a batch; `one` draws an input from rng,
    runs it, and says whether it was rejected (a crash raises)."""

    name: str
    fresh: Callable[[Corpus], Any]
    one: Callable[[Any, random.Random], bool]
    cost: int = 1  # relative time per input (the benchmark shares inputs evenly, not time)


def _decoder(
    name: str, pull: Callable[[bytes], object], mtypes: Sequence[int], strip: bool = True
) -> Target:
    def fresh(corpus: Corpus) -> tuple[list[bytes], list[bytes]]:
        own = [f for t in mtypes for f in corpus.frames[t]] or corpus.frames[wire.MsgType.OPEN]
        everything = [f for fs in corpus.frames.values() for f in fs]
        n = len(corpus.star.c.members)  # as many as in corpus.tree
        return [body_of(f, n) if strip else f for f in own], everything

    def one(ctx: tuple[list[bytes], list[bytes]], rng: random.Random) -> bool:
        own, everything = ctx
        r = rng.random()
        if r < 0.1:
            data = random_bytes(rng)
        elif r < 0.2:
            data = mutate(rng, rng.choice(everything), everything)
        else:
            data = mutate(rng, rng.choice(own), everything, wire.HEADER.size)
        try:
            pull(data)
        except RemoteProtocolError:
            return True
        return False

    return Target(f"wire.{name}", fresh, one)


def _bitmap(corpus: Corpus) -> None:
    return None


def _bitmap_one(_: None, rng: random.Random) -> bool:
    nbits = rng.choice((0, 1, 7, 8, 9, 64, 1000, rng.randrange(-2, 2000)))
    if rng.random() < 0.02:
        nbits = rng.choice((65535, 65536))
    size = max(0, (nbits + 7) // 8) if rng.random() < 0.7 else rng.randrange(0, 40)
    data = rng.randbytes(size) if rng.random() < 0.8 else bytes(size)
    try:
        bits = wire.bitmap_decode(data, nbits)
    except RemoteProtocolError:
        return True
    if any(not 0 <= b < nbits for b in bits):
        raise Crashed(f"bit outside 0..{nbits - 1}")
    if nbits < 4096 and wire.bitmap_encode(bits, nbits) != data:
        raise Crashed("bitmap does not encode back to its bytes")
    return False


def _rating_inside(body: bytes) -> object:
    """What a member does with a relayed rating's bytes (ValueError: malformed inside)."""
    relay = tokens.pull_relay(body)
    try:
        if relay.kind is tokens.RatingKind.AGENCY:
            return tokens.pull_agency(relay.rating)
        return tokens.pull_rating(relay.rating)
    except ValueError as exc:
        raise wire.malformed(str(exc)) from None


WIRE_TARGETS = [
    _decoder("pull_header", wire.pull_header, list(wire.MsgType), strip=False),
    _decoder("pull_open", wire.pull_open, [wire.MsgType.OPEN]),
    _decoder("pull_part", wire.pull_part, [wire.MsgType.CONTRIB, wire.MsgType.OUTPUT_PART]),
    _decoder("pull_tree_part", wire.pull_tree_part, [wire.MsgType.TREE_PART]),
    _decoder("pull_flows", wire.pull_flows, [wire.MsgType.FLOWS]),
    _decoder("pull_output_head", wire.pull_output_head, [wire.MsgType.OUTPUT_HEAD]),
    _decoder("pull_abort", wire.pull_abort, [wire.MsgType.ABORT]),
    _decoder("pull_inbound", wire.pull_inbound, [wire.MsgType.INBOUND]),
    _decoder(
        "pull_inbound_frame",
        lambda f: wire.pull_inbound_frame(f, int.from_bytes(f[2:6], "big")),
        [wire.MsgType.INBOUND],
        strip=False,
    ),
    _decoder("peek_inbound_tag", wire.peek_inbound_tag, [wire.MsgType.INBOUND], strip=False),
    _decoder("pull_hello", wire.pull_hello, [wire.MsgType.HELLO]),
    _decoder("pull_heartbeat", wire.pull_heartbeat, [wire.MsgType.HEARTBEAT]),
    _decoder(
        "peek_heartbeat_version",
        wire.peek_heartbeat_version,
        [wire.MsgType.HEARTBEAT],
        strip=False,
    ),
    _decoder("pull_keys", wire.pull_keys, [wire.MsgType.KEYS]),
    _decoder("pull_refuse", wire.pull_refuse, [wire.MsgType.REFUSE]),
    _decoder("pull_attest", wire.pull_attest, [wire.MsgType.ATTEST]),
    _decoder("pull_blame", wire.pull_blame, [wire.MsgType.BLAME]),
    _decoder("pull_reveal", wire.pull_reveal, [wire.MsgType.REVEAL]),
    _decoder("pull_proof", wire.pull_proof, [wire.MsgType.PROOF]),
    _decoder("pull_verdict", wire.pull_verdict, [wire.MsgType.VERDICT]),
    _decoder("pull_coalition", wire.pull_coalition, [wire.MsgType.COALITION], strip=False),
    _decoder("pull_offer", pull_offer, [wire.MsgType.OFFER]),
    _decoder("pull_buy", tokens.pull_buy, [wire.MsgType.BUY]),
    _decoder("pull_issue", tokens.pull_issue, [wire.MsgType.ISSUE]),
    _decoder("pull_relay", tokens.pull_relay, [wire.MsgType.RATING]),
    _decoder("pull_rating", _rating_inside, [wire.MsgType.RATING]),
    _decoder(
        "pull_join",
        lambda f: wire.pull_join(wire.split_join(f)[0]),
        [wire.MsgType.JOIN],
        strip=False,
    ),
    Target("wire.bitmap_decode", _bitmap, _bitmap_one),
]


def _packets(corpus: Corpus) -> list[bytes]:
    return corpus.packets + corpus.fragments


def _a_packet(pool: list[bytes], rng: random.Random) -> bytes:
    return mutate_packet(rng, rng.choice(pool), pool) if rng.random() < 0.9 else rng.choice(pool)


def _parse_one(pool: list[bytes], rng: random.Random) -> bool:
    pkt = _a_packet(pool, rng)
    try:
        parse(pkt, partial=rng.random() < 0.2)
    except PacketError:
        return True
    return False


def _tcp_ok(buf: bytes | bytearray) -> bool:
    ihl = (buf[0] & 0x0F) * 4
    total = (buf[2] << 8) | buf[3]
    pseudo = bytes(buf[12:20]) + struct.pack("!BBH", 0, TCP, total - ihl)
    return checksum(pseudo + bytes(buf[ihl:total])) == 0


def _rewrite_one(pool: list[bytes], rng: random.Random) -> bool:
    """parse, then every rewrite a member or gateway makes of a packet parse accepted."""
    pkt = _a_packet(pool, rng)
    try:
        p = parse(pkt)
    except PacketError:
        return True
    addr, port = rng.randbytes(4), rng.randrange(65536)
    if p.icmp_error:
        restore_icmp_error(bytearray(pkt), p, addr, port)
        return False
    for rewrite in (set_source, set_destination):
        rewrite(bytearray(pkt), p, addr, port)
    fill_l4_checksum(bytearray(pkt), p)
    normalize_for_emission(bytearray(pkt), port)
    if p.flow.proto == TCP:
        buf = bytearray(pkt)
        was_ok = len(pkt) == (pkt[2] << 8 | pkt[3]) and _tcp_ok(pkt)
        if clamp_mss(buf, p.ihl, rng.choice((536, 1336, 1460))) and was_ok and not _tcp_ok(buf):
            raise Crashed("clamp_mss broke the TCP checksum")
    return False


def _clamp_one(pool: list[bytes], rng: random.Random) -> bool:
    """clamp_mss on anything, with any header length: never raises, never grows the packet."""
    pkt = _a_packet(pool, rng)
    buf = bytearray(pkt)
    ihl = (pkt[0] & 0x0F) * 4 if pkt and rng.random() < 0.8 else rng.randrange(0, 80)
    changed = clamp_mss(buf, ihl, rng.choice((0, 536, 1336, 0xFFFF)))
    if len(buf) != len(pkt):
        raise Crashed("clamp_mss changed the packet's length")
    return not changed


def _fragment_one(pool: list[bytes], rng: random.Random) -> bool:
    pkt = _a_packet(pool, rng)
    mtu = rng.choice((28, 68, 576, 1500, rng.randrange(28, 1600)))
    try:
        pieces = fragment(pkt, mtu)
    except PacketError:
        return True
    if any(len(p) > max(mtu, 20 + 8) for p in pieces):
        raise Crashed(f"a fragment longer than the MTU {mtu}")
    return False


def _icmp_error_one(pool: list[bytes], rng: random.Random) -> bool:
    pkt = _a_packet(pool, rng)
    try:
        icmp_error(pkt, rng.choice((4, 13)), rng.choice((0, 576, 1500)))
    except PacketError:
        return True
    return False


def _endpoint_messages(_corpus: Corpus) -> list[bytes]:
    anon = bytes((198, 18, 0, 193))
    return [
        endpoints.Register(6, anon, 443, 1_700_000_000_000).encode(),
        endpoints.Register(17, anon, 0, 1_700_000_000_000, bytes(64)).encode(),
        endpoints.Granted(6, anon, 8080).encode(),
        endpoints.Refused(endpoints.Refusal.STALE).encode(),
    ]


def _endpoint_one(pool: list[bytes], rng: random.Random) -> bool:
    """A service's REGISTER or the gateways' answer, mutated: decoded or refused (ValueError)."""
    data = mutate(rng, rng.choice(pool), pool) if rng.random() < 0.9 else random_bytes(rng)
    rejected = 0
    for pull in (endpoints.pull_register, endpoints.pull_answer):
        try:
            pull(data)
        except ValueError:
            rejected += 1
    return rejected == 2


PACKET_TARGETS = [
    Target("packet.parse", _packets, _parse_one),
    Target("packet.rewrite", _packets, _rewrite_one),
    Target("packet.clamp_mss", _packets, _clamp_one),
    Target("packet.fragment", _packets, _fragment_one),
    Target("packet.icmp_error", _packets, _icmp_error_one),
    Target("packet.endpoint_messages", _endpoint_messages, _endpoint_one),
]


@dataclass
class _DefragCtx:
    d: Defragmenter
    fragments: list[bytes]
    packets: list[bytes]
    now: float = 0.0


def _defrag_fresh(corpus: Corpus) -> _DefragCtx:
    d = Defragmenter(timeout=2.0, max_pending=16, max_bytes=64 * 1024, max_fragments=64)
    return _DefragCtx(d, corpus.fragments, corpus.packets)


def _a_fragment(fragments: list[bytes], rng: random.Random) -> bytes:
    """A real fragment, a mutated one, or one made up (few datagram ids, odd offsets)."""
    r = rng.random()
    base = rng.choice(fragments)
    if r < 0.4:
        return base
    if r < 0.6:
        return mutate_packet(rng, base, fragments)
    hdr = bytearray(base[:20])
    hdr[0] = 0x45
    if rng.random() < 0.5:
        hdr[4:6] = struct.pack("!H", rng.randrange(4))  # few datagram ids: collisions
    size = rng.choice((0, 8, 16, 24, 1480, rng.randrange(0, 1600)))
    off = rng.choice((0, 1, 8190, 8191, rng.randrange(8192)))
    more = rng.random() < 0.7
    hdr[6:8] = struct.pack("!H", off | (0x2000 if more else 0))
    if rng.random() < 0.2:  # IP options: a longer header
        words = rng.randrange(6, 16)
        hdr[0] = 0x40 | words
        hdr += bytes(words * 4 - 20)
    hdr[2:4] = struct.pack("!H", len(hdr) + size)
    return bytes(hdr) + rng.randbytes(size)


def _a_datagram(rng: random.Random) -> list[bytes]:
    """Every fragment of one datagram, up to and past 65,535 bytes, with IP options sometimes,
    in any order, some repeated or overlapping."""
    words = rng.choice((5, 5, 6, 15))
    size = rng.choice((100, 3000, 65515 - 40, 65515, rng.randrange(65516)))
    step = rng.choice((8, 512, 1480, 8 * rng.randrange(1, 186)))
    hdr = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s", 0x40 | words, 0, 0, rng.randrange(4), 0, 64, UDP, 0, SERVER, SERVER
        )
    ) + bytes(words * 4 - 20)
    pieces = []
    for off in range(0, size, step):
        chunk = rng.randbytes(min(step, size - off))
        h = bytearray(hdr if off == 0 else hdr[:20])
        h[0] = h[0] if off == 0 else 0x45
        h[2:4] = struct.pack("!H", len(h) + len(chunk))
        h[6:8] = struct.pack("!H", off // 8 | (0x2000 if off + step < size else 0))
        pieces.append(bytes(h) + chunk)
    if len(pieces) > 200:
        pieces = pieces[:100] + pieces[-100:]
    rng.shuffle(pieces)
    if pieces and rng.random() < 0.3:
        pieces.insert(rng.randrange(len(pieces)), rng.choice(pieces))
    if pieces and rng.random() < 0.2:
        p = bytearray(rng.choice(pieces))
        p[7] ^= 1  # the same piece, one offset unit further: an overlap
        pieces.insert(rng.randrange(len(pieces)), bytes(p))
    return pieces


def _defrag_one(ctx: _DefragCtx, rng: random.Random) -> bool:
    ctx.now += rng.choice((0.0, 0.001, 0.01, 0.5, 3.0))
    pkts = _a_datagram(rng) if rng.random() < 0.05 else [_a_fragment(ctx.fragments, rng)]
    before = ctx.d.dropped
    for pkt in pkts:
        _defrag_add(ctx, pkt)
    if rng.random() < 0.05:
        ctx.d.expire(ctx.now)
    return ctx.d.dropped > before


def _defrag_add(ctx: _DefragCtx, pkt: bytes) -> None:
    out = ctx.d.add(pkt, ctx.now)
    d = ctx.d
    if len(d) > d.max_pending or d.bytes_pending > d.max_bytes or d.bytes_pending < 0:
        raise Crashed(f"{len(d)} datagrams, {d.bytes_pending} bytes pending")
    if out is not None:
        if len(out) > MAX_DATAGRAM or (out[2] << 8 | out[3]) != len(out):
            raise Crashed(f"a datagram of {len(out)} bytes")
        if out[6] & 0x3F or out[7]:
            raise Crashed("a reassembled datagram that is still a fragment")


@dataclass
class _CellCtx:
    r: Reassembler
    cells: list[Cell]
    now: float = 0.0


def _cells_fresh(corpus: Corpus) -> _CellCtx:
    r = Reassembler(timeout=2.0, max_pending=32, max_per_tag=4, max_bytes=32 * 1024)
    return _CellCtx(r, corpus.cells)


def _reassembler_one(ctx: _CellCtx, rng: random.Random) -> bool:
    ctx.now += rng.choice((0.0, 0.001, 0.1, 3.0))
    base = rng.choice(ctx.cells)
    count = rng.choice((1, 2, 3, 255, base.count, rng.randrange(0, 300)))
    cell = Cell(
        rng.choice((base.tag, rng.randrange(4))),
        rng.randrange(3),
        rng.choice((0, 1, count - 1, count, rng.randrange(0, 300))),
        count,
        rng.choice((base.data, base.data[: rng.randrange(len(base.data) + 1)], b"x" * 1400)),
    )
    r = ctx.r
    before = sum(r.drops.values())
    r.add_cell(cell, ctx.now)
    if len(r) > r.max_pending or r.bytes_pending > r.max_bytes or r.bytes_pending < 0:
        raise Crashed(f"{len(r)} packets, {r.bytes_pending} bytes pending")
    if rng.random() < 0.05:
        r.expire(ctx.now)
    return sum(r.drops.values()) > before


def _slots_fresh(corpus: Corpus) -> list[bytes]:
    return corpus.slots


def _slot_one(slots: list[bytes], rng: random.Random) -> bool:
    slot = rng.choice(slots)
    r = rng.random()
    if r < 0.3:
        slot = mutate(rng, slot, slots)
    elif r < 0.6:  # a consistent check over a body that lies
        rest = bytearray(mutate(rng, slot[8:], slots, 0))
        slot = hashlib.blake2b(bytes(rest), digest_size=8).digest() + bytes(rest)
    elif r < 0.7:
        slot = random_bytes(rng)
    state, cell = decode_slot(slot)
    if state is SlotState.CELL:
        if cell is None or not 0 <= cell.index < cell.count or len(cell.data) > len(slot):
            raise Crashed(f"an impossible cell {cell}")
        return False
    return True


def _arp_fresh(corpus: Corpus) -> list[bytes]:
    return corpus.star.arp or [bytes(28)]


def _arp_one(pool: list[bytes], rng: random.Random) -> bool:
    payload = mutate(rng, rng.choice(pool), pool) if rng.random() < 0.9 else random_bytes(rng)
    return arp.pull_arp(payload) is None


def _versions_fresh(corpus: Corpus) -> tuple[Any, list[bytes]]:
    """A versioned coalition's book and join requests, and COALITION and JOIN frames to
    mutate: its next versions, signed and not, and requests, new and rotations."""
    c = corpus.versioned
    return (c, VersionBook(c), PendingJoins()), corpus.frames[
        wire.MsgType.COALITION
    ] + corpus.frames[wire.MsgType.JOIN]


def _versions_one(ctx: tuple[Any, list[bytes]], rng: random.Random) -> bool:
    (c, book, joins), pool = ctx
    frame = (
        mutate(rng, rng.choice(pool), pool, wire.HEADER.size)
        if rng.random() < 0.8
        else rng.choice(pool)
    )
    try:
        if len(frame) > 1 and frame[1] == wire.MsgType.JOIN:
            joins.receive(c, frame, 0.0, 1_800_000_000_000)
        else:
            considered = book.receive(frame, rng.random() * 100)
            if considered is not None and considered.coalition is not None:
                book.current = c  # back to version 1: the next input may apply again
    except RemoteProtocolError:
        return True
    return False


OTHER_TARGETS = [
    Target("versions.receive", _versions_fresh, _versions_one, cost=20),
    Target("defrag", _defrag_fresh, _defrag_one),
    Target("cell.reassembler", _cells_fresh, _reassembler_one),
    Target("cell.decode_slot", _slots_fresh, _slot_one),
    Target("arp.pull_arp", _arp_fresh, _arp_one),
]


# --- engines --------------------------------------------------------------------------------


@dataclass
class Clock:
    """What makes a made-up frame current: the time, rounds and sequence numbers."""

    now: float  # the engines' clock
    offset: float  # wall clock - engines' clock
    seq: int = 0  # of the last frame we made up
    round: int = 0  # the round under way: the last one opened, by an engine or by us

    def wall_us(self) -> int:
        return wall_us(self.now, self.offset)

    def next_seq(self) -> int:
        """Like a gateway's: wall-clock microseconds, strictly increasing."""
        self.seq = max(self.seq + 1, self.wall_us())
        return self.seq

    def next_round(self) -> int:
        """Like a leader's: from the wall clock in microseconds, strictly increasing."""
        self.round = max(self.round + 1, self.wall_us())
        return self.round

    def some_round(self, rng: random.Random) -> int:
        return self.round if self.round and rng.random() < 0.6 else self.next_round()


PULL: dict[int, Callable[[bytes], Any]] = {
    wire.MsgType.OPEN: wire.pull_open,
    wire.MsgType.CONTRIB: wire.pull_part,
    wire.MsgType.OUTPUT_HEAD: wire.pull_output_head,
    wire.MsgType.OUTPUT_PART: wire.pull_part,
    wire.MsgType.ABORT: wire.pull_abort,
    wire.MsgType.INBOUND: wire.pull_inbound,
    wire.MsgType.HELLO: wire.pull_hello,
    wire.MsgType.HEARTBEAT: wire.pull_heartbeat,
    wire.MsgType.KEYS: wire.pull_keys,
    wire.MsgType.REFUSE: wire.pull_refuse,
    wire.MsgType.TREE_PART: wire.pull_tree_part,
    wire.MsgType.FLOWS: wire.pull_flows,
    wire.MsgType.ATTEST: wire.pull_attest,
    wire.MsgType.BLAME: wire.pull_blame,
    wire.MsgType.REVEAL: wire.pull_reveal,
    wire.MsgType.PROOF: wire.pull_proof,
    wire.MsgType.VERDICT: wire.pull_verdict,
    wire.MsgType.OFFER: pull_offer,
    wire.MsgType.BUY: tokens.pull_buy,
    wire.MsgType.ISSUE: tokens.pull_issue,
    wire.MsgType.RATING: tokens.pull_relay,
}


def _odd_value(rng: random.Random, v: int) -> int:
    return rng.choice(
        (0, 1, v - 1, v + 1, 2 * v, 255, 0xFFFF, 2**32 - 2, 2**32 - 1, 2**63 - 1, 2**64 - 1)
    )


def structured_frame(
    rng: random.Random, frame: bytes, signer: Signer, clock: Clock, odd: int | None = None
) -> bytes | None:
    """A real frame decoded, made current (round, clock, sequence number), one or two of its
    fields set to odd values (counts, epochs, indices, members of its sets), encoded again and
    authenticated by its sender: what a malicious member or gateway can send, past every
    freshness and authenticity check. None if the frame does not decode or the values chosen
    do not fit their fields. `odd`: how many fields to change (0: just make it current)."""
    if len(frame) < wire.HEADER.size or frame[1] not in PULL:
        return None
    mtype, (coalition, sender) = frame[1], struct.unpack_from("!IH", frame, 2)
    try:
        obj = PULL[mtype](body_of(frame, len(signer.c.members)))
    except RemoteProtocolError:
        return None
    names = {f.name for f in dataclasses.fields(obj)}
    fresh: dict[str, int] = {}
    if "round" in names:
        fresh["round"] = clock.some_round(rng)
    for name in ("leader_ms", "wall_ms"):
        if name in names:
            fresh[name] = clock.wall_us() // 1000
    if "seq" in names:
        fresh["seq"] = clock.next_seq()
    obj = dataclasses.replace(obj, **fresh)
    for _ in range(rng.choice((0, 1, 1, 2)) if odd is None else odd):
        fields_ = [f.name for f in dataclasses.fields(obj)]
        name = rng.choice(fields_)
        value = getattr(obj, name)
        if type(value) is int:
            obj = dataclasses.replace(obj, **{name: _odd_value(rng, value)})
        elif isinstance(value, frozenset):  # a member, gateway or address more or less
            extra = rng.choice((0, 1, len(value), rng.randrange(300), rng.randrange(70000)))
            changes: dict[str, Any] = {name: value ^ {extra}}
            width = "naddresses" if name == "held" else "nmembers"
            if width in names and rng.random() < 0.5:  # a bitmap wide enough to say so
                changes[width] = max(getattr(obj, width), extra + 1)
            obj = dataclasses.replace(obj, **changes)
        elif name == "keys" and value:  # KEYS: one epoch odd
            i = rng.randrange(len(value))
            epoch, key = value[i]
            keys = (*value[:i], (_odd_value(rng, epoch), key), *value[i + 1 :])
            obj = dataclasses.replace(obj, keys=keys)
    try:
        if isinstance(obj, wire.Part):
            body = obj.encode(wire.MsgType(mtype), coalition, sender)
        else:
            body = obj.encode(coalition, sender)
    except (struct.error, ValueError, OverflowError):
        return None  # a value its field cannot carry
    return body + (signer.auth(body) or b"")


@dataclass
class EngineCtx:
    engine: Engine
    world: World
    corpus: Corpus
    signer: Signer
    frames: list[bytes]  # what this engine could receive
    sources: list[bytes]  # Ethernet addresses of the hosts of its coalition
    clock: Clock
    opened: wire.Open | None = None  # the round under way: the engine's OPEN, or ours
    unanswered: bool = False  # the engine opened a round nobody answered yet

    @property
    def now(self) -> float:
        return self.clock.now

    @now.setter
    def now(self, value: float) -> None:
        self.clock.now = value


def _engine_fresh(snapshot: str) -> Callable[[Corpus], EngineCtx]:
    def fresh(corpus: Corpus) -> EngineCtx:
        label, name = snapshot.split("/")
        world = corpus.star if label == "star" else corpus.tree
        engine = copy.deepcopy(corpus.snapshots[snapshot])
        receiver = world.keys[name].public
        frames = [f for _s, d, f in world.frames if d in (wire.BROADCAST, world.macs[name])] or [
            f for _s, _d, f in world.frames
        ]
        if label == "star":
            frames += corpus.frames[wire.MsgType.FLOWS]
        return EngineCtx(
            engine,
            world,
            corpus,
            Signer(world.c, world.keys, receiver),
            frames[-2000:],
            list(world.macs.values()),
            Clock(world.now, world.offset),
        )

    return fresh


def check_sent(frame: bytes, nmembers: int) -> None:
    """What an engine sends, its peers' decoders take (else whatever made it send that, from
    the network, stops the lanon as surely as a crash)."""
    try:
        wire.pull_header(frame)
        PULL[frame[1]](body_of(frame, nmembers))
    except RemoteProtocolError as exc:
        raise Crashed(
            f"an engine sent a {wire.MsgType(frame[1]).name} frame refused: {exc}"
        ) from exc


def _settle(ctx: EngineCtx, rng: random.Random) -> bool:
    """Let the engine's own timers run, as its daemon would; was anything rejected?"""
    e = ctx.engine
    t = e.get_timer()
    if t is not None and t <= ctx.now:
        e.handle_timer(ctx.now)
    for cmd in e.pop_commands():
        n = len(ctx.world.c.members)
        if isinstance(cmd, SendFrame):
            check_sent(cmd.frame, n)
        if isinstance(cmd, SendFrame) and cmd.frame[1] == wire.MsgType.OPEN:
            ctx.opened = wire.pull_open(body_of(cmd.frame, n))  # it leads: answer it
            ctx.clock.round = max(ctx.clock.round, ctx.opened.round)
            ctx.unanswered = True
    rejected = False
    for ev in e.pop_events():
        if isinstance(ev, FrameRejected):
            if not isinstance(ev.reason, RejectReason):
                raise Crashed(f"a rejection without a reason: {ev}")
            rejected = True
        elif isinstance(ev, PacketDropped):
            rejected = True
    return rejected


def _tick(ctx: EngineCtx, rng: random.Random) -> None:
    ctx.now += rng.choice((0.0, 0.0001, 0.001, 0.001, 0.01, 0.05))


def _src(ctx: EngineCtx, frame: bytes, rng: random.Random) -> bytes:
    """Mostly the Ethernet address of the frame's claimed sender, as a spoofer would use."""
    if rng.random() < 0.1:
        return rng.randbytes(6)
    if len(frame) >= wire.HEADER.size:
        sender = struct.unpack_from("!H", frame, 6)[0]
        peers = ctx.world.c.members if frame[1] in BY_MEMBERS else ctx.world.c.gateways
        if sender < len(peers):
            return ctx.world.macs[peers[sender].name]
    return rng.choice(ctx.sources)


def _inbound_frames(ctx: EngineCtx, rng: random.Random) -> list[bytes]:
    """INBOUND frames, sealed as a gateway would under the key of a flow of the member under
    test, carrying a mutated packet (in one part or several, sometimes with parts that
    disagree)."""
    e = ctx.engine
    mine = []
    for f in ctx.corpus.frames[wire.MsgType.INBOUND]:
        try:
            tag = wire.peek_inbound_tag(f)
        except RemoteProtocolError:
            continue
        if isinstance(e, MemberEngine) and e.flows.by_tag(tag) is not None:
            mine.append(f)
    base = rng.choice(mine or ctx.corpus.frames[wire.MsgType.INBOUND])
    inbound = wire.pull_inbound(base)
    sender = struct.unpack_from("!H", base, 6)[0]
    flow = e.flows.by_tag(inbound.tag) if isinstance(e, MemberEngine) else None
    key = flow.secret if flow is not None else rng.randbytes(32)
    cipher = ctx.world.c.coalition.inbound_cipher
    real = flowkey.open_part(
        key, sender, inbound.seq, base[: wire.INBOUND_HEAD], inbound.payload, cipher
    ) or rng.choice(ctx.corpus.packets)
    packet = mutate_packet(rng, rng.choice(ctx.corpus.packets), ctx.corpus.packets)
    if rng.random() < 0.5:  # keep the addresses, so it reaches restore and clamp_mss
        packet = real[:20] + packet[20:] if len(real) >= 20 and len(packet) >= 20 else packet
        if rng.random() < 0.5 and len(packet) >= 4:
            packet = packet[:2] + struct.pack("!H", min(len(packet), 0xFFFF)) + packet[4:]
    chunks = wire.split_vector(packet, rng.choice((40, 200, 1400)))
    out = []
    for i, chunk in enumerate(chunks):
        count = len(chunks) if rng.random() < 0.9 else rng.randrange(1, 5)
        index = i if i < count else count - 1
        seq = ctx.clock.next_seq()
        head = wire.Inbound(seq, inbound.tag, index, count, b"").encode(ctx.world.c.id, sender)
        out.append(head + flowkey.seal_part(key, sender, seq, head, chunk, cipher))
    return out


def _sealed_packet(ctx: EngineCtx, rng: random.Random, cell: Cell) -> tuple[int, bytes]:
    """(tag, sealed packet) for a round's cells: a mutated packet sealed as a member would,
    under a flow key the gateway under test knows or a new one with its wrap; else junk."""
    e = ctx.engine
    plain = mutate_packet(rng, rng.choice(ctx.corpus.packets), ctx.corpus.packets)
    r = rng.random()
    known = e.flows.by_tag.get(cell.tag) if isinstance(e, GatewayEngine) else None
    if known is not None and r < 0.6:
        return cell.tag, flowkey.seal_packet(known.key, cell.tag, ctx.clock.next_seq(), plain)
    if r < 0.8:
        key = flowkey.new_flow_key(rng)
        tag = flowkey.flow_tag(key)
        wrapper = flowkey.KeyWrapper([g.public for g in ctx.world.c.gateways])
        wrap = wrapper.wrap(key if rng.random() < 0.9 else rng.randbytes(32), rng)
        return tag, flowkey.seal_packet(key, tag, ctx.clock.next_seq(), plain, wrap)
    return cell.tag, mutate_packet(rng, cell.data, ctx.corpus.packets)


def _round_frames(ctx: EngineCtx, rng: random.Random) -> list[bytes]:
    """A whole round output, signed by gateway #0, whose cells carry mutated packets (in one
    cell or several, some garbled): what any member can put into a round."""
    c = ctx.world.c
    opens = [f for f in ctx.frames if f[1] == wire.MsgType.OPEN][-10:]
    if not opens:
        return []
    rnd = ctx.clock.next_round()
    o = dataclasses.replace(wire.pull_open(body_of(rng.choice(opens), len(c.members))), round=rnd)
    cs = c.coalition.cell_size
    nslots = o.nslots if rng.random() < 0.5 else rng.randrange(1, c.rounds.max_slots + 1)
    slots: list[bytes] = []
    while len(slots) < nslots:
        r = rng.random()
        if r < 0.1:
            slots.append(bytes(cs))
            continue
        if r < 0.2:
            slots.append(rng.randbytes(cs))
            continue
        cell = rng.choice(ctx.corpus.cells)
        tag, packet = _sealed_packet(ctx, rng, cell) if r < 0.9 else (cell.tag, cell.data)
        capacity = cs - CELL_HEADER_LEN
        chunks = wire.split_vector(packet, rng.choice((capacity, capacity, 64)))[:255]
        pid = rng.randrange(4)
        for i, chunk in enumerate(chunks):
            count = len(chunks) if rng.random() < 0.9 else rng.randrange(1, 256)
            slots.append(encode_cell(cs, tag, pid, min(i, count - 1), count, chunk))
    slots = slots[:nslots]
    nentries = o.nentries
    vector = (
        rng.randbytes(nentries * ENTRY_LEN) if rng.random() < 0.3 else bytes(nentries * ENTRY_LEN)
    )
    vector += b"".join(slots)
    o = dataclasses.replace(o, nslots=nslots, leader_ms=int((ctx.now + ctx.world.offset) * 1000))
    if isinstance(ctx.engine, MemberEngine):  # a leader answers its own rounds only
        ctx.opened = o
    parts = wire.split_vector(vector, c.part_size)
    digests = tuple(crypto.digest16(p) for p in parts)
    head = wire.OutputHead(rnd, o.leader_ms, nentries, nslots, digests)
    out = []
    for body in (o.encode(c.id, 0), head.encode(c.id, 0)):
        out.append(body + (ctx.signer.auth(body) or b""))
    for i, payload in enumerate(parts):
        out.append(wire.Part(rnd, i, len(parts), payload).encode(wire.MsgType.OUTPUT_PART, c.id, 0))
    return out


AIMED = (wire.MsgType.CONTRIB, wire.MsgType.TREE_PART, wire.MsgType.REFUSE, wire.MsgType.ABORT)


def _aimed_frame(ctx: EngineCtx, rng: random.Random) -> list[bytes]:
    """A real CONTRIB, TREE_PART, REFUSE or ABORT moved to the round under way (the last one
    the engine opened, or we opened for it), maybe mutated, authenticated by its sender."""
    pool = [f for f in ctx.frames if f[1] in AIMED]
    if not pool or not ctx.clock.round:
        return []
    frame = rng.choice(pool)
    body = bytearray(body_of(frame, len(ctx.world.c.members)))
    if len(body) < 16:
        return []
    body[8:16] = ctx.clock.round.to_bytes(8, "big")
    if rng.random() < 0.5:
        body = bytearray(mutate(rng, bytes(body), ctx.frames, 16))
    return [bytes(body) + (ctx.signer.auth(bytes(body)) or b"")]


def _answers(ctx: EngineCtx, rng: random.Random) -> list[bytes]:
    """What the engine waits for in the round under way, from the members it waits for: star
    CONTRIBs from the roster (to a leader), the root's TREE_PARTs (to a tree leader), its
    children's TREE_PARTs (to a tree member); sometimes one of them with odd fields."""
    o, c = ctx.opened, ctx.world.c
    if o is None:
        return []
    vector_len = o.nentries * ENTRY_LEN + o.nslots * c.coalition.cell_size
    parts = wire.split_vector(bytes(vector_len), c.part_size)
    tree = c.rounds.schedule is Schedule.TREE
    e = ctx.engine
    if isinstance(e, MemberEngine):
        me = e.me.index
        if not tree or me not in o.roster:
            return []
        senders = list(place(o.roster, o.round, me, c.rounds.tree_fanout).children)
    elif tree:
        senders = [root(o.roster, o.round)]
    else:
        senders = sorted(o.roster)
    bodies = []
    for sender in senders:
        for i, part in enumerate(parts):
            payload = rng.randbytes(len(part))
            if tree:
                who = o.roster if isinstance(e, GatewayEngine) else frozenset({sender})
                tp = wire.TreePart(o.round, i, len(parts), who, len(c.members), payload)
                bodies.append(tp.encode(c.id, sender))
            else:
                cp = wire.Part(o.round, i, len(parts), payload)
                bodies.append(cp.encode(wire.MsgType.CONTRIB, c.id, sender))
    out = [b + (ctx.signer.auth(b) or b"") for b in bodies]
    if out and rng.random() < 0.3:  # one odd frame, instead of one of them or besides
        i = rng.randrange(len(out))
        made = structured_frame(rng, out[i], ctx.signer, ctx.clock, odd=rng.choice((1, 1, 2)))
        if made is not None:
            out.insert(i, made)
            if rng.random() < 0.3:
                del out[i + 1]
    return out


def _hellos(ctx: EngineCtx, rng: random.Random) -> list[bytes]:
    """Every member's HELLO again, current: members come back after a disruption."""
    out = []
    for f in ctx.frames:
        if f[1] == wire.MsgType.HELLO:
            made = structured_frame(rng, f, ctx.signer, ctx.clock, odd=0)
            if made is not None:
                out.append(made)
    return out[-8:]


def _receive_frame_one(ctx: EngineCtx, rng: random.Random) -> bool:
    r = rng.random()
    if r < 0.08 and isinstance(ctx.engine, MemberEngine):
        frames = _inbound_frames(ctx, rng)
    elif r < 0.14:
        frames = _round_frames(ctx, rng)
        if rng.random() < 0.5:
            frames += _answers(ctx, rng)
    elif r < 0.20:
        frames = _answers(ctx, rng)
    elif r < 0.22 and isinstance(ctx.engine, GatewayEngine):
        frames = _hellos(ctx, rng)
    elif r < 0.30:
        frames = _aimed_frame(ctx, rng)
    elif r < 0.50:
        made = structured_frame(rng, rng.choice(ctx.frames), ctx.signer, ctx.clock)
        frames = [made] if made is not None else []
    else:
        frames = [mutate_frame(rng, ctx.frames, ctx.frames, ctx.signer)]
    rejected = False
    _tick(ctx, rng)
    for frame in frames:
        ctx.engine.receive_frame(_src(ctx, frame, rng), frame, ctx.now)
        rejected = _settle(ctx, rng) or rejected
    if not frames:
        _settle(ctx, rng)
    if ctx.unanswered and rng.random() < 0.8:  # the members answer the leader, mostly
        ctx.unanswered = False
        for frame in _answers(ctx, rng):
            ctx.engine.receive_frame(_src(ctx, frame, rng), frame, ctx.now)
            _settle(ctx, rng)
    return rejected


def _submit_one(ctx: EngineCtx, rng: random.Random) -> bool:
    e = ctx.engine
    assert isinstance(e, MemberEngine)
    pool = ctx.corpus.packets
    _tick(ctx, rng)
    e.submit_packet(_a_packet(pool, rng), ctx.now)
    return _settle(ctx, rng)


def _timer_one(ctx: EngineCtx, rng: random.Random) -> bool:
    e = ctx.engine
    ctx.now += rng.choice((0.0, 0.001, 0.1, 0.5, 1.0, 5.0, 60.0, 3600.0))
    e.handle_timer(ctx.now)
    if rng.random() < 0.3:  # and frames go on arriving
        frame = rng.choice(ctx.frames)
        e.receive_frame(_src(ctx, frame, rng), frame, ctx.now)
    return _settle(ctx, rng)


def _receive_packet_one(ctx: EngineCtx, rng: random.Random) -> bool:
    e = ctx.engine
    assert isinstance(e, GatewayEngine)
    share = {a.packed for a in ctx.world.c.gateways[0].addresses}
    pool = [p for p in ctx.corpus.packets + ctx.corpus.fragments if p[16:20] in share]
    pool = pool or ctx.corpus.packets
    _tick(ctx, rng)
    if rng.random() < 0.4:  # a fragment: real, or a made-up one for an address we hold
        pkt = bytearray(_a_fragment(ctx.corpus.fragments, rng))
        if len(pkt) >= 20 and rng.random() < 0.8:
            pkt[16:20] = rng.choice(sorted(share))
        packet = bytes(pkt)
    else:
        packet = _a_packet(pool, rng)
    e.receive_packet(packet, ctx.now, checksum_ready=rng.random() < 0.8)
    return _settle(ctx, rng)


def _receive_arp_one(ctx: EngineCtx, rng: random.Random) -> bool:
    e = ctx.engine
    assert isinstance(e, GatewayEngine)
    pool = ctx.world.arp or [bytes(28)]
    payload = mutate(rng, rng.choice(pool), pool) if rng.random() < 0.9 else random_bytes(rng)
    if len(payload) >= 28 and rng.random() < 0.5:  # a request, for one of our addresses
        held = ctx.world.c.gateways[0].addresses
        payload = payload[:6] + b"\x00\x01" + payload[8:24] + rng.choice(held).packed + payload[28:]
    _tick(ctx, rng)
    e.receive_arp(rng.randbytes(6), payload, ctx.now)
    return _settle(ctx, rng)


ENGINE_TARGETS = [
    Target("member.receive_frame", _engine_fresh("star/member1"), _receive_frame_one, 20),
    Target("member.receive_frame[tree]", _engine_fresh("tree/member1"), _receive_frame_one, 20),
    Target("member.submit_packet", _engine_fresh("star/member1"), _submit_one, 10),
    Target("member.handle_timer", _engine_fresh("star/member2"), _timer_one, 10),
    Target("gateway.receive_frame", _engine_fresh("star/gateway1"), _receive_frame_one, 20),
    Target(
        "gateway.receive_frame[standby]", _engine_fresh("star/gateway2"), _receive_frame_one, 20
    ),
    Target("gateway.receive_frame[tree]", _engine_fresh("tree/gateway1"), _receive_frame_one, 20),
    Target("gateway.receive_packet", _engine_fresh("star/gateway1"), _receive_packet_one, 10),
    Target("gateway.receive_arp", _engine_fresh("star/gateway1"), _receive_arp_one, 5),
    Target("gateway.handle_timer", _engine_fresh("star/gateway1"), _timer_one, 10),
]


@dataclass
class LanCtx:
    world: World
    corpus: Corpus
    frames: list[bytes]
    signers: dict[bytes, Signer]
    clock: Clock


def _lan_fresh(label: str) -> Callable[[Corpus], LanCtx]:
    def fresh(corpus: Corpus) -> LanCtx:
        w = corpus.lans[label].snapshot()
        real = corpus.star if label == "star" else corpus.tree
        signers = {mac: Signer(w.c, w.keys, w.keys[w.name(mac)].public) for mac in w.engines}
        frames = [f for _s, _d, f in real.frames][-2000:]
        return LanCtx(w, corpus, frames, signers, Clock(w.now, w.offset))

    return fresh


def _lan_one(ctx: LanCtx, rng: random.Random) -> bool:
    """One hostile input somewhere in a running coalition, then the coalition runs on: what a
    frame, a packet or a timer leaves behind must not break anything later either."""
    w = ctx.world
    before = w.rejections()
    r = rng.random()
    members = [m.name for m in w.c.members]
    if r < 0.05:
        w.submit(rng.choice(members), _a_packet(ctx.corpus.packets, rng))
    elif r < 0.10:
        g = w.engine(rng.choice(w.c.gateways).name)
        assert isinstance(g, GatewayEngine)
        g.receive_packet(_a_packet(ctx.corpus.packets, rng), w.now)
    else:
        mac = rng.choice(list(w.engines))
        ctx.clock.now, ctx.clock.round = w.now, max(ctx.clock.round, w.round)
        made = None
        if rng.random() < 0.3:
            made = structured_frame(rng, rng.choice(ctx.frames), ctx.signers[mac], ctx.clock)
        if made is not None:
            frame = made
        elif rng.random() < 0.3 and w.round:  # aimed at the round under way
            pool = [f for f in ctx.frames if f[1] in AIMED]
            body = bytearray(body_of(rng.choice(pool), len(w.c.members)))
            body[8:16] = w.round.to_bytes(8, "big")
            body = bytearray(mutate(rng, bytes(body), ctx.frames, 16))
            frame = bytes(body) + (ctx.signers[mac].auth(bytes(body)) or b"")
        else:
            frame = mutate_frame(rng, ctx.frames, ctx.frames, ctx.signers[mac])
        src = rng.choice(list(w.engines)) if rng.random() < 0.9 else rng.randbytes(6)
        w.engines[mac].receive_frame(src, frame, w.now)
    w._collect()
    w.advance()
    return w.rejections() > before


LAN_TARGETS = [
    Target("lan.star", _lan_fresh("star"), _lan_one, 50),
    Target("lan.tree", _lan_fresh("tree"), _lan_one, 50),
]

TARGETS = WIRE_TARGETS + PACKET_TARGETS + OTHER_TARGETS + ENGINE_TARGETS + LAN_TARGETS
BY_NAME = {t.name: t for t in TARGETS}


# --- running --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crash:
    target: str
    seed: int  # the batch's seed
    index: int  # the input's index in the batch
    error: str  # exception type and message
    where: str  # file:line where it was raised

    def reproducer(self) -> str:
        return f"python -m lanon.lab.fuzz {self.target!r} {self.seed} {self.index}"


@dataclass
class Result:
    target: str
    inputs: int = 0
    rejected: int = 0
    seconds: float = 0.0
    crashes: list[Crash] = field(default_factory=list)  # the first of each kind
    crash_count: int = 0


def batch_seed(seed: int, target: str, batch: int) -> int:
    h = hashlib.blake2b(f"{seed}/{target}/{batch}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def _where(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return "?"
    last = tb[-1]
    return f"{Path(last.filename).name}:{last.lineno} ({last.name})"


def run_target(target: Target, corpus: Corpus, n: int, seed: int = 0, batch: int = BATCH) -> Result:
    """Run n inputs through a target; crashes are recorded, not raised."""
    result = Result(target.name)
    kinds: set[tuple[str, str]] = set()
    b = 0
    start = time.perf_counter()
    while result.inputs < n:
        bseed = batch_seed(seed, target.name, b)
        b += 1
        with deterministic_ephemeral_keys(bseed):
            rng = random.Random(bseed)
            ctx = target.fresh(corpus)
            for i in range(min(batch, n - result.inputs)):
                result.inputs += 1
                try:
                    result.rejected += target.one(ctx, rng)
                except Exception as exc:
                    result.crash_count += 1
                    kind = (type(exc).__name__, _where(exc))
                    if kind not in kinds:
                        kinds.add(kind)
                        result.crashes.append(
                            Crash(target.name, bseed, i, f"{type(exc).__name__}: {exc}", kind[1])
                        )
                    break  # the state may be broken: start a new batch
    result.seconds = time.perf_counter() - start
    return result


def replay(target_name: str, seed: int, index: int, corpus: Corpus | None = None) -> None:
    """Run a batch up to input `index` and let that input's exception through."""
    target = BY_NAME[target_name]
    corpus = corpus or Corpus.build()
    with deterministic_ephemeral_keys(seed):
        rng = random.Random(seed)
        ctx = target.fresh(corpus)
        for _ in range(index):
            target.one(ctx, rng)
        target.one(ctx, rng)
    print(f"{target_name} {seed} {index}: no crash")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m lanon.lab.fuzz TARGET SEED INDEX  (replays one crash)")
        print("targets: " + ", ".join(BY_NAME))
        return 2
    replay(argv[0], int(argv[1]), int(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
