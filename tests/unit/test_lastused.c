/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the batch of last-used times (apikeyd/api/lastused.c) and of
 * writing it (keystore_record_last_used): each entry stands alone, so one
 * the record cannot store (a C1 control in its source, say) is dropped
 * with a log line naming its key, and the others are written.
 */
#include <fcntl.h>
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
#include "lastused.h"

#define NOW 1700000000000000ull

static const char ID_A[] = "AAAAAAAAAAAA", ID_B[] = "BBBBBBBBBBBB", ID_C[] = "CCCCCCCCCCCC";

/* What the code under test writes to stderr (the daemon's log) meanwhile. */
struct capture {
        char path[64];
        int saved;
};

static void capture_start(struct capture *c)
{
        int fd;

        snprintf(c->path, sizeof(c->path), "/tmp/test-lastused-log-XXXXXX");
        fd = mkstemp(c->path);
        assert_true(fd >= 0);
        fflush(stderr);
        c->saved = dup(STDERR_FILENO);
        assert_true(c->saved >= 0);
        assert_true(dup2(fd, STDERR_FILENO) >= 0);
        close(fd);
}

static void capture_end(struct capture *c, char *buf, size_t size)
{
        FILE *f;
        size_t n;

        fflush(stderr);
        assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
        close(c->saved);
        f = fopen(c->path, "r");
        assert_non_null(f);
        n = fread(buf, 1, size - 1, f);
        buf[n] = '\0';
        fclose(f);
        unlink(c->path);
}

static const struct last_used *find(const struct last_used *batch, size_t n, const char *id)
{
        for (size_t i = 0; i < n; i++)
                if (STREQ(batch[i].id, id))
                        return &batch[i];
        return NULL;
}

static void test_bad_entry_dropped_from_the_batch(void **state)
{
        struct lastused l;
        struct last_used *batch = NULL;
        struct capture cap;
        char log[1024];
        size_t n = 0;

        lastused_init(&l);
        assert_int_equal(lastused_note(&l, ID_A, NOW + 1, "sshd", "192.0.2.1"), 0);
        /* NEL (U+0085): a C1 control, the rhost a hostile caller sent. */
        assert_int_equal(lastused_note(&l, ID_B, NOW + 2, "sshd", "192.0.2.2\xc2\x85x"), 0);
        assert_int_equal(lastused_note(&l, ID_C, NOW + 3, "su\x7f", NULL), 0);

        capture_start(&cap);
        assert_int_equal(lastused_take(&l, &batch, &n), 0);
        capture_end(&cap, log, sizeof(log));

        assert_int_equal(n, 1);
        assert_non_null(find(batch, n, ID_A));
        assert_string_equal(find(batch, n, ID_A)->from, "192.0.2.1");
        assert_non_null(strstr(log, "last use of key BBBBBBBBBBBB dropped: its source is not "
                                    "plain text\n"));
        assert_non_null(strstr(log, "last use of key CCCCCCCCCCCC dropped: its service is not "
                                    "plain text\n"));
        /* Dropped, so not shown as pending either. */
        assert_non_null(lastused_find(&l, ID_A));
        assert_null(lastused_find(&l, ID_B));

        /* A batch that failed goes back whole but for what was dropped: the
         * next flush does not log the bad entry again. */
        lastused_taken_done(&l, false);
        free(batch);
        capture_start(&cap);
        assert_int_equal(lastused_take(&l, &batch, &n), 0);
        capture_end(&cap, log, sizeof(log));
        assert_int_equal(n, 1);
        assert_string_equal(batch[0].id, ID_A);
        assert_string_equal(log, "");
        lastused_taken_done(&l, true);
        free(batch);
        lastused_done(&l);
}

static void test_batch_of_bad_entries_only(void **state)
{
        struct lastused l;
        struct last_used *batch = NULL;
        struct capture cap;
        char log[1024];
        size_t n = 1;

        lastused_init(&l);
        assert_int_equal(lastused_note(&l, ID_B, NOW, NULL,
                                       "\xc2\x9b"
                                       "31m"),
                         0);
        capture_start(&cap);
        assert_int_equal(lastused_take(&l, &batch, &n), 0);
        capture_end(&cap, log, sizeof(log));
        assert_int_equal(n, 0);
        assert_null(batch);
        assert_non_null(strstr(log, "key BBBBBBBBBBBB dropped"));
        /* Nothing is left being written: the next batch is taken. */
        assert_int_equal(lastused_note(&l, ID_A, NOW + 1, "sshd", NULL), 0);
        assert_int_equal(lastused_take(&l, &batch, &n), 0);
        assert_int_equal(n, 1);
        lastused_taken_done(&l, true);
        free(batch);
        lastused_done(&l);
}

