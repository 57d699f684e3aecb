/* What Python sees of native.c: cffi's declarations (build_backend/native_build.py reads
   this file as they are), and the C file's own. No preprocessor lines: cffi reads it. */

/* The ones' complement sum of `data`'s 16-bit words (big-endian; an odd last byte padded
   with a zero), added to `sum` and folded into 16 bits: the Internet checksum is its
   complement. */
uint32_t lanon_sum16(const unsigned char *data, size_t len, uint32_t sum);
