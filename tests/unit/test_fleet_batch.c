/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of a manager's bulk batch (apikeyd/fleet/fleet_bulk.c), on
 * LMDB in a fresh temporary directory: what one etcd Txn of the batch
 * counts against etcd's limit, and the keys created through the batch's
 * keys, found in the write's own transaction, up to the limit.  (Its way
 * to etcd is tested against a real etcd: test_fleet_bulk.py.)
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

#include "fleet.h"
#include "keystore.h"
#include "record.h"

#define NOW 1700000000000000ull

struct fixture {
        char dir[256];
        struct keystore *ks;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        struct keystore_options opts = {.flags = KEYSTORE_NOSYNC};
        const char *tmp = getenv("TMPDIR");

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "%s/test-batch-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        assert_non_null(mkdtemp(f->dir));
        assert_int_equal(keystore_open(f->dir, &opts, &f->ks, NULL), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        char path[300];

        keystore_close(f->ks);
        snprintf(path, sizeof(path), "%s/%s", f->dir, KEYSTORE_FILE);
        unlink(path);
        snprintf(path, sizeof(path), "%s/%s-lock", f->dir, KEYSTORE_FILE);
        unlink(path);
        rmdir(f->dir);
        free(f);
        return 0;
}

/* Key number `n` ("k0000000000n"), created through key `parent` (0: none). */
static void make_rec(struct key_record *rec, char name[16], unsigned n, unsigned parent)
{
        snprintf(name, 16, "key-%u", n);
        *rec = (struct key_record){
            .status = KEY_STATUS_ENABLED,
            .role = KEY_ROLE_READONLY,
            .permissions = KEY_PERM_READ,
            .created_at = NOW,
            .name = name,
            .owner = "alice",
        };
        snprintf(rec->id, sizeof(rec->id), "k%011u", n);
        if (parent)
                snprintf(rec->parent, sizeof(rec->parent), "k%011u", parent);
        memset(rec->hash, (int)n, sizeof(rec->hash));
}

static void put(struct fixture *f, unsigned n, unsigned parent)
{
        struct key_record rec;
        char name[16];

        make_rec(&rec, name, n, parent);
        assert_int_equal(keystore_put_key(f->ks, &rec), 0);
}

static void add(struct fleet_batch *b, unsigned n, enum fleet_batch_kind kind)
{
        struct key_record rec;
        char name[16];

        make_rec(&rec, name, n, 0);
        assert_int_equal(fleet_batch_add(b, &rec, kind), 0);
}

static void test_ops(void **state)
{
        struct fleet_batch *b = fleet_batch_new();

        assert_non_null(b);
        assert_int_equal(fleet_batch_ops(b), 0);
        /* A key changed: its compare, its put. */
        add(b, 1, FLEET_BATCH_CHANGED);
        assert_int_equal(fleet_batch_ops(b), 1);
        /* Created: with its name entry's compare and put. */
        add(b, 2, FLEET_BATCH_CREATED);
        assert_int_equal(fleet_batch_ops(b), 3);
        /* Deleted: its compare, its delete, its name entry's delete. */
        add(b, 3, FLEET_BATCH_DELETED);
        assert_int_equal(fleet_batch_ops(b), 5);
        /* A key already in it stays as it was added. */
        add(b, 3, FLEET_BATCH_CHANGED);
        add(b, 1, FLEET_BATCH_DELETED);
        assert_int_equal(fleet_batch_size(b), 3);
        assert_int_equal(fleet_batch_ops(b), 5);
        assert_int_equal(fleet_batch_taken(b), 0);
        fleet_batch_reset(b);
        assert_int_equal(fleet_batch_size(b), 0);
        assert_int_equal(fleet_batch_ops(b), 0);
        fleet_batch_free(b);
}

struct descend {
        struct fleet_batch *b;
        int r;
};

static int descend_fn(struct keystore_tx *tx, void *userdata)
{
        struct descend *d = userdata;

        d->r = fleet_batch_add_descendants(d->b, tx, NOW);
        return 0;
}

static int descend(struct fixture *f, struct fleet_batch *b)
{
        struct descend d = {.b = b};
        struct keystore_write w = {.fn = descend_fn, .userdata = &d};

        assert_int_equal(keystore_write_group(f->ks, &w, 1), 0);
        return d.r;
}

static void test_descendants(void **state)
{
        struct fixture *f = *state;
        struct fleet_batch *b = fleet_batch_new();

        /* 1 -> 2 -> 3 (created through 2), 1 -> 4; 5 -> 6 apart. */
        put(f, 1, 0);
        put(f, 2, 1);
        put(f, 3, 2);
        put(f, 4, 1);
        put(f, 5, 0);
        put(f, 6, 5);
        assert_non_null(b);
        add(b, 1, FLEET_BATCH_DELETED);
        assert_int_equal(descend(f, b), 0);
        /* Every key below 1, changed (revoked); nothing of 5's. */
        assert_int_equal(fleet_batch_size(b), 4);
        assert_int_equal(fleet_batch_ops(b), 5);

        fleet_batch_reset(b);
        add(b, 5, FLEET_BATCH_CHANGED);
        add(b, 3, FLEET_BATCH_CHANGED);
        assert_int_equal(descend(f, b), 0);
        assert_int_equal(fleet_batch_size(b), 3);
        fleet_batch_free(b);
}

static void test_limit(void **state)
{
        struct fixture *f = *state;
        struct fleet_batch *b = fleet_batch_new();

        /* 1 with FLEET_TXN_OPS - 1 keys created through it: exactly the limit. */
        put(f, 1, 0);
        for (unsigned n = 2; n <= FLEET_TXN_OPS; n++)
                put(f, n, 1);
        assert_non_null(b);
        add(b, 1, FLEET_BATCH_CHANGED);
        assert_int_equal(descend(f, b), 0);
        assert_int_equal(fleet_batch_ops(b), FLEET_TXN_OPS);

        /* One more below it is one too many. */
        put(f, FLEET_TXN_OPS + 1, FLEET_TXN_OPS);
        fleet_batch_reset(b);
        add(b, 1, FLEET_BATCH_CHANGED);
        assert_int_equal(descend(f, b), -E2BIG);

        /* A deleted key's name counts: the limit is reached one key sooner. */
        fleet_batch_reset(b);
        add(b, 1, FLEET_BATCH_DELETED);
        add(b, 2, FLEET_BATCH_CHANGED);
        for (unsigned n = 3; n <= FLEET_TXN_OPS - 1; n++)
                add(b, n, FLEET_BATCH_CHANGED);
        assert_int_equal(fleet_batch_ops(b), FLEET_TXN_OPS);
        assert_int_equal(descend(f, b), -E2BIG);
        fleet_batch_free(b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_ops),
            cmocka_unit_test_setup_teardown(test_descendants, setup, teardown),
            cmocka_unit_test_setup_teardown(test_limit, setup, teardown),
        };
        return cmocka_run_group_tests_name("fleet_batch", tests, NULL, NULL);
}