/* ---- the write: a keystore in a temporary directory ---- */

static void put(struct keystore *ks, const char *id, const char *name)
{
        struct key_record rec = {
            .status = KEY_STATUS_ENABLED,
            .role = KEY_ROLE_READONLY,
            .permissions = KEY_PERM_READ,
            .created_at = NOW,
            .name = name,
            .owner = "akt-alice",
        };

        memcpy(rec.id, id, TOKEN_ID_LEN + 1);
        assert_int_equal(keystore_put_key(ks, &rec), 0);
}

static void test_keystore_writes_each_entry_alone(void **state)
{
        struct keystore_options opts = {.flags = KEYSTORE_NOSYNC};
        struct keystore *ks = NULL;
        struct key_record rec;
        void *storage = NULL;
        char dir[] = "/tmp/test-lastused-XXXXXX", path[128];
        char *error = NULL;

        assert_non_null(mkdtemp(dir));
        assert_int_equal(keystore_open(dir, &opts, &ks, &error), 0);
        put(ks, ID_A, "a");
        put(ks, ID_B, "b");
        put(ks, ID_C, "c");

        /* The bad entry in the middle of the batch, as the hole let it in. */
        struct last_used batch[3] = {
            {.at = NOW + 10, .service = "sshd", .from = "192.0.2.1"},
            {.at = NOW + 11, .service = "sshd", .from = "192.0.2.2\xc2\x85x"},
            {.at = NOW + 12, .service = "sudo"},
        };
        memcpy(batch[0].id, ID_A, sizeof(ID_A));
        memcpy(batch[1].id, ID_B, sizeof(ID_B));
        memcpy(batch[2].id, ID_C, sizeof(ID_C));
        assert_int_equal(keystore_record_last_used(ks, batch, 3), 0);

        assert_int_equal(keystore_get(ks, ID_A, &rec, &storage), 0);
        assert_int_equal(rec.last_used_at, NOW + 10);
        assert_string_equal(rec.last_used_from, "192.0.2.1");
        free(storage);
        assert_int_equal(keystore_get(ks, ID_B, &rec, &storage), 0);
        assert_int_equal(rec.last_used_at, 0);
        assert_null(rec.last_used_from);
        free(storage);
        assert_int_equal(keystore_get(ks, ID_C, &rec, &storage), 0);
        assert_int_equal(rec.last_used_at, NOW + 12);
        assert_string_equal(rec.last_used_service, "sudo");
        free(storage);

        keystore_close(ks);
        snprintf(path, sizeof(path), "%s/%s", dir, KEYSTORE_FILE);
        unlink(path);
        snprintf(path, sizeof(path), "%s/%s-lock", dir, KEYSTORE_FILE);
        unlink(path);
        assert_int_equal(rmdir(dir), 0);
}

/* ---- the batch while it is written, and after ---- */

static const struct last_used *taken_entry(const struct last_used *batch, size_t n, const char *id)
{
        const struct last_used *u = find(batch, n, id);

        if (!u)
                fail_msg("key %s is missing from the batch taken", id);
        return u;
}

/*
 * A use noted while the batch is being written is kept apart and shown
 * over it; when the write fails the batch goes back, but never over a
 * later use of the same key.
 */
