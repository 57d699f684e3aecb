"""The command line explains itself and reports user mistakes without a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lanon.cli.main import main
from lanon.common.templates import write_coalition

LANON = [sys.executable, "-m", "lanon.cli"]


def lanon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LANON, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["member"],
        ["gateway"],
        ["keygen"],
        ["config"],
        ["config", "check"],
        ["config", "keys"],
        ["status"],
        ["lab"],
        ["lab", "up"],
        ["lab", "down"],
        ["lab", "exec"],
        ["lab", "demo"],
        ["lab", "join"],
        ["lab", "leave"],
        ["admin"],
        ["admin", "pending"],
        ["admin", "approve"],
        ["admin", "remove"],
        ["admin", "sign"],
        ["admin", "publish"],
        ["join"],
        ["rekey"],
    ],
)
def test_every_command_explains_itself(args: list[str]) -> None:
    r = lanon(*args, "--help")
    assert r.returncode == 0
    assert "usage: lanon" in r.stdout and len(r.stdout.splitlines()) > 3


def write_lab_like_files(tmp: Path, mode: int = 0o600) -> Path:
    """A coalition of 3 members and 1 gateway from the shipped templates; member1's file."""
    write_coalition(
        tmp,
        "test",
        "198.18.0.0/24",
        [("gateway1", "198.18.0.192/30")],
        ["member1", "member2", "member3"],
    )
    (tmp / "keys" / "member1.key").chmod(mode)
    return tmp / "member1.toml"


def test_config_check_accepts_good_files(tmp_path: Path) -> None:
    cfg = write_lab_like_files(tmp_path)
    r = lanon("config", "check", str(cfg))
    assert r.returncode == 0 and "member member1 of coalition test: ok" in r.stdout, r.stderr
    r = lanon("config", "check", str(tmp_path / "coalition.toml"))
    assert (
        r.returncode == 0
        and "3 members, 1 gateway(s), 4 anonymous addresses, key graph 2-connected" in r.stdout
    )


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            lambda t: t.replace('interface = "eth0"', "interface = 7"),
            r"member1.toml: interface = 7: expected a string",
        ),
        (
            lambda t: t + "queue = 70000\n",
            r"member1.toml: queue = 70000: expected a number from 0 to 65535",
        ),
        (
            lambda t: t + "colour = 'blue'\n",
            r"member1.toml: unknown key 'colour'; expected one of: ",
        ),
        (
            lambda t: t.replace('name = "member1"', 'name = "member9"'),
            r"name = 'member9': expected the name of a member",
        ),
        (
            lambda t: t.replace("coalition.toml", "missing.toml"),
            r"missing.toml: cannot read coalition file",
        ),
        (lambda t: t + "[[[", r"member1.toml: not valid TOML"),
        (
            lambda t: t + "[[services]]\nport = 80\nprotocol = 'sctp'\n",
            r"member1.toml: \[\[services\]\] #1: protocol = 'sctp': expected one of 'tcp', 'udp'",
        ),
        (
            lambda t: t + "[[services]]\nport = 80\nendpoint = 'web'\n",
            r"member1.toml: \[\[services\]\] #1: endpoint = 'web': expected an \[\[endpoints\]\] name",
        ),
        (
            lambda t: t + "[[services]]\nport = 80\n[[services]]\nport = 80\n",
            r"two services share \(6, 80\)",
        ),
        (lambda t: t + "services = 3\n", r"services = 3: expected an array of tables"),
    ],
)
def test_bad_configuration_names_file_key_value_and_expectation(
    tmp_path: Path, edit, message: str
) -> None:  # type: ignore[no-untyped-def]
    cfg = write_lab_like_files(tmp_path)
    cfg.write_text(edit(cfg.read_text()))
    r = lanon("member", "--config", str(cfg), "--check")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert re.search(message, r.stderr), r.stderr


