"""A hostile LAN host: floods the LAN with malformed, mutated and replayed lanon frames.

Run inside a lab namespace (the switch, "lan", or any host) as

    python -m lanon.lab.flood --interface br0 --count 200000 --seconds 20

It first listens for `--sample` seconds and keeps the lanon frames it hears (OPENs, outputs,
contributions, heartbeats, keys...), then sends `--count` frames (at most for `--seconds`):
a third replayed as they were, a third mutated as the fuzzer mutates (bit flips, cuts,
extensions, fields set to extremes, splices from other frames), a third random bodies behind
a valid header. It prints what it sent as one JSON line. Lab use only: it sends
on the interface it is given and nowhere else, and stops at the count or the time limit.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import time

from lanon.common import wire
from lanon.lab.fuzz import mutate

ATTACKER = bytes.fromhex("02666c6f6f64")  # "flood"
ETH_ALL = 0x0003


def sample(sock: socket.socket, seconds: float, limit: int = 4000) -> list[bytes]:
    """lanon frames (payload after the Ethernet header) heard for `seconds`."""
    frames: list[bytes] = []
    end = time.monotonic() + seconds
    sock.settimeout(0.05)
    while time.monotonic() < end and len(frames) < limit:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        if len(data) > 14 and data[12:14] == struct.pack("!H", wire.ETHERTYPE):
            frames.append(data[14:])
    return frames


def forged(rng: random.Random, frames: list[bytes]) -> bytes:
    """A valid-looking header (version, a known type, the coalition's id) and a random body."""
    coalition = frames[0][2:6] if frames else rng.randbytes(4)
    head = struct.pack("!BB", wire.VERSION, rng.choice(list(wire.MsgType))) + coalition
    return head + struct.pack("!H", rng.randrange(8)) + rng.randbytes(rng.randint(0, 1400))


def flood(interface: str, count: int, seconds: float, sample_seconds: float, seed: int) -> dict:  # type: ignore[type-arg]
    rng = random.Random(seed)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_ALL))
    sock.bind((interface, 0))
    heard = sample(sock, sample_seconds)
    sock.setblocking(True)
    ethertype = struct.pack("!H", wire.ETHERTYPE)
    sent = {"replayed": 0, "mutated": 0, "forged": 0}
    errors = 0
    start = time.monotonic()
    end = start + seconds
    for i in range(count):
        if i % 256 == 0 and time.monotonic() > end:
            break
        choice = rng.randrange(3) if heard else 2
        if choice == 0:
            payload, kind = rng.choice(heard), "replayed"
        elif choice == 1:
            payload, kind = mutate(rng, rng.choice(heard), heard), "mutated"  # as the fuzzer does
        else:
            payload, kind = forged(rng, heard), "forged"
        try:
            sock.send(wire.BROADCAST + ATTACKER + ethertype + payload[:1500])
        except OSError:
            errors += 1  # a full buffer: the flood goes on
            continue
        sent[kind] += 1
    elapsed = time.monotonic() - start
    sock.close()
    total = sum(sent.values())
    return {
        "heard": len(heard),
        "sent": total,
        **sent,
        "send_errors": errors,
        "seconds": round(elapsed, 2),
        "rate": round(total / elapsed) if elapsed else 0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interface", default="br0")
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--sample", type=float, default=1.0, help="seconds to listen first")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    print(json.dumps(flood(a.interface, a.count, a.seconds, a.sample, a.seed)), flush=True)


if __name__ == "__main__":
    main()
