"""Metrics are served on one address, to the LAN's hosts, to requests that name that address."""

from __future__ import annotations

import http.client
import ipaddress
import socket
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from lanon.common.errors import PrerequisiteError
from lanon.common.metrics_http import MetricsServer, host_allowed, interface_address, parse_listen

LAN = ipaddress.IPv4Network("198.18.0.0/24")


@pytest.mark.parametrize(
    "host,listen,ok",
    [
        ("198.18.0.11:9551", "198.18.0.11", True),
        ("198.18.0.11", "198.18.0.11", True),
        ("localhost:9551", "198.18.0.11", True),
        ("127.0.0.1:9552", "127.0.0.1", True),
        ("[::1]:9551", "198.18.0.11", True),
        ("198.18.0.12:9551", "198.18.0.11", False),  # another address
        ("evil.example:9551", "198.18.0.11", False),  # a rebound DNS name
        ("evil.example", "0.0.0.0", False),
        ("10.1.2.3:9551", "0.0.0.0", True),  # every address: any literal
        ("198.18.0.11:x", "198.18.0.11", False),
        ("", "198.18.0.11", False),
    ],
)
def test_host_header(host: str, listen: str, ok: bool) -> None:
    assert host_allowed(host, listen) is ok


def test_an_empty_address_is_the_interfaces_own() -> None:
    assert parse_listen(":9551", "lo", ipaddress.IPv4Network("127.0.0.0/8")) == ("127.0.0.1", 9551)
    assert parse_listen("198.18.0.11:9551", "nonexistent0", LAN) == ("198.18.0.11", 9551)
    with pytest.raises(PrerequisiteError, match="interface 'nonexistent0' does not exist"):
        interface_address("nonexistent0")


def get(port: int, host: str | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.putrequest("GET", "/metrics", skip_host=True)
    if host is not None:
        conn.putheader("Host", host)
    conn.endheaders()
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


@pytest.fixture
def served() -> Iterator[MetricsServer]:
    registry = CollectorRegistry()
    Counter("lanon_test_total", "a test counter", registry=registry).inc()
    server = MetricsServer("127.0.0.1", 0, registry, [LAN])
    server.port = server.httpd.server_address[1]
    yield server
    server.shutdown()


def test_the_server_answers_its_address_and_refuses_other_hosts(served: MetricsServer) -> None:
    status, body = get(served.port, f"127.0.0.1:{served.port}")
    assert status == 200 and b"lanon_test_total 1.0" in body
    assert get(served.port, None)[0] == 200  # HTTP/1.0 style, no Host: not a browser
    status, body = get(served.port, f"attacker.example:{served.port}")
    assert status == 403 and b"lanon_test" not in body


def test_connections_from_outside_the_clients_are_closed_unanswered(
    served: MetricsServer,
) -> None:
    served.httpd.clients = (ipaddress.IPv4Network("198.18.0.0/24"),)  # not loopback, for once
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert s.recv(4096) == b""
