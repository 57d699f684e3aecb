"""The control socket: a unix socket where `lanon status` asks a running daemon how it is.

One request per connection: the client sends a command line ("status"), the daemon answers
one JSON document and closes. Unix sockets live in the filesystem, so `lanon status` reaches
daemons in other network namespaces too. The units put them in /run/lanon, where `lanon status`
looks when it is given no socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lanon.common.errors import LanonError, PrerequisiteError

DEFAULT_DIR = Path("/run/lanon")  # the units' RuntimeDirectory: member.sock, gateway.sock
SOCKET_MODE = 0o660  # the daemon's user and its group (RuntimeDirectoryMode=0750 keeps others out)


class ControlServer:
    def __init__(self, path: Path, handler: Callable[[str], dict[str, Any]]) -> None:
        self.path = path
        self.handler = handler
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self.sock.bind(str(path))
            os.chmod(path, SOCKET_MODE)
        except OSError as exc:
            self.sock.close()
            raise PrerequisiteError(
                f"cannot make the control socket {path}: {exc.strerror}; the units make "
                f"{DEFAULT_DIR} for user lanon (RuntimeDirectory=lanon); elsewhere give the "
                "daemon's user a directory ('lanon prepare ROLE --user USER --config FILE' as "
                "root makes it) or set control_socket = ''"
            ) from None
        self.sock.listen(8)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def handle(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(0.5)
            try:
                request = _read_line(conn).decode("utf-8", "replace").strip() or "status"
                answer = self.handler(request)
                conn.sendall(json.dumps(answer, sort_keys=True).encode() + b"\n")
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


MAX_REQUEST = 1 << 20  # a request line: a coalition file's text in base64 fits


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data and len(data) < MAX_REQUEST:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


def query(path: Path, request: str = "status", timeout: float = 2.0) -> dict[str, Any]:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(request.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
    except (FileNotFoundError, ConnectionRefusedError):
        raise LanonError(f"no daemon answers on {path} (is it running?)") from None
    except OSError as exc:
        raise LanonError(f"{path}: {exc.strerror or exc}") from None
    result: dict[str, Any] = json.loads(b"".join(chunks))
    return result


def find_sockets(directory: Path | None = None) -> list[Path]:
    """The control sockets in `directory` (default: DEFAULT_DIR, this host's daemons)."""
    try:
        return sorted(p for p in (directory or DEFAULT_DIR).glob("*.sock") if p.is_socket())
    except OSError:
        return []
