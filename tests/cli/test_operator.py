"""What an operator runs on a host: keygen for the daemon's user, deploy install, status."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lanon.cli import main as cli
from lanon.cli.main import describe_status, main
from lanon.common import control
from lanon.deploy.install import plan, shipped


def root_only() -> None:
    if os.geteuid() != 0:
        pytest.fail("giving files to another user needs root: run 'sudo ./run test'")


def test_keygen_as_root_gives_the_key_to_the_daemons_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root_only()
    monkeypatch.setattr(cli, "DAEMON_USER", "nobody")  # stands for lanon, which may not exist
    assert main(["keygen", "alice", "--dir", str(tmp_path)]) == 0
    for name in ("alice.key", "alice.pub"):
        assert (tmp_path / name).stat().st_uid == 65534
    assert (tmp_path / "alice.key").stat().st_mode & 0o777 == 0o600
    assert "(mode 0600, owned by nobody)" in capsys.readouterr().out


def test_keygen_says_so_when_the_daemons_user_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root_only()
    monkeypatch.setattr(cli, "DAEMON_USER", "no-such-lanon-user")
    assert main(["keygen", "bob", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "bob.key").stat().st_uid == 0
    err = capsys.readouterr().err
    assert "note: the key belongs to root" in err and "systemd-sysusers" in err
    assert main(["keygen", "carol", "--dir", str(tmp_path), "--owner", "no-such-user"]) == 1
    assert "--owner no-such-user: no such user" in capsys.readouterr().err
    assert not (tmp_path / "carol.key").exists()  # nothing written before the owner is known
    assert main(["keygen", "dave", "--dir", str(tmp_path), "--owner", "nobody"]) == 0
    assert (tmp_path / "dave.key").stat().st_uid == 65534


def test_deploy_install_puts_every_shipped_file_where_the_guide_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deploy", "install", "--root", str(tmp_path), "--lanon", "/x/bin/lanon"]) == 0
    out = capsys.readouterr().out
    etc = tmp_path / "etc"
    for unit in ("lanon-member.service", "lanon-gateway.service"):
        text = (etc / "systemd/system" / unit).read_text()
        assert "ExecStart=/x/bin/lanon " in text and "/opt/lanon" not in text
        for doc in re.findall(r"^Documentation=file:(\S+)", text, re.M):
            assert (tmp_path / doc.lstrip("/")).is_file(), doc  # never a file not installed
    for conf in ("90-lanon-member.conf", "90-lanon-gateway.conf"):
        assert (etc / "sysctl.d" / conf).is_file()
    assert (etc / "sysusers.d/lanon.conf").is_file()
    share = tmp_path / "usr/share/lanon"
    for rel, _ in shipped():
        assert (share / rel).is_file(), rel
    assert (share / "templates/member.toml").is_file() and (share / "grafana").is_dir()
    assert "new" in out and "systemd-sysusers" in out
    # a second run changes nothing; a changed file is replaced (an upgrade)
    (etc / "sysctl.d/90-lanon-member.conf").write_text("# edited\n")
    assert main(["deploy", "install", "--root", str(tmp_path), "--lanon", "/x/bin/lanon"]) == 0
    out = capsys.readouterr().out
    assert f"1 of {len(plan('/x/bin/lanon'))} files installed" in out
    assert "replaced" in out and "90-lanon-member.conf" in out


def test_deploy_path_prints_the_shipped_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "path", "systemd/lanon-member.service"]) == 0
    assert Path(capsys.readouterr().out.strip()).is_file()
    assert main(["deploy", "path", "nothing/here"]) == 1


class FakeDaemon:
    def __init__(self, path: Path, answer: dict[str, Any]) -> None:
        self.server = control.ControlServer(path, lambda request: answer)
        self.server.sock.setblocking(True)
        self.thread = threading.Thread(target=self.server.handle, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.thread.join(5)
        self.server.close()


MEMBER = {
    "role": "member",
    "name": "member1",
    "coalition": "office",
    "fingerprint": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
    "version": "0.1.0",
    "wire_version": 2,
    "state": "paused",
    "condition": "paused: 2 of 3 members present (min 3)",
    "round_rate": 0.0,
    "members": 3,
    "members_heard": 2,
    "k": 2,
    "flows": 0,
}


@pytest.fixture
def run_lanon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(control, "DEFAULT_DIR", tmp_path)
    yield tmp_path


def test_status_without_a_socket_asks_this_hosts_daemons(
    run_lanon: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = FakeDaemon(run_lanon / "member.sock", MEMBER)
    try:
        assert main(["status"]) == 0
    finally:
        daemon.close()
    out = capsys.readouterr().out
    assert re.search(r"member1\s+member\s+paused\s+0.0/s\s+2/3", out), out
    assert "member1: paused: 2 of 3 members present (min 3)" in out
    assert "coalition office, fingerprint a1b2c3d4e5f60718, lanon 0.1.0, wire version 2" in out


def test_status_without_daemons_says_where_it_looked(
    run_lanon: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lanon.lab import lab

    monkeypatch.setattr(lab, "STATE_ROOT", run_lanon / "no-labs")
    assert main(["status"]) == 1
    assert f"no daemon's control socket in {run_lanon}" in capsys.readouterr().err


def test_status_shows_hosts_that_run_different_files() -> None:
    other = {**MEMBER, "name": "member2", "fingerprint": "ffff" * 8, "state": "running"}
    text = describe_status([MEMBER, other])
    assert "fingerprint a1b2c3d4e5f60718, lanon 0.1.0, wire version 2 (member1)" in text
    assert "fingerprint ffffffffffffffff, lanon 0.1.0, wire version 2 (member2)" in text
    assert "run different coalition files or versions" in text
    assert "member2:" not in text  # running: nothing to say


def test_status_says_when_slots_were_jammed_and_whom_blame_excluded() -> None:
    assert "emerged corrupted" not in describe_status([MEMBER])
    text = describe_status([{**MEMBER, "corrupted_slots": 12}])
    assert "member1: 12 reserved slots of ours emerged corrupted" in text
    gateway = {
        **MEMBER,
        "role": "gateway",
        "name": "gateway1",
        "state": "leading",
        "members": {},
        "accusations": {"proven": 3, "unreadable": 1},
        "blame": {"excluded": ["member4"], "held_out": ["member3"], "traces": {"disruptor": 1}},
    }
    text = describe_status([gateway])
    assert "gateway1: excluded after blame: member4 (lanon readmit NAME" in text
    assert "out for the rest of the epoch: member3" in text
    member = {**MEMBER, "blame": {"excluded": ["member4"], "verdicts": {"refuted": 2}}}
    assert "member1: 2 blame verdicts did not hold" in describe_status([member])


@pytest.mark.parametrize(
    "args", [["deploy"], ["deploy", "install"], ["deploy", "path"], ["prepare"], ["keygen"]]
)
def test_the_operators_commands_explain_themselves(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([*args, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lanon") and len(out.splitlines()) > 3


def test_config_keys_explain_where_metrics_are_served(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "keys"]) == 0
    out = capsys.readouterr().out
    assert "':PORT' serves them on the IPv4 address of `interface`" in " ".join(out.split())
    assert "member: metrics_clients = []" in out


def test_prepare_finds_the_socket_directory_and_survives_a_bad_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon, not its pre-start step, reports a bad file: after its fail-closed rules."""
    from lanon.common import prepare

    calls: list[tuple[str, str, Path | None]] = []
    monkeypatch.setattr(prepare, "prepare", lambda *a: calls.append(a) or ["done"])
    cfg = tmp_path / "member.toml"
    cfg.write_text('control_socket = "run/member.sock"\n')
    assert main(["prepare", "member", "--config", str(cfg)]) == 0
    cfg.write_text("[[[")
    assert main(["prepare", "gateway", "--user", "nobody", "--config", str(cfg)]) == 0
    assert calls == [("member", "lanon", tmp_path / "run"), ("gateway", "nobody", None)]
    assert "not valid TOML" in caplog.text and "no control socket directory made" in caplog.text
