"""A gateway's broadcasts one after another (a packet's INBOUND frames) leave in one system
call (`LinkSocket.send_frames`), in the order the engine made them, and the commands between
them keep their place: the leader emits a round's packets before it broadcasts its output."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from lanon.common import wire
from lanon.common.daemon_config import load
from lanon.common.events import EmitPacket, SendArp, SendFrame
from lanon.common.templates import write_coalition
from lanon.gateway import daemon as gd
from lanon.gateway.config import GatewaySettings

MEMBER = bytes.fromhex("020000000001")


class Engine:
    def __init__(self, commands: list[object]) -> None:
        self.commands = commands

    def pop_commands(self) -> list[object]:
        commands, self.commands = self.commands, []
        return commands


class Lan:
    def __init__(self, log: list[tuple[str, object]], fail: bytes = b"") -> None:
        self.log = log
        self.fail = fail  # a run with this frame raises (a lasting error of the link)

    def send_frames(self, dst: bytes, payloads: list[bytes]) -> int:
        self.log.append(("frames", (dst, payloads)))
        if self.fail in payloads:
            raise OSError(1, "refused")
        return 0

    def send(self, dst: bytes, payload: bytes) -> bool:
        self.log.append(("frame", (dst, payload)))
        return True


def daemon(tmp_path: Path, log: list[tuple[str, object]], fail: bytes = b"") -> gd.GatewayDaemon:
    write_coalition(
        tmp_path, "test", "198.18.0.0/24", [("gateway1", "198.18.0.192/30")], ["a", "b", "c"]
    )
    settings, loaded = load(GatewaySettings, tmp_path / "gateway1.toml", "gateway")
    d = gd.GatewayDaemon(settings, loaded, CollectorRegistry())
    d.lan = Lan(log, fail)  # type: ignore[assignment]
    d.handlers = {  # (as `run` sets them, with what they do logged)
        SendFrame: lambda cmd: d.lan.send(cmd.dst, cmd.frame),
        EmitPacket: lambda cmd: log.append(("emit", cmd.packet)),
        SendArp: lambda cmd: log.append(("arp", cmd.payload)),
    }
    return d


def test_a_run_of_broadcasts_goes_in_one_call_and_the_rest_in_order(tmp_path: Path) -> None:
    log: list[tuple[str, object]] = []
    d = daemon(tmp_path, log)
    d.engine = Engine(  # type: ignore[assignment]
        [
            SendFrame(wire.BROADCAST, b"part 1"),
            SendFrame(wire.BROADCAST, b"part 2"),
            EmitPacket(b"packet"),
            SendFrame(MEMBER, b"to one member"),
            SendFrame(wire.BROADCAST, b"output"),
            SendArp(MEMBER, b"arp"),
            SendFrame(wire.BROADCAST, b"last"),
        ]
    )
    d.carry_out()
    assert log == [
        ("frames", (wire.BROADCAST, [b"part 1", b"part 2"])),
        ("emit", b"packet"),
        ("frame", (MEMBER, b"to one member")),
        ("frames", (wire.BROADCAST, [b"output"])),
        ("arp", b"arp"),
        ("frames", (wire.BROADCAST, [b"last"])),
    ]


def test_a_run_the_link_refuses_is_contained_and_the_commands_after_it_go(
    tmp_path: Path,
) -> None:
    log: list[tuple[str, object]] = []
    d = daemon(tmp_path, log, fail=b"part 1")
    d.engine = Engine(  # type: ignore[assignment]
        [
            SendFrame(wire.BROADCAST, b"part 1"),
            EmitPacket(b"packet"),
            SendFrame(wire.BROADCAST, b"x"),
        ]
    )
    d.carry_out()
    assert [kind for kind, _ in log] == ["frames", "emit", "frames"]
