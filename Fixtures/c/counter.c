/*
 * counter.c: one member of a Gallocy cluster, written in C against gallocy.h (docs/c-api.md).
 *
 * Every member increments one shared counter under a lock, --n times, and adds 1 to a second
 * word with an atomic add as often. After a barrier every member reads both words and prints one
 * JSON line; with P members (1 + the number of --peer flags) both must be P * n everywhere.
 *
 *     counter --id 1 --data /tmp/c1 --listen 127.0.0.1:7001 --http 127.0.0.1:8001 \
 *             --peer 2=127.0.0.1:7002 --peer 3=127.0.0.1:7003 [--n 20] [--log-level warning]
 *
 * It also checks, for the interface's sake: its own allocation published under a root and seen
 * by every other member after the barrier, compare-and-swap and swap on a word of its own,
 * gallocy_free of an address inside a block (GALLOCY_E_NOT_ALLOCATED with a message), and a
 * bounded lock wait. Exit status 0 if every check held, 1 otherwise (the reasons on stderr).
 */
#include <gallocy.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_MEMBERS 64

/* The shared block at root "c.counter":
 *   word 0: the counter (under the lock)   word 1: the atomic counter
 *   word 2 + m: increments made by member m (under the lock)
 *   word 2 + MAX_MEMBERS + m: member m's word for compare-and-swap and swap */
#define BLOCK_WORDS (2 + 2 * MAX_MEMBERS)

static int failures = 0;

static void fail(const char *what) {
    fprintf(stderr, "counter: %s\n", what);
    failures++;
}

/* Prints the failed call's error and exits: the calls this is used for must succeed. */
static void check(gallocy_error_t error, const char *call) {
    if (error == GALLOCY_OK) return;
    fprintf(stderr, "counter: %s: %s (%d): %s\n", call, gallocy_error_name(error), (int)error,
            gallocy_last_error_message());
    exit(1);
}

static void usage(void) {
    fprintf(stderr, "usage: counter --id I --data DIR --listen H:P --http H:P --peer J=H:P... [--n N]\n");
    exit(2);
}

