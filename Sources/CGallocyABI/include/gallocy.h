/*
 * gallocy.h: the C interface of Gallocy (libgallocy), a distributed shared memory engine.
 *
 * A process that links libgallocy becomes a member of a Gallocy cluster: it keeps its share of
 * the Raft log in a data directory, talks to its peers, serves the HTTP API, and maps the
 * cluster's shared heap at the same virtual address as every other member. The program then reads
 * and writes heap memory with plain loads and stores, through ordinary pointers, and publishes its
 * writes with gallocy_unlock(), gallocy_barrier() or gallocy_commit() (release consistency: a
 * program whose accesses to shared data are ordered by locks and barriers sees sequential
 * consistency). This is a thin layer over the Swift API (`Member`, Sources/Gallocy/Member).
 *
 * Build and link (docs/c-api.md):
 *
 *     cc -I<include dir> prog.c -L<lib dir> -lgallocy -Wl,-rpath,<lib dir>
 *
 * THREADS. Every function may be called from any thread of the program, concurrently. The calls
 * that talk to the cluster block the calling thread until the cluster answered; they must be
 * called from plain threads (the main thread, pthreads), never from a thread of the Swift
 * concurrency pool (a Swift `async` context, or a callback that libgallocy runs, such as the
 * initializer of gallocy_root_or_create()): blocking such a thread could deadlock the very work
 * it waits for, so these calls then fail at once with GALLOCY_E_WRONG_THREAD. Every thread that
 * touches the heap should call gallocy_thread_prepare() once (every blocking call does it for its
 * own thread).
 *
 * ERRORS. Functions return a gallocy_error_t: GALLOCY_OK (0), or a code saying what went wrong.
 * A failing call also records a message a person can act on, read with
 * gallocy_last_error_message() on the same thread. Outputs are written only on success.
 *
 * ONE MEMBER PER PROCESS: the fault handler and the heap's mapping are per process.
 */
#ifndef GALLOCY_H
#define GALLOCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this interface. Functions are only ever added while the major version stays;
 * the library's soname is libgallocy.so.<major>. */
#define GALLOCY_ABI_VERSION_MAJOR 0
#define GALLOCY_ABI_VERSION_MINOR 1

/*
 * What a call returned. The values are part of the ABI and never change. Codes 1 to 11 are the
 * codes of the Swift API's `MemberError.Code`, in the same order; the others belong to the C
 * interface.
 */
typedef enum gallocy_error {
    /* The call succeeded. */
    GALLOCY_OK = 0,
    /* The options are malformed or inconsistent (a bad address, id, size). */
    GALLOCY_E_INVALID_OPTIONS = 1,
    /* The member could not start: its data directory, its listeners, the heap's mapping. */
    GALLOCY_E_START_FAILED = 2,
    /* The heap's base address range is already mapped in this process. */
    GALLOCY_E_HEAP_BASE_IN_USE = 3,
    /* No leader is reachable, or the member is shutting down; the call may be retried. */
    GALLOCY_E_UNAVAILABLE = 4,
    /* The call was not committed in time; it may or may not have taken effect. */
    GALLOCY_E_TIMEOUT = 5,
    /* The lock's lease ran out before its release (or the lock was taken over): the release was
     * rejected and its writes were not published (they are undone in this process too). */
    GALLOCY_E_LEASE_EXPIRED = 6,
    /* The lock is held by another member (only when a bounded wait was asked for). */
    GALLOCY_E_LOCK_BUSY = 7,
    /* The address is not the start of an allocated block. */
    GALLOCY_E_NOT_ALLOCATED = 8,
    /* The heap has no free range large enough. */
    GALLOCY_E_OUT_OF_SPACE = 9,
    /* An argument is invalid (a NULL pointer, a misaligned word, an address outside the heap, a
     * string that is not UTF-8, a barrier joined with another participant count). */
    GALLOCY_E_INVALID_ARGUMENT = 10,
    /* The member has stopped. */
    GALLOCY_E_STOPPED = 11,
    /* A blocking call was made from a thread of the Swift concurrency pool (see THREADS). */
    GALLOCY_E_WRONG_THREAD = 100,
} gallocy_error_t;

/* A member running in this process (opaque). From gallocy_start(), until gallocy_stop(). */
typedef struct gallocy_member gallocy_member_t;

/* How to start a member (opaque): the options of `gallocy node`. From gallocy_options_new(). */
typedef struct gallocy_options gallocy_options_t;

/* A lock held by this member (opaque): its name and the epoch of its grant. From gallocy_lock(),
 * freed by gallocy_unlock(). */
typedef struct gallocy_lock gallocy_lock_t;

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

/* The message of the last call that failed on this thread ("" if none has). The string belongs
 * to the library and stays valid until the next call on this thread fails; copy it to keep it. */
const char *gallocy_last_error_message(void);

/* The code of the last call that failed on this thread (GALLOCY_OK if none has). */
gallocy_error_t gallocy_last_error(void);

/* A short constant name for a code ("lease_expired"); "unknown" for a value that is not a code. */
const char *gallocy_error_name(gallocy_error_t code);

