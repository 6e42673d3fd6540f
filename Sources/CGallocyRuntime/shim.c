// The C part of the runtime. It stays small: only what Swift cannot do safely belongs here: the
// SIGSEGV/SIGBUS handler, its alternate stack, chaining to the handler installed before, the
// per-page atomic states and the futex waits. docs/runtime.md states the handler's rules.
#define _GNU_SOURCE
#include "CGallocyRuntime.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

size_t CGallocyRuntime_page_size(void) {
    long size = sysconf(_SC_PAGESIZE);
    return size > 0 ? (size_t)size : 4096;
}

uint32_t CGallocyRuntime_abi_version(void) { return 2; }

// MARK: - Shared state (read by the handler; written only outside it, before `region_active`)

enum { SERVICE_SLOTS = 64 };
#define SLOT_EMPTY UINT64_MAX

static struct {
    char *base;
    size_t size;
    size_t page_size;
    size_t page_count;
    char *twin;
    _Atomic uint8_t *states;
    size_t states_bytes;
    _Atomic uint64_t *dirty_words;
    size_t dirty_bytes;
    int mode;
} region;

// Page leases (sequential memory): one byte a page, 1 for a page whose write faults go to the fault
// service (the write lease) even in the release mode. NULL until the first page is marked; see
// "MARK: - Page leases" below.
static _Atomic(_Atomic uint8_t *) lease_pages;
static size_t lease_pages_bytes;
static bool page_is_leased(size_t page);
static void lease_pages_free(void);

// Set (release) after `region` is filled in; read (acquire) by the handler before it reads `region`.
static _Atomic int region_active;
static _Atomic size_t dirty_count;

// Fault service: a faulting thread puts `page * 2 + is_write` into an empty slot and bumps
// `request_seq`; the service thread waits on `request_seq`. Grants bump `grant_seq`, on which
// parked faulting threads wait.
static _Atomic uint64_t service_slots[SERVICE_SLOTS] = {
    [0 ... SERVICE_SLOTS - 1] = SLOT_EMPTY};
static _Atomic uint32_t request_seq;
static _Atomic uint32_t grant_seq;
static _Atomic int service_stopped;

static _Atomic uint64_t counter_twin, counter_retried, counter_service, counter_chained;

static struct sigaction previous_segv, previous_bus;
static _Atomic int installed;

// MARK: - Futex

static void futex_wait(_Atomic uint32_t *word, uint32_t expected) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word, int count) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
}

static int protection_for(uint8_t state) {
    switch (state) {
    case CGallocyRuntime_PAGE_READ_ONLY: return PROT_READ;
    case CGallocyRuntime_PAGE_WRITABLE: return PROT_READ | PROT_WRITE;
    default: return PROT_NONE;
    }
}

static bool is_stable(uint8_t state) {
    return state == CGallocyRuntime_PAGE_NONE || state == CGallocyRuntime_PAGE_READ_ONLY ||
           state == CGallocyRuntime_PAGE_WRITABLE;
}

// MARK: - The handler

static void chain(int signo, siginfo_t *info, void *context) {
    atomic_fetch_add_explicit(&counter_chained, 1, memory_order_relaxed);
    struct sigaction *previous = signo == SIGBUS ? &previous_bus : &previous_segv;
    if (previous->sa_flags & SA_SIGINFO) {
        if (previous->sa_sigaction) {
            previous->sa_sigaction(signo, info, context);
            return;
        }
    } else if (previous->sa_handler != SIG_DFL && previous->sa_handler != SIG_IGN) {
        previous->sa_handler(signo);
        return;
    }
    // SIG_DFL or SIG_IGN: put the previous disposition back and let the fault happen again, as it
    // would have without us (for a synchronous fault the kernel kills even with SIG_IGN). A signal
    // sent with kill(2) does not recur by itself: raise it again (it stays pending until return).
    sigaction(signo, previous, NULL);
    if (info->si_code <= 0) raise(signo);
}

// Parks the calling thread until the fault service moves `page` out of REQUESTED.
static void park_until_granted(size_t page) {
    for (;;) {
        uint32_t seq = atomic_load_explicit(&grant_seq, memory_order_acquire);
        if (atomic_load_explicit(&region.states[page], memory_order_acquire) !=
            CGallocyRuntime_PAGE_REQUESTED)
            return;
        futex_wait(&grant_seq, seq);
    }
}

static void wake_parked(void);

// Parks the calling thread while `page` is held by the apply path (APPLYING): a committed entry is
// being written and its pages are hidden until all of them are written. Returns to retry.
static void park_while_applying(size_t page) {
    uint32_t seq = atomic_load_explicit(&grant_seq, memory_order_acquire);
    if (atomic_load_explicit(&region.states[page], memory_order_acquire) !=
        CGallocyRuntime_PAGE_APPLYING)
        return;
    futex_wait(&grant_seq, seq);
}

