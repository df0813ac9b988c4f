/* SPDX-License-Identifier: MIT */
/*
 * Lockout after repeated failures: counts definitive mismatches per name
 * (a key id) within a window; at `threshold` failures the name is locked
 * until the window that began with the first failure has passed.  Kept in
 * memory, bounded: when full, the oldest windows are forgotten first.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

#define LOCKOUT_NAME_MAX 64
#define LOCKOUT_MAX      65536

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
};

void lockout_init(struct lockout *l, unsigned threshold, uint64_t window);
void lockout_done(struct lockout *l);

/* Whether `name` is locked at `now`. */
bool lockout_locked(const struct lockout *l, const char *name, uint64_t now);

/* Count a failure of `name`; true if this one locks it. */
bool lockout_fail(struct lockout *l, const char *name, uint64_t now);

/* Forget the failures of `name` (after a success). */
void lockout_reset(struct lockout *l, const char *name);
