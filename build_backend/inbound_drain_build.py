"""Builds `lanon.member._inbound_drain` from member/inbound_drain.c (cffi, API mode).

setup.py names it in `cffi_modules`: `pip install` compiles it with the C compiler and the
Python headers NetfilterQueue needs anyway, and fails without them. A checkout run without an
install has no compiled module: its members read INBOUND frames in Python (member/drain.py
says so in their log), at several times the CPU a frame.
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

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
    uint64_t *seen;
    uint32_t owned;
    const unsigned char *closed;
    uint32_t nclosed;
    unsigned char *scratch;
    unsigned char *out;
    uint32_t out_len, used;
    int clock_id;
    double due;
    uint64_t bad_seals, replays;
    uint64_t calls, chacha20, poly1305;
};

int lanon_inbound_init(const char *sodium_module);
int lanon_inbound_drain(struct lanon_inbound *d, int limit, const volatile uint32_t *rounds,
                        int *taken);
"""

SOURCE = Path(__file__).resolve().parents[1] / "member" / "inbound_drain.c"

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "lanon.member._inbound_drain",
    SOURCE.read_text(),
    extra_compile_args=["-O2"],
    libraries=["dl"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
