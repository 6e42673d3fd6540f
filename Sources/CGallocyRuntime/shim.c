// The C part of the runtime. It stays small: only what Swift cannot do safely (the signal
// handler and its alternate stack, futex waits) belongs here. The fault handler arrives with the
// runtime issue; for now this target carries the helpers the layers above already use.
#include "CGallocyRuntime.h"

#include <unistd.h>

size_t CGallocyRuntime_page_size(void) {
    long size = sysconf(_SC_PAGESIZE);
    return size > 0 ? (size_t)size : 4096;
}

uint32_t CGallocyRuntime_abi_version(void) { return 1; }
