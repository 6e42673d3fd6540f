// The one thing in the codec Swift cannot do: emit the SSE4.2 `crc32` instruction, which
// checksums 8 bytes per cycle or so, against about one byte per cycle for the table in Swift.
// Every entry, message and snapshot chunk is checksummed, so this is on the storage hot path.
#include "CCRC32C.h"

#include <string.h>

#if defined(__x86_64__)

int CCRC32C_hardware_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
}

__attribute__((target("sse4.2")))
uint32_t CCRC32C_hardware_update(uint32_t crc, const void *data, size_t length) {
    const unsigned char *p = (const unsigned char *)data;
    uint64_t c = crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);  // unaligned load without undefined behaviour
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        length -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (length > 0) {
        c32 = __builtin_ia32_crc32qi(c32, *p);
        p += 1;
        length -= 1;
    }
    return c32;
}

#else

int CCRC32C_hardware_available(void) { return 0; }

uint32_t CCRC32C_hardware_update(uint32_t crc, const void *data, size_t length) {
    (void)data;
    (void)length;
    return crc;
}

#endif