// Asks the fault service for a page in state `from` (NONE, or READ_ONLY in the lease mode), or
// joins the threads already parked on it.
static void request_service(size_t page, uint8_t from, int is_write) {
    if (from == CGallocyRuntime_PAGE_REQUESTED) {
        park_until_granted(page); // one request per page: a CAS from REQUESTED would post another
        return;
    }
    uint8_t expected = from;
    if (atomic_compare_exchange_strong_explicit(&region.states[page], &expected,
                                                CGallocyRuntime_PAGE_REQUESTED,
                                                memory_order_acq_rel, memory_order_acquire)) {
        atomic_fetch_add_explicit(&counter_service, 1, memory_order_relaxed);
        uint64_t request = (uint64_t)page * 2 + (is_write ? 1 : 0);
        for (size_t i = 0;; i = (i + 1) % SERVICE_SLOTS) {
            uint64_t empty = SLOT_EMPTY;
            if (atomic_compare_exchange_weak_explicit(&service_slots[i], &empty, request,
                                                      memory_order_acq_rel, memory_order_relaxed))
                break;
        }
        atomic_fetch_add_explicit(&request_seq, 1, memory_order_release);
        futex_wake(&request_seq, 1);
    } else if (expected != CGallocyRuntime_PAGE_REQUESTED) {
        // Someone moved the page meanwhile: retry the access.
        atomic_fetch_add_explicit(&counter_retried, 1, memory_order_relaxed);
        return;
    }
    park_until_granted(page);
}

// MARK: - Out of memory mappings (vm.max_map_count)
//
// Every run of pages with one protection is a VMA of the view, and a process may hold only
// vm.max_map_count of them (65,530 by default): a checkerboard of read-only and writable pages runs
// out past about 32,000 writable pages, and a single-page mprotect then fails with ENOMEM. The
// fallback merges VMAs instead of splitting them: it holds every READ_ONLY and WRITABLE page of an
// aligned group of 64 pages (CAS into UPGRADING; pages in any other state belong to someone else
// and are skipped), copies the twins of the read-only ones, and makes each run of held pages
// read+write with one mprotect. The read-only pages it takes are dirty without a write: their
// diffs at the release are empty. Everything here is async-signal-safe (atomics, memcpy, mprotect).
//
// Why a failed group mprotect leaves every protection as it was: mprotect walks the range's VMAs
// in order and fails with ENOMEM only when it must split one (the split is checked before that
// VMA's protection changes). Only the first VMA of a run can need a split: every later one is
// adjacent to the part already made read+write and merges into it (shrinking or absorbing the
// VMA) without a split. So ENOMEM comes before anything changed. The code does not rely on it
// blindly: after a failure it write-protects the run's read-only pages again (a no-op when nothing
// changed) and reports a failure to do so as fatal.

enum { GROUP_PAGES = 64, COALESCE_ATTEMPTS = 8, FRAGMENTED_TRANSITIONS = 4 };

static _Atomic uint64_t counter_out_of_maps, counter_coalesced, counter_extra_twins, counter_map_failures;
static _Atomic size_t coalesce_cursor;

// Publishes a page made read+write by the fault path: dirty bit, count, then WRITABLE.
static void publish_dirty(size_t page) {
    atomic_fetch_or_explicit(&region.dirty_words[page / 64], (uint64_t)1 << (page % 64),
                             memory_order_acq_rel);
    atomic_fetch_add_explicit(&dirty_count, 1, memory_order_relaxed);
    atomic_store_explicit(&region.states[page], CGallocyRuntime_PAGE_WRITABLE, memory_order_release);
}

