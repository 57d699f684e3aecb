"""lanon's build backend: setuptools, run on a copy of the source tree.

setuptools writes `lanon.egg-info/` and `build/` into the tree it builds from, so a plain
`pip install /path/to/lanon` fails on a read-only checkout (a mounted volume, another user's
clone; pypa/setuptools#3237). This backend copies the tree into a temporary directory and runs
setuptools' own hooks there: the checkout is only read. Editable installs (`pip install -e`,
which the development virtual environment uses) are setuptools' own, in place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from setuptools import build_meta as _setuptools

T = TypeVar("T")
SKIP = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*_cache", ".tox", "*.so")

# Editable installs point at the checkout itself.
build_editable = _setuptools.build_editable
get_requires_for_build_editable = _setuptools.get_requires_for_build_editable
prepare_metadata_for_build_editable = _setuptools.prepare_metadata_for_build_editable


@contextmanager
def _copy_of_tree() -> Iterator[None]:
    source = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="lanon-build-") as tmp:
        tree = Path(tmp) / "src"
        shutil.copytree(source, tree, ignore=shutil.ignore_patterns(*SKIP), symlinks=True)
        for path in (tree, *tree.rglob("*")):  # a read-only checkout copies read-only
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)
        os.chdir(tree)
        try:
            yield
        finally:
            os.chdir(source)


def _in_copy(hook: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with _copy_of_tree():
        return hook(*args, **kwargs)


def _absolute(directory: str) -> str:
    return os.path.abspath(directory)


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _in_copy(_setuptools.get_requires_for_build_wheel, config_settings)


def get_requires_for_build_sdist(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _in_copy(_setuptools.get_requires_for_build_sdist, config_settings)


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: dict[str, Any] | None = None
) -> str:
    return _in_copy(
        _setuptools.prepare_metadata_for_build_wheel,
        _absolute(metadata_directory),
        config_settings,
    )


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    return _in_copy(
        _setuptools.build_wheel,
        _absolute(wheel_directory),
        config_settings,
        None if metadata_directory is None else _absolute(metadata_directory),
    )


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    return _in_copy(_setuptools.build_sdist, _absolute(sdist_directory), config_settings)
