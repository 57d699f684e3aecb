"""Servers of the lab's "Internet" host: HTTP (files, /whoami, uploads) and UDP echo; also a
member's web server offered at an anonymous endpoint (`lanon lab up --serve`).

Its TCP congestion control is its own, not the machine's default: CUBIC, Linux's default and
most servers', so that a lab's downloads compare across machines (one whose default is BBR made
every lab's downloads BBR's). A request may ask for another of `CHOICES`, for its
connection: `GET /5mb.bin?congestion=bbr` (400 for any other name, or one the kernel lacks: the
server runs as root, and a name it passed on would make the kernel look for a module of it).
`GET /congestion` answers the one its connection sends with.

Every HTTP request is logged with the client address the server saw, one line each:
    <client ip> <client port> <method> <path> <status> <bytes>
so tests and the demo can show that only anonymous addresses reach the Internet.
"""

from __future__ import annotations

import argparse
import socket
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

_log_lock = threading.Lock()
CONGESTION = "cubic"  # Linux's default
CHOICES = frozenset({"cubic", "bbr", "reno"})  # what a request may ask for


def set_congestion(sock: socket.socket, name: str) -> bool:
    """`sock`'s TCP congestion control (a listening socket's passes to what it accepts);
    False if the kernel has none of that name."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())
    except OSError:
        return False
    return True


class Handler(SimpleHTTPRequestHandler):
    log_path: Path
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        asked = parse_qs(url.query).get("congestion")
        if asked and (asked[0] not in CHOICES or not set_congestion(self.connection, asked[0])):
            # (the status line is Latin-1: the name goes in the body)
            self.send_error(400, "congestion control refused", f"not here: {asked[0]!a}")
            return
        if url.path == "/congestion":
            name = self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
            self._text(name.rstrip(b"\0") + b"\n")
            return
        if self.path == "/whoami":
            self._text(f"{self.client_address[0]}:{self.client_address[1]}\n".encode())
            return
        super().do_GET()

    def do_POST(self) -> None:
        """Uploads: the body is read and its size and BLAKE2b digest returned."""
        import hashlib

        length = int(self.headers.get("Content-Length", "0"))
        h = hashlib.blake2b(digest_size=16)
        left = length
        while left > 0:
            chunk = self.rfile.read(min(65536, left))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
        body = f"{length - left} {h.hexdigest()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self._record(200, len(body))

    def _text(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self._record(200, len(body))

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        self._record(code, size)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self, code: Any, size: Any) -> None:
        if getattr(self, "_recorded", False):
            return
        self._recorded = True
        line = f"{self.client_address[0]} {self.client_address[1]} {self.command} {self.path} {code} {size}\n"
        with _log_lock, self.log_path.open("a") as f:
            f.write(line)

    def handle_one_request(self) -> None:
        self._recorded = False
        super().handle_one_request()


def udp_echo(address: str, port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    while True:
        data, peer = sock.recvfrom(65535)
        sock.sendto(data, peer)


def main() -> None:
    ap = argparse.ArgumentParser(description="lab Internet host servers")
    ap.add_argument("--address", default="0.0.0.0")
    ap.add_argument("--root", type=Path, required=True, help="directory served over HTTP")
    ap.add_argument("--log", type=Path, required=True, help="request log")
    ap.add_argument("--port", type=int, default=80, help="HTTP port")
    ap.add_argument("--no-echo", action="store_true", help="no UDP echo on port 7")
    ap.add_argument(
        "--congestion", default=CONGESTION, help=f"TCP congestion control (default {CONGESTION})"
    )
    args = ap.parse_args()
    Handler.log_path = args.log
    if not args.no_echo:
        threading.Thread(target=udp_echo, args=(args.address, 7), daemon=True).start()
    server = ThreadingHTTPServer(
        (args.address, args.port), partial(Handler, directory=str(args.root))
    )
    server.daemon_threads = True
    if not set_congestion(server.socket, args.congestion):
        print(f"no congestion control {args.congestion!r} here: the system's default serves")
    server.serve_forever()


if __name__ == "__main__":
    main()