// Coalesces group `group` (pages [group * 64, group * 64 + 64) of the heap). `own` is a page of the
// group that the caller holds in UPGRADING with its twin copied (SIZE_MAX for none): it is treated
// as a held read-only page, and left in UPGRADING if its run could not be made writable. Returns
// true if `own` was made writable (dirty bit set, WRITABLE stored). Sets `*fatal` if a failed run
// could not be write-protected again.
static bool coalesce_group(size_t group, size_t own, bool *fatal) {
    size_t first = group * GROUP_PAGES;
    size_t end = first + GROUP_PAGES;
    if (end > region.page_count) end = region.page_count;
    size_t count = end - first;
    size_t size = region.page_size;
    uint64_t read_only = 0, writable = 0;
    for (size_t i = 0; i < count; i++) {
        size_t page = first + i;
        uint64_t bit = (uint64_t)1 << i;
        if (page == own) {
            read_only |= bit;
            continue;
        }
        uint8_t state = atomic_load_explicit(&region.states[page], memory_order_acquire);
        if (state != CGallocyRuntime_PAGE_READ_ONLY && state != CGallocyRuntime_PAGE_WRITABLE)
            continue; // NONE or transient: not ours to hold
        if (!atomic_compare_exchange_strong_explicit(&region.states[page], &state,
                                                     CGallocyRuntime_PAGE_UPGRADING,
                                                     memory_order_acq_rel, memory_order_acquire))
            continue;
        if (state == CGallocyRuntime_PAGE_READ_ONLY) {
            // Read-only for every thread while held: the copy is consistent.
            memcpy(region.twin + page * size, region.base + page * size, size);
            read_only |= bit;
        } else {
            writable |= bit;
        }
    }
    uint64_t made = 0;
    uint64_t rest = read_only | writable;
    while (rest) {
        int start = __builtin_ctzll(rest);
        uint64_t from = rest >> start;
        int length = ~from == 0 ? 64 - start : __builtin_ctzll(~from);
        uint64_t run = (length == 64 ? ~(uint64_t)0 : (((uint64_t)1 << length) - 1)) << start;
        rest &= ~run;
        if (!(run & read_only)) continue; // read+write already
        char *address = region.base + (first + (size_t)start) * size;
        if (mprotect(address, (size_t)length * size, PROT_READ | PROT_WRITE) == 0) {
            made |= run & read_only;
            continue;
        }
        // Put the run's read-only pages back (a no-op if the failed call changed nothing).
        uint64_t back = run & read_only;
        while (back) {
            int s = __builtin_ctzll(back);
            uint64_t f = back >> s;
            int n = ~f == 0 ? 64 - s : __builtin_ctzll(~f);
            back &= n == 64 ? 0 : ~((((uint64_t)1 << n) - 1) << s);
            if (mprotect(region.base + (first + (size_t)s) * size, (size_t)n * size, PROT_READ) != 0)
                *fatal = true;
        }
    }
    if (made) {
        atomic_fetch_or_explicit(&region.dirty_words[first / 64], made, memory_order_acq_rel);
        atomic_fetch_add_explicit(&dirty_count, (size_t)__builtin_popcountll(made),
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&counter_coalesced, 1, memory_order_relaxed);
        uint64_t extra = own >= first && own < end ? made & ~((uint64_t)1 << (own - first)) : made;
        atomic_fetch_add_explicit(&counter_extra_twins, (uint64_t)__builtin_popcountll(extra),
                                  memory_order_relaxed);
    }
    for (size_t i = 0; i < count; i++) {
        size_t page = first + i;
        uint64_t bit = (uint64_t)1 << i;
        if ((made | writable) & bit)
            atomic_store_explicit(&region.states[page], CGallocyRuntime_PAGE_WRITABLE,
                                  memory_order_release);
        else if ((read_only & bit) && page != own)
            atomic_store_explicit(&region.states[page], CGallocyRuntime_PAGE_READ_ONLY,
                                  memory_order_release);
    }
    return own >= first && own < end && (made & ((uint64_t)1 << (own - first)));
}

// Finds a group other than `skip` with at least FRAGMENTED_TRANSITIONS changes between READ_ONLY
// and WRITABLE neighbours (so coalescing it frees VMAs), scanning from a shared cursor.
static bool find_fragmented_group(size_t skip, size_t *found) {
    size_t groups = (region.page_count + GROUP_PAGES - 1) / GROUP_PAGES;
    size_t start = atomic_load_explicit(&coalesce_cursor, memory_order_relaxed) % groups;
    for (size_t n = 0; n < groups; n++) {
        size_t group = (start + n) % groups;
        if (group == skip) continue;
        size_t first = group * GROUP_PAGES;
        size_t end = first + GROUP_PAGES;
        if (end > region.page_count) end = region.page_count;
        int transitions = 0;
        uint8_t before = atomic_load_explicit(&region.states[first], memory_order_relaxed);
        for (size_t page = first + 1; page < end; page++) {
            uint8_t state = atomic_load_explicit(&region.states[page], memory_order_relaxed);
            if (state != before &&
                (state == CGallocyRuntime_PAGE_READ_ONLY || state == CGallocyRuntime_PAGE_WRITABLE) &&
                (before == CGallocyRuntime_PAGE_READ_ONLY || before == CGallocyRuntime_PAGE_WRITABLE))
                transitions++;
            before = state;
        }
        if (transitions >= FRAGMENTED_TRANSITIONS) {
            atomic_store_explicit(&coalesce_cursor, group + 1, memory_order_relaxed);
            *found = group;
            return true;
        }
    }
    return false;
}

// After an mprotect of `page` failed with ENOMEM: coalesces a fragmented group elsewhere (release
// mode only: it dirties read-only pages, which the lease mode must not do). Returns true if it did,
// so that the caller's mprotect may succeed now.
static bool make_room(size_t page, bool *fatal) {
    if (region.mode != CGallocyRuntime_MODE_RELEASE || *fatal) return false;
    size_t group;
    if (!find_fragmented_group(page / GROUP_PAGES, &group)) return false;
    coalesce_group(group, SIZE_MAX, fatal);
    return true;
}

// The fast path's fallback: `page` is held in UPGRADING with its twin copied, and its own mprotect
// failed with ENOMEM. Makes it writable and dirty, by coalescing its group, or failing that other
// fragmented groups until its own mprotect succeeds. Returns false if nothing worked (the caller
// puts the page back and chains).
static bool upgrade_out_of_maps(size_t page) {
    atomic_fetch_add_explicit(&counter_out_of_maps, 1, memory_order_relaxed);
    bool fatal = false;
    if (coalesce_group(page / GROUP_PAGES, page, &fatal)) return true;
    char *address = region.base + page * region.page_size;
    for (int attempt = 0; attempt < COALESCE_ATTEMPTS && make_room(page, &fatal); attempt++) {
        if (mprotect(address, region.page_size, PROT_READ | PROT_WRITE) == 0) {
            publish_dirty(page);
            return true;
        }
        if (errno != ENOMEM) break;
    }
    atomic_fetch_add_explicit(&counter_map_failures, 1, memory_order_relaxed);
    return false;
}

