"""`pip install /path/to/lanon` works from a checkout it may not write to, and ships deploy/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*_cache", "*.so"
)


def listing(tree: Path) -> dict[str, int]:
    return {str(p.relative_to(tree)): p.stat().st_mtime_ns for p in sorted(tree.rglob("*"))}


def test_a_read_only_checkout_installs_without_being_written(tmp_path: Path) -> None:
    src = tmp_path / "lanon"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    before = listing(src)
    for p in [src, *src.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)
    target = tmp_path / "site"
    # as an operator runs it: build isolation fetches setuptools from the package index
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
    try:
        r = subprocess.run(
            [*pip, "--disable-pip-version-check", "--target", str(target), str(src)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
            env={**os.environ, "PIP_NO_INPUT": "1"},
        )
    finally:
        for p in [src, *src.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    assert r.returncode == 0, r.stdout + r.stderr
    assert listing(src) == before  # no egg-info, no build/: as root, read-only would not stop it
    package = target / "lanon"
    assert (package / "deploy" / "README.md").is_file()
    assert (package / "deploy" / "systemd" / "lanon-member.service").is_file()
    assert (package / "deploy" / "install.py").is_file()
    assert (package / "deploy" / "docker" / "Dockerfile").is_file()  # the guide lists it
    assert not (target / "common").exists()  # only lanon.* lands in site-packages
    # the compiled INBOUND path and pacer's loop, built from their source (member/*.c)
    assert list((package / "member").glob("_inbound_drain*.so"))
    assert list((package / "member").glob("_pacer_loop*.so"))
