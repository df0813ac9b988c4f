/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes lockout_load() (apikeyd/lockout.c), which reads the lockout counts
 * the daemon saved in the keystore at start.  The input is the saved blob.
 * Checks that a blob is either refused whole (nothing added) or loaded, and
 * that what was loaded saves and loads again to the same live entries.
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct lockout a, b;
        size_t n_a = 0, n_b = 0, len;
        void *buf = NULL;
        int r;

        lockout_init(&a, 3, 60ull * 1000000ull);
        r = lockout_load(&a, data, size, NOW);
        CHECK(r == 0 || r == -EBADMSG);
        CHECK(!a.dirty);
        CHECK(lockout_foreach(&a, NOW, count, &n_a) == 0);
        if (r < 0)
                CHECK(n_a == 0);

        CHECK(lockout_save(&a, NOW, &buf, &len) == 0);
        lockout_init(&b, 3, 60ull * 1000000ull);
        CHECK(lockout_load(&b, buf, len, NOW) == 0);
        CHECK(lockout_foreach(&b, NOW, count, &n_b) == 0);
        CHECK(n_a == n_b);

        free(buf);
        lockout_done(&a);
        lockout_done(&b);
        return 0;
}
