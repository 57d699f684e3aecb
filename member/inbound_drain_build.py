"""Builds `lanon.member._inbound_drain` from inbound_drain.c (cffi, API mode), at install.

setup.py names it in `cffi_modules`: `pip install` compiles it with the C compiler and Python
headers NetfilterQueue needs anyway. Without it a member reads its INBOUND frames in Python
(member/drain.py says so in its log), at several times the CPU a frame.
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI  # type: ignore[import-untyped]

CDEF = """
enum { LANON_EMPTY, LANON_PYTHON, LANON_ROUNDS, LANON_LIMIT, LANON_FULL, LANON_TIMER };

struct lanon_inbound {
    unsigned char *ring;
    const uint32_t *starts;
    uint32_t count, next, slot;
    unsigned char head[6];
    uint16_t gateways;
    const unsigned char *nobody;
    const unsigned char *tags;
    const unsigned char *keys;
    uint32_t owned;
    unsigned char *scratch;  /* a slot's size: where others' frames are opened */
    unsigned char *out;      /* our frames, opened: a record each (RECORD, then the part) */
    uint32_t out_len, used;
    int clock_id;
    double due;
    uint64_t calls, chacha20, poly1305;
};

int lanon_inbound_init(const char *sodium_module);
int lanon_inbound_drain(struct lanon_inbound *d, int limit, const volatile uint32_t *rounds,
                        int *taken);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "lanon.member._inbound_drain",
    (Path(__file__).parent / "inbound_drain.c").read_text(),
    extra_compile_args=["-O2"],
    libraries=["dl"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
