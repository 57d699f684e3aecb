"""Packets for tests: they live in the package, as `lanon.lab.packets`, so that the benchmark
uses them too."""

from lanon.lab.packets import (
    MEMBER_IP,
    SERVER_IP,
    checksums_ok,
    echo_internet,
    ping,
    tcp,
    udp,
)

__all__ = ["MEMBER_IP", "SERVER_IP", "checksums_ok", "echo_internet", "ping", "tcp", "udp"]
