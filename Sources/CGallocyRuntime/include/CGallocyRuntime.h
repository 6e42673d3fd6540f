#ifndef CGALLOCY_RUNTIME_H
#define CGALLOCY_RUNTIME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// The system page size, as `sysconf(_SC_PAGESIZE)` reports it.
size_t CGallocyRuntime_page_size(void);

/// The version of the C runtime's ABI; bumped when the handler's shared state changes layout.
uint32_t CGallocyRuntime_abi_version(void);

// MARK: - Page states

/// The state of one heap page in the application view. The stable states match the view's
/// protection; the transient ones belong to whoever moved the page into them (a fault handler, the
/// release path, the apply path, the fault service) and make every other party retry.
enum {
    /// PROT_NONE: any access is served by the fault service.
    CGallocyRuntime_PAGE_NONE = 0,
    /// PROT_READ: reads are free; the first write makes a twin (release consistency).
    CGallocyRuntime_PAGE_READ_ONLY = 1,
    /// PROT_READ|PROT_WRITE, and the page is dirty (its twin holds the contents before the write).
    CGallocyRuntime_PAGE_WRITABLE = 2,
    /// Transient: a faulting thread is copying the twin.
    CGallocyRuntime_PAGE_UPGRADING = 3,
    /// Transient: the release path is write-protecting and diffing the page.
    CGallocyRuntime_PAGE_COLLECTING = 4,
    /// Transient: a committed diff is being written through the alias (and twin).
    CGallocyRuntime_PAGE_APPLYING = 5,
    /// Transient: a faulting thread has asked the fault service for access and is parked.
    CGallocyRuntime_PAGE_REQUESTED = 6,
};

/// The coherence mode of the registered region.
enum {
    /// Release consistency: a write fault on a read-only page is served in the handler (twin).
    CGallocyRuntime_MODE_RELEASE = 0,
    /// Page leases: every fault goes to the fault service.
    CGallocyRuntime_MODE_LEASE = 1,
};

// MARK: - Handler

/// Installs the SIGSEGV and SIGBUS handler (`SA_SIGINFO | SA_ONSTACK`), saving the dispositions
/// installed before so that faults outside the region, or that are not permission faults, chain
/// to them. Idempotent. Returns 0 or an errno value (from `sigaction`).
int CGallocyRuntime_install(void);

/// Gives the calling thread an alternate signal stack (mmap, with a guard page) unless it already
/// has one; it is unmapped when the thread exits. Idempotent. Returns 0 or an errno value (from `mmap` or `sigaltstack`).
int CGallocyRuntime_thread_prepare(void);

/// Registers the one heap region of this process: `size` bytes of the application view at `base`,
/// in pages of `page_size` bytes (a multiple of the system page size), with a twin area of the same
/// size at `twin`. Allocates (mmap) the page states, set to `initial_state` (NONE or READ_ONLY,
/// which must match the view's protection), and the dirty bitmap. Returns 0, EBUSY if a region is
/// registered, EINVAL for bad arguments, or the errno of mmap.
int CGallocyRuntime_region_register(void *base, size_t size, size_t page_size, void *twin,
                                    uint8_t initial_state, int mode);

/// Unregisters the region (faults in it chain from then on) and frees the states and the bitmap.
/// The caller owns the mappings and unmaps them after this returns.
void CGallocyRuntime_region_unregister(void);

/// The current state of a page (one of `CGallocyRuntime_PAGE_…`).
uint8_t CGallocyRuntime_page_state(size_t page);

// MARK: - Protection (fault service and release path; never called in the handler's fast path)

/// Sets a page's protection and stable state (NONE, READ_ONLY or WRITABLE without a twin copy),
/// waiting while another party holds the page in a transient state, and wakes threads parked on
/// it. Returns 0 or the errno of mprotect.
int CGallocyRuntime_page_set(size_t page, uint8_t state);

// MARK: - Dirty set and twins

/// How many pages the dirty set holds now.
size_t CGallocyRuntime_dirty_count(void);

/// Takes up to `capacity` dirty pages out of the dirty set (clearing their bits) into `pages`, in
/// ascending order, and returns how many it took. A page dirtied again later is recorded again.
size_t CGallocyRuntime_dirty_take(size_t *pages, size_t capacity);

