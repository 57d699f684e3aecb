"""lanon's benchmark: figures, no pass or fail.  ./run bench [--lab]

1. per packet: the functions every packet passes through
2. per round: one member's and the leader's work, as the coalition grows
3. a whole coalition in memory (one core, no network): rounds and cells per second
4. star or tree: round time on a switched LAN (simulated network, 1 Gbit/s ports)
4. scale: rounds, RTT and goodput against members, star and tree, full and regular key graphs
5. --lab (root): real labs beside the plain path: added RTT, downloads, idle CPU; a PNG plot

./run bench --soak SECONDS (root) runs only the soak: a lab of 8 members with mixed traffic,
memory, open files, flows and queues sampled into a table (flat columns are the point).
./run bench --fuzz [N] runs only the fuzzer (lanon/lab/fuzz.py): N inputs in all (default
1,000,000), shared among every decoder and engine entry point; per target, the inputs, how many
were rejected, the time, and every kind of crash with the command that replays it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.replay import Recording
from lanon.common import flowkey, wire
from lanon.common.cell import encode_cell
from lanon.common.crypto import apply_pads, digest16
from lanon.common.events import CellDelivered, OutputSeen, RoundCompleted
from lanon.common.flowkey import (
    InboundCipher,
    InboundOpener,
    KeyWrapper,
    flow_tag,
    new_flow_key,
    seal_packet,
    seal_part,
    seal_parts,
)
from lanon.common.output import RoundOutput
from lanon.common.packet import checksum, parse, set_source
from lanon.common.reservation import ENTRY_LEN, MIN_ENTRIES
from lanon.gateway.engine import GatewayEngine
from lanon.lab.memring import MemoryRing
from lanon.lab.packets import echo_internet, ping, tcp, udp
from lanon.lab.sim import WALL, Lan, make_coalition
from lanon.member import drain
from lanon.member.drain import InboundDrain
from lanon.member.engine import MemberEngine


def per_call(fn: Callable[[], object], seconds: float = 0.3) -> float:
    """Microseconds per call of fn, over about `seconds`."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            fn()
        n += 50
    return (time.perf_counter() - start) / n * 1e6


def row(label: str, value: str) -> None:
    print(f"  {label:<58} {value}")