int main(int argc, char **argv) {
    uint64_t id = 0;
    uint64_t n = 20;
    uint32_t participants = 1;
    uint64_t peer_ids[MAX_MEMBERS];
    gallocy_options_t *options = gallocy_options_new();
    if (options == NULL) return 1;

    /* Options missing what is required are refused before anything starts. */
    if (gallocy_start(options) != NULL || gallocy_last_error() != GALLOCY_E_INVALID_OPTIONS ||
        strstr(gallocy_last_error_message(), "gallocy_options_set_id") == NULL)
        fail("gallocy_start without an id was not GALLOCY_E_INVALID_OPTIONS naming the missing setter");

    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (i + 1 >= argc) usage();
        const char *value = argv[++i];
        if (strcmp(flag, "--id") == 0) {
            id = strtoull(value, NULL, 10);
            check(gallocy_options_set_id(options, id), "gallocy_options_set_id");
        } else if (strcmp(flag, "--data") == 0) {
            check(gallocy_options_set_data_dir(options, value), "gallocy_options_set_data_dir");
        } else if (strcmp(flag, "--listen") == 0) {
            check(gallocy_options_set_listen(options, value), "gallocy_options_set_listen");
        } else if (strcmp(flag, "--http") == 0) {
            check(gallocy_options_set_http(options, value), "gallocy_options_set_http");
        } else if (strcmp(flag, "--peer") == 0) {
            char *address = NULL;
            uint64_t peer = strtoull(value, &address, 10);
            if (address == NULL || *address != '=' || participants >= MAX_MEMBERS) usage();
            check(gallocy_options_add_peer(options, peer, address + 1), "gallocy_options_add_peer");
            peer_ids[participants - 1] = peer;
            participants++;
        } else if (strcmp(flag, "--n") == 0) {
            n = strtoull(value, NULL, 10);
        } else if (strcmp(flag, "--log-level") == 0) {
            check(gallocy_options_set_log_level(options, value), "gallocy_options_set_log_level");
        } else {
            usage();
        }
    }
    if (id == 0 || id >= MAX_MEMBERS) usage();

    /* Options are checked: an unknown log level is refused with a message. */
    if (gallocy_options_set_log_level(options, "loud") != GALLOCY_E_INVALID_ARGUMENT ||
        strstr(gallocy_last_error_message(), "loud") == NULL)
        fail("an unknown log level was not refused with a message naming it");

    gallocy_member_t *member = gallocy_start(options);
    if (member == NULL) {
        fprintf(stderr, "counter: gallocy_start: %s: %s\n", gallocy_error_name(gallocy_last_error()),
                gallocy_last_error_message());
        return 1;
    }
    gallocy_options_free(options);
    gallocy_thread_prepare();
    if (gallocy_member_id(member) != id) fail("gallocy_member_id is not the id that was set");

    uint64_t *words = NULL;
    check(gallocy_root_or_create(member, "c.counter", BLOCK_WORDS * sizeof(uint64_t), NULL, NULL, (void **)&words),
          "gallocy_root_or_create");
    char *base = gallocy_heap_base(member);
    if ((char *)words < base || (char *)words >= base + gallocy_heap_size(member))
        fail("the root's block is not inside the heap");

    /* This member's own block, found by the others through its root after the barrier. */
    uint64_t *mine = NULL;
    char root_name[32];
    check(gallocy_alloc(member, 64, (void **)&mine), "gallocy_alloc");
    mine[0] = id * 1000;
    check(gallocy_commit(member), "gallocy_commit");
    snprintf(root_name, sizeof root_name, "c.member.%" PRIu64, id);
    check(gallocy_set_root(member, root_name, mine), "gallocy_set_root");

    /* The work: n increments under the lock, n atomic adds. */
    uint64_t done = 0, expired = 0, last_epoch = 0;
    while (done < n) {
        gallocy_lock_t *lock = NULL;
        check(gallocy_lock(member, "c.counter", 5000, -1, &lock), "gallocy_lock");
        if (gallocy_lock_epoch(lock) <= last_epoch) fail("a lock's epoch did not grow");
        last_epoch = gallocy_lock_epoch(lock);
        if (strcmp(gallocy_lock_name(lock), "c.counter") != 0) fail("gallocy_lock_name is not the lock's name");
        words[0] += 1; /* plain stores into shared memory */
        words[2 + id] += 1;
        gallocy_error_t error = gallocy_unlock(member, lock);
        if (error == GALLOCY_E_LEASE_EXPIRED) {
            expired++; /* not published, and undone here: count it again */
            continue;
        }
        check(error, "gallocy_unlock");
        check(gallocy_atomic_add(member, &words[1], 1, NULL), "gallocy_atomic_add");
        done++;
    }

    /* Compare-and-swap and swap on this member's own word. */
    uint64_t *slot = &words[2 + MAX_MEMBERS + id];
    bool exchanged = false;
    uint64_t old = 99, value = 0;
    check(gallocy_atomic_cas(member, slot, 0, id, &exchanged, &old), "gallocy_atomic_cas");
    if (!exchanged || old != 0) fail("the first compare-and-swap did not exchange 0");
    check(gallocy_atomic_cas(member, slot, 0, 7, &exchanged, &old), "gallocy_atomic_cas");
    if (exchanged || old != id) fail("a compare-and-swap with a stale expected value exchanged");
    check(gallocy_atomic_swap(member, slot, id + 100, &old), "gallocy_atomic_swap");
    if (old != id) fail("gallocy_atomic_swap did not return the value before");
    check(gallocy_atomic_load(member, slot, &value), "gallocy_atomic_load");
    if (value != id + 100) fail("gallocy_atomic_load did not read the swapped value");

    /* Errors: freeing an address inside a block, not its start, is refused with a message. (A
     * second free of a freed block is not a reliable check here: another member may have been
     * given the same range in between.) */
    void *scratch = NULL;
    check(gallocy_alloc(member, 16, &scratch), "gallocy_alloc");
    if (gallocy_free(member, (char *)scratch + 8) != GALLOCY_E_NOT_ALLOCATED ||
        gallocy_last_error() != GALLOCY_E_NOT_ALLOCATED || gallocy_last_error_message()[0] == '\0')
        fail("freeing the middle of a block was not GALLOCY_E_NOT_ALLOCATED with a message");
    check(gallocy_free(member, scratch), "gallocy_free");
    if (gallocy_atomic_add(member, (uint64_t *)((char *)slot + 1), 1, NULL) != GALLOCY_E_INVALID_ARGUMENT)
        fail("an atomic on a misaligned word was not GALLOCY_E_INVALID_ARGUMENT");

    /* Everyone finished: after the barrier every increment is visible here. */
    check(gallocy_barrier(member, "c.counter.done", participants, 0), "gallocy_barrier");
    uint64_t total = words[0], sum = 0, atomic_total = 0;
    for (int m = 0; m < MAX_MEMBERS; m++) sum += words[2 + m];
    check(gallocy_atomic_load(member, &words[1], &atomic_total), "gallocy_atomic_load");
    uint64_t expected = (uint64_t)participants * n;
    if (total != expected) fail("the counter is not participants * n");
    if (sum != total) fail("the members' counts do not add up to the counter");
    if (atomic_total != expected || words[1] != expected) fail("the atomic counter is not participants * n");

    /* Every other member's block, through its root, with what that member wrote. */
    int roots_seen = 0;
    for (uint32_t p = 0; p + 1 < participants; p++) {
        uint64_t *theirs = NULL;
        snprintf(root_name, sizeof root_name, "c.member.%" PRIu64, peer_ids[p]);
        check(gallocy_root(member, root_name, (void **)&theirs), "gallocy_root");
        if (theirs != NULL && theirs[0] == peer_ids[p] * 1000) roots_seen++;
    }
    if (roots_seen != (int)participants - 1) fail("another member's root or its block's contents were not seen");
    void *missing = &missing;
    check(gallocy_root(member, "c.no-such-root", &missing), "gallocy_root");
    if (missing != NULL) fail("a root that was never set is not NULL");

    /* A bounded wait for a lock that another member holds (member 1 holds it here). */
    int busy_seen = -1;
    if (participants > 1) {
        gallocy_lock_t *held = NULL;
        if (id == 1) check(gallocy_lock(member, "c.held", 8000, -1, &held), "gallocy_lock");
        check(gallocy_barrier(member, "c.held.taken", participants, 0), "gallocy_barrier");
        if (id != 1) {
            gallocy_lock_t *never = NULL;
            gallocy_error_t error = gallocy_lock(member, "c.held", 1000, 300, &never);
            busy_seen = error == GALLOCY_E_LOCK_BUSY;
            if (!busy_seen) fail("a bounded wait for a held lock was not GALLOCY_E_LOCK_BUSY");
            if (never != NULL) check(gallocy_unlock(member, never), "gallocy_unlock");
        }
        check(gallocy_barrier(member, "c.held.tried", participants, 0), "gallocy_barrier");
        if (held != NULL) check(gallocy_unlock(member, held), "gallocy_unlock");
    }

    printf("{\"id\":%" PRIu64 ",\"n\":%" PRIu64 ",\"participants\":%u,\"counter\":%" PRIu64 ",\"sum_of_counts\":%" PRIu64
           ",\"atomic\":%" PRIu64 ",\"increments_here\":%" PRIu64 ",\"expired_leases\":%" PRIu64
           ",\"roots_seen\":%d,\"lock_busy_seen\":%d,\"failures\":%d}\n",
           id, n, participants, total, sum, atomic_total, words[2 + id], expired, roots_seen, busy_seen, failures);
    fflush(stdout);

    /* Stay until every member is here, then a moment longer, so that the cluster keeps a majority
     * while the others finish. */
    check(gallocy_barrier(member, "c.counter.exit", participants, 0), "gallocy_barrier");
    sleep(2);
    check(gallocy_stop(member), "gallocy_stop");
    return failures == 0 ? 0 : 1;
}
