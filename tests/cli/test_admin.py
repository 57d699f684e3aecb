"""lanon admin and lanon join from the command line: signing a version by hand, and the
mistakes an administrator makes, reported without a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanon.cli.main import main
from lanon.common.coalition import load
from lanon.common.crypto import HostKey, encode_key, write_private_key
from lanon.common.templates import write_coalition


def versioned(tmp_path: Path) -> tuple[Path, Path]:
    """A coalition directory whose file has an administrator; (coalition file, admin key)."""
    admin_key = HostKey.generate()
    write_coalition(
        tmp_path,
        "office",
        "198.18.0.0/24",
        [("g1", "198.18.0.192/30")],
        ["m1", "m2", "m3"],
        sections={"coalition": {"version": 1}, "admin": {"keys": [encode_key(admin_key.public)]}},
    )
    key = tmp_path / "admin.key"
    write_private_key(key, admin_key, "admin")
    return tmp_path / "coalition.toml", key


def test_an_edit_is_signed_as_the_next_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, key = versioned(tmp_path)
    assert main(["config", "check", str(path)]) == 2  # version 1 is not signed yet
    assert "0 valid administrator signature" in capsys.readouterr().err
    assert main(["admin", "sign", str(path), "--key", str(key)]) == 0
    assert load(path).version == 1
    path.write_text(path.read_text().replace("# min_members = 3", "min_members = 2"))
    assert main(["config", "check", str(path)]) == 2  # an edit voids the signature
    assert main(["admin", "sign", str(path), "--key", str(key), "--next"]) == 0
    c = load(path)
    assert (c.version, c.coalition.min_members) == (2, 2)
    assert "version 2 signed" in capsys.readouterr().out


def test_mistakes_are_said_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = versioned(tmp_path)
    stranger = tmp_path / "stranger.key"
    write_private_key(stranger, HostKey.generate(), "not an administrator")
    assert main(["admin", "sign", str(path), "--key", str(stranger)]) == 2
    assert "not one of [admin] keys" in capsys.readouterr().err
    assert main(["admin", "publish", str(path), "--socket", str(tmp_path / "none.sock")]) == 2
    assert "signature" in capsys.readouterr().err  # checked here before any gateway is asked
    plain = tmp_path / "plain"
    write_coalition(
        plain, "office", "198.18.0.0/24", [("g1", "198.18.0.192/30")], ["m1", "m2", "m3"]
    )
    assert main(["join", "--config", str(plain / "m1.toml")]) == 1
    assert "has no [admin]" in capsys.readouterr().err
    assert main(["admin", "pending", "--socket", str(tmp_path / "none.sock")]) == 1
    assert "no daemon answers" in capsys.readouterr().err


def test_init_admin_makes_a_signed_versioned_coalition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "c"
    assert (
        main(["init", str(d), "--members", "a,b,c", "--gateways", "g1=198.18.0.192/30", "--admin"])
        == 0
    )
    c = load(d / "coalition.toml")
    assert c.versioned and c.version == 1
    assert "keys/admin.key" in capsys.readouterr().out
    assert (
        main(
            [
                "admin",
                "sign",
                str(d / "coalition.toml"),
                "--key",
                str(d / "keys" / "admin.key"),
                "--next",
            ]
        )
        == 0
    )
    assert load(d / "coalition.toml").version == 2
    assert main(["config", "check", str(d / "a.toml")]) == 0
