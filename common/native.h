/* What Python sees of native.c: cffi's declarations (build_backend/native_build.py reads
   this file as they are), and the C file's own. No preprocessor lines: cffi reads it. */

/* libsodium's ChaCha20-Poly1305 and AES-256-GCM encryption, ChaCha20's raw stream and
   BLAKE2b, from the module PyNaCl carries it in (its path): 0, or below 0 if they are not
   there. Needed by lanon_seal_inbound and lanon_apply_pads.
   (Its name ends in the number of this module's interface, raised whenever a function or
   struct the Python side uses changes: a module built from older source lacks it and is
   refused, common/compiled.py, rather than called with the wrong arguments.) */
int lanon_native_init3(const char *sodium_module);
/* `vector` (`len` bytes) XORed in place with the round-`rnd` pad of each of the `nkeys` epoch
   keys in `keys` (32 bytes each, one after another), for a round of `nslots` slots and
   `nentries` entries: common/crypto.py `apply_pads`, one call where Python made a dozen a
   key. 0, or -1 if libsodium's functions were not found (init). */
int lanon_apply_pads(unsigned char *vector, size_t len, const unsigned char *keys, size_t nkeys,
                     uint64_t rnd, uint16_t nslots, uint16_t nentries);
/* `packet` (`len` bytes) cut into parts of `capacity` bytes (the last shorter; an empty packet
   one empty part), each written into `out` as an INBOUND frame, one after another: `head` (the
   frame's header, 26 bytes) with its number (`first_seq`, the next one for each part), its
   index and the count of parts set, then the part sealed under `key` (32 bytes) with the
   header as associated data, the nonce `direction` then the number (big-endian), with
   `cipher` (0 ChaCha20-Poly1305, 1 AES-256-GCM: the caller has checked that this processor
   has it, or libsodium aborts). Returns the number of frames, or -1: they would not fit in
   `out_len` bytes, more than 255 of them, a number past 2**64 - 1, a `capacity` of 0, no
   such cipher, or libsodium's function not found (init). */
int lanon_seal_inbound(unsigned char *out, size_t out_len, const unsigned char *head,
                       const unsigned char *packet, size_t len, size_t capacity,
                       uint32_t direction, uint64_t first_seq, const unsigned char *key,
                       int cipher);
/* The ones' complement sum of `data`'s 16-bit words (big-endian; an odd last byte padded
   with a zero), added to `sum` and folded into 16 bits: the Internet checksum is its
   complement. */
uint32_t lanon_sum16(const unsigned char *data, size_t len, uint32_t sum);