def per_packet() -> None:
    print("1. per packet (microseconds)")
    data = os.urandom(1400)
    row("internet checksum, 1400 bytes", f"{per_call(lambda: checksum(data)):8.1f} µs")
    pkt = tcp(flags="PA", payload=os.urandom(1336))
    p = parse(pkt)

    def rewrite() -> None:
        buf = bytearray(pkt)
        set_source(buf, parse(buf), b"\xc6\x12\x00\xc1", 40000)

    row("parse + rewrite source (RFC 1624 checksums), TCP 1376 B", f"{per_call(rewrite):8.1f} µs")
    del p
    c, keys = make_coalition(3, 1)
    eng = MemberEngine(
        c,
        "member1",
        keys["member1"],
        now=0.0,
        wall_offset=WALL,
        rng=random.Random(1),
        max_queue=1 << 30,
    )

    def submit() -> None:
        eng.submit_packet(pkt, 0.0)
        if len(eng.queue) > 10000:
            eng.queue.clear()
        eng.pop_events()

    row("member: NFQUEUE packet -> cell in the queue", f"{per_call(submit):8.1f} µs")
    lan = Lan(c, keys)
    lan.run_until(lambda: len(lan.all_events(OutputSeen)) >= 9)
    gw = lan.gateway()
    rng = random.Random(2)
    wrapper = KeyWrapper([g.public for g in c.gateways])
    flows = []
    # one cell a packet, the first with its flow's key wrapped (as large as fits the coalition's
    # cells: new coalition files say 1280 bytes, older ones 1400)
    key0 = new_flow_key(rng)
    extra = len(seal_packet(key0, flow_tag(key0), 1, b"", wrapper.wrap(key0, rng)))
    size = c.cell_data - extra - 28  # (IPv4 and UDP headers)
    for i in range(16):  # 16 flows, their keys given to the gateway by a first output
        key = new_flow_key(rng)
        buf = bytearray(udp(sport=1000 + i, payload=os.urandom(size)))
        set_source(buf, parse(buf), c.anonymous[i % 4].packed, 0)
        flows.append((key, flow_tag(key), bytes(buf), wrapper.wrap(key, rng)))
    cs = c.coalition.cell_size

    def vector(counter: int) -> bytes:
        cells = [
            encode_cell(
                cs, tag, i, 0, 1, seal_packet(key, tag, counter, pkt, wrap if counter == 1 else b"")
            )
            for i, (key, tag, pkt, wrap) in enumerate(flows)
        ]
        return bytes(64 * ENTRY_LEN) + b"".join(cells)

    vectors = [vector(n) for n in range(1, 3000)]  # each counter once: no replays
    rnd = [gw.egress.last_round + 1]

    def egress() -> None:
        v = vectors[min(rnd[0] - first, len(vectors) - 1)]
        gw.egress.process(RoundOutput(rnd[0], int((lan.now + WALL - 100) * 1000), 64, 16, v))
        rnd[0] += 1
        gw.pop_commands()
        gw.pop_events()

    first = rnd[0]
    egress()  # the first output brings the flow keys (one X25519 per flow)
    row(
        "gateway: round output cell -> packet emitted (per cell)",
        f"{per_call(egress) / 16:8.1f} µs",
    )
    key, tag = flows[0][0], flows[0][1]
    head = wire.Inbound(1, tag, 0, 1, b"").encode(1, 0)
    for cipher in InboundCipher:  # ([coalition] inbound_cipher: new files AES-256-GCM)
        inbound(cipher, key, tag, head, pkt, c.inbound_capacity, rng)
    row(
        "member: wrap a new flow's key to the gateways (X25519 each)",
        f"{per_call(lambda: wrapper.wrap(key, rng), 0.1):8.1f} µs",
    )


def inbound(
    cipher: InboundCipher,
    key: bytes,
    tag: int,
    head: bytes,
    pkt: bytes,
    capacity: int,
    rng: random.Random,
) -> None:
    """An INBOUND frame sealed by a gateway and opened by every member, with `cipher`."""
    name = cipher.label
    why = cipher.missing()
    if why is not None:
        row(f"gateway: seal one inbound broadcast ({name})", f"not here: {why}")
        return
    row(
        f"gateway: seal one inbound broadcast ({name})",
        f"{per_call(lambda: seal_part(key, 0, 1, head, pkt, cipher)):8.1f} µs",
    )
    big = os.urandom(65000)
    frames = len(seal_parts(key, 0, 1, wire.inbound_head(1, 0, tag), big, capacity, cipher))
    sealing = per_call(
        lambda: seal_parts(key, 0, 1, wire.inbound_head(1, 0, tag), big, capacity, cipher)
    )
    row(
        f"gateway: the same, compiled ({frames} frames of 65,000 B), a frame ({name})",
        f"{sealing / frames:8.1f} µs{'' if flowkey.NOT_COMPILED is None else ' (in Python: not built)'}",
    )
    sealed = seal_part(key, 0, 1, head, pkt, cipher)
    opener = InboundOpener(rng, cipher)
    row(
        f"member: open one inbound broadcast, its own flow's ({name})",
        f"{per_call(lambda: opener.open(key, 0, 1, head, sealed)):8.1f} µs",
    )
    row(
        f"member: the same work on another member's ({name})",
        f"{per_call(lambda: opener.open(None, 0, 1, head, sealed)):8.1f} µs",
    )
    compiled_inbound(head + sealed, cipher, name)