// An mprotect outside the handler (page_set, collect_begin) that failed with ENOMEM: retries it
// after coalescing fragmented groups (release mode). Returns 0 or the last errno.
static int protect_out_of_maps(size_t page, int protection) {
    atomic_fetch_add_explicit(&counter_out_of_maps, 1, memory_order_relaxed);
    bool fatal = false;
    int error = ENOMEM;
    for (int attempt = 0; attempt < COALESCE_ATTEMPTS && make_room(page, &fatal); attempt++) {
        if (mprotect(region.base + page * region.page_size, region.page_size, protection) == 0)
            return 0;
        error = errno;
        if (error != ENOMEM) break;
    }
    atomic_fetch_add_explicit(&counter_map_failures, 1, memory_order_relaxed);
    return error;
}

CGallocyRuntime_MapCounters CGallocyRuntime_map_counters(void) {
    CGallocyRuntime_MapCounters counters = {
        .out_of_maps = atomic_load(&counter_out_of_maps),
        .coalesced_groups = atomic_load(&counter_coalesced),
        .extra_twins = atomic_load(&counter_extra_twins),
        .failures = atomic_load(&counter_map_failures),
    };
    return counters;
}

int CGallocyRuntime_vma_count(void) {
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    char buffer[65536];
    int lines = 0;
    for (;;) {
        ssize_t n = read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++) lines += buffer[i] == '\n';
    }
    close(fd);
    return lines;
}

int CGallocyRuntime_max_map_count(void) {
    int fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    char buffer[32];
    ssize_t n = read(fd, buffer, sizeof buffer - 1);
    close(fd);
    if (n <= 0) return -EIO;
    int value = 0;
    for (ssize_t i = 0; i < n && buffer[i] >= '0' && buffer[i] <= '9'; i++)
        value = value * 10 + (buffer[i] - '0');
    return value;
}

static void handle_fault(int signo, siginfo_t *info, void *context) {
    int saved_errno = errno;
    char *address = (char *)info->si_addr;
    if (signo != SIGSEGV || info->si_code != SEGV_ACCERR ||
        !atomic_load_explicit(&region_active, memory_order_acquire) || address < region.base ||
        address >= region.base + region.size) {
        chain(signo, info, context);
        errno = saved_errno;
        return;
    }
    size_t page = (size_t)(address - region.base) / region.page_size;
    char *page_address = region.base + page * region.page_size;
#if defined(__x86_64__)
    // Bit 1 of the page-fault error code: the access was a write.
    int is_write = (((ucontext_t *)context)->uc_mcontext.gregs[REG_ERR] & 2) != 0;
#else
    // Unknown here: a fault on a readable page can only be a write; on a no-access page it is
    // served as a read, and a write then faults again on the read-only page.
    int is_write = -1;
#endif
    uint8_t state = atomic_load_explicit(&region.states[page], memory_order_acquire);
    switch (state) {
    case CGallocyRuntime_PAGE_READ_ONLY:
        if (is_write == 0) break; // granted just now: retry
        if (region.mode != CGallocyRuntime_MODE_RELEASE || page_is_leased(page)) {
            request_service(page, state, 1);
            errno = saved_errno;
            return;
        }
        {
            uint8_t expected = CGallocyRuntime_PAGE_READ_ONLY;
            if (!atomic_compare_exchange_strong_explicit(
                    &region.states[page], &expected, CGallocyRuntime_PAGE_UPGRADING,
                    memory_order_acq_rel, memory_order_acquire))
                break; // another thread won: retry
            // The page is read-only for everyone now, so the copy is consistent.
            memcpy(region.twin + page * region.page_size, page_address, region.page_size);
            if (mprotect(page_address, region.page_size, PROT_READ | PROT_WRITE) != 0) {
                // Out of VMAs (vm.max_map_count): coalesce instead (publishes the page itself).
                if (errno != ENOMEM || !upgrade_out_of_maps(page)) {
                    atomic_store_explicit(&region.states[page], CGallocyRuntime_PAGE_READ_ONLY,
                                          memory_order_release);
                    chain(signo, info, context); // nothing left to merge: crash honestly
                    errno = saved_errno;
                    return;
                }
            } else {
                publish_dirty(page);
            }
            atomic_fetch_add_explicit(&counter_twin, 1, memory_order_relaxed);
            errno = saved_errno;
            return;
        }
    case CGallocyRuntime_PAGE_NONE:
    case CGallocyRuntime_PAGE_REQUESTED:
        request_service(page, state, is_write == 1);
        errno = saved_errno;
        return;
    case CGallocyRuntime_PAGE_APPLYING:
        // Held (and usually hidden) while a committed entry is written: wait for its end, which
        // wakes every parked thread, then retry.
        park_while_applying(page);
        errno = saved_errno;
        return;
    default:
        break; // WRITABLE (upgraded since the fault) or transient: retry
    }
    atomic_fetch_add_explicit(&counter_retried, 1, memory_order_relaxed);
    errno = saved_errno;
}

