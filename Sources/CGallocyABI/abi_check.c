// The C interface's header, compiled as C by the package itself: it must stand alone, and the
// error codes are ABI (the Swift side maps MemberError.Code onto them by name, so a renumbered
// constant would go unnoticed there).
#include "gallocy.h"

_Static_assert(GALLOCY_OK == 0, "GALLOCY_OK is 0");
_Static_assert(GALLOCY_E_INVALID_OPTIONS == 1, "error codes are ABI");
_Static_assert(GALLOCY_E_START_FAILED == 2, "error codes are ABI");
_Static_assert(GALLOCY_E_HEAP_BASE_IN_USE == 3, "error codes are ABI");
_Static_assert(GALLOCY_E_UNAVAILABLE == 4, "error codes are ABI");
_Static_assert(GALLOCY_E_TIMEOUT == 5, "error codes are ABI");
_Static_assert(GALLOCY_E_LEASE_EXPIRED == 6, "error codes are ABI");
_Static_assert(GALLOCY_E_LOCK_BUSY == 7, "error codes are ABI");
_Static_assert(GALLOCY_E_NOT_ALLOCATED == 8, "error codes are ABI");
_Static_assert(GALLOCY_E_OUT_OF_SPACE == 9, "error codes are ABI");
_Static_assert(GALLOCY_E_INVALID_ARGUMENT == 10, "error codes are ABI");
_Static_assert(GALLOCY_E_STOPPED == 11, "error codes are ABI");
_Static_assert(GALLOCY_E_WRONG_THREAD == 100, "error codes are ABI");
_Static_assert(sizeof(gallocy_error_t) == sizeof(int), "gallocy_error_t is an int-sized enum");
