"""Builds `lanon.member._inbound_drain` from member/inbound_drain.c (cffi, API mode).

setup.py names it in `cffi_modules`: `pip install` compiles it with the C compiler and the
Python headers NetfilterQueue needs anyway, and fails without them. A checkout run without an
install has no compiled module: its members read INBOUND frames in Python (member/drain.py
says so in their log), at several times the CPU a frame.
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

MEMBER = Path(__file__).resolve().parents[1] / "member"

ffibuilder = FFI()
ffibuilder.cdef((MEMBER / "inbound_drain.h").read_text())  # (the C file includes it too)
ffibuilder.set_source(
    "lanon.member._inbound_drain",
    (MEMBER / "inbound_drain.c").read_text(),
    include_dirs=[str(MEMBER)],
    extra_compile_args=["-O2"],
    libraries=["dl"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
