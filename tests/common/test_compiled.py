"""The compiled modules' loader (common/compiled.py): what cannot be had says why, never fails."""

from __future__ import annotations

import sys
import types

import pytest

from lanon.common import compiled


def test_the_installed_modules_load_with_libsodiums_functions() -> None:
    """`pip install` builds both (./run's install checks it too)."""
    assert compiled.load("common._native", "lanon_native_init3")[1] is None
    assert compiled.load("member._inbound_drain", "lanon_inbound_init2")[1] is None


def test_a_module_never_built_or_built_from_another_versions_source_is_said(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module, why = compiled.load("common._never_built", "lanon_native_init3")
    assert module is None and why is not None and why.startswith("not built")
    stale = types.ModuleType("lanon.common._stale")
    stale.lib = types.SimpleNamespace(lanon_sum16=lambda *a: 0)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lanon.common._stale", stale)
    module, why = compiled.load("common._stale", "lanon_native_init3")
    assert module is None and why is not None and why.startswith("unusable")
    assert compiled.load("common._stale")[0] is stale  # (nothing of libsodium's asked)
    stale.lib.lanon_native_init3 = lambda path: -2  # type: ignore[attr-defined]
    module, why = compiled.load("common._stale", "lanon_native_init3")
    assert module is None and why is not None and "not found" in why
    module, why = compiled.load("common._stale", needs="lanon_apply_pads")
    assert module is None and why is not None and why.startswith("unusable")
    assert compiled.load("common._stale", needs="lanon_sum16")[0] is stale
