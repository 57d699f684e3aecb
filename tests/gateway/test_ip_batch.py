"""A download's packets never keep a gateway's loop from its rounds: `_on_ip` reads the
Internet's packets for IP_BATCH_TIME at most, and leaves the rest queued in the kernel for the
next turn of the loop (after the LAN's frames and the timers). A batch of 64 KiB packets once
kept a round's answers unread past its deadline: every member was "missing"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry

from lanon.common.daemon_config import load
from lanon.common.templates import write_coalition
from lanon.gateway import daemon as gd
from lanon.gateway.config import GatewaySettings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Engine:
    """Each packet takes 3 ms of the clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.packets: list[bytes] = []

    def notice_pause(self, now: float) -> None:
        pass

    def receive_packet(self, packet: bytes, now: float, checksum_ready: bool = True) -> None:
        self.packets.append(packet)
        self.clock.now += 0.003

    def pop_commands(self) -> list[object]:
        return []

    def pop_events(self) -> list[object]:
        return []


class IpSocket:
    def __init__(self, count: int) -> None:
        self.waiting = [bytes([i]) * 20 for i in range(count)]

    def receive_checked(self) -> Iterator[tuple[bytes, bool]]:
        while self.waiting:
            yield self.waiting.pop(0), True


def _daemon(tmp_path: Path, packets: int) -> gd.GatewayDaemon:
    """A gateway daemon whose engine takes 3 ms of its clock a packet, `packets` waiting."""
    write_coalition(
        tmp_path, "test", "198.18.0.0/24", [("gateway1", "198.18.0.192/30")], ["a", "b", "c"]
    )
    settings, loaded = load(GatewaySettings, tmp_path / "gateway1.toml", "gateway")
    d = gd.GatewayDaemon(settings, loaded, CollectorRegistry())
    clock = Clock()
    d.reactor.clock = clock  # type: ignore[method-assign]
    d.engine = Engine(clock)  # type: ignore[assignment]
    d.ip = IpSocket(packets)  # type: ignore[assignment]
    return d


def test_a_batch_of_the_internets_packets_ends_in_time_and_the_rest_wait(tmp_path: Path) -> None:
    d = _daemon(tmp_path, 50)
    d._on_ip()
    per_turn = -(-gd.IP_BATCH_TIME // 0.003)  # packets whose 3 ms reach the limit
    assert len(d.engine.packets) == per_turn  # type: ignore[attr-defined]
    assert len(d.ip.waiting) == 50 - per_turn  # type: ignore[attr-defined]
    while d.ip.waiting:  # type: ignore[attr-defined]
        d._on_ip()
    assert d.engine.packets == [bytes([i]) * 20 for i in range(50)]  # type: ignore[attr-defined]


def test_each_packets_frames_leave_before_the_next_packet_is_read(tmp_path: Path) -> None:
    """A server's window arrives as a batch of packets: the first packet's frames are on the
    LAN (carried out) before the second is sealed, not all of them after the last."""
    d = _daemon(tmp_path, 3)
    engine: Engine = d.engine  # type: ignore[assignment]
    read_at_flush: list[int] = []
    d.flush = lambda now: read_at_flush.append(len(engine.packets))  # type: ignore[method-assign]
    d._on_ip()
    assert read_at_flush[-3:] == [1, 2, 3]
