"""lanon's benchmark: figures, no pass or fail.  ./run bench [--lab]

1. per packet: the functions every packet passes through
2. per round: one member's and the leader's work, as the coalition grows
3. a whole coalition in memory (one core, no network): rounds and cells per second
4. star or tree: round time on a switched LAN (simulated network, 1 Gbit/s ports)
5. --lab (root): a real lab: ping RTT, one download, eight at once, round rates

./run bench --soak SECONDS (root) runs only the soak: a lab of 8 members with mixed traffic,
memory, open files, flows and queues sampled into a table (flat columns are the point).
./run bench --fuzz [N] runs only the fuzzer (lanon/lab/fuzz.py): N inputs in all (default
1,000,000), shared among every decoder and engine entry point; per target, the inputs, how many
were rejected, the time, and every kind of crash with the command that replays it.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.harness, tests.packets

from lanon.common import wire
from lanon.common.cell import encode_cell
from lanon.common.crypto import HostKey, apply_pads, digest16
from lanon.common.events import CellDelivered, OutputSeen, RoundCompleted
from lanon.common.packet import checksum, parse, set_source
from lanon.gateway.leader import RoundOutput
from lanon.member.engine import MemberEngine
from tests.harness import WALL, Lan, make_coalition
from tests.packets import tcp, udp


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
    cells = []
    for i in range(16):
        buf = bytearray(udp(sport=1000 + i, payload=os.urandom(1300)))
        set_source(buf, parse(buf), c.anonymous[i % 4].packed, 0)
        cells.append(encode_cell(c.coalition.cell_size, rng.getrandbits(64), i, 0, 1, bytes(buf)))
    vector = bytes(64 * 8) + b"".join(cells)
    rnd = [gw.egress.last_round + 1]

    def egress() -> None:
        gw.egress.process(RoundOutput(rnd[0], int((lan.now + WALL - 100) * 1000), 64, 16, vector))
        rnd[0] += 1
        gw.pop_commands()
        gw.pop_events()

    row(
        "gateway: round output cell -> packet emitted (per cell)",
        f"{per_call(egress) / 16:8.1f} µs",
    )
    key = HostKey.generate()
    frame = wire.Inbound(1, 7, 0, 1, pkt).encode(1, 0)
    signed = frame + key.sign(frame)
    row(
        "gateway: sign one inbound broadcast (Ed25519)",
        f"{per_call(lambda: key.sign(frame)):8.1f} µs",
    )
    from lanon.common.crypto import Verifier

    v = Verifier()
    row(
        "member: check one inbound broadcast of its own (Ed25519)",
        f"{per_call(lambda: v.verify(key.public, frame, signed[-64:])):8.1f} µs",
    )


def per_round() -> None:
    print("2. per round: one member's padded vector, the leader's XOR (microseconds)")
    for slots in (0, 16):
        length = 64 * 8 + slots * 1400
        vec = os.urandom(length)
        for n in (3, 8, 16, 32):
            keys_ = [os.urandom(32) for _ in range(n - 1)]  # full mesh: n-1 neighbours
            pad = per_call(lambda: apply_pads(vec, keys_, 5), 0.2)
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


def schedules() -> None:
    print(
        "4. star or tree on a switched LAN (simulated time: 1 Gbit/s ports, 50 µs per hop; CPU not counted)"
    )
    for n in (8, 16, 32):
        for schedule in ("star", "tree"):
            c, keys = make_coalition(n, 1, rounds={"schedule": schedule, "max_slots": 16})
            lan = Lan(c, keys, latency=50e-6, bandwidth=125e6)
            lan.run_until(lambda: len(lan.all_events(OutputSeen)) >= 3 * n)
            names = [f"member{i}" for i in range(1, n + 1)]
            pkt = {
                m: udp(src=f"198.18.0.{10 + i}", payload=b"x" * 1300)
                for i, m in enumerate(names, 1)
            }
            gw = lan.host("gateway1").mac
            done0 = len(lan.events("gateway1", RoundCompleted))
            start_sim, start = lan.now, time.perf_counter()
            lan.wire_log.clear()
            while len(lan.events("gateway1", RoundCompleted)) - done0 < 40:
                for m in names:
                    eng = lan.member(m)
                    while len(eng.queue) < 8:
                        eng.submit_packet(pkt[m], lan.now)
                lan.advance()
            rounds = lan.events("gateway1", RoundCompleted)[done0:]
            sim = lan.now - start_sim
            ingress = sum(len(f) for _s, d, f in lan.wire_log if d == gw) / len(rounds)
            slots = statistics.mean(r.nslots for r in rounds)  # type: ignore[attr-defined]
            row(
                f"{n:2d} members, {schedule:<4}: round time, leader receives / round",
                f"{sim / len(rounds) * 1000:6.2f} ms, {ingress / 1000:7.1f} KB ({slots:.0f} slots; {time.perf_counter() - start:.1f} s CPU)",
            )


def lab() -> None:
    from lanon.lab.lab import Lab, LabSpec

    print(
        "5. a real lab (namespaces, NFQUEUE, raw sockets; all processes share this machine's cores)"
    )
    url = "http://203.0.113.10/5mb.bin"
    for members in (3, 8):
        lab = Lab(f"bench{members}")
        if lab.is_up():
            lab.down()
        lab.up(LabSpec(lab.name, members=members))
        try:
            time.sleep(3)
            idle = lab.leader_status()["round_rate"]
            r = lab.run("member1", ["ping", "-c", "20", "-i", "0.05", "203.0.113.10"])
            rtt = (
                r.stdout.strip().splitlines()[-1].split("=")[1].split("/")[1]
                if r.returncode == 0
                else "?"
            )
            row(
                f"{members} members, idle: round rate, ping RTT (avg of 20)",
                f"{idle:6.1f} /s, {rtt} ms",
            )
            speeds = []
            for _ in range(3):
                r = lab.run(
                    "member1", ["curl", "-sS", "-o", "/dev/null", "-w", "%{speed_download}", url]
                )
                speeds.append(float(r.stdout or 0) / 1e6)
            row(
                f"{members} members: one member downloads 5 MB (median of 3)",
                f"{statistics.median(speeds):6.2f} MB/s",
            )
            start = time.monotonic()
            procs = [
                lab.popen(m.name, ["curl", "-sS", "-o", "/dev/null", url]) for m in lab.members
            ]
            ok = all(p.wait(timeout=300) == 0 for p in procs)
            took = time.monotonic() - start
            st = lab.leader_status()
            row(
                f"{members} members download 5 MB each at once: aggregate",
                f"{members * 5 * 1.048576 / took:6.2f} MB/s in {took:.1f} s{'' if ok else ' (a fetch failed)'}",
            )
            row(
                f"{members} members, busy: round rate, collisions so far",
                f"{st['round_rate']:6.1f} /s, {st['reservation_collisions']}",
            )
        finally:
            lab.down()


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
    ap.add_argument("--lab", action="store_true", help="also measure a real lab (root)")
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
    per_packet()
    print()
    per_round()
    print()
    in_memory()
    print()
    schedules()
    if args.lab:
        print()
        lab()


if __name__ == "__main__":
    main()