def test_a_service_serving_a_pinned_endpoint_must_hold_its_key(tmp_path: Path) -> None:
    cfg = write_lab_like_files(tmp_path)
    assert main(["keygen", "web", "--dir", str(tmp_path / "keys")]) == 0
    public = (tmp_path / "keys" / "web.pub").read_text().split()[-1]
    coalition = tmp_path / "coalition.toml"
    coalition.write_text(
        coalition.read_text()
        + f"""
[[endpoints]]
name = "web"
protocol = "tcp"
address = "198.18.0.193"
port = 443
public_key = "{public}"
"""
    )
    (tmp_path / "keys" / "other.key").write_bytes((tmp_path / "keys" / "member2.key").read_bytes())
    (tmp_path / "keys" / "other.key").chmod(0o600)
    base = cfg.read_text()
    cfg.write_text(base + "[[services]]\nport = 8443\nendpoint = 'web'\nkey = 'keys/other.key'\n")
    r = lanon("config", "check", str(cfg))
    assert r.returncode == 2 and "is not endpoint web's" in r.stderr, r.stderr
    cfg.write_text(base + "[[services]]\nport = 8443\nendpoint = 'web'\nkey = 'keys/web.key'\n")
    r = lanon("config", "check", str(cfg))
    assert r.returncode == 0, r.stderr


def test_a_private_key_others_can_read_is_refused(tmp_path: Path) -> None:
    cfg = write_lab_like_files(tmp_path, mode=0o644)
    r = lanon("member", "--config", str(cfg), "--check")
    assert r.returncode == 2 and "readable by others (mode 0644); expected 0600" in r.stderr
    assert "Traceback" not in r.stderr


def test_keygen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", "alice", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "alice.key").stat().st_mode & 0o777 == 0o600
    public = (tmp_path / "alice.pub").read_text().splitlines()[-1]
    assert public in capsys.readouterr().out
    assert main(["keygen", "alice", "--dir", str(tmp_path)]) == 1  # never overwrites a key
    assert "not overwriting" in capsys.readouterr().err
    assert main(["keygen", "Bad Name", "--dir", str(tmp_path)]) == 2


def test_config_keys_documents_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "keys"]) == 0
    out = capsys.readouterr().out
    for key in (
        "[rounds] deadline",
        "[flows] udp_timeout",
        "member: queue",
        "gateway: promiscuous",
        "[coalition] cell_size",
    ):
        assert key in out


def test_a_host_whose_processor_lacks_the_coalitions_cipher_refuses_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """New files seal INBOUND frames with AES-256-GCM; a host whose processor lacks it would
    have libsodium abort mid-download: it says so at start, and which setting runs anywhere."""
    from lanon.cli.main import EXIT_PREREQ
    from lanon.common import flowkey

    cfg = write_lab_like_files(tmp_path)
    assert 'inbound_cipher = "aes256-gcm"' in (tmp_path / "coalition.toml").read_text()
    assert main(["member", "--config", str(cfg), "--check"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(flowkey, "AES_GCM_MISSING", "this processor has no AES-NI, PCLMUL or AVX")
    assert main(["member", "--config", str(cfg), "--check"]) == EXIT_PREREQ
    err = capsys.readouterr().err
    assert (
        "[coalition] inbound_cipher = 'aes256-gcm' cannot run here: this processor has no AES-NI"
        in err
    )
    assert "'chacha20-poly1305', which runs anywhere" in err


def test_files_made_on_a_machine_without_aes_gcm_run_chacha20(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lab, `lanon init` and the demo run their hosts on this machine: on one without
    AES-NI (some virtual machines) their files say ChaCha20-Poly1305 and run."""
    from lanon.common import flowkey, templates

    why = "this processor lacks the AES instructions"
    monkeypatch.setattr(templates, "AES_GCM_MISSING", why)
    monkeypatch.setattr(flowkey, "AES_GCM_MISSING", why)
    cfg = write_lab_like_files(tmp_path)
    assert 'inbound_cipher = "chacha20-poly1305"' in (tmp_path / "coalition.toml").read_text()
    assert main(["member", "--config", str(cfg), "--check"]) == 0