/* ---------------------------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------------------------- */

/* New options with nothing set, or NULL if out of memory. The id, data directory, listen and
 * HTTP addresses must be set before gallocy_start(); the rest have defaults. Free with
 * gallocy_options_free(). The setters copy their strings and check only that they are given
 * (non-NULL, UTF-8); gallocy_start() checks the rest (GALLOCY_E_INVALID_OPTIONS). */
gallocy_options_t *gallocy_options_new(void);

/* Frees `options` (NULL is ignored). A started member does not need them any more. */
void gallocy_options_free(gallocy_options_t *options);

/* This member's id: a positive integer, unique in the cluster. */
gallocy_error_t gallocy_options_set_id(gallocy_options_t *options, uint64_t id);

/* The data directory (created if missing). A member started again with the same directory
 * comes back from its own disk. */
gallocy_error_t gallocy_options_set_data_dir(gallocy_options_t *options, const char *path);

/* host:port for peer (Raft) traffic, e.g. "127.0.0.1:7001". */
gallocy_error_t gallocy_options_set_listen(gallocy_options_t *options, const char *address);

/* host:port for the HTTP API, e.g. "127.0.0.1:8001". */
gallocy_error_t gallocy_options_set_http(gallocy_options_t *options, const char *address);

/* Adds (or replaces) another member of the cluster: its id and its peer address (host:port).
 * Call once per other member. */
gallocy_error_t gallocy_options_add_peer(gallocy_options_t *options, uint64_t id, const char *address);

/* Whether to start empty, without bootstrapping, and wait to be added to a running cluster
 * (default false: the members named at start bootstrap a new cluster together). */
gallocy_error_t gallocy_options_set_join(gallocy_options_t *options, bool join);

/* The heap size of a new cluster in bytes, a positive multiple of 4096 (default 256 MiB). A
 * cluster that exists keeps the size it was made with. */
gallocy_error_t gallocy_options_set_heap_size(gallocy_options_t *options, uint64_t bytes);

/* The shared cluster secret that peers must prove (`length` > 0 bytes, copied; default: none). */
gallocy_error_t gallocy_options_set_secret(gallocy_options_t *options, const void *secret, size_t length);

/* The log level of the member's log lines on stderr: "trace", "debug", "info", "notice",
 * "warning" (the default), "error" or "critical". Another string is GALLOCY_E_INVALID_ARGUMENT. */
gallocy_error_t gallocy_options_set_log_level(gallocy_options_t *options, const char *level);

/* How long gallocy_start() waits for the cluster to be ready, in milliseconds (default 120000). */
gallocy_error_t gallocy_options_set_ready_timeout_ms(gallocy_options_t *options, uint64_t milliseconds);

/* ---------------------------------------------------------------------------------------------
 * The member
 * ------------------------------------------------------------------------------------------- */

/* Starts a member with `options` and returns once the heap is mapped and this member has applied
 * everything the cluster committed before (so roots and data written before are visible). Waits
 * for a leader, up to the ready timeout. Blocking. Returns NULL on failure, with the error in
 * gallocy_last_error() and gallocy_last_error_message(): GALLOCY_E_INVALID_OPTIONS,
 * GALLOCY_E_START_FAILED, GALLOCY_E_HEAP_BASE_IN_USE, GALLOCY_E_UNAVAILABLE (no ready cluster in
 * time), GALLOCY_E_WRONG_THREAD. */
gallocy_member_t *gallocy_start(const gallocy_options_t *options);

/* Stops the member (its HTTP API, transport and Raft driver) and frees `member`. Blocking. The
 * heap stays mapped: threads may still read it, but it no longer changes. No other call on
 * `member` may start once gallocy_stop() has begun; calls already waiting return an error. A
 * process has one member in its life: another gallocy_start() would find the heap's range in use.
 * Returns GALLOCY_E_WRONG_THREAD (and stops nothing) from a Swift concurrency thread. */
gallocy_error_t gallocy_stop(gallocy_member_t *member);

/* This member's id. */
uint64_t gallocy_member_id(const gallocy_member_t *member);

/* The first byte of the shared heap: the same address on every member. */
void *gallocy_heap_base(const gallocy_member_t *member);

/* The heap's size in bytes. */
size_t gallocy_heap_size(const gallocy_member_t *member);

/* Gives the calling thread an alternate signal stack, so that the heap's fault handler runs even
 * if the thread's own stack is what overflowed. Idempotent and cheap; call it once in every
 * thread that touches the heap. */
void gallocy_thread_prepare(void);

/* ---------------------------------------------------------------------------------------------
 * Allocation
 * ------------------------------------------------------------------------------------------- */

/* Allocates `size` bytes of shared memory (zeroed, 8-byte aligned) through a committed entry:
 * every member sees the same block at the same address. On success *out is the block. Blocking.
 * GALLOCY_E_OUT_OF_SPACE if no free range is large enough. */
gallocy_error_t gallocy_alloc(gallocy_member_t *member, size_t size, void **out);