int CGallocyRuntime_install(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&installed, &expected, 1)) return 0;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = handle_fault;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSEGV, &action, &previous_segv) != 0 ||
        sigaction(SIGBUS, &action, &previous_bus) != 0) {
        int error = errno;
        atomic_store(&installed, 0);
        return error;
    }
    return 0;
}

// The alternate stack of each prepared thread, unmapped by the key's destructor at thread exit.
static pthread_key_t alt_stack_key;
static pthread_once_t alt_stack_once = PTHREAD_ONCE_INIT;

static void release_alt_stack(void *memory) {
    stack_t disable = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
    sigaltstack(&disable, NULL);
    stack_t *stack = memory;
    munmap((char *)stack->ss_sp - CGallocyRuntime_page_size(),
           stack->ss_size + CGallocyRuntime_page_size());
}

static void make_alt_stack_key(void) { pthread_key_create(&alt_stack_key, release_alt_stack); }

int CGallocyRuntime_thread_prepare(void) {
    stack_t current;
    if (sigaltstack(NULL, &current) != 0) return errno;
    if (!(current.ss_flags & SS_DISABLE)) return 0; // this thread has one already
    size_t page = CGallocyRuntime_page_size();
    size_t size = 64 * 1024;
    if (size < (size_t)SIGSTKSZ) size = (size_t)SIGSTKSZ;
    size = (size + page - 1) / page * page;
    char *memory = mmap(NULL, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
    if (memory == MAP_FAILED) return errno;
    mprotect(memory, page, PROT_NONE); // guard page below the stack
    // The stack_t itself lives at the bottom of the stack area, far from where the stack grows.
    stack_t *stack = (stack_t *)(memory + page);
    stack->ss_sp = memory + page;
    stack->ss_size = size;
    stack->ss_flags = 0;
    if (sigaltstack(stack, NULL) != 0) {
        int error = errno;
        munmap(memory, size + page);
        return error;
    }
    pthread_once(&alt_stack_once, make_alt_stack_key);
    pthread_setspecific(alt_stack_key, stack);
    return 0;
}

// MARK: - Region

int CGallocyRuntime_region_register(void *base, size_t size, size_t page_size, void *twin,
                                    uint8_t initial_state, int mode) {
    size_t system_page = CGallocyRuntime_page_size();
    if (!base || !twin || page_size == 0 || page_size % system_page != 0 || size == 0 ||
        size % page_size != 0 || (uintptr_t)base % page_size != 0 ||
        (initial_state != CGallocyRuntime_PAGE_NONE &&
         initial_state != CGallocyRuntime_PAGE_READ_ONLY))
        return EINVAL;
    if (atomic_load(&region_active)) return EBUSY;
    size_t count = size / page_size;
    size_t states_bytes = (count + system_page - 1) / system_page * system_page;
    size_t dirty_bytes = ((count + 63) / 64 * 8 + system_page - 1) / system_page * system_page;
    void *states = mmap(NULL, states_bytes, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (states == MAP_FAILED) return errno;
    void *dirty = mmap(NULL, dirty_bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (dirty == MAP_FAILED) {
        int error = errno;
        munmap(states, states_bytes);
        return error;
    }
    if (initial_state != 0) memset(states, initial_state, count);
    region.base = base;
    region.size = size;
    region.page_size = page_size;
    region.page_count = count;
    region.twin = twin;
    region.states = states;
    region.states_bytes = states_bytes;
    region.dirty_words = dirty;
    region.dirty_bytes = dirty_bytes;
    region.mode = mode;
    atomic_store(&dirty_count, 0);
    atomic_store(&counter_twin, 0);
    atomic_store(&counter_retried, 0);
    atomic_store(&counter_service, 0);
    atomic_store(&counter_chained, 0);
    atomic_store(&counter_out_of_maps, 0);
    atomic_store(&counter_coalesced, 0);
    atomic_store(&counter_extra_twins, 0);
    atomic_store(&counter_map_failures, 0);
    atomic_store(&coalesce_cursor, 0);
    atomic_store_explicit(&region_active, 1, memory_order_release);
    return 0;
}

void CGallocyRuntime_region_unregister(void) {
    if (!atomic_exchange(&region_active, 0)) return;
    lease_pages_free();
    munmap((void *)region.states, region.states_bytes);
    munmap((void *)region.dirty_words, region.dirty_bytes);
    memset(&region, 0, sizeof region);
}

uint8_t CGallocyRuntime_page_state(size_t page) {
    if (!atomic_load(&region_active) || page >= region.page_count) return CGallocyRuntime_PAGE_NONE;
    return atomic_load_explicit(&region.states[page], memory_order_acquire);
}

static void wake_parked(void) {
    atomic_fetch_add_explicit(&grant_seq, 1, memory_order_release);
    futex_wake(&grant_seq, INT_MAX);
}

// Moves a page from a stable state into `transient`, waiting while it is in a transient one (other
// than REQUESTED, which `page_set` may take over). Returns the state it was in.
static uint8_t take_page(size_t page, uint8_t transient, bool take_requested) {
    for (;;) {
        uint8_t state = atomic_load_explicit(&region.states[page], memory_order_acquire);
        if (is_stable(state) || (take_requested && state == CGallocyRuntime_PAGE_REQUESTED)) {
            if (atomic_compare_exchange_weak_explicit(&region.states[page], &state, transient,
                                                      memory_order_acq_rel, memory_order_acquire))
                return state;
        } else {
            sched_yield();
        }
    }
}

int CGallocyRuntime_page_set(size_t page, uint8_t state) {
    if (!atomic_load(&region_active) || page >= region.page_count || !is_stable(state))
        return EINVAL;
    uint8_t before = take_page(page, CGallocyRuntime_PAGE_APPLYING, true);
    int result = 0;
    if (mprotect(region.base + page * region.page_size, region.page_size, protection_for(state)) != 0 &&
        (result = errno) == ENOMEM)
        result = protect_out_of_maps(page, protection_for(state));
    if (result != 0) {
        state = before == CGallocyRuntime_PAGE_REQUESTED ? CGallocyRuntime_PAGE_NONE : before;
    }
    atomic_store_explicit(&region.states[page], state, memory_order_release);
    wake_parked();
    return result;
}

// MARK: - Dirty set

size_t CGallocyRuntime_dirty_count(void) {
    return atomic_load_explicit(&dirty_count, memory_order_acquire);
}

size_t CGallocyRuntime_dirty_take(size_t *pages, size_t capacity) {
    if (!atomic_load(&region_active)) return 0;
    size_t taken = 0;
    size_t words = (region.page_count + 63) / 64;
    for (size_t w = 0; w < words && taken < capacity; w++) {
        if (atomic_load_explicit(&region.dirty_words[w], memory_order_relaxed) == 0) continue;
        uint64_t bits = atomic_exchange_explicit(&region.dirty_words[w], 0, memory_order_acq_rel);
        while (bits) {
            int bit = __builtin_ctzll(bits);
            bits &= bits - 1;
            if (taken < capacity) {
                pages[taken++] = w * 64 + (size_t)bit;
                atomic_fetch_sub_explicit(&dirty_count, 1, memory_order_relaxed);
            } else {
                // No room: put it back for the next call.
                atomic_fetch_or_explicit(&region.dirty_words[w], (uint64_t)1 << bit,
                                         memory_order_acq_rel);
            }
        }
    }
    return taken;
}

void CGallocyRuntime_dirty_restore(size_t page) {
    if (!atomic_load(&region_active) || page >= region.page_count) return;
    uint64_t bit = (uint64_t)1 << (page % 64);
    if (!(atomic_fetch_or_explicit(&region.dirty_words[page / 64], bit, memory_order_acq_rel) & bit))
        atomic_fetch_add_explicit(&dirty_count, 1, memory_order_relaxed);
}

int CGallocyRuntime_collect_begin(size_t page, uint8_t *previous) {
    if (!atomic_load(&region_active) || page >= region.page_count) return EINVAL;
    uint8_t before = take_page(page, CGallocyRuntime_PAGE_COLLECTING, false);
    *previous = before;
    // A dirty page that was protected meanwhile (setAccess) keeps its protection; its bytes and
    // twin are still there to diff.
    int error = 0;
    if (before == CGallocyRuntime_PAGE_WRITABLE &&
        mprotect(region.base + page * region.page_size, region.page_size, PROT_READ) != 0 &&
        (error = errno) == ENOMEM)
        error = protect_out_of_maps(page, PROT_READ);
    if (error != 0) {
        atomic_store_explicit(&region.states[page], before, memory_order_release);
        return error;
    }
    return 0;
}

void CGallocyRuntime_collect_end(size_t page, uint8_t previous) {
    uint8_t after = previous == CGallocyRuntime_PAGE_NONE ? CGallocyRuntime_PAGE_NONE
                                                          : CGallocyRuntime_PAGE_READ_ONLY;
    atomic_store_explicit(&region.states[page], after, memory_order_release);
}

uint8_t CGallocyRuntime_apply_begin(size_t page) {
    for (;;) {
        uint8_t state = atomic_load_explicit(&region.states[page], memory_order_acquire);
        if (state == CGallocyRuntime_PAGE_NONE) return state;
        if (state == CGallocyRuntime_PAGE_READ_ONLY || state == CGallocyRuntime_PAGE_WRITABLE) {
            if (atomic_compare_exchange_weak_explicit(&region.states[page], &state,
                                                      CGallocyRuntime_PAGE_APPLYING,
                                                      memory_order_acq_rel, memory_order_acquire))
                return state;
        } else {
            sched_yield();
        }
    }
}

void CGallocyRuntime_apply_end(size_t page, uint8_t previous) {
    if (previous == CGallocyRuntime_PAGE_NONE) return;
    atomic_store_explicit(&region.states[page], previous, memory_order_release);
    wake_parked();
}

uint8_t CGallocyRuntime_hold_begin(size_t page, int hide, int *hidden) {
    *hidden = 0;
    uint8_t before = take_page(page, CGallocyRuntime_PAGE_APPLYING, true);
    if (hide && (before == CGallocyRuntime_PAGE_READ_ONLY || before == CGallocyRuntime_PAGE_WRITABLE) &&
        mprotect(region.base + page * region.page_size, region.page_size, PROT_NONE) == 0)
        *hidden = 1;
    return before;
}

int CGallocyRuntime_hold_end(size_t page, uint8_t previous, int hidden) {
    int result = 0;
    if (hidden &&
        mprotect(region.base + page * region.page_size, region.page_size, protection_for(previous)) != 0) {
        result = errno;
        // Out of memory mappings (vm.max_map_count): make room by coalescing and try again.
        if (result == ENOMEM) result = protect_out_of_maps(page, protection_for(previous));
        // Still no access: the state must say so (a NONE page goes to the fault service).
        if (result != 0) previous = CGallocyRuntime_PAGE_NONE;
    }
    atomic_store_explicit(&region.states[page], previous, memory_order_release);
    return result;
}

int CGallocyRuntime_hold_make_dirty(size_t page) {
    if (!atomic_load(&region_active) || page >= region.page_count) return EINVAL;
    char *address = region.base + page * region.page_size;
    if (mprotect(address, region.page_size, PROT_READ | PROT_WRITE) != 0) {
        int error = errno;
        if (error != ENOMEM) return error;
        error = protect_out_of_maps(page, PROT_READ | PROT_WRITE);
        if (error != 0) return error;
    }
    uint64_t bit = (uint64_t)1 << (page % 64);
    uint64_t before = atomic_fetch_or_explicit(&region.dirty_words[page / 64], bit, memory_order_acq_rel);
    if (!(before & bit)) atomic_fetch_add_explicit(&dirty_count, 1, memory_order_relaxed);
    return 0;
}

int CGallocyRuntime_hold_protect_run(size_t first, size_t count, uint8_t state) {
    if (!atomic_load(&region_active) || first + count > region.page_count || count == 0) return EINVAL;
    int protection = protection_for(state);
    if (mprotect(region.base + first * region.page_size, count * region.page_size, protection) == 0)
        return 0;
    int error = errno;
    if (error != ENOMEM) return error;
    // Out of memory mappings: page by page, making room where a page needs it.
    int result = 0;
    for (size_t page = first; page < first + count; page++) {
        if (mprotect(region.base + page * region.page_size, region.page_size, protection) == 0) continue;
        int failed = errno == ENOMEM ? protect_out_of_maps(page, protection) : errno;
        if (failed != 0) result = failed;
    }
    return result;
}

void CGallocyRuntime_wake_parked(void) { wake_parked(); }

// MARK: - Page leases

static bool page_is_leased(size_t page) {
    _Atomic uint8_t *pages = atomic_load_explicit(&lease_pages, memory_order_acquire);
    return pages && atomic_load_explicit(&pages[page], memory_order_acquire) != 0;
}

static void lease_pages_free(void) {
    _Atomic uint8_t *pages = atomic_exchange(&lease_pages, NULL);
    if (pages) munmap((void *)pages, lease_pages_bytes);
}

int CGallocyRuntime_lease_mode_set(size_t page, int leased) {
    if (!atomic_load(&region_active) || page >= region.page_count) return EINVAL;
    _Atomic uint8_t *pages = atomic_load_explicit(&lease_pages, memory_order_acquire);
    if (!pages) {
        if (!leased) return 0;
        size_t system_page = CGallocyRuntime_page_size();
        size_t bytes = (region.page_count + system_page - 1) / system_page * system_page;
        void *made = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                          -1, 0);
        if (made == MAP_FAILED) return errno;
        // Only the apply path marks pages, so nobody races this store.
        lease_pages_bytes = bytes;
        atomic_store_explicit(&lease_pages, (_Atomic uint8_t *)made, memory_order_release);
        pages = made;
    }
    atomic_store_explicit(&pages[page], leased ? 1 : 0, memory_order_release);
    return 0;
}

int CGallocyRuntime_lease_mode(size_t page) {
    if (!atomic_load(&region_active) || page >= region.page_count) return 0;
    return page_is_leased(page) ? 1 : 0;
}

// MARK: - Fault service

int CGallocyRuntime_service_next(size_t *page, int *is_write) {
    for (;;) {
        uint32_t seq = atomic_load_explicit(&request_seq, memory_order_acquire);
        for (size_t i = 0; i < SERVICE_SLOTS; i++) {
            if (atomic_load_explicit(&service_slots[i], memory_order_relaxed) == SLOT_EMPTY) continue;
            uint64_t request = atomic_exchange_explicit(&service_slots[i], SLOT_EMPTY,
                                                        memory_order_acq_rel);
            if (request == SLOT_EMPTY) continue;
            *page = (size_t)(request / 2);
            *is_write = (int)(request % 2);
            return 0;
        }
        if (atomic_load_explicit(&service_stopped, memory_order_acquire)) return -1;
        futex_wait(&request_seq, seq);
    }
}

int CGallocyRuntime_service_grant(size_t page, uint8_t state) {
    return CGallocyRuntime_page_set(page, state);
}

void CGallocyRuntime_service_stop(void) {
    atomic_store_explicit(&service_stopped, 1, memory_order_release);
    atomic_fetch_add_explicit(&request_seq, 1, memory_order_release);
    futex_wake(&request_seq, INT_MAX);
}

void CGallocyRuntime_service_reset(void) { atomic_store(&service_stopped, 0); }

CGallocyRuntime_Counters CGallocyRuntime_counters(void) {
    CGallocyRuntime_Counters counters = {
        .twin_faults = atomic_load(&counter_twin),
        .retried_faults = atomic_load(&counter_retried),
        .service_requests = atomic_load(&counter_service),
        .chained_faults = atomic_load(&counter_chained),
    };
    return counters;
}

// MARK: - Checks and measurements

static void exit_42(int signo, siginfo_t *info, void *context) {
    (void)signo, (void)info, (void)context;
    _exit(42);
}

pid_t CGallocyRuntime_fault_check_fork(int routine) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    // The child: async-signal-safe calls only. It starts from the default disposition, as a
    // program without a crash reporter: the Swift runtime's backtracer, inherited from the parent,
    // spawns a helper and waits on it, which a forked child of a threaded process cannot support.
    struct sigaction default_action;
    memset(&default_action, 0, sizeof default_action);
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    sigaction(SIGSEGV, &default_action, NULL);
    sigaction(SIGBUS, &default_action, NULL);
    if (routine == 2) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_sigaction = exit_42;
        action.sa_flags = SA_SIGINFO;
        sigemptyset(&action.sa_mask);
        sigaction(SIGSEGV, &action, NULL);
    } else if (routine == 3) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = SIG_IGN;
        sigemptyset(&action.sa_mask);
        sigaction(SIGSEGV, &action, NULL);
    }
    if (routine != 0) {
        atomic_store(&installed, 0); // the parent's installation is not this child's
        if (CGallocyRuntime_install() != 0) _exit(3);
    }
    volatile uintptr_t null_address = 0;
    *(volatile int *)null_address = 1;
    _exit(0); // not reached
}

