"""A slow uplink for one lab gateway (`lanon lab slow`): the router holds what that gateway
emits for a fixed time before forwarding it, as `tc qdisc ... netem delay` would.

This machine's kernel has no netem (CONFIG_NET_SCH_NETEM is not set), so the lab does it with
what it has: an iptables NFQUEUE rule in the router's namespace sends the packets from the
gateway's anonymous addresses here, and each is accepted `delay` seconds after it came. Only
the lab uses it; it runs in the router's namespace, on the lab's own addresses.
"""

from __future__ import annotations

import argparse
import heapq
import select
import signal
import time
from typing import Any

from netfilterqueue import NetfilterQueue

MAX_HELD = 4096  # packets held at once; beyond, a packet goes at once (never dropped)


def run(queue: int, delay: float) -> None:
    held: list[tuple[float, int, Any]] = []
    seq = 0

    def take(pkt: Any) -> None:
        nonlocal seq
        if len(held) >= MAX_HELD:
            pkt.accept()
            return
        seq += 1
        heapq.heappush(held, (time.monotonic() + delay, seq, pkt))

    nfq = NetfilterQueue()
    nfq.bind(queue, take, max_len=MAX_HELD)
    stop = False

    def on_term(_sig: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    fd = nfq.get_fd()
    try:
        while not stop:
            timeout = max(0.0, held[0][0] - time.monotonic()) if held else 0.5
            ready, _, _ = select.select([fd], [], [], timeout)
            if ready:
                nfq.run(block=False)
            now = time.monotonic()
            while held and held[0][0] <= now:
                heapq.heappop(held)[2].accept()
    finally:
        for _due, _seq, pkt in held:
            pkt.accept()
        nfq.unbind()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--queue", type=int, required=True)
    ap.add_argument("--delay-ms", type=float, required=True)
    args = ap.parse_args(argv)
    run(args.queue, args.delay_ms / 1000)


if __name__ == "__main__":
    main()
