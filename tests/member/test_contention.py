"""Many members at once: reservation, collisions, backoff, fairness (in memory, explicit clock)."""

from typing import Any

from lanon.common.events import CellDelivered, CellRetried, RetryReason, RoundCompleted
from tests.harness import Lan
from tests.harness import running_lan as harness_lan
from tests.packets import udp

SMALL = {
    "coalition": {"cell_size": 256},
    "rounds": {"max_slots": 8, "max_claims": 2, "reservation_entries": 32},
}


def started(n: int, latency: float = 0.0, echo: bool = True, **kw: dict[str, Any]) -> Lan:
    return harness_lan(n, latency=latency, echo=echo, **kw)


def member_ip(i: int) -> str:
    return f"198.18.0.{10 + i}"


def test_contention_among_many_senders_converges() -> None:
    lan = started(8)
    for i in range(1, 9):
        for k in range(40):
            lan.submit(f"member{i}", udp(src=member_ip(i), sport=20000 + k, payload=b"burst"))
    lan.run_until(
        lambda: all(len(lan.events(f"member{i}", CellDelivered)) == 40 for i in range(1, 9)),
        limit=60,
    )
    retries = [e.reason for e in lan.all_events(CellRetried)]  # type: ignore[attr-defined]
    assert RetryReason.RESERVATION_COLLISION in retries  # collisions happened, and were resolved
    rounds = lan.events("gateway1", RoundCompleted)
    most = lan.c.rounds.max_slots + lan.c.rounds.express_slots
    assert max(r.nslots for r in rounds) == most  # type: ignore[attr-defined]
    # reserved slots never collide: only an express slot can, when two new packets meet there
    assert all(r.garbled <= lan.c.rounds.express_slots for r in rounds)  # type: ignore[attr-defined]
    lan.run(1.0)
    assert all(
        len(lan.host(f"member{i}").injected) == 40 for i in range(1, 9)
    )  # every echo came back


def test_eight_members_sending_for_a_minute_get_fair_shares() -> None:
    lan = started(8, latency=0.01, echo=False, **SMALL)  # outbound only: replies are not the point
    names = [f"member{i}" for i in range(1, 9)]
    packets = {n: udp(src=member_ip(i), payload=b"x" * 100) for i, n in enumerate(names, 1)}
    start = lan.now
    while lan.now - start < 60.0:
        for n in names:  # every member always has data waiting
            eng = lan.member(n)
            while len(eng.queue) < 20:
                eng.submit_packet(packets[n], lan.now)
        lan.advance()
    delivered = {n: len(lan.events(n, CellDelivered)) for n in names}
    mean = sum(delivered.values()) / len(delivered)
    assert mean > 1000
    for n, got in delivered.items():
        assert mean / 2 <= got <= mean * 2, (n, delivered)
