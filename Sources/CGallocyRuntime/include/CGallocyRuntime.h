#ifndef CGALLOCY_RUNTIME_H
#define CGALLOCY_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

/// The system page size, as `sysconf(_SC_PAGESIZE)` reports it.
size_t CGallocyRuntime_page_size(void);

/// The version of the C runtime's ABI; bumped when the handler's shared state changes layout.
uint32_t CGallocyRuntime_abi_version(void);

#endif
