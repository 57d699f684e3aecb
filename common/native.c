/* The Internet checksum in compiled code (common/packet.py): a gateway computes it over every
   64 KiB packet the lab's veths hand it with its TCP or UDP checksum still to compute, which in
   Python (a long integer folded, then divided) took about 80 us. */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "native.h"

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
