"""lanon's compiled modules (cffi, API mode), as the code that uses them loads them.

`pip install` builds them (build_backend/native_build.py): `lanon.member._inbound_drain` (a
member's INBOUND ring, member/drain.py), `lanon.member._pacer_loop` (the pacer's loop,
member/pacer.py) and `lanon.common._native` (the checksum, common/packet.py; a packet's
INBOUND frames sealed, common/flowkey.py; a round's pads, common/crypto.py). Those that call
libsodium take its functions from the module PyNaCl carries it in, already loaded (by
common/sodium.py) and initialised, through an init function of theirs. A checkout never
installed has none, and a module built from another version's source may lack a function:
either way the Python path does the work, and `load` says why. (An init function's name ends
in its module's interface number, raised whenever a function or struct the Python side uses
changes, so that a module built from older source is refused here, not called wrongly; a
module that needs nothing of libsodium's names such a function as `needs`.)
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


def load(name: str, init: str | None = None, needs: str | None = None) -> tuple[Any, str | None]:
    """(module `lanon.<name>`, None) with `init` (its function that finds libsodium's, if it
    needs them) done and `needs` (a function of its) there, or (None, why it cannot be had)."""
    try:
        module = importlib.import_module(f"lanon.{name}")
    except ImportError as exc:
        return None, f"not built ({exc})"
    if needs is not None and not hasattr(module.lib, needs):
        return None, f"unusable (no {needs}: built from another version's source)"
    if init is None:
        return module, None
    path = getattr(sys.modules.get("nacl._sodium"), "__file__", None)
    if not path:
        return None, "PyNaCl's libsodium module is not loaded"
    try:
        found = getattr(module.lib, init)(path.encode())
    except AttributeError as exc:  # (built from another version's source)
        return None, f"unusable ({exc})"
    if found != 0:
        return None, f"libsodium's functions not found in {path}"
    return module, None