def compiled_inbound(frame: bytes, cipher: InboundCipher, name: str) -> None:
    """Another member's INBOUND frames through the compiled path (member/drain.py), a ring's
    worth a call, as a member reads a download's."""
    native, why = drain.load()
    if native is None:
        row("member: the compiled path, another member's frame", f"not built: {why}")
        return
    ring, rounds = MemoryRing(count=256), MemoryRing(count=2)
    d = InboundDrain(native, ring, rounds, os.urandom(32), cipher=cipher)  # type: ignore[arg-type]
    d.follow(int.from_bytes(frame[2:6], "big"), 1)

    for _ in range(ring.count):
        ring.put(frame)
    spent, calls = 0.0, 0
    while spent < 0.2:
        ring.give_back_all()  # (every slot the kernel's frame again: not timed)
        t = time.perf_counter()
        d.drain(ring.count, float("inf"))
        spent += time.perf_counter() - t
        calls += 1
    row(
        f"member: the same, compiled, 256 frames a call ({name})",
        f"{spent / calls / ring.count * 1e6:8.2f} µs",
    )


def per_round() -> None:
    print("2. per round: one member's padded vector, the leader's XOR (microseconds)")
    cell = make_coalition(3, 1)[0].coalition.cell_size
    for slots, entries in ((1, MIN_ENTRIES), (17, 64)):  # a quiet round, a full one
        length = entries * ENTRY_LEN + slots * cell
        vec = os.urandom(length)
        for n in (3, 8, 16, 32):
            keys_ = [os.urandom(32) for _ in range(n - 1)]  # full mesh: n-1 neighbours
            pad = per_call(lambda: apply_pads(vec, keys_, 5, slots, entries), 0.2)
            parts = [vec[i : i + 1464] for i in range(0, length, 1464)]

            def xor_all() -> None:
                acc = [0] * len(parts)
                for _ in range(n):
                    for i, part in enumerate(parts):
                        acc[i] ^= int.from_bytes(part, "big")

            x = per_call(xor_all, 0.2)
            row(
                f"{n:2d} members, {slots:2d} slots ({length:6d} B): member pads / leader XOR",
                f"{pad:8.1f} µs / {x:8.1f} µs",
            )
    data = os.urandom(1464)
    row(
        "member: check one output part against its digest",
        f"{per_call(lambda: digest16(data)):8.1f} µs",
    )


def in_memory() -> None:
    print("3. a whole coalition in memory (one core: every member, gateway and leader in turn)")
    for n in (3, 8, 16):
        c, keys = make_coalition(n, 1)
        lan = Lan(c, keys, latency=0.0005)
        lan.run_until(lambda: len(lan.all_events(OutputSeen)) >= 3 * n)
        names = [f"member{i}" for i in range(1, n + 1)]
        pkt = {
            m: udp(src=f"198.18.0.{10 + i}", payload=b"x" * 1300) for i, m in enumerate(names, 1)
        }
        rounds0 = len(lan.events("gateway1", RoundCompleted))
        cells0 = sum(len(lan.events(m, CellDelivered)) for m in names)
        start = time.perf_counter()
        while time.perf_counter() - start < 3.0:
            for m in names:
                eng = lan.member(m)
                while len(eng.queue) < 8:
                    eng.submit_packet(pkt[m], lan.now)
            lan.advance()
        elapsed = time.perf_counter() - start
        rounds = len(lan.events("gateway1", RoundCompleted)) - rounds0
        cells = sum(len(lan.events(m, CellDelivered)) for m in names) - cells0
        row(
            f"{n:2d} members, all sending: rounds/s, cells/s, payload",
            f"{rounds / elapsed:6.0f} /s, {cells / elapsed:6.0f} /s, {cells * 1376 / elapsed / 1e6:5.2f} MB/s",
        )


