/* SPDX-License-Identifier: MIT */
/*
 * Lockout after repeated failures: counts definitive mismatches per name
 * ("key:<id>", "from:<user>@<rhost>", "uid:<n>") within a window; at
 * `threshold` failures the name is locked until the window that began with
 * the first failure has passed.  Bounded in memory: when full of live
 * windows, new names are not counted.  Saved to and loaded from a blob so
 * the counts survive a restart (times are wall-clock µs for that reason).
 *
 * Blob format (little-endian): u32 version (1), u32 count, then per entry
 * u16 name length, name bytes, u32 failures, u64 since.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

#define LOCKOUT_NAME_MAX 200
#define LOCKOUT_MAX      16384

struct lockout_entry {
        char name[LOCKOUT_NAME_MAX + 1]; /* "" = free */
        unsigned failures;
        uint64_t since; /* µs, the window's first failure */
};

struct lockout {
        struct lockout_entry *slots;
        size_t n_slots, n_used;
        unsigned threshold; /* 0 = never lock */
        uint64_t window;    /* µs */
        bool dirty;         /* changed since the last lockout_save() */
};

void lockout_init(struct lockout *l, unsigned threshold, uint64_t window);
void lockout_done(struct lockout *l);

/* Whether `name` is locked at `now`. */
bool lockout_locked(const struct lockout *l, const char *name, uint64_t now);

/* Count a failure of `name`; true if this one locks it. */
bool lockout_fail(struct lockout *l, const char *name, uint64_t now);

/* Forget the failures of `name` (after a success, or by an admin); true if it had any. */
bool lockout_reset(struct lockout *l, const char *name);

/* Forget every count. */
void lockout_reset_all(struct lockout *l);

/* Call `fn` for each name with failures in a window not yet over at `now`. */
typedef int (*lockout_fn)(const struct lockout_entry *e, bool locked, void *userdata);
int lockout_foreach(const struct lockout *l, uint64_t now, lockout_fn fn, void *userdata);

/* The live entries as a blob (free() it); clears `dirty`. */
int lockout_save(struct lockout *l, uint64_t now, void **ret_buf, size_t *ret_len) _warn_unused_;

/* Add the entries of a blob saved earlier; -EBADMSG if it is malformed (nothing is added then). */
int lockout_load(struct lockout *l, const void *buf, size_t len, uint64_t now) _warn_unused_;
