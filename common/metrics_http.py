"""Serving Prometheus metrics to the LAN only.

prometheus_client's own server answers anyone who reaches it, whatever the request's Host. A
daemon's metrics go to the coalition's Prometheus and nobody else, so this server:

- listens on one address: `metrics = ":9551"` (no address) means the IPv4 address of the
  daemon's LAN `interface`, looked up at start, never 0.0.0.0;
- closes, without a word, connections from outside `clients` (the coalition's LAN prefix and
  loopback unless `metrics_clients` says otherwise): an Internet host that the border router
  lets through learns nothing, not even that it is a metrics endpoint;
- answers 403 to a request whose Host is not the listen address or a loopback name: a web page
  that rebinds its own DNS name to the daemon's address (DNS rebinding) cannot read it through
  a browser on the LAN.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import TCPServer, ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from pyroute2 import IPRoute

from lanon.common.errors import PrerequisiteError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[Network, ...] = (
    ipaddress.IPv4Network("127.0.0.0/8"),
    ipaddress.IPv6Network("::1/128"),
)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def interface_address(ifname: str, prefer: ipaddress.IPv4Network | None = None) -> str:
    """The IPv4 address of `ifname` (the first one inside `prefer`, if it has several)."""
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=ifname)
        if not index:
            raise PrerequisiteError(f"interface {ifname!r} does not exist (setting interface)")
        found = [str(m.get("address")) for m in ipr.get_addr(index=index[0], family=socket.AF_INET)]
    inside = [a for a in found if prefer is not None and ipaddress.IPv4Address(a) in prefer]
    if not found:
        raise PrerequisiteError(
            f"interface {ifname} has no IPv4 address to serve metrics on: give one "
            "(metrics = 'ADDRESS:PORT') or start the daemon once the interface is configured"
        )
    return (inside or found)[0]


def parse_listen(listen: str, ifname: str, lan: ipaddress.IPv4Network) -> tuple[str, int]:
    """(address, port) of a `metrics` setting: 'ADDRESS:PORT', or ':PORT' for the interface's."""
    host, _, port = listen.rpartition(":")
    return (host or interface_address(ifname, lan)), int(port)


def host_allowed(header: str, listen: str) -> bool:
    """Whether a request's Host header names this server: its listen address (any IP literal
    if it listens on every address) or loopback; never a DNS name other than localhost."""
    name = header.strip().lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name, _, port = name.partition(":")
        if not port.isdigit():
            return False
    if name in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if any(address in net for net in LOOPBACK):
        return True
    return listen in ("0.0.0.0", "") or str(address) == listen


def guard(app: WsgiApp, listen: str) -> WsgiApp:
    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST")
        if host is not None and not host_allowed(host, listen):
            body = b"lanon: this Host is not served (metrics answer to their address only)\n"
            start_response(
                "403 Forbidden",
                [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return app(environ, start_response)

    return guarded


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not log lines
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    clients: tuple[Network, ...] = LOOPBACK

    def server_bind(self) -> None:
        """As HTTPServer's, without its reverse DNS lookup of the address (socket.getfqdn):
        with no DNS yet (a member's goes through the lanon) it held the start for seconds."""
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        try:
            peer = ipaddress.ip_address(client_address[0])
        except (ValueError, IndexError, TypeError):
            return False
        return any(peer in net for net in self.clients)


class MetricsServer:
    """One registry served on one address, in a thread of its own."""

    def __init__(
        self,
        address: str,
        port: int,
        registry: CollectorRegistry,
        clients: Iterable[Network],
    ) -> None:
        self.address, self.port = address, port
        app = guard(make_wsgi_app(registry), address)
        try:
            self.httpd = make_server(address, port, app, _Server, handler_class=_Quiet)
        except OSError as exc:
            raise PrerequisiteError(
                f"cannot serve metrics on {address}:{port}: {exc.strerror}"
            ) from None
        self.httpd.clients = (*LOOPBACK, *clients)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/metrics"

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
