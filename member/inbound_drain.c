/* A member's INBOUND frames, read from the receive ring in one call (member/drain.py).

   Every member reads every INBOUND frame of every download, and nearly all of them are
   another member's: in Python each cost a member about 7 us, eight members on a machine of
   two cores eight times that. Here a frame costs what the engine's own path costs in
   libsodium (member/inbound.py, common/flowkey.py InboundOpener) and little else:

   - a frame whose header is sound (version, type, coalition, a gateway that exists, a part
     of a packet), from a source the door lets in, is opened as the engine would open it,
     under the flow's key if the tag is ours and under a key of nobody's if not. With
     ChaCha20-Poly1305: Poly1305 over header and ciphertext, then ChaCha20 over the
     ciphertext under nobody's key after a failure, over nothing after a success. With
     AES-256-GCM: one call, whose one pass of AES-CTR and GHASH libsodium (1.0.19 on) runs
     whether the tag holds or not, then overwrites the output after a failure; after a
     success, the scratch is overwritten alike. The same calls over the same bytes whoever
     owns the flow, as in Python;
   - another's frame is then done with. So is one of our tags whose seal does not hold, or
     whose number is not above the last this gateway's frames of the flow reached (a replay):
     each is counted, and nothing else is done, so that a flood of forged or replayed frames
     of a flow's tag costs its owner what it costs everyone else;
   - a fresh frame of ours is written opened, with its header, into `out` (until it is full:
     LANON_FULL), and the engine does the rest (parts, delivery), as for one it opened itself;
   - anything else (a short or foreign frame, an unknown gateway, a slot the kernel cut, a
     source the door has closed, or any source but those it lets in while it is shut) is left
     in its slot for the engine's Python path, which checks and counts it (LANON_PYTHON).

   Between two frames it stops when a rounds' frame waits (an OPEN must not wait behind a
   download) and when the loop's next timer is due. It reads only slots the kernel gave it
   (status TP_STATUS_USER) and gives each back (status 0) once read. */

#include <stdint.h>
#include <string.h>
#include <time.h>
#include <dlfcn.h>

#define TP_STATUS_USER 1u
#define PACKET_OUTGOING 4
#define PKTTYPE_AT 42      /* sockaddr_ll's sll_pkttype, after tpacket2_hdr */
#define ETH_HEADER 14
#define MAC_LEN 6
#define HEAD 26            /* an INBOUND frame's header (wire.INBOUND_HEAD) */
#define TAG_LEN 16
#define KEY_LEN 32
#define AES256_GCM 1       /* struct lanon_inbound's cipher (flowkey.InboundCipher.compiled) */

#include "inbound_drain.h"

/* A fresh frame of ours in `out`: sender (2), index (1), parts (1), size (4), sequence
   number (8), tag (8), in this host's order; then `size` bytes of part. */
#define RECORD 24

typedef int (*aead_decrypt_t)(unsigned char *, unsigned long long *, unsigned char *,
                              const unsigned char *, unsigned long long, const unsigned char *,
                              unsigned long long, const unsigned char *, const unsigned char *);
typedef int (*stream_xor_t)(unsigned char *, const unsigned char *, unsigned long long,
                            const unsigned char *, uint32_t, const unsigned char *);

static aead_decrypt_t aead_decrypt, aes_decrypt;
static stream_xor_t stream_xor;

/* libsodium's functions, from the module PyNaCl carries it in (already loaded, and already
   initialised by common/sodium.py): the same code the Python path calls. */
int lanon_inbound_init2(const char *sodium_module) {
    void *lib = dlopen(sodium_module, RTLD_NOW | RTLD_NOLOAD);
    if (lib == NULL)
        return -1;
    aead_decrypt = (aead_decrypt_t)dlsym(lib, "crypto_aead_chacha20poly1305_ietf_decrypt");
    aes_decrypt = (aead_decrypt_t)dlsym(lib, "crypto_aead_aes256gcm_decrypt");
    stream_xor = (stream_xor_t)dlsym(lib, "crypto_stream_chacha20_ietf_xor_ic");
    return aead_decrypt != NULL && aes_decrypt != NULL && stream_xor != NULL ? 0 : -2;
}

