"""Whatever the kernel says about one emitted packet costs that packet only: counted by errno,
never fatal (a cell to 255.255.255.255 used to kill the gateway with EACCES)."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from lanon.common.daemon_config import load
from lanon.common.events import EmitPacket
from lanon.common.templates import write_coalition
from lanon.gateway.config import GatewaySettings
from lanon.gateway.daemon import Emitter, GatewayDaemon
from tests.packets import udp


class RefusingSocket:
    def __init__(self, code: int) -> None:
        self.code = code
        self.sent = 0

    def sendto(self, packet: bytes, address: tuple[str, int]) -> int:
        self.sent += 1
        raise OSError(self.code, "refused")


def emitter(code: int) -> Emitter:
    e = Emitter.__new__(Emitter)  # no raw socket: this one only refuses
    e.sock = RefusingSocket(code)  # type: ignore[assignment]
    return e


@pytest.mark.parametrize(
    "code",
    [
        errno.EACCES,
        errno.EPERM,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.EMSGSIZE,
        errno.ENOBUFS,
        errno.EINVAL,
    ],
)
def test_every_send_error_is_a_value_not_an_exception(code: int) -> None:
    assert emitter(code).send(udp(dst="255.255.255.255")) == errno.errorcode[code]


def test_the_daemon_counts_emit_errors_and_goes_on(tmp_path: Path) -> None:
    write_coalition(
        tmp_path, "test", "198.18.0.0/24", [("gateway1", "198.18.0.192/30")], ["a", "b", "c"]
    )
    settings, loaded = load(GatewaySettings, tmp_path / "gateway1.toml", "gateway")
    registry = CollectorRegistry()
    d = GatewayDaemon(settings, loaded, registry)
    d.emitter = emitter(errno.EACCES)
    for _ in range(3):
        d._emit(EmitPacket(udp(src="198.18.0.193", dst="255.255.255.255")))
    assert registry.get_sample_value("lanon_emit_errors_total", {"reason": "EACCES"}) == 3


REAL = """
import sys
sys.path[:0] = {path!r}
from lanon.gateway.daemon import Emitter
from tests.packets import udp
e = Emitter()
print(e.send(udp(src="198.18.0.193", dst="255.255.255.255")))
print(e.send(udp(src="198.18.0.193", dst="203.0.113.10", payload=bytes(2000))))
"""


@pytest.mark.root
def test_the_kernels_refusals_in_an_empty_namespace() -> None:
    """The real raw socket, in a network namespace of its own with a veth pair for a LAN
    (nothing can leave it): a broadcast is refused with EACCES, a packet above the MTU with
    EMSGSIZE."""
    from tests.integration.conftest import require_root_lab

    require_root_lab()
    code = REAL.format(path=sys.path)
    setup = (
        "ip link add lan0 type veth peer name lan1 && ip addr add 198.18.0.2/24 dev lan0 && "
        "ip link set lan0 up && ip link set lan1 up && ip route add default via 198.18.0.1 && "
        'exec "$0" -c "$1"'
    )
    r = subprocess.run(
        ["unshare", "--net", "sh", "-c", setup, sys.executable, code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["EACCES", "EMSGSIZE"]