uint64_t CGallocyRuntime_now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static size_t bench_page_size;

static void bench_handler(int signo, siginfo_t *info, void *context) {
    (void)signo, (void)context;
    uintptr_t page = (uintptr_t)info->si_addr & ~(uintptr_t)(bench_page_size - 1);
    mprotect((void *)page, bench_page_size, PROT_READ | PROT_WRITE);
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double CGallocyRuntime_bench_raw_fault_ns(size_t pages, int rounds) {
    if (pages == 0 || rounds <= 0 || rounds > 64) return -1;
    bench_page_size = CGallocyRuntime_page_size();
    struct sigaction action, saved;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = bench_handler;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    double results[64];
    for (int r = 0; r < rounds; r++) {
        char *memory = mmap(NULL, pages * bench_page_size, PROT_READ,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (memory == MAP_FAILED) return -1;
        for (size_t i = 0; i < pages; i++) (void)*(volatile char *)(memory + i * bench_page_size);
        if (sigaction(SIGSEGV, &action, &saved) != 0) {
            munmap(memory, pages * bench_page_size);
            return -1;
        }
        uint64_t start = CGallocyRuntime_now_ns();
        for (size_t i = 0; i < pages; i++) *(volatile char *)(memory + i * bench_page_size) = 1;
        uint64_t end = CGallocyRuntime_now_ns();
        sigaction(SIGSEGV, &saved, NULL);
        munmap(memory, pages * bench_page_size);
        results[r] = (double)(end - start) / (double)pages;
    }
    qsort(results, (size_t)rounds, sizeof results[0], compare_double);
    return results[rounds / 2];
}

// MARK: - Mappings

int CGallocyRuntime_memfd_create(const char *name, size_t size) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) return -errno;
    if (ftruncate(fd, (off_t)size) != 0) {
        int error = errno;
        close(fd);
        return -error;
    }
    return fd;
}

void *CGallocyRuntime_map_view(void *base, size_t size, int fd, int writable, int *error) {
    void *view = mmap(base, size, writable ? PROT_READ | PROT_WRITE : PROT_NONE,
                      MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
    if (view == MAP_FAILED) {
        *error = errno;
        return NULL;
    }
    if (view != base) { // a kernel older than 4.17 takes the flag as a hint
        munmap(view, size);
        *error = EEXIST;
        return NULL;
    }
    return view;
}

void *CGallocyRuntime_map_alias(size_t size, int fd, int *error) {
    void *alias = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (alias == MAP_FAILED) {
        *error = errno;
        return NULL;
    }
    return alias;
}

void *CGallocyRuntime_map_anonymous(size_t size, int *error) {
    void *memory = mmap(NULL, size, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (memory == MAP_FAILED) {
        *error = errno;
        return NULL;
    }
    return memory;
}

int CGallocyRuntime_protect(void *address, size_t size, uint8_t state) {
    return mprotect(address, size, protection_for(state)) == 0 ? 0 : errno;
}

int CGallocyRuntime_unmap(void *address, size_t size) {
    return munmap(address, size) == 0 ? 0 : errno;
}
