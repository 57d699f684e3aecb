"""Round-trip times of ICMP echoes sent at random moments (the benchmark's lanon RTT).

`ping -i T` sends every T seconds: against rounds that open at a fixed spacing (`busy_interval`)
its echoes can fall at one phase of the round again and again, and the median then says more
about that phase than about the lanon. These go out at gaps drawn uniformly from [low, high]
seconds, all of one ICMP identifier (one flow, as a ping's), one at a time.

    python -m lanon.lab.rtt DESTINATION COUNT LOW HIGH [SEED]

prints the RTT of each echo answered within a second, in milliseconds (root: a raw socket).
"""

from __future__ import annotations

import os
import random
import select
import socket
import struct
import sys
import time

from lanon.common.packet import checksum

ECHO, ECHO_REPLY = 8, 0
_ICMP = struct.Struct("!BBHHH")
PAYLOAD = b"lanon-rtt-" * 5


def echo(ident: int, seq: int) -> bytes:
    unsummed = _ICMP.pack(ECHO, 0, 0, ident, seq) + PAYLOAD
    return _ICMP.pack(ECHO, 0, checksum(unsummed), ident, seq) + PAYLOAD


def rtts(dst: str, count: int, low: float, high: float, seed: int = 1) -> list[float]:
    """Milliseconds of each answered echo (unanswered ones, after a second, are left out)."""
    rng = random.Random(seed)
    ident = os.getpid() & 0xFFFF
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        for seq in range(1, count + 1):
            sent = time.perf_counter()
            s.sendto(echo(ident, seq), (dst, 0))
            while (left := sent + 1.0 - time.perf_counter()) > 0:
                if not select.select([s], [], [], left)[0]:
                    break
                data = s.recv(2048)
                ihl = (data[0] & 0x0F) * 4
                kind, _code, _sum, i, q = _ICMP.unpack_from(data, ihl)
                if kind == ECHO_REPLY and (i, q) == (ident, seq):
                    out.append((time.perf_counter() - sent) * 1000)
                    break
            time.sleep(rng.uniform(low, high))
    return out


def main(argv: list[str]) -> int:
    if len(argv) not in (4, 5):
        print(__doc__.strip().splitlines()[-3].strip(), file=sys.stderr)
        return 2
    dst, count, low, high = argv[0], int(argv[1]), float(argv[2]), float(argv[3])
    seed = int(argv[4]) if len(argv) == 5 else 1
    print(" ".join(f"{x:.3f}" for x in rtts(dst, count, low, high, seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