/* Where `key` (`width` bytes) is in the sorted `table` of `n`, or -1: a binary search. */
static int64_t find(const unsigned char *table, uint32_t n, const unsigned char *key,
                    size_t width) {
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = memcmp(key, table + width * mid, width);
        if (c == 0)
            return mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

static uint64_t be64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static double seconds(int clock_id) {
    struct timespec ts;
    clock_gettime(clock_id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Frames waiting in the ring, up to `limit`; `*taken` says how many were read. Returns why
   it stopped (the enum above). `rounds`: the status word of the rounds' ring's next slot. */
int lanon_inbound_drain(struct lanon_inbound *d, int limit, const volatile uint32_t *rounds,
                        int *taken) {
    int n = 0;
    int why = LANON_LIMIT;
    while (n < limit) {
        unsigned char *slot = d->ring + d->starts[d->next];
        volatile uint32_t *status = (volatile uint32_t *)slot;
        if (!(*status & TP_STATUS_USER)) {
            why = LANON_EMPTY;
            break;
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE); /* the frame after its status */
        uint32_t len, snap;
        uint16_t mac;
        memcpy(&len, slot + 4, 4);
        memcpy(&snap, slot + 8, 4);
        memcpy(&mac, slot + 12, 2);
        if (snap != len || snap < ETH_HEADER || (uint64_t)mac + snap > d->slot) {
            why = LANON_PYTHON; /* cut or odd: the Python path counts it */
            break;
        }
        if (slot[PKTTYPE_AT] != PACKET_OUTGOING) {
            const unsigned char *src = slot + mac + MAC_LEN;
            const unsigned char *p = slot + mac + ETH_HEADER;
            uint32_t plen = snap - ETH_HEADER;
            if (plen < HEAD + TAG_LEN || memcmp(p, d->head, 6) != 0 ||
                (d->nclosed && find(d->closed, d->nclosed, src, MAC_LEN) >= 0) ||
                (d->shut && find(d->allowed, d->nallowed, src, MAC_LEN) < 0)) {
                why = LANON_PYTHON;
                break;
            }
            uint16_t sender = (uint16_t)(p[6] << 8 | p[7]);
            if (sender >= d->gateways || p[25] == 0 || p[24] >= p[25]) {
                why = LANON_PYTHON;
                break;
            }
            int64_t ours = d->owned ? find(d->tags, d->owned, p + 16, 8) : -1;
            uint32_t size = plen - HEAD - TAG_LEN; /* < slot: scratch holds it */
            unsigned char *record = d->out + d->used;
            if (ours >= 0 && d->used + RECORD + size > d->out_len) {
                /* read next time, once ours so far are taken (never fits: the engine's way) */
                why = d->used ? LANON_FULL : LANON_PYTHON;
                break;
            }
            unsigned char *into = ours >= 0 ? record + RECORD : d->scratch;
            unsigned char nonce[12] = {0x80, 0, p[6], p[7]}; /* INBOUND_DIRECTION | gateway */
            memcpy(nonce + 4, p + 8, 8);                     /* then its inbound number */
            const unsigned char *key = ours >= 0 ? d->keys + KEY_LEN * ours : d->nobody;
            int bad;
            if (d->cipher == AES256_GCM) {
                bad = aes_decrypt(into, NULL, NULL, p + HEAD, size + TAG_LEN, p, HEAD, nonce,
                                  key);
                if (!bad)
                    memset(d->scratch, 0xd0, size); /* as libsodium's failure does to `into` */
                d->calls += 1;
                d->aes256gcm += HEAD + size;
            } else {
                bad = aead_decrypt(into, NULL, NULL, p + HEAD, size + TAG_LEN, p, HEAD, nonce,
                                   key);
                stream_xor(d->scratch, p + HEAD, bad ? size : 0, nonce, 1, d->nobody);
                d->calls += 2;
                d->poly1305 += HEAD + size;
                d->chacha20 += size;
            }
            if (ours >= 0) {
                uint64_t seq = be64(p + 8);
                uint64_t *seen = d->seen + (size_t)ours * d->gateways + sender;
                if (bad) {
                    d->bad_seals++;
                } else if (seq <= *seen) {
                    d->replays++;
                } else {
                    uint64_t tag = be64(p + 16);
                    int32_t kept = (int32_t)size;
                    *seen = seq;
                    memcpy(record, &sender, 2);
                    record[2] = p[24];
                    record[3] = p[25];
                    memcpy(record + 4, &kept, 4);
                    memcpy(record + 8, &seq, 8);
                    memcpy(record + 16, &tag, 8);
                    d->used += RECORD + size;
                }
            }
        }
        __atomic_store_n(status, 0, __ATOMIC_RELEASE); /* the slot back to the kernel */
        d->next = d->next + 1 == d->count ? 0 : d->next + 1;
        n++;
        if (*rounds & TP_STATUS_USER) {
            why = LANON_ROUNDS;
            break;
        }
        if (seconds(d->clock_id) >= d->due) {
            why = LANON_TIMER;
            break;
        }
    }
    *taken = n;
    return why;
}
