"""The lab LAN's raw frame rate: full-size frames sent as fast as one process can, for the
benchmark's DC-net bound (bench/lab.py).

    python -m lanon.lab.blast INTERFACE DESTINATION_MAC SECONDS SIZE

sends SIZE-byte frames (Ethernet header included) to DESTINATION_MAC on INTERFACE for SECONDS
(at most 5), of an ethertype nothing in the lab reads (IEEE's local experimental 0x88B6: the
lanon's is 0x88B5), so the receiving host's kernel drops them after counting them; prints the
frames sent and the seconds it sent them in. Root (a raw socket), and only inside a lab host's
network namespace (`ip netns exec lanon-<lab>-<host>`): its frames stay on the lab's bridge,
never on a real interface.

A Python loop of `send` calls is slower than the kernel's bridge, so what the receiver counts is
a floor of the LAN's frame rate, not its ceiling.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from lanon.lab import topology

ETHERTYPE = b"\x88\xb6"  # IEEE 802 local experimental ethertype 2
MAX_SECONDS = 5.0
BURST = 1000  # sends between two looks at the clock
NAMED = Path("/run/netns")  # where `ip netns` names its namespaces


def in_lab_namespace() -> bool:
    """Whether this process runs in a lab host's network namespace (`ip netns exec
    lanon-<lab>-<host>`, lab/topology.py), not the machine's own or any other."""
    try:
        own = os.stat("/proc/self/ns/net")
    except OSError:
        return False
    for named in NAMED.glob(f"{topology.ns_name('*', '*')}"):
        try:
            found = os.stat(named)
        except OSError:
            continue
        if (found.st_dev, found.st_ino) == (own.st_dev, own.st_ino):
            return True
    return False


def blast(interface: str, dst: bytes, seconds: float, size: int) -> tuple[int, float]:
    """(frames sent, seconds they took)."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((interface, 0))
        src = s.getsockname()[4]
        frame = dst + src + ETHERTYPE + os.urandom(max(0, size - 14))
        send, sent = s.send, 0
        start = time.perf_counter()
        end = start + min(seconds, MAX_SECONDS)
        while time.perf_counter() < end:
            for _ in range(BURST):
                try:
                    send(frame)
                except OSError:  # (a full queue: the frame is not counted as sent)
                    sent -= 1
            sent += BURST
        return sent, time.perf_counter() - start


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        return 2
    interface, dst, seconds, size = (
        argv[0],
        bytes.fromhex(argv[1].replace(":", "")),
        argv[2],
        argv[3],
    )
    if len(dst) != 6:
        print("DESTINATION_MAC: six bytes, as 02:1a:00:01:00:01", file=sys.stderr)
        return 2
    if not in_lab_namespace():
        print("only in a lab host's network namespace (ip netns exec)", file=sys.stderr)
        return 2
    sent, took = blast(interface, dst, float(seconds), int(size))
    print(sent, f"{took:.6f}")
    return 0 if sent > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
