/* What Python sees of inbound_drain.c: cffi's declarations (build_backend/native_build.py
   reads this file as they are), and the C file's own. No preprocessor lines: cffi reads it. */

/* Why a drain stopped (member/drain.py's Stop). */
enum { LANON_EMPTY, LANON_PYTHON, LANON_ROUNDS, LANON_LIMIT, LANON_FULL, LANON_TIMER };

/* A member's INBOUND ring and what it reads it with (member/drain.py sets it up). */
struct lanon_inbound {
    unsigned char *ring;
    const uint32_t *starts;
    uint32_t count, next, slot;
    unsigned char head[6];
    uint16_t gateways;
    const unsigned char *nobody;
    const unsigned char *tags;   /* ours, sorted, 8 bytes each as on the wire */
    const unsigned char *keys;   /* 32 bytes each, in the tags' order */
    uint64_t *seen;              /* the last number taken, per tag and gateway */
    uint32_t owned;
    const unsigned char *closed; /* sources the door has closed, sorted, 6 bytes each */
    uint32_t nclosed;
    const unsigned char *allowed; /* while the door is shut, the only sources it lets in */
    uint32_t nallowed;
    int shut;
    unsigned char *scratch;      /* a slot's size: where others' frames are opened */
    unsigned char *out;
    uint32_t out_len, used;
    int clock_id;
    double due;
    uint64_t bad_seals, replays; /* frames of ours refused, since the adapter last took them */
    uint64_t calls, chacha20, poly1305, aes256gcm;
    int cipher;                  /* 0 ChaCha20-Poly1305, 1 AES-256-GCM (flowkey.InboundCipher) */
};

/* libsodium's functions found (0), or not (below 0). Its name ends in the number of this
   module's interface, raised whenever a function or struct the Python side uses changes: a
   module built from older source lacks it and is refused (common/compiled.py). */
int lanon_inbound_init2(const char *sodium_module);
int lanon_inbound_drain(struct lanon_inbound *d, int limit, const volatile uint32_t *rounds,
                        int *taken);
