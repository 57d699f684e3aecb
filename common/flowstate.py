"""Per-flow state for timeouts, the way a NAT keeps it (RFC 5382 for TCP, RFC 4787 for UDP).

Members and gateways track the same flows from the same packets, so both free a flow at about
the same time: members forget its tag, gateways free its anonymous port.
"""

from __future__ import annotations

import enum

from lanon.common.coalition import FlowSection
from lanon.common.packet import ICMP, TCP, TCP_FIN, TCP_RST, TCP_SYN, UDP


class TcpPhase(enum.IntEnum):
    OPENING = 0  # SYN seen, no reply yet
    ESTABLISHED = 1
    CLOSING = 2  # FIN seen in one direction
    CLOSED = 3  # FIN both ways, or RST


class FlowState:
    """TCP phase (ignored for UDP and ICMP), direction of FINs, and last activity."""

    __slots__ = ("fins", "last", "phase", "proto")

    def __init__(self, proto: int, now: float) -> None:
        self.proto = proto
        self.phase = TcpPhase.OPENING if proto == TCP else TcpPhase.ESTABLISHED
        self.fins = 0  # bit 0: outbound FIN, bit 1: inbound FIN
        self.last = now

    def update(self, flags: int, outbound: bool, now: float) -> None:
        self.last = now
        if self.proto != TCP:
            return
        if flags & TCP_RST:
            self.phase = TcpPhase.CLOSED
        elif flags & TCP_FIN:
            self.fins |= 1 if outbound else 2
            self.phase = TcpPhase.CLOSED if self.fins == 3 else TcpPhase.CLOSING
        elif self.phase == TcpPhase.OPENING and not (flags & TCP_SYN and outbound):
            self.phase = TcpPhase.ESTABLISHED
        elif self.phase == TcpPhase.CLOSED and flags & TCP_SYN and outbound:
            self.phase, self.fins = TcpPhase.OPENING, 0  # the port pair is being reused

    def timeout(self, s: FlowSection) -> float:
        if self.proto == UDP:
            return s.udp_timeout
        if self.proto == ICMP:
            return s.icmp_timeout
        if self.phase == TcpPhase.ESTABLISHED:
            return s.tcp_established_timeout
        if self.phase == TcpPhase.CLOSED:
            return s.tcp_closed_linger
        return s.tcp_transitory_timeout

    def expired(self, s: FlowSection, now: float) -> bool:
        return now - self.last > self.timeout(s)

    def close_reason(self) -> str:
        if self.phase == TcpPhase.CLOSED:
            return "rst" if self.fins != 3 else "fin"
        return "idle"
