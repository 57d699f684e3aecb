/* A gateway's work on each packet from the Internet, in compiled code:

   - the Internet checksum (common/packet.py), over every 64 KiB packet the lab's veths hand
     it with its TCP or UDP checksum still to compute, which in Python (a long integer folded,
     then divided) took about 80 us;
   - the packet's INBOUND frames sealed (common/flowkey.py seal_parts): in Python a frame's
     header, nonce and seal cost about 3 us of calls around 1.3 us of libsodium's work
     (ChaCha20-Poly1305; AES-256-GCM about 0.5 us). */

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <dlfcn.h>

#include "native.h"

#define HEAD 26 /* an INBOUND frame's header (wire.INBOUND_HEAD): its associated data */
#define SEQ_AT 8
#define INDEX_AT 24
#define COUNT_AT 25
#define TAG_LEN 16

typedef int (*aead_encrypt_t)(unsigned char *, unsigned long long *, const unsigned char *,
                              unsigned long long, const unsigned char *, unsigned long long,
                              const unsigned char *, const unsigned char *,
                              const unsigned char *);

static aead_encrypt_t aead_encrypt[2]; /* by cipher: ChaCha20-Poly1305, AES-256-GCM */

typedef int (*stream_xor_t)(unsigned char *, const unsigned char *, unsigned long long,
                            const unsigned char *, uint64_t, const unsigned char *);
typedef int (*blake2b_t)(unsigned char *, size_t, const unsigned char *, unsigned long long,
                         const unsigned char *, size_t, const unsigned char *,
                         const unsigned char *);

static stream_xor_t stream_xor; /* ChaCha20 (original construction), from a block on */
static blake2b_t blake2b;       /* keyed BLAKE2b, with a salt and a personalisation */

/* The functions common/sodium.py's `seal`, `aes_seal` and `stream_xor` call, and BLAKE2b,
   from PyNaCl's module (already loaded, and initialised there). */
int lanon_native_init3(const char *sodium_module) {
    void *lib = dlopen(sodium_module, RTLD_NOW | RTLD_NOLOAD);
    if (lib == NULL)
        return -1;
    aead_encrypt[0] = (aead_encrypt_t)dlsym(lib, "crypto_aead_chacha20poly1305_ietf_encrypt");
    aead_encrypt[1] = (aead_encrypt_t)dlsym(lib, "crypto_aead_aes256gcm_encrypt");
    stream_xor = (stream_xor_t)dlsym(lib, "crypto_stream_chacha20_xor_ic");
    blake2b = (blake2b_t)dlsym(lib, "crypto_generichash_blake2b_salt_personal");
    return aead_encrypt[0] != NULL && aead_encrypt[1] != NULL && stream_xor != NULL &&
                   blake2b != NULL
               ? 0
               : -2;
}

static void put_be64(unsigned char *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

int lanon_seal_inbound(unsigned char *out, size_t out_len, const unsigned char *head,
                       const unsigned char *packet, size_t len, size_t capacity,
                       uint32_t direction, uint64_t first_seq, const unsigned char *key,
                       int cipher) {
    if (cipher < 0 || cipher > 1 || aead_encrypt[cipher] == NULL || capacity == 0)
        return -1;
    aead_encrypt_t encrypt = aead_encrypt[cipher];
    size_t count = len == 0 ? 1 : len / capacity + (len % capacity != 0);
    if (count > 255 || count * (HEAD + TAG_LEN) + len > out_len)
        return -1;
    if (first_seq + count - 1 < first_seq)
        return -1; /* a number past 2**64 - 1 would wrap round to a nonce used before */
    unsigned char nonce[12];
    nonce[0] = (unsigned char)(direction >> 24);
    nonce[1] = (unsigned char)(direction >> 16);
    nonce[2] = (unsigned char)(direction >> 8);
    nonce[3] = (unsigned char)direction;
    unsigned char *at = out;
    for (size_t i = 0; i < count; i++) {
        size_t start = i * capacity;
        size_t part = len - start < capacity ? len - start : capacity;
        uint64_t seq = first_seq + i;
        memcpy(at, head, HEAD);
        put_be64(at + SEQ_AT, seq);
        at[INDEX_AT] = (unsigned char)i;
        at[COUNT_AT] = (unsigned char)count;
        put_be64(nonce + 4, seq);
        if (encrypt(at + HEAD, NULL, packet + start, part, at, HEAD, NULL, nonce, key) != 0)
            return -1; /* (never: libsodium refuses only what is checked above) */
        at += HEAD + part + TAG_LEN;
    }
    return (int)count;
}

uint32_t lanon_sum16(const unsigned char *data, size_t len, uint32_t sum) {
    uint64_t acc = sum;
    size_t i = 0;
    /* 32-bit big-endian words into a 64-bit sum: 2**32 of them before it could overflow */
    for (; i + 4 <= len; i += 4)
        acc += (uint64_t)data[i] << 24 | (uint64_t)data[i + 1] << 16 | (uint32_t)data[i + 2] << 8 |
               data[i + 3];
    for (; i + 2 <= len; i += 2)
        acc += (uint32_t)data[i] << 8 | data[i + 1];
    if (i < len)
        acc += (uint32_t)data[i] << 8;
    while (acc >> 16)
        acc = (acc & 0xFFFF) + (acc >> 16);
    return (uint32_t)acc;
}

#define PAD_KEY_LEN 32

int lanon_apply_pads(unsigned char *vector, size_t len, const unsigned char *keys, size_t nkeys,
                     uint64_t rnd, uint16_t nslots, uint16_t nentries) {
    if (stream_xor == NULL || blake2b == NULL)
        return -1;
    /* the round's nonce: its number, little-endian (crypto.round_nonce) */
    unsigned char nonce[8];
    for (int i = 0; i < 8; i++, rnd >>= 8)
        nonce[i] = (unsigned char)rnd;
    /* each key's pad key for this shape (crypto.shape_key): BLAKE2b of the shape, `!HH` */
    static const unsigned char salt[16];
    static const unsigned char person[16] = "lanon-pad-shape";
    const unsigned char shape[4] = {(unsigned char)(nslots >> 8), (unsigned char)nslots,
                                    (unsigned char)(nentries >> 8), (unsigned char)nentries};
    unsigned char shaped[PAD_KEY_LEN];
    for (size_t k = 0; k < nkeys; k++) {
        if (blake2b(shaped, sizeof shaped, shape, sizeof shape, keys + k * PAD_KEY_LEN,
                    PAD_KEY_LEN, salt, person) != 0)
            return -1;
        if (stream_xor(vector, vector, len, nonce, 1, shaped) != 0)
            return -1;
    }
    return 0;
}