def scale() -> dict[str, list[tuple[int, float, float]]]:
    """Rounds, RTT and goodput as members are added, per schedule and key graph, on a
    simulated switched LAN (1 Gbit/s ports, 50 µs a hop: CPU not counted in the times), and
    member1's and the leader's CPU per round, each replayed alone (bench/replay.py): with a
    regular key graph a member's stays flat, star or tree (README, What it costs)."""
    print(
        "4. scale on a simulated switched LAN (1 Gbit/s ports, 50 µs a hop; times exclude CPU, "
        "CPU per round is measured: each host's calls replayed alone)"
    )
    print(
        f"  {'members, schedule, key graph':<30} {'round':>8} {'ping RTT':>9} {'upload':>9} "
        f"{'member CPU':>11} {'leader CPU':>11}"
    )
    print(f"  {'':<30} {'ms':>8} {'ms':>9} {'MB/s':>9} {'µs/round':>11} {'µs/round':>11}")
    curves: dict[str, list[tuple[int, float, float]]] = {}
    for schedule in ("star", "tree"):
        for graph in ("full", "regular"):
            for n in (3, 8, 16, 32):
                if graph == "regular" and n <= 5:
                    continue  # a regular graph of degree 4 is the full mesh up to 5 members
                point = _scale_point(n, schedule, graph)
                curves.setdefault(f"{schedule}, {graph}", []).append(point)
    for n in (3, 8, 16, 32):  # trusted-gateway mode: no pads, no key graph (seed 000 §5.1)
        curves.setdefault("star, trusted", []).append(_scale_point(n, "star", "trusted"))
    return curves


def _scale_point(n: int, schedule: str, graph: str) -> tuple[int, float, float]:
    """`graph` 'trusted': trusted-gateway mode (the key graph plays no part)."""
    # Rounds back to back while busy: the simulated LAN does not count CPU, which is what
    # `busy_interval` leaves room for on real hosts (it would only add its wait here).
    sections: dict[str, Any] = {"rounds": {"schedule": schedule, "busy_interval": 0}}
    if graph == "trusted":
        sections["coalition"] = {"mode": "trusted"}
    else:
        sections["key_graph"] = {"kind": graph, "degree": 4}
    c, keys = make_coalition(n, 1, **sections)
    member_calls = Recording(MemberEngine, "member1")
    leader_calls = Recording(GatewayEngine, "gateway1")
    recording = contextlib.ExitStack()  # until the pings' rounds are done
    recording.enter_context(member_calls.record())
    recording.enter_context(leader_calls.record())
    lan = Lan(c, keys, internet=echo_internet, latency=50e-6, bandwidth=125e6)
    lan.run_until(lambda: len(lan.all_events(OutputSeen)) >= 3 * n, limit=60)
    marks = member_calls.mark(), leader_calls.mark()
    done0 = len(lan.events("gateway1", RoundCompleted))
    rtts = []
    for k in range(30):  # pings while a conversation goes on (rounds follow at once)
        before = len(lan.host("member1").injected)
        sent = lan.now
        lan.submit("member1", ping(seq=k))
        lan.run_until(lambda b=before: len(lan.host("member1").injected) > b, limit=5)
        rtts.append(lan.now - sent)
    done = lan.events("gateway1", RoundCompleted)[done0:]
    round_ms = statistics.median(r.duration for r in done) * 1000  # type: ignore[attr-defined]
    cpu_rounds = max(1, len(done))
    recording.close()
    # Each host's CPU replayed alone (bench/replay.py): in the simulated LAN they share caches.
    (m_s, m_same), (l_s, l_same) = (
        r.replay(mark, r.mark()) for r, mark in ((member_calls, marks[0]), (leader_calls, marks[1]))
    )
    m_us, l_us = m_s / cpu_rounds * 1e6, l_s / cpu_rounds * 1e6
    diverged = "" if m_same and l_same else "  (a replay diverged: CPU figures approximate)"
    # goodput: member1 alone keeps its queue full, for 40 rounds
    eng = lan.member("member1")
    cells0, sim0 = len(lan.events("member1", CellDelivered)), lan.now
    pkt = udp(payload=b"x" * 1300)
    done0 = len(lan.events("gateway1", RoundCompleted))
    while len(lan.events("gateway1", RoundCompleted)) - done0 < 40:
        while len(eng.queue) < 16:
            eng.submit_packet(pkt, lan.now)
        lan.advance()
    cells = len(lan.events("member1", CellDelivered)) - cells0
    goodput = cells * c.cell_capacity / max(1e-9, lan.now - sim0) / 1e6
    rtt = statistics.median(rtts) * 1000
    print(
        f"  {f'{n:2d}, {schedule}, {graph}':<30} {round_ms:8.2f} {rtt:9.2f} {goodput:9.1f} "
        f"{m_us:11.0f} {l_us:11.0f}{diverged}",
        flush=True,
    )
    return n, rtt, goodput


