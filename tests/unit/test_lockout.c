/* SPDX-License-Identifier: MIT */
/* Unit tests of failure counting and lockout (apikeyd/store/lockout.c). */
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
        /* More names than fit: the table never grows past its bound. */
        for (unsigned i = 0; i < 3 * LOCKOUT_MAX; i++) {
                snprintf(name, sizeof(name), "n%u", i);
                (void)lockout_fail(&l, name, S + i);
        }
        assert_true(l.n_used <= LOCKOUT_MAX && l.n_alloc <= LOCKOUT_MAX);
        /* Once their windows pass, the room is reused. */
        assert_true(lockout_fail(&l, "fresh", 2000 * S));
        assert_true(lockout_locked(&l, "fresh", 2000 * S));
        lockout_done(&l);
}

/* A full table goes on counting new names: it evicts the least recently
 * failed, says so once, and keeps the attacker who keeps trying. */
static void test_full_table_evicts_least_recently_failed(void **state)
{
        struct lockout l;
        uint64_t evicted = 0;
        char name[32];

        lockout_init(&l, 3, 1000 * S);
        for (int i = 0; i < 3; i++)
                (void)lockout_fail(&l, "uid:1000", S);
        assert_true(lockout_locked(&l, "uid:1000", S));
        assert_false(lockout_eviction_news(&l, &evicted));
        for (unsigned i = 0; i < LOCKOUT_MAX + 100; i++) {
                snprintf(name, sizeof(name), "from:%u", i);
                (void)lockout_fail(&l, name, 2 * S + i);
                /* The locked-out caller keeps asking: it stays in. */
                if (i % 1000 == 0)
                        lockout_touch(&l, "uid:1000", 2 * S + i);
        }
        assert_int_equal(l.n_used, LOCKOUT_MAX);
        assert_true(lockout_locked(&l, "uid:1000", 3 * S));
        /* The oldest idle names went first; the newest are counted. */
        assert_false(lockout_fail(&l, "from:0", 4 * S)); /* counted anew: 1 */
        snprintf(name, sizeof(name), "from:%u", LOCKOUT_MAX + 99);
        assert_false(lockout_fail(&l, name, 4 * S));
        assert_true(lockout_fail(&l, name, 4 * S)); /* 3: locked, not forgotten */
        assert_true(lockout_locked(&l, name, 4 * S));
        /* Said once, not once per eviction. */
        assert_true(lockout_eviction_news(&l, &evicted));
        assert_true(evicted >= 100);
        assert_false(lockout_eviction_news(&l, &evicted));
        for (unsigned i = 0; i < 50; i++) {
                snprintf(name, sizeof(name), "more:%u", i);
                (void)lockout_fail(&l, name, 5 * S);
        }
        assert_false(lockout_eviction_news(&l, &evicted));
        lockout_done(&l);
}

/* Names whose window has passed make room before anything live is evicted. */
static void test_full_table_drops_passed_windows_first(void **state)
{
        struct lockout l;
        uint64_t evicted;
        char name[32];

        lockout_init(&l, 2, 10 * S);
        l.max = 64;
        for (unsigned i = 0; i < 60; i++) {
                snprintf(name, sizeof(name), "old:%u", i);
                (void)lockout_fail(&l, name, 0);
        }
        for (unsigned i = 0; i < 4; i++) {
                snprintf(name, sizeof(name), "live:%u", i);
                (void)lockout_fail(&l, name, 5 * S);
                (void)lockout_fail(&l, name, 5 * S);
        }
        /* Failed more recently than the live ones, in a window that ends first. */
        for (unsigned i = 0; i < 60; i++) {
                snprintf(name, sizeof(name), "old:%u", i);
                (void)lockout_fail(&l, name, 9 * S);
        }
        for (unsigned i = 0; i < 60; i++) {
                snprintf(name, sizeof(name), "new:%u", i);
                (void)lockout_fail(&l, name, 12 * S);
        }
        for (unsigned i = 0; i < 4; i++) {
                snprintf(name, sizeof(name), "live:%u", i);
                assert_true(lockout_locked(&l, name, 12 * S));
        }
        assert_false(lockout_eviction_news(&l, &evicted));
        lockout_done(&l);
}

