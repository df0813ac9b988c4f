/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the keystore as a fleet replica (apikeyd/store/keystore_fleet.c),
 * on LMDB in a fresh temporary directory: revisions applied with their
 * index entries, a full resync removing what etcd no longer has, the
 * applied revision kept with them, a bad record never kept stale.
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

#include "keystore.h"
#include "keystore_fleet.h"
#include "keystore_usage.h"
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
        snprintf(f->dir, sizeof(f->dir), "%s/test-fleet-XXXXXX", tmp && *tmp ? tmp : "/tmp");
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

/* A key's record as a manager puts it in etcd. */
static void encode(const char *id, const char *name, uint8_t status, uint64_t last_used,
                   struct fleet_change *ret)
{
        struct key_record rec = {
            .status = status,
            .role = KEY_ROLE_READONLY,
            .permissions = KEY_PERM_READ,
            .created_at = NOW,
            .last_used_at = last_used,
            .name = name,
            .owner = "alice",
        };
        void *buf;
        size_t len;

        strcpy(rec.id, id);
        memset(rec.hash, 7, sizeof(rec.hash));
        assert_int_equal(record_encode(&rec, &buf, &len), 0);
        strcpy(ret->id, id);
        ret->record = buf;
        ret->len = len;
}

static int64_t applied_now(struct fixture *f)
{
        int64_t rev;

        assert_int_equal(keystore_fleet_state(f->ks, &rev, NULL, NULL), 0);
        return rev;
}

static void apply(struct fixture *f, struct fleet_change *c, size_t n, int64_t rev, bool all,
                  size_t want_refused, size_t want_removed)
{
        struct fleet_apply a = {.after = applied_now(f),
                                .changes = c,
                                .n = n,
                                .revision = rev,
                                .cluster_id = 42,
                                .contact_at = NOW + (uint64_t)rev,
                                .replace_all = all};
        uint64_t contact;
        char *err = NULL;
        int64_t got;
        uint64_t cluster;

        assert_int_equal(keystore_fleet_apply(f->ks, &a), 0);
        assert_int_equal(a.ret_refused, want_refused);
        assert_int_equal(a.ret_removed, want_removed);
        assert_int_equal(keystore_fleet_state(f->ks, &got, &cluster, &contact), 0);
        assert_true(got == rev && cluster == 42 && contact == NOW + (uint64_t)rev);
        if (keystore_check_indexes(f->ks, &err) < 0)
                fail_msg("indexes: %s", err);
}

static void expect(struct fixture *f, const char *id, int want_status)
{
        struct key_record rec;
        void *storage = NULL;
        int r = keystore_get(f->ks, id, &rec, &storage);

        if (want_status < 0) {
                assert_int_equal(r, -ENOENT);
                return;
        }
        assert_int_equal(r, 0);
        assert_int_equal(rec.status, want_status);
        free(storage);
}

static void release(struct fleet_change *c, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free((void *)c[i].record);
}

static void test_revisions(void **state)
{
        struct fixture *f = *state;
        struct fleet_change c[3];
        int64_t rev;
        uint64_t cluster;

        /* Never a replica: revision 0. */
        assert_int_equal(keystore_fleet_state(f->ks, &rev, &cluster, NULL), 0);
        assert_true(rev == 0 && cluster == 0);

        encode("AAAAAAAAAAAA", "one", KEY_STATUS_ENABLED, 0, &c[0]);
        encode("BBBBBBBBBBBB", "two", KEY_STATUS_ENABLED, 0, &c[1]);
        apply(f, c, 2, 5, false, 0, 0);
        release(c, 2);
        expect(f, "AAAAAAAAAAAA", KEY_STATUS_ENABLED);
        expect(f, "BBBBBBBBBBBB", KEY_STATUS_ENABLED);

        /* A revoke and a rename that takes the other's name, then its delete. */
        encode("AAAAAAAAAAAA", "one", KEY_STATUS_REVOKED, 0, &c[0]);
        encode("BBBBBBBBBBBB", "one-b", KEY_STATUS_ENABLED, 0, &c[1]);
        apply(f, c, 2, 6, false, 0, 0);
        release(c, 2);
        expect(f, "AAAAAAAAAAAA", KEY_STATUS_REVOKED);
        c[0] = (struct fleet_change){.id = "BBBBBBBBBBBB"};
        apply(f, c, 1, 7, false, 0, 1);
        expect(f, "BBBBBBBBBBBB", -1);

        /* A record that does not decode, or not under its id, is not kept stale. */
        c[0] = (struct fleet_change){.id = "AAAAAAAAAAAA", .record = "junk", .len = 4};
        apply(f, c, 1, 8, false, 1, 0);
        expect(f, "AAAAAAAAAAAA", -1);
        encode("CCCCCCCCCCCC", "three", KEY_STATUS_ENABLED, 0, &c[0]);
        strcpy(c[0].id, "DDDDDDDDDDDD");
        apply(f, c, 1, 9, false, 1, 0);
        release(c, 1);
        expect(f, "DDDDDDDDDDDD", -1);
}

static int count_use(const struct usage_entry *e, void *userdata)
{
        (void)e;
        (*(size_t *)userdata)++;
        return 0;
}