/// Puts a page taken by `dirty_take` back into the dirty set (when its release could not start).
void CGallocyRuntime_dirty_restore(size_t page);

/// Starts the release of one dirty page: moves it into COLLECTING (waiting while another party
/// holds it) and, if it was WRITABLE, write-protects it. While it is COLLECTING, writers fault and
/// retry, so the caller can diff the page against its twin. Stores the state before in
/// `*previous`. Returns 0, or the errno of mprotect (the page is then back as it was).
int CGallocyRuntime_collect_begin(size_t page, uint8_t *previous);

/// Ends the release of a page: READ_ONLY, or NONE if it was NONE before.
void CGallocyRuntime_collect_end(size_t page, uint8_t previous);

/// Holds a page for the application of a committed diff. Returns the page's stable state before
/// (READ_ONLY or WRITABLE: the page is now APPLYING until `apply_end`; NONE: the page is not held,
/// as no view access can race with the write).
uint8_t CGallocyRuntime_apply_begin(size_t page);

/// Ends the application: the page returns to `previous` (what `apply_begin` returned).
void CGallocyRuntime_apply_end(size_t page, uint8_t previous);

/// Holds a page for the apply path, whatever its stable state (also a REQUESTED page, which keeps
/// its parked threads parked): the page is APPLYING until `hold_end`, and threads that fault on it
/// park. With `hide`, a READ_ONLY or WRITABLE page is also made inaccessible (`*hidden` says
/// whether it was), so that application threads do not see its bytes change one at a time.
/// Returns the state before, to hand to `hold_end`.
uint8_t CGallocyRuntime_hold_begin(size_t page, int hide, int *hidden);

/// Page leases (sequential memory): marks `page` as leased (1) or not (0). A write fault on a
/// leased READ_ONLY page goes to the fault service (the write lease) instead of the twin fast
/// path, whatever the region's mode. The apply path calls it; returns 0 or an errno.
int CGallocyRuntime_lease_mode_set(size_t page, int leased);
/// 1 if `page` is leased, else 0.
int CGallocyRuntime_lease_mode(size_t page);

/// Ends a hold: restores the protection if the page was hidden and puts `previous` back. Returns
/// 0, or the errno of a failed mprotect (the page is then left NONE). Does not wake parked
/// threads: call `CGallocyRuntime_wake_parked` once after ending the holds of one change.
int CGallocyRuntime_hold_end(size_t page, uint8_t previous, int hidden);

/// Sets the view's protection of the held pages [first, first + count) to that of `state` with
/// one mprotect (a change of many contiguous pages hides and shows them with one call each way);
/// out of memory mappings, page by page, making room where needed. Returns 0 or an errno. The
/// pages' states are not touched: the caller holds them (APPLYING).
int CGallocyRuntime_hold_protect_run(size_t first, size_t count, uint8_t state);

/// Makes a held page writable and puts it in the dirty set (its twin must already hold what the
/// next release diffs against); the caller then ends the hold with WRITABLE. Returns 0 or an
/// errno (the page is then unchanged).
int CGallocyRuntime_hold_make_dirty(size_t page);

/// Wakes every thread parked in the handler (on a held or a requested page) to retry.
void CGallocyRuntime_wake_parked(void);

// MARK: - Fault service

/// Waits for the next fault-service request and stores its page in `*page` and whether the
/// faulting access was a write (when known) in `*is_write`. Returns 0, or -1 once the service was
/// stopped. Call from the one fault-service thread only.
int CGallocyRuntime_service_next(size_t *page, int *is_write);

/// Grants a requested page: mprotects it to match `state` (NONE, READ_ONLY or WRITABLE), sets the
/// state and wakes the threads parked on it. Returns 0 or the errno of mprotect.
int CGallocyRuntime_service_grant(size_t page, uint8_t state);

/// Makes `service_next` return -1 (now or at its next call) until `service_reset`.
void CGallocyRuntime_service_stop(void);

/// Clears the stop flag so that a new fault-service thread can run.
void CGallocyRuntime_service_reset(void);

// MARK: - Counters

