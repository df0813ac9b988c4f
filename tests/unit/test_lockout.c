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

static int count_live(const struct lockout_entry *e, bool locked, void *userdata)
{
        unsigned *n = userdata;

        n[0]++;
        n[1] += locked;
        return 0;
}

static void test_save_and_load(void **state)
{
        struct lockout a, b;
        unsigned n[2] = {0, 0};
        void *buf = NULL;
        size_t len;

        lockout_init(&a, 2, 100 * S);
        (void)lockout_fail(&a, "key:aaaaaaaaaaaa", 10 * S);
        (void)lockout_fail(&a, "key:aaaaaaaaaaaa", 11 * S);
        (void)lockout_fail(&a, "from:alice@192.0.2.7", 12 * S);
        (void)lockout_fail(&a, "uid:1000", 1 * S); /* its window ends at 101 s */
        assert_true(a.dirty);
        assert_int_equal(lockout_save(&a, 50 * S, &buf, &len), 0);
        assert_false(a.dirty);

        lockout_init(&b, 2, 100 * S);
        assert_int_equal(lockout_load(&b, buf, len, 50 * S), 0);
        assert_true(lockout_locked(&b, "key:aaaaaaaaaaaa", 50 * S));
        assert_false(lockout_locked(&b, "from:alice@192.0.2.7", 50 * S));
        /* The window still runs from the first failure before the restart. */
        assert_false(lockout_locked(&b, "key:aaaaaaaaaaaa", 111 * S));
        assert_true(lockout_fail(&b, "from:alice@192.0.2.7", 60 * S));
        assert_int_equal(lockout_foreach(&b, 60 * S, count_live, n), 0);
        assert_int_equal(n[0], 3);
        assert_int_equal(n[1], 2);

        /* A damaged blob adds nothing. */
        struct lockout c;
        lockout_init(&c, 2, 100 * S);
        for (size_t cut = 0; cut < len; cut++)
                assert_int_equal(lockout_load(&c, buf, cut, 50 * S), -EBADMSG);
        ((unsigned char *)buf)[0] = 9; /* a version we do not know */
        assert_int_equal(lockout_load(&c, buf, len, 50 * S), -EBADMSG);
        assert_false(lockout_locked(&c, "key:aaaaaaaaaaaa", 50 * S));
        free(buf);
        lockout_done(&a);
        lockout_done(&b);
        lockout_done(&c);
}

static void test_reset_reports_and_all(void **state)
{
        struct lockout l;

        lockout_init(&l, 1, 100 * S);
        assert_false(lockout_reset(&l, "key:x"));
        assert_true(lockout_fail(&l, "key:x", S));
        assert_true(lockout_fail(&l, "key:y", S));
        assert_true(lockout_reset(&l, "key:x"));
        assert_false(lockout_locked(&l, "key:x", S));
        assert_true(lockout_locked(&l, "key:y", S));
        lockout_reset_all(&l);
        assert_true(l.dirty);
        assert_false(lockout_locked(&l, "key:y", S));
        lockout_done(&l);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_locks_at_threshold_until_window_passes),
            cmocka_unit_test(test_old_failures_do_not_add_up),
            cmocka_unit_test(test_reset_and_off),
            cmocka_unit_test(test_bounded),
            cmocka_unit_test(test_save_and_load),
            cmocka_unit_test(test_reset_reports_and_all),
        };
        return cmocka_run_group_tests_name("lockout", tests, NULL, NULL);
}
