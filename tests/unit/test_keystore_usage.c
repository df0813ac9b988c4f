/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of keys' usage history in the keystore
 * (apikeyd/store/keystore_usage.c), against LMDB on disk in a fresh
 * temporary directory per test.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "keystore_usage.h"

#define NOW  1700000000000000ull
#define HOUR (3600 * 1000000ull)

struct fixture {
        char dir[256];
        struct keystore *ks;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        const char *tmp = getenv("TMPDIR");
        struct keystore_options opts = {.flags = KEYSTORE_NOSYNC};
        char *error = NULL;

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "%s/test-usage-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        assert_non_null(mkdtemp(f->dir));
        assert_int_equal(keystore_open(f->dir, &opts, &f->ks, &error), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        char path[320];

        keystore_close(f->ks);
        snprintf(path, sizeof(path), "%s/%s", f->dir, KEYSTORE_FILE);
        unlink(path);
        snprintf(path, sizeof(path), "%s/%s-lock", f->dir, KEYSTORE_FILE);
        unlink(path);
        assert_int_equal(rmdir(f->dir), 0);
        free(f);
        return 0;
}

static void put_key(struct fixture *f, const char *id, const char *name)
{
        struct key_record rec = {
            .status = KEY_STATUS_ENABLED,
            .role = KEY_ROLE_READONLY,
            .permissions = KEY_PERM_READ,
            .created_at = NOW,
            .name = name,
            .owner = "alice",
            .created_by = "uid=0",
        };

        memcpy(rec.id, id, TOKEN_ID_LEN + 1);
        assert_int_equal(keystore_put_key(f->ks, &rec), 0);
}

static struct key_use use(const char *id, uint64_t at, const char *code, const char *service,
                          const char *rhost)
{
        struct key_use u = {.e = {.at = at, .code = code, .service = service, .rhost = rhost}};

        memcpy(u.id, id, TOKEN_ID_LEN + 1);
        return u;
}

struct listed {
        char rhost[8][32];
        size_t n;
};

static int collect(const struct usage_entry *e, void *userdata)
{
        struct listed *l = userdata;

        snprintf(l->rhost[l->n++], sizeof(l->rhost[0]), "%s", e->rhost ? e->rhost : "-");
        return 0;
}

static void test_newest_kept_and_sources_found(void **state)
{
        struct fixture *f = *state;
        const char *a = "7Hq2LmX9aB3z", *b = "cE2SttEhy4jD", *gone = "AAAAAAAAAAAA";
        struct key_use u[] = {
            use(a, NOW + 1, "VALID", "sshd", "192.0.2.1"),
            use(b, NOW + 2, "VALID", "sshd", "192.0.2.1"),
            use(a, NOW + 3, "OUT_OF_SCOPE", "sudo", "192.0.2.2"),
            use(a, NOW + 4, "VALID", "sshd", "192.0.2.1"),
            use(gone, NOW + 5, "VALID", "sshd", "192.0.2.9"),
            use(a, NOW + 6, "VALID", "billing", NULL),
            use(a, NOW + 6, "VALID", "sshd", "192.0.2.3"), /* the same microsecond */
        };
        struct key_new_source found[ELEMENTSOF(u)];
        struct listed l = {.n = 0};
        size_t n_found = 99;

        put_key(f, a, "laptop");
        put_key(f, b, "ci");
        assert_int_equal(keystore_record_uses(f->ks, u, ELEMENTSOF(u), 3, found, &n_found), 0);
        /* a from 192.0.2.1, b from 192.0.2.1, a from billing, a from 192.0.2.3; a refusal
         * is no source, a known one is not new, and the deleted key is skipped. */
        assert_int_equal(n_found, 4);
        assert_int_equal(found[0].use, 0);
        assert_int_equal(found[0].n_known, 0);
        assert_string_equal(found[0].owner, "alice");
        assert_string_equal(found[0].name, "laptop");
        assert_int_equal(found[1].use, 1);
        assert_int_equal(found[2].use, 5);
        assert_int_equal(found[2].n_known, 1);
        assert_int_equal(found[3].use, 6);
        assert_int_equal(found[3].n_known, 2);

        /* Only the newest 3 of a's 5, newest first; both of the same microsecond kept. */
        assert_int_equal(keystore_list_uses(f->ks, a, 0, 0, collect, &l), 0);
        assert_int_equal(l.n, 3);
        assert_string_equal(l.rhost[0], "192.0.2.3");
        assert_string_equal(l.rhost[1], "-");
        assert_string_equal(l.rhost[2], "192.0.2.1");
        /* A limit, and those before a time. */
        l.n = 0;
        assert_int_equal(keystore_list_uses(f->ks, a, 0, 1, collect, &l), 0);
        assert_int_equal(l.n, 1);
        l.n = 0;
        assert_int_equal(keystore_list_uses(f->ks, a, NOW + 6, 0, collect, &l), 0);
        assert_int_equal(l.n, 1);
        assert_string_equal(l.rhost[0], "192.0.2.1");

        /* A later batch: known sources are not new again. */
        struct key_use again[] = {use(a, NOW + 2 * HOUR, "VALID", "sshd", "192.0.2.1")};
        assert_int_equal(keystore_record_uses(f->ks, again, 1, 3, found, &n_found), 0);
        assert_int_equal(n_found, 0);

        /* Deleting the key deletes its history and its sources; b keeps its own. */
        assert_int_equal(keystore_delete_key(f->ks, a), 0);
        l.n = 0;
        assert_int_equal(keystore_list_uses(f->ks, a, 0, 0, collect, &l), 0);
        assert_int_equal(l.n, 0);
        put_key(f, a, "laptop");
        assert_int_equal(keystore_record_uses(f->ks, again, 1, 3, found, &n_found), 0);
        assert_int_equal(n_found, 1);
        assert_int_equal(found[0].n_known, 0);
        l.n = 0;
        assert_int_equal(keystore_list_uses(f->ks, b, 0, 0, collect, &l), 0);
        assert_int_equal(l.n, 1);
}

static void test_no_history_kept_sources_still_are(void **state)
{
        struct fixture *f = *state;
        const char *a = "7Hq2LmX9aB3z";
        struct key_use u[] = {use(a, NOW, "VALID", "sshd", "192.0.2.1"),
                              use(a, NOW + 1, "VALID", "sshd", "192.0.2.1")};
        struct key_new_source found[2];
        struct listed l = {.n = 0};
        size_t n_found;

        put_key(f, a, "laptop");
        assert_int_equal(keystore_record_uses(f->ks, u, 2, 0, found, &n_found), 0);
        assert_int_equal(n_found, 1);
        assert_int_equal(keystore_list_uses(f->ks, a, 0, 0, collect, &l), 0);
        assert_int_equal(l.n, 0);
}

static void test_bounded_sources_forget_the_oldest(void **state)
{
        struct fixture *f = *state;
        const char *a = "7Hq2LmX9aB3z";
        struct key_use u[USAGE_SOURCES_MAX + 2];
        struct key_new_source found[USAGE_SOURCES_MAX + 2];
        char hosts[USAGE_SOURCES_MAX + 1][32];
        size_t n_found;

        put_key(f, a, "laptop");
        for (size_t i = 0; i <= USAGE_SOURCES_MAX; i++) {
                snprintf(hosts[i], sizeof(hosts[i]), "host%zu", i);
                u[i] = use(a, NOW + i, "VALID", NULL, hosts[i]);
        }
        /* 65 sources: the first is forgotten to make room for the last, and is new again. */
        u[USAGE_SOURCES_MAX + 1] = use(a, NOW + 100, "VALID", NULL, hosts[0]);
        assert_int_equal(keystore_record_uses(f->ks, u, USAGE_SOURCES_MAX + 2, 1, found, &n_found),
                         0);
        assert_int_equal(n_found, USAGE_SOURCES_MAX + 2);
        assert_int_equal(found[USAGE_SOURCES_MAX + 1].n_known, USAGE_SOURCES_MAX);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_newest_kept_and_sources_found, setup, teardown),
            cmocka_unit_test_setup_teardown(test_no_history_kept_sources_still_are, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_bounded_sources_forget_the_oldest, setup,
                                            teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
