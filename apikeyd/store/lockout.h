/* SPDX-License-Identifier: MIT */
/*
 * Lockout after repeated failures: counts definitive mismatches per name
 * (what the names mean is the caller's: api/token_check.c counts sources and
 * key ids per source) within a window; at `threshold` failures the name is
 * locked until the window that began with the first failure has passed.
 *
 * Bounded in memory: at most `max` names (LOCKOUT_MAX).  A full table never
 * stops counting: names whose window has passed go first, then the least
 * recently failed, so a flood of new names pushes out what is idle, not the
 * attacker who keeps trying.  Saved to and loaded from a blob so the counts
 * survive a restart (times are wall-clock µs for that reason).
 *
 * Blob format (little-endian): u32 version (2), u32 count, then per entry,
 * least recently failed first, u16 name length, name bytes, u32 failures,
 * u64 since, u64 last.  Version 1, written by earlier builds, has no `last`.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

#define LOCKOUT_NAME_MAX 200
#define LOCKOUT_MAX      16384

struct lockout_entry {
        char name[LOCKOUT_NAME_MAX + 1];
        unsigned failures;
        uint64_t since;        /* µs, the window's first failure */
        uint64_t last;         /* µs, the latest failure or refused attempt */
        uint64_t hash;         /* lockout_hash() of the name */
        uint32_t next;         /* the bucket's chain */
        uint32_t older, newer; /* the order of `last` */
};

struct lockout {
        struct lockout_entry *entries; /* packed: 0 .. n_used-1 */
        size_t n_used, n_alloc;
        uint32_t *buckets; /* heads of chains, n_buckets (a power of two) */
        size_t n_buckets;
        uint32_t oldest, newest;
        size_t max;         /* names kept at most; LOCKOUT_MAX */
        unsigned threshold; /* 0 = never lock */
        uint64_t window;    /* µs */
        uint64_t seed;      /* of the hash, so names cannot be chosen to collide */
        uint64_t purged_at; /* when windows that passed were last dropped */
        uint64_t evicted;   /* names pushed out while their window still ran */
        bool evicted_told;  /* lockout_eviction_news() has said so */
        bool dirty;         /* changed since the last lockout_save() */
};

void lockout_init(struct lockout *l, unsigned threshold, uint64_t window);
void lockout_done(struct lockout *l);

/* Whether `name` is locked at `now`. */
bool lockout_locked(const struct lockout *l, const char *name, uint64_t now);

/* Count a failure of `name`; true if this one locks it. */
bool lockout_fail(struct lockout *l, const char *name, uint64_t now);

/* Note an attempt refused because `name` is locked: it is kept as if it had
 * just failed (the last to be evicted), without counting. */
void lockout_touch(struct lockout *l, const char *name, uint64_t now);

/* Forget the failures of `name` (after a success, or by an admin); true if it had any. */
bool lockout_reset(struct lockout *l, const char *name);

/* Forget the failures of every name `match` answers true for; how many had any. */
typedef bool (*lockout_match_fn)(const char *name, void *userdata);
size_t lockout_reset_if(struct lockout *l, lockout_match_fn match, void *userdata);

/*
 * The seeded hash of `name` (`len` bytes, strlen(name)), and the calls
 * above with it: for a caller that asks about one name several times, so
 * it is hashed once.
 */
uint64_t lockout_hash(const struct lockout *l, const char *name, size_t len);
bool lockout_locked_hashed(const struct lockout *l, const char *name, uint64_t hash, uint64_t now);
bool lockout_fail_hashed(struct lockout *l, const char *name, uint64_t hash, uint64_t now);
void lockout_touch_hashed(struct lockout *l, const char *name, uint64_t hash, uint64_t now);
bool lockout_reset_hashed(struct lockout *l, const char *name, uint64_t hash);
/* Forget every count. */
void lockout_reset_all(struct lockout *l);

/*
 * True, with how many so far, the first time it is called after names
 * whose window still ran were evicted; false ever after (to log it once,
 * not once per eviction).
 */
bool lockout_eviction_news(struct lockout *l, uint64_t *ret_evicted);

/* Call `fn` for each name with failures in a window not yet over at `now`,
 * most recently failed first. */
typedef int (*lockout_fn)(const struct lockout_entry *e, bool locked, void *userdata);
int lockout_foreach(const struct lockout *l, uint64_t now, lockout_fn fn, void *userdata);

/* The live entries as a blob (free() it); clears `dirty`. */
int lockout_save(struct lockout *l, uint64_t now, void **ret_buf, size_t *ret_len) _warn_unused_;

/*
 * Add the entries of a blob saved earlier (version 1 or 2) whose window is
 * not over at `now`, and for which `keep` (when not NULL) answers true;
 * -EBADMSG if it is malformed (nothing is added then).
 */
int lockout_load(struct lockout *l, const void *buf, size_t len, uint64_t now,
                 lockout_match_fn keep, void *userdata) _warn_unused_;
