/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes lockout_load() (apikeyd/store/lockout.c), which reads the lockout counts
 * the daemon saved in the keystore at start (version 1 or 2).  The input is
 * the saved blob.  Checks that a blob is either refused whole (nothing
 * added) or loaded, that names the filter refuses are not, that a small
 * table (eviction) stays whole, and that what was loaded saves and loads
 * again to the same live entries.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lockout.h"
#include "fuzz.h"

#define NOW (1800000000ull * 1000000ull)

static int count(const struct lockout_entry *e, bool locked, void *userdata)
{
        CHECK(e->name[0] && strlen(e->name) <= LOCKOUT_NAME_MAX && e->failures > 0);
        (*(size_t *)userdata)++;
        return 0;
}

/* As the daemon's filter does: some names are dropped at load. */
static bool keep(const char *name, void *userdata)
{
        return name[0] != 'x';
}

static int no_x(const struct lockout_entry *e, bool locked, void *userdata)
{
        CHECK(e->name[0] != 'x');
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct lockout a, b, small;
        size_t n_a = 0, n_b = 0, n_small = 0, len;
        void *buf = NULL;
        int r;

        lockout_init(&small, 3, 60ull * 1000000ull);
        small.max = 4;
        r = lockout_load(&small, data, size, NOW, keep, NULL);
        CHECK(r == 0 || r == -EBADMSG);
        CHECK(small.n_used <= 4);
        CHECK(lockout_foreach(&small, NOW, no_x, NULL) == 0);
        CHECK(lockout_foreach(&small, NOW, count, &n_small) == 0);
        lockout_done(&small);

        lockout_init(&a, 3, 60ull * 1000000ull);
        r = lockout_load(&a, data, size, NOW, NULL, NULL);
        CHECK(r == 0 || r == -EBADMSG);
        CHECK(!a.dirty);
        CHECK(lockout_foreach(&a, NOW, count, &n_a) == 0);
        if (r < 0)
                CHECK(n_a == 0);

        CHECK(lockout_save(&a, NOW, &buf, &len) == 0);
        lockout_init(&b, 3, 60ull * 1000000ull);
        CHECK(lockout_load(&b, buf, len, NOW, NULL, NULL) == 0);
        CHECK(lockout_foreach(&b, NOW, count, &n_b) == 0);
        CHECK(n_a == n_b);

        free(buf);
        lockout_done(&a);
        lockout_done(&b);
        return 0;
}
