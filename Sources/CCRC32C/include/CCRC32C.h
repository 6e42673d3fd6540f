#ifndef CCRC32C_H
#define CCRC32C_H

#include <stddef.h>
#include <stdint.h>

/// 1 if this processor has the SSE4.2 `crc32` instruction, else 0.
int CCRC32C_hardware_available(void);

/// Continues the CRC-32C of `length` bytes at `data` from `crc` (the raw register, not inverted:
/// pass ~previous and invert the result). Uses the SSE4.2 `crc32` instruction; call only when
/// `CCRC32C_hardware_available()` says so.
uint32_t CCRC32C_hardware_update(uint32_t crc, const void *data, size_t length);

#endif