static void test_failed_write_keeps_the_later_use(void **state)
{
        struct lastused l;
        struct last_used *batch = NULL, *again = NULL;
        const struct lastused_entry *e;
        size_t n = 0;

        lastused_init(&l);
        assert_int_equal(lastused_note(&l, ID_A, NOW + 10, "sshd", "192.0.2.1"), 0);
        assert_int_equal(lastused_note(&l, ID_B, NOW + 11, "sudo", NULL), 0);
        assert_int_equal(lastused_take(&l, &batch, &n), 0);
        assert_int_equal(n, 2);

        /* Meanwhile: a later use of A, a first one of C. */
        assert_int_equal(lastused_note(&l, ID_A, NOW + 20, "su", "192.0.2.9"), 0);
        assert_int_equal(lastused_note(&l, ID_C, NOW + 21, NULL, NULL), 0);
        if (lastused_take(&l, &again, &n) != -EBUSY)
                fail_msg("a second batch was taken while the first was being written");
        e = lastused_find(&l, ID_A);
        assert_non_null(e);
        assert_int_equal(e->at, NOW + 20);
        /* Still pending, from the batch being written. */
        e = lastused_find(&l, ID_B);
        if (!e || e->at != NOW + 11)
                fail_msg("B's use, in the batch being written, is not shown as pending");
        /* The batch still reads as taken, whatever was noted since. */
        assert_int_equal(taken_entry(batch, 2, ID_A)->at, NOW + 10);
        assert_string_equal(taken_entry(batch, 2, ID_A)->from, "192.0.2.1");

        lastused_taken_done(&l, false);
        free(batch);
        e = lastused_find(&l, ID_A);
        assert_non_null(e);
        if (e->at != NOW + 20)
                fail_msg("the failed batch's older use of A came back over the later one");
        assert_string_equal(e->service, "su");
        assert_string_equal(e->from, "192.0.2.9");

        assert_int_equal(lastused_take(&l, &batch, &n), 0);
        assert_int_equal(n, 3);
        assert_int_equal(taken_entry(batch, n, ID_A)->at, NOW + 20);
        assert_int_equal(taken_entry(batch, n, ID_B)->at, NOW + 11);
        assert_string_equal(taken_entry(batch, n, ID_B)->service, "sudo");
        assert_null(taken_entry(batch, n, ID_B)->from);
        assert_int_equal(taken_entry(batch, n, ID_C)->at, NOW + 21);
        assert_null(taken_entry(batch, n, ID_C)->service);

        /* Written: nothing is pending any more. */
        lastused_taken_done(&l, true);
        free(batch);
        assert_null(lastused_find(&l, ID_A));
        assert_null(lastused_find(&l, ID_B));
        assert_int_equal(lastused_take(&l, &batch, &n), 0);
        assert_int_equal(n, 0);
        assert_null(batch);
        lastused_done(&l);
}

static void make_id(unsigned n, char id[TOKEN_ID_LEN + 1])
{
        for (int i = TOKEN_ID_LEN - 1; i >= 0; i--) {
                id[i] = BASE62_ALPHABET[n % 62];
                n /= 62;
        }
        id[TOKEN_ID_LEN] = '\0';
}

/*
 * Many keys: each is found and taken with its own time, and the batch
 * stays readable while as many new keys are noted (the table growing
 * beside it) during its write.
 */
static void test_many_keys(void **state)
{
        enum { N = 5000 };
        struct lastused l;
        struct last_used *batch = NULL;
        char id[TOKEN_ID_LEN + 1], from[32];
        size_t n = 0;

        lastused_init(&l);
        for (unsigned i = 0; i < N; i++) {
                make_id(i, id);
                snprintf(from, sizeof(from), "198.51.100.%u", i % 256);
                assert_int_equal(lastused_note(&l, id, NOW + i, "sshd", from), 0);
        }
        for (unsigned i = 0; i < N; i++) {
                const struct lastused_entry *e;

                make_id(i, id);
                e = lastused_find(&l, id);
                if (!e || e->at != NOW + i)
                        fail_msg("key %s: its use was lost among %d", id, N);
        }
        assert_int_equal(lastused_take(&l, &batch, &n), 0);
        assert_int_equal(n, N);

        for (unsigned i = N; i < 2 * N; i++) {
                make_id(i, id);
                assert_int_equal(lastused_note(&l, id, NOW + i, "sudo", NULL), 0);
        }
        for (size_t k = 0; k < n; k++) {
                unsigned i = (unsigned)(batch[k].at - NOW);

                assert_true(i < N);
                make_id(i, id);
                assert_string_equal(batch[k].id, id);
                assert_string_equal(batch[k].service, "sshd");
                snprintf(from, sizeof(from), "198.51.100.%u", i % 256);
                assert_string_equal(batch[k].from, from);
        }
        lastused_taken_done(&l, true);
        free(batch);

        assert_int_equal(lastused_take(&l, &batch, &n), 0);
        assert_int_equal(n, N);
        lastused_taken_done(&l, true);
        free(batch);
        lastused_done(&l);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_bad_entry_dropped_from_the_batch),
            cmocka_unit_test(test_batch_of_bad_entries_only),
            cmocka_unit_test(test_keystore_writes_each_entry_alone),
            cmocka_unit_test(test_failed_write_keeps_the_later_use),
            cmocka_unit_test(test_many_keys),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