/* Removal keeps the table whole: every name still found, in order. */
static int collect(const struct lockout_entry *e, bool locked, void *userdata)
{
        unsigned *n = userdata;

        (*n)++;
        return 0;
}

static bool odd_name(const char *name, void *userdata)
{
        return (name[strlen(name) - 1] - '0') % 2 == 1;
}

static void test_reset_if_and_removal(void **state)
{
        struct lockout l;
        char name[32];
        unsigned n = 0;

        lockout_init(&l, 1, 100 * S);
        l.max = 200;
        for (unsigned i = 0; i < 150; i++) {
                snprintf(name, sizeof(name), "key:%u", i);
                assert_true(lockout_fail(&l, name, S));
        }
        assert_int_equal(lockout_reset_if(&l, odd_name, NULL), 75);
        for (unsigned i = 0; i < 150; i++) {
                snprintf(name, sizeof(name), "key:%u", i);
                assert_int_equal(lockout_locked(&l, name, S), i % 2 == 0);
        }
        assert_int_equal(lockout_foreach(&l, S, collect, &n), 0);
        assert_int_equal(n, 75);
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
        assert_int_equal(lockout_load(&b, buf, len, 50 * S, NULL, NULL), 0);
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
                assert_int_equal(lockout_load(&c, buf, cut, 50 * S, NULL, NULL), -EBADMSG);
        ((unsigned char *)buf)[0] = 9; /* a version we do not know */
        assert_int_equal(lockout_load(&c, buf, len, 50 * S, NULL, NULL), -EBADMSG);
        assert_false(lockout_locked(&c, "key:aaaaaaaaaaaa", 50 * S));
        free(buf);
        lockout_done(&a);
        lockout_done(&b);
        lockout_done(&c);
}

/* Counts saved before version 2 still load; `keep` drops what no longer applies. */
static bool not_whole_key(const char *name, void *userdata)
{
        return strchr(name, '@') != NULL || strncmp(name, "key:", 4) != 0;
}

static void test_load_version_1_and_keep(void **state)
{
        static const uint8_t v1[] =
            {
                1,    0,    0,    0,    2,    0,    0,   0, /* version 1, 2 entries */
                16,   0,    'k',  'e',  'y',  ':',  'a', 'a', 'a', 'a', 'a',
                'a',  'a',  'a',  'a',  'a',  'a',  'a', 5,   0,   0,   0,
                0x40, 0x42, 0x0f, 0,    0,    0,    0,   0, /* 5 failures at 1 s */
                8,    0,    'u',  'i',  'd',  ':',  '1', '0', '0', '0', 5,
                0,    0,    0,    0x40, 0x42, 0x0f, 0,   0,   0,   0,   0,
            };
        struct lockout l;

        lockout_init(&l, 3, 100 * S);
        assert_int_equal(lockout_load(&l, v1, sizeof(v1), 2 * S, not_whole_key, NULL), 0);
        assert_false(lockout_locked(&l, "key:aaaaaaaaaaaa", 2 * S));
        assert_true(lockout_locked(&l, "uid:1000", 2 * S));
        assert_int_equal(l.n_used, 1);
        lockout_done(&l);
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
            cmocka_unit_test(test_full_table_evicts_least_recently_failed),
            cmocka_unit_test(test_full_table_drops_passed_windows_first),
            cmocka_unit_test(test_reset_if_and_removal),
            cmocka_unit_test(test_load_version_1_and_keep),
            cmocka_unit_test(test_save_and_load),
            cmocka_unit_test(test_reset_reports_and_all),
        };
        return cmocka_run_group_tests_name("lockout", tests, NULL, NULL);
}