/* Frees the block that starts at `block` (allocated by any member). Its memory reads as zeros
 * again. Blocking. GALLOCY_E_NOT_ALLOCATED if `block` is not the start of a block. */
gallocy_error_t gallocy_free(gallocy_member_t *member, void *block);

/* ---------------------------------------------------------------------------------------------
 * Named roots: how a program finds its data again (after a restart, or from another member)
 * ------------------------------------------------------------------------------------------- */

/* The block that root `name` points at, in *out (NULL if there is no such root). Linearizable:
 * a root set anywhere before this call is seen. Blocking. */
gallocy_error_t gallocy_root(gallocy_member_t *member, const char *name, void **out);

/* Points root `name` at `block` (NULL removes the root). Blocking. */
gallocy_error_t gallocy_set_root(gallocy_member_t *member, const char *name, const void *block);

/* Called by gallocy_root_or_create() with the new, zeroed block and the caller's `context`. It
 * runs on a library thread: it may write the block but must not call libgallocy. */
typedef void (*gallocy_initializer_t)(void *block, void *context);

/* The block at root `name`, in *out; if there is none, allocates `size` zeroed bytes, calls
 * `initialize(block, context)` (if not NULL) to fill them, publishes them and sets the root, all
 * under a lock, so that of several members starting together exactly one creates the block and
 * all get the same one. Blocking. */
gallocy_error_t gallocy_root_or_create(gallocy_member_t *member, const char *name, size_t size,
                                       gallocy_initializer_t initialize, void *context, void **out);

/* ---------------------------------------------------------------------------------------------
 * Locks, releases and barriers
 * ------------------------------------------------------------------------------------------- */

/* Acquires lock `name` for a lease of `lease_ms` milliseconds (a lease, not forever: if this
 * member stops or stalls, the leader expires it and another member may take it). Waits while
 * another member holds it: up to `wait_ms` milliseconds, or as long as it takes if `wait_ms` is
 * negative (GALLOCY_E_LOCK_BUSY when the wait runs out). On success *out is the lock, to be passed
 * to gallocy_unlock(); every write released before the grant is visible to this process.
 * Blocking. */
gallocy_error_t gallocy_lock(gallocy_member_t *member, const char *name, uint64_t lease_ms, int64_t wait_ms,
                             gallocy_lock_t **out);

/* The epoch of the grant: it grows with every grant of the lock's name. */
uint64_t gallocy_lock_epoch(const gallocy_lock_t *lock);

/* The lock's name (valid until the lock is freed by gallocy_unlock()). */
const char *gallocy_lock_name(const gallocy_lock_t *lock);

/* Releases `lock`, publishing every write this process made since its last release in the same
 * Raft entry, and returns once that entry applied here. If the lease ran out first, returns
 * GALLOCY_E_LEASE_EXPIRED: nothing was published and this process's unpublished writes are
 * undone (the program may take the lock again and redo them). Blocking. Whatever it returns,
 * `lock` is freed. */
gallocy_error_t gallocy_unlock(gallocy_member_t *member, gallocy_lock_t *lock);

/* Publishes every write this process made since its last release (one Raft entry), and returns
 * once it applied here. Without writes, returns at once. Blocking. */
gallocy_error_t gallocy_commit(gallocy_member_t *member);

/* Publishes this process's writes, then waits until `participants` members (this one included)
 * have arrived at barrier `name`. Once it returns, every write published before any participant
 * arrived is visible here. `generation` is the generation this arrival is for (counted from 0:
 * the first opening ends generation 0), which makes an arrival safe to repeat after a restart; a
 * negative value arrives at whatever generation is current. Blocking. */
gallocy_error_t gallocy_barrier(gallocy_member_t *member, const char *name, uint32_t participants,
                                int64_t generation);

/* ---------------------------------------------------------------------------------------------
 * Atomics on 8-byte words of the heap (8-byte aligned), each one committed entry, applied by every
 * member in log order. `old` (may be NULL) receives the value before.
 * ------------------------------------------------------------------------------------------- */

/* *word += delta (wrapping). Concurrent adds from all members all count. Blocking. */
gallocy_error_t gallocy_atomic_add(gallocy_member_t *member, uint64_t *word, uint64_t delta, uint64_t *old);

/* If *word == expected, *word = desired. *exchanged (may be NULL) says whether it did. Blocking. */
gallocy_error_t gallocy_atomic_cas(gallocy_member_t *member, uint64_t *word, uint64_t expected, uint64_t desired,
                                   bool *exchanged, uint64_t *old);

/* *word = value. Blocking. */
gallocy_error_t gallocy_atomic_swap(gallocy_member_t *member, uint64_t *word, uint64_t value, uint64_t *old);

/* The word as the cluster last committed it, in *value (linearizable; not this process's
 * unpublished writes). Blocking. */
gallocy_error_t gallocy_atomic_load(gallocy_member_t *member, uint64_t *word, uint64_t *value);

#ifdef __cplusplus
}
#endif

#endif /* GALLOCY_H */
