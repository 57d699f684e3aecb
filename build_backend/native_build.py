"""Builds lanon's compiled modules (cffi, API mode): `lanon.member._inbound_drain` from
member/inbound_drain.c, `lanon.member._pacer_loop` from member/pacer_loop.c, `lanon.common._native`
from common/native.c.

setup.py names them in `cffi_modules`: `pip install` compiles them with the C compiler and the
Python headers NetfilterQueue needs anyway, and fails without them. A checkout run without an
install has neither: its members read INBOUND frames in Python (member/drain.py says so in
their log), at several times the CPU a frame, and checksums are computed in Python.
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parents[1]


def builder(module: str, folder: str, stem: str, libraries: list[str]) -> FFI:
    """`lanon.<folder>.<module>` from `<folder>/<stem>.c`, whose declarations cffi reads from
    `<folder>/<stem>.h` (the C file includes it too)."""
    ffi = FFI()
    ffi.cdef((ROOT / folder / f"{stem}.h").read_text())
    ffi.set_source(
        f"lanon.{folder}.{module}",
        (ROOT / folder / f"{stem}.c").read_text(),
        include_dirs=[str(ROOT / folder)],
        extra_compile_args=["-O2"],
        libraries=libraries,
    )
    return ffi


drain = builder("_inbound_drain", "member", "inbound_drain", ["dl"])
pacer = builder("_pacer_loop", "member", "pacer_loop", [])
native = builder("_native", "common", "native", ["dl"])

if __name__ == "__main__":
    drain.compile(verbose=True)
    pacer.compile(verbose=True)
    native.compile(verbose=True)