static size_t uses_of(struct fixture *f, const char *id)
{
        size_t n = 0;

        assert_int_equal(keystore_list_uses(f->ks, id, 0, 0, count_use, &n), 0);
        return n;
}

/* A key's usage history lives through its updates from etcd and goes with its delete. */
static void test_usage_follows_the_key(void **state)
{
        struct fixture *f = *state;
        struct fleet_change c[1];
        struct key_use u = {
            .id = "AAAAAAAAAAAA",
            .e = {.at = NOW + 1, .code = "VALID", .service = "sshd", .rhost = "192.0.2.1"}};
        struct key_new_source found[1];
        size_t n_found;

        encode("AAAAAAAAAAAA", "one", KEY_STATUS_ENABLED, 0, &c[0]);
        apply(f, c, 1, 5, false, 0, 0);
        release(c, 1);
        assert_int_equal(keystore_record_uses(f->ks, &u, 1, 20, found, &n_found), 0);
        assert_int_equal(uses_of(f, "AAAAAAAAAAAA"), 1);

        encode("AAAAAAAAAAAA", "one", KEY_STATUS_DISABLED, 0, &c[0]);
        apply(f, c, 1, 6, false, 0, 0);
        release(c, 1);
        assert_int_equal(uses_of(f, "AAAAAAAAAAAA"), 1);

        c[0] = (struct fleet_change){.id = "AAAAAAAAAAAA"};
        apply(f, c, 1, 7, false, 0, 1);
        assert_int_equal(uses_of(f, "AAAAAAAAAAAA"), 0);

        /* And with a key a full resync finds gone from etcd. */
        encode("BBBBBBBBBBBB", "two", KEY_STATUS_ENABLED, 0, &c[0]);
        apply(f, c, 1, 8, false, 0, 0);
        release(c, 1);
        strcpy(u.id, "BBBBBBBBBBBB");
        assert_int_equal(keystore_record_uses(f->ks, &u, 1, 20, found, &n_found), 0);
        assert_int_equal(uses_of(f, "BBBBBBBBBBBB"), 1);
        apply(f, NULL, 0, 9, true, 0, 1);
        assert_int_equal(uses_of(f, "BBBBBBBBBBBB"), 0);
}

/* A revision is applied only on top of the one before: one that failed is never stepped over. */
static void test_no_gap(void **state)
{
        struct fixture *f = *state;
        struct fleet_change c[1];
        struct fleet_apply a = {.revision = 7, .after = 5};

        encode("AAAAAAAAAAAA", "one", KEY_STATUS_ENABLED, 0, &c[0]);
        apply(f, c, 1, 5, false, 0, 0);
        release(c, 1);
        encode("BBBBBBBBBBBB", "two", KEY_STATUS_ENABLED, 0, &c[0]);
        a.changes = c;
        a.n = 1;
        a.after = 6; /* revision 6 was never applied */
        assert_int_equal(keystore_fleet_apply(f->ks, &a), -ESTALE);
        release(c, 1);
        expect(f, "BBBBBBBBBBBB", -1);
        assert_true(applied_now(f) == 5);
}

static void test_resync(void **state)
{
        struct fixture *f = *state;
        struct fleet_change c[3];
        struct key_record rec;
        void *storage;

        encode("AAAAAAAAAAAA", "one", KEY_STATUS_ENABLED, 0, &c[0]);
        encode("BBBBBBBBBBBB", "two", KEY_STATUS_ENABLED, 0, &c[1]);
        encode("CCCCCCCCCCCC", "three", KEY_STATUS_ENABLED, 0, &c[2]);
        apply(f, c, 3, 10, false, 0, 0);
        release(c, 3);

        /* This host's last use survives a newer record that carries none. */
        assert_int_equal(keystore_record_last_used(
                             f->ks, &(struct last_used){.id = "BBBBBBBBBBBB", .at = NOW + 5}, 1),
                         0);

        /* etcd now has B (disabled) and a new D: A and C go. */
        encode("BBBBBBBBBBBB", "two", KEY_STATUS_DISABLED, 0, &c[0]);
        encode("DDDDDDDDDDDD", "four", KEY_STATUS_ENABLED, 0, &c[1]);
        apply(f, c, 2, 20, true, 0, 2);
        release(c, 2);
        expect(f, "AAAAAAAAAAAA", -1);
        expect(f, "CCCCCCCCCCCC", -1);
        expect(f, "BBBBBBBBBBBB", KEY_STATUS_DISABLED);
        expect(f, "DDDDDDDDDDDD", KEY_STATUS_ENABLED);
        assert_int_equal(keystore_get(f->ks, "BBBBBBBBBBBB", &rec, &storage), 0);
        assert_true(rec.last_used_at == NOW + 5);
        free(storage);

        /* An empty etcd empties the replica. */
        apply(f, NULL, 0, 21, true, 0, 2);
        expect(f, "BBBBBBBBBBBB", -1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_revisions, setup, teardown),
            cmocka_unit_test_setup_teardown(test_resync, setup, teardown),
            cmocka_unit_test_setup_teardown(test_no_gap, setup, teardown),
            cmocka_unit_test_setup_teardown(test_usage_follows_the_key, setup, teardown),
        };
        return cmocka_run_group_tests_name("keystore_fleet", tests, NULL, NULL);
}