def lab(curves: dict[str, list[tuple[int, float, float]]], biggest: int) -> None:
    from bench import lab as labs

    print(
        "5. real labs (namespaces, NFQUEUE, raw sockets; every host shares this machine's "
        f"{os.cpu_count()} cores), beside the plain path in the same run"
    )
    plans = [(3, "star", "full"), (8, "star", "full"), (8, "tree", "regular")]
    plans += [(16, s, "regular") for s in ("star", "tree") if biggest >= 16]
    # trusted-gateway mode beside DC-net mode ('trusted' for the key graph, which it has none of)
    plans += [(n, "star", "trusted") for n in (3, 8, 16) if n <= biggest]
    # members that let the kernel drop others' INBOUND frames (member.toml: filter_inbound)
    plans += [(n, "star", "filtered") for n in (3, 8)]
    rows = []
    for members, schedule, graph in plans:
        rows.append(labs.measure(members, schedule, graph))
        labs.table(rows[-1:]) if len(rows) > 1 else labs.table(rows)
    labs.plot(rows, curves, Path("bench-lanon.png").resolve())
    labs.observer_figures()
    labs.blame_figures()


def fuzz(total: int, seed: int) -> int:
    """Every fuzz target, total inputs shared evenly; 1 if anything crashed."""
    from lanon.lab import fuzz as fz

    start = time.perf_counter()
    corpus = fz.Corpus.build()
    print(
        f"6. fuzz: {total} inputs over {len(fz.TARGETS)} targets, seed {seed} "
        f"(raw material from two coalitions in memory, built in {time.perf_counter() - start:.1f} s)"
    )
    print(f"  {'target':<34} {'inputs':>9} {'rejected':>9} {'seconds':>8} {'µs/input':>9}  crashes")
    each, extra = divmod(total, len(fz.TARGETS))
    crashes = 0
    for i, target in enumerate(fz.TARGETS):
        r = fz.run_target(target, corpus, each + (i < extra), seed)
        crashes += r.crash_count
        per = r.seconds / max(1, r.inputs) * 1e6
        print(
            f"  {r.target:<34} {r.inputs:9d} {r.rejected:9d} {r.seconds:8.1f} {per:9.1f}  "
            f"{r.crash_count}",
            flush=True,
        )
        for c in r.crashes:
            print(f"      {c.error[:120]} at {c.where}\n      replay: {c.reproducer()}")
    print(f"  {'all':<34} {total:9d} {'':9} {time.perf_counter() - start:8.1f} {'':9}  {crashes}")
    return 1 if crashes else 0


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lab", action="store_true", help="also measure real labs (root)")
    ap.add_argument("--only-lab", action="store_true", help="with --lab: skip sections 1-3")
    ap.add_argument(
        "--lab-members",
        type=int,
        default=16,
        metavar="N",
        help="the largest lab (8 or 16, the default; 16 takes a few minutes more)",
    )
    ap.add_argument(
        "--fuzz",
        nargs="?",
        type=int,
        const=1_000_000,
        metavar="N",
        help="only fuzz every decoder and engine entry point, N inputs in all (default 10^6)",
    )
    ap.add_argument("--seed", type=int, default=0, help="the fuzzer's seed (default 0)")
    ap.add_argument(
        "--soak",
        type=float,
        metavar="SECONDS",
        help="only the soak (root): 8 members, mixed traffic, memory and flows sampled",
    )
    args = ap.parse_args()
    print(f"lanon benchmark on {os.cpu_count()} core(s), Python {sys.version.split()[0]}\n")
    if args.fuzz is not None:
        sys.exit(fuzz(args.fuzz, args.seed))
    if args.soak is not None:
        from bench.soak import soak

        soak(args.soak)
        return
    if not args.only_lab:
        per_packet()
        print()
        per_round()
        print()
        in_memory()
        print()
    curves = scale()
    if args.lab:
        print()
        lab(curves, args.lab_members)


if __name__ == "__main__":
    main()