/// What the handler has done since the region was registered.
typedef struct {
    /// Write faults on read-only pages served in the handler (twin copied, page made writable).
    uint64_t twin_faults;
    /// Faults that found the page in a transient state or already upgraded, and retried.
    uint64_t retried_faults;
    /// Faults handed to the fault service.
    uint64_t service_requests;
    /// Faults handed to the disposition installed before ours.
    uint64_t chained_faults;
} CGallocyRuntime_Counters;

/// A snapshot of the counters.
CGallocyRuntime_Counters CGallocyRuntime_counters(void);

// MARK: - Out of memory mappings (vm.max_map_count)

/// What the fallback for an exhausted `vm.max_map_count` has done since the region was registered.
/// When a page's own mprotect fails with ENOMEM, the runtime coalesces an aligned group of 64
/// pages: it holds each READ_ONLY and WRITABLE page of the group, copies the twins of the
/// read-only ones, and makes each run of held pages read+write with one mprotect, which merges
/// VMAs instead of splitting them (release mode only).
typedef struct {
    /// mprotect calls of one page (fault fast path, page_set, collect_begin) that failed with ENOMEM.
    uint64_t out_of_maps;
    /// Groups coalesced (at least one run made read+write).
    uint64_t coalesced_groups;
    /// Read-only pages besides the faulting one whose twins a coalesced group took: they are dirty
    /// and writable without a fault of their own (written later without a fault, or released with
    /// an empty diff).
    uint64_t extra_twins;
    /// ENOMEM failures that coalescing could not cure (the fault chained, or the call returned ENOMEM).
    uint64_t failures;
} CGallocyRuntime_MapCounters;

/// A snapshot of the fallback's counters.
CGallocyRuntime_MapCounters CGallocyRuntime_map_counters(void);

/// How many memory mappings (VMAs) the process has now: the lines of /proc/self/maps, or -errno.
int CGallocyRuntime_vma_count(void);

/// /proc/sys/vm/max_map_count, or -errno.
int CGallocyRuntime_max_map_count(void);

// MARK: - Checks and measurements

/// Forks a child that runs a crash routine and returns its pid (or -1): 0 writes to address 0
/// without the handler; 1 installs the handler, then writes to address 0; 2 installs a SA_SIGINFO
/// handler that exits with status 42, then ours, then writes to address 0; 3 sets SIGSEGV to
/// SIG_IGN, installs ours, then writes to address 0. The child first resets SIGSEGV and SIGBUS to
/// SIG_DFL (the parent's crash reporter cannot run in a forked child) and calls only
/// async-signal-safe functions, so forking a multi-threaded process is safe.
pid_t CGallocyRuntime_fault_check_fork(int routine);

/// The median cost in nanoseconds of a raw write fault whose handler only mprotects the page
/// writable, over `pages` fresh read-only anonymous pages, measured `rounds` times. Swaps the
/// SIGSEGV disposition for the duration: call with no other thread touching protected memory.
/// Returns a negative value on failure.
double CGallocyRuntime_bench_raw_fault_ns(size_t pages, int rounds);

/// A monotonic clock in nanoseconds.
uint64_t CGallocyRuntime_now_ns(void);

// MARK: - Mappings

/// `memfd_create(name, MFD_CLOEXEC)` then `ftruncate(fd, size)`. Returns the descriptor or -errno.
int CGallocyRuntime_memfd_create(const char *name, size_t size);

/// `mmap(base, size, …, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0)`: the application view, never
/// over an existing mapping. PROT_NONE unless `writable`. Returns NULL and sets `*error` (EEXIST
/// when the range is taken, also on kernels that take the flag as a hint).
void *CGallocyRuntime_map_view(void *base, size_t size, int fd, int writable, int *error);

/// `mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)`: the always-writable alias.
void *CGallocyRuntime_map_alias(size_t size, int fd, int *error);

/// `mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)`.
void *CGallocyRuntime_map_anonymous(size_t size, int *error);

/// `mprotect` to the protection of a page state. Returns 0 or errno.
int CGallocyRuntime_protect(void *address, size_t size, uint8_t state);

/// `munmap`. Returns 0 or errno.
int CGallocyRuntime_unmap(void *address, size_t size);

#endif
