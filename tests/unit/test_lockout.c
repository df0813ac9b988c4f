/* SPDX-License-Identifier: MIT */
/* Unit tests of failure counting and lockout (apikeyd/lockout.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "lockout.h"

#define S 1000000ull

static void test_locks_at_threshold_until_window_passes(void **state)
{
        struct lockout l;

        lockout_init(&l, 3, 60 * S);
        assert_false(lockout_locked(&l, "aaaaaaaaaaaa", 0));
        assert_false(lockout_fail(&l, "aaaaaaaaaaaa", 1 * S));
        assert_false(lockout_fail(&l, "aaaaaaaaaaaa", 2 * S));
        assert_false(lockout_locked(&l, "aaaaaaaaaaaa", 2 * S));
        assert_true(lockout_fail(&l, "aaaaaaaaaaaa", 3 * S));
        assert_true(lockout_locked(&l, "aaaaaaaaaaaa", 3 * S));
        assert_true(lockout_locked(&l, "aaaaaaaaaaaa", 60 * S));
        /* The window began with the first failure. */
        assert_false(lockout_locked(&l, "aaaaaaaaaaaa", 61 * S));
        /* Another key of the same owner is not touched. */
        assert_false(lockout_locked(&l, "bbbbbbbbbbbb", 3 * S));
        lockout_done(&l);
}

static void test_old_failures_do_not_add_up(void **state)
{
        struct lockout l;

        lockout_init(&l, 2, 10 * S);
        assert_false(lockout_fail(&l, "k", 0));
        assert_false(lockout_fail(&l, "k", 11 * S)); /* a new window */
        assert_false(lockout_locked(&l, "k", 12 * S));
        assert_true(lockout_fail(&l, "k", 12 * S));
        assert_true(lockout_locked(&l, "k", 12 * S));
        lockout_done(&l);
}

static void test_reset_and_off(void **state)
{
        struct lockout l;

        lockout_init(&l, 2, 10 * S);
        assert_false(lockout_fail(&l, "k", 0));
        lockout_reset(&l, "k");
        assert_false(lockout_fail(&l, "k", 1 * S));
        assert_false(lockout_locked(&l, "k", 1 * S));
        lockout_done(&l);

        lockout_init(&l, 0, 10 * S);
        for (int i = 0; i < 100; i++)
                assert_false(lockout_fail(&l, "k", (uint64_t)i));
        assert_false(lockout_locked(&l, "k", 100));
        lockout_done(&l);
}

static void test_bounded(void **state)
{
        struct lockout l;
        char name[32];

        lockout_init(&l, 1, 1000 * S);
        /* More names than fit: the table stops counting new ones, never grows past its bound. */
        for (unsigned i = 0; i < 3 * LOCKOUT_MAX; i++) {
                snprintf(name, sizeof(name), "n%u", i);
                (void)lockout_fail(&l, name, S);
        }
        assert_true(l.n_slots <= 2 * LOCKOUT_MAX);
        assert_true(lockout_locked(&l, "n0", S));
        /* Once their windows pass, the room is reused. */
        assert_true(lockout_fail(&l, "fresh", 2000 * S));
        assert_true(lockout_locked(&l, "fresh", 2000 * S));
        lockout_done(&l);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_locks_at_threshold_until_window_passes),
            cmocka_unit_test(test_old_failures_do_not_add_up),
            cmocka_unit_test(test_reset_and_off),
            cmocka_unit_test(test_bounded),
        };
        return cmocka_run_group_tests_name("lockout", tests, NULL, NULL);
}
