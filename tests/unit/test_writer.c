/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the writer (apikeyd/store/writer.c): a real keystore in a fresh
 * temporary directory, a real sd-event loop, the writer's thread (and,
 * where said, its threadless mode).
 *
 * How a test sees a group: LMDB numbers its committed write transactions,
 * so the last transaction id in the data file, read with plain LMDB calls
 * beside the keystore (read-only, without the lock file), counts commits.
 * How a test makes one: a "gate" change that holds the writer's thread
 * inside its transaction until the test has queued the rest behind it.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "keystore.h"
#include "writer.h"

#define NOW   1700000000000000ull
#define OWNER "alice"
/* Changes queued behind the gate: fewer than the writer puts in one group. */
#define N_GROUPED 50
/* A flood: more than one group holds. */
#define N_FLOOD 1000
/* How long a test waits for the writer before it gives up and fails. */
#define WAIT_SECONDS 30

enum op_kind {
        OP_PUT,       /* keystore_put_key of key `n`, named `name` */
        OP_PUT_PAIR,  /* keystore_put_keys of keys `n` and `n2` (all or nothing) */
        OP_META_LAST, /* meta "last" = this op's submission number */
        OP_GATE,      /* wait for the test to open the gate, then as OP_PUT */
        OP_NOTHING,   /* no apply at all */
};

struct fixture;

struct test_op {
        struct write_op op;
        struct fixture *f;
        enum op_kind kind;
        unsigned seq; /* submission number */
        uint64_t n, n2;
        char name[32], name2[32];
        bool audited;
        struct test_op *follow; /* submitted from this op's done() */

        /* What happened to it: */
        unsigned applies; /* on the writer's thread */
        unsigned done_calls;
        int done_r;
        unsigned done_order;
        bool done_on_loop;
        void *owned; /* malloc'd, freed by done(): ASan sees a missed or a second done() */
};

struct fixture {
        char dir[256];
        char path[300];
        struct keystore *ks;
        sd_event *event;
        struct writer *w;
        pthread_t loop_thread;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool gate_entered, gate_open;
        unsigned applied[N_FLOOD + 8]; /* submission numbers, in the order applied */
        unsigned n_applied;

        unsigned n_done;
};

/* ---- the store and the loop ---- */

static void make_id(uint64_t n, char id[TOKEN_ID_LEN + 1])
{
        for (int i = TOKEN_ID_LEN - 1; i >= 0; i--) {
                id[i] = BASE62_ALPHABET[n % 62];
                n /= 62;
        }
        id[TOKEN_ID_LEN] = '\0';
}

static void make_rec(struct key_record *rec, uint64_t n, const char *name)
{
        *rec = (struct key_record){
            .status = KEY_STATUS_ENABLED,
            .role = KEY_ROLE_CUSTOM,
            .permissions = KEY_PERM_READ,
            .created_at = NOW,
            .name = name,
            .owner = OWNER,
            .created_by = "uid=0",
        };
        make_id(n, rec->id);
        for (size_t i = 0; i < KEY_HASH_SIZE; i++)
                rec->hash[i] = (uint8_t)(n + i);
}

static bool key_exists(struct fixture *f, uint64_t n)
{
        char id[TOKEN_ID_LEN + 1];
        int r;

        make_id(n, id);
        r = keystore_get(f->ks, id, NULL, NULL);
        if (r != -ENOENT)
                assert_int_equal(r, 0);
        return r == 0;
}

static int count_event(const struct audit_event *ev, void *userdata)
{
        (*(unsigned *)userdata)++;
        return 0;
}

static unsigned audit_events_of(struct fixture *f, uint64_t n)
{
        char id[TOKEN_ID_LEN + 1];
        unsigned count = 0;

        make_id(n, id);
        assert_int_equal(keystore_list_audit(f->ks, 0, 0, id, 0, count_event, &count), 0);
        return count;
}

/* Write transactions committed so far: LMDB's last transaction id in the file. */
static uint64_t commits(struct fixture *f)
{
        MDB_env *env;
        MDB_envinfo info;

        assert_int_equal(mdb_env_create(&env), 0);
        assert_int_equal(mdb_env_open(env, f->path, MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK, 0600),
                         0);
        assert_int_equal(mdb_env_info(env, &info), 0);
        mdb_env_close(env);
        return info.me_last_txnid;
}

static void start_writer(struct fixture *f, bool threaded)
{
        assert_int_equal(writer_new(f->event, f->ks, threaded, &f->w), 0);
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        struct keystore_options opts = {.flags = KEYSTORE_NOSYNC};
        const char *tmp = getenv("TMPDIR");
        char *error = NULL;

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "%s/test-writer-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, KEYSTORE_FILE);
        assert_int_equal(keystore_open(f->dir, &opts, &f->ks, &error), 0);
        assert_null(error);
        assert_int_equal(sd_event_new(&f->event), 0);
        f->loop_thread = pthread_self();
        pthread_mutex_init(&f->lock, NULL);
        pthread_cond_init(&f->cond, NULL);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        char lock[320];

        writer_free(f->w);
        sd_event_unref(f->event);
        keystore_close(f->ks);
        pthread_cond_destroy(&f->cond);
        pthread_mutex_destroy(&f->lock);
        snprintf(lock, sizeof(lock), "%s-lock", f->path);
        unlink(f->path);
        unlink(lock);
        assert_int_equal(rmdir(f->dir), 0);
        free(f);
        return 0;
}

/* ---- the changes ---- */

static void note_applied(struct fixture *f, struct test_op *t)
{
        pthread_mutex_lock(&f->lock);
        t->applies++;
        if (f->n_applied < ELEMENTSOF(f->applied))
                f->applied[f->n_applied++] = t->seq;
        pthread_mutex_unlock(&f->lock);
}

static void gate_wait(struct fixture *f)
{
        struct timespec until;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += WAIT_SECONDS;
        pthread_mutex_lock(&f->lock);
        f->gate_entered = true;
        pthread_cond_broadcast(&f->cond);
        while (!f->gate_open)
                if (pthread_cond_timedwait(&f->cond, &f->lock, &until) == ETIMEDOUT)
                        break;
        pthread_mutex_unlock(&f->lock);
}

/* The audit record of creating key `id`, in the change's transaction. */
static int audit_create(struct keystore_tx *tx, const char *id)
{
        struct audit_event ev = {
            .time = NOW,
            .actor = "uid=0",
            .action = "create",
            .key_id = id,
            .result = "ok",
        };

        return keystore_tx_audit(tx, &ev);
}

static int test_apply(struct keystore_tx *tx, struct write_op *op)
{
        struct keystore *ks = keystore_tx_keystore(tx);
        struct test_op *t = (struct test_op *)op;
        struct key_record recs[2];
        int r;

        note_applied(t->f, t);
        if (t->kind == OP_GATE)
                gate_wait(t->f);
        switch (t->kind) {
        case OP_GATE:
        case OP_PUT:
        case OP_PUT_PAIR:
                make_rec(&recs[0], t->n, t->name);
                make_rec(&recs[1], t->n2, t->name2);
                if (t->audited) {
                        r = audit_create(tx, recs[0].id);
                        if (r < 0)
                                return r;
                }
                if (t->kind == OP_PUT_PAIR)
                        return keystore_put_keys(ks, recs, 2);
                return keystore_put_key(ks, &recs[0]);
        case OP_META_LAST:
                return keystore_meta_put(ks, "last", &t->seq, sizeof(t->seq));
        case OP_NOTHING:
                break;
        }
        return -EINVAL;
}

static void test_done(struct write_op *op, int r)
{
        struct test_op *t = (struct test_op *)op;
        struct fixture *f = t->f;

        t->done_calls++;
        t->done_r = r;
        t->done_order = f->n_done++;
        t->done_on_loop = pthread_equal(pthread_self(), f->loop_thread);
        free(t->owned);
        t->owned = NULL;
        if (t->follow)
                writer_submit(f->w, &t->follow->op);
}

/* `n` changes numbered from 0, each putting key 1000 + its number, named "key-<number>". */
static struct test_op *ops_new(struct fixture *f, size_t n)
{
        struct test_op *ops = calloc(n, sizeof(*ops));

        assert_non_null(ops);
        for (size_t i = 0; i < n; i++) {
                ops[i].op.apply = test_apply;
                ops[i].op.done = test_done;
                ops[i].f = f;
                ops[i].kind = OP_PUT;
                ops[i].seq = (unsigned)i;
                ops[i].n = 1000 + i;
                snprintf(ops[i].name, sizeof(ops[i].name), "key-%zu", i);
                ops[i].owned = malloc(16);
                assert_non_null(ops[i].owned);
        }
        return ops;
}

/* Run the loop until `n` done() calls have been made in all. */
static void run_until_done(struct fixture *f, unsigned n)
{
        time_t until = time(NULL) + WAIT_SECONDS;

        while (f->n_done < n) {
                if (time(NULL) > until)
                        fail_msg("%u of %u changes completed after %d s", f->n_done, n,
                                 WAIT_SECONDS);
                assert_true(sd_event_run(f->event, 100 * 1000) >= 0);
        }
}

/* Submit the gate and wait until the writer's thread is inside it. */
static void gate_submit(struct fixture *f, struct test_op *gate)
{
        struct timespec until;

        gate->kind = OP_GATE;
        writer_submit(f->w, &gate->op);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += WAIT_SECONDS;
        pthread_mutex_lock(&f->lock);
        while (!f->gate_entered)
                if (pthread_cond_timedwait(&f->cond, &f->lock, &until) == ETIMEDOUT)
                        break;
        pthread_mutex_unlock(&f->lock);
        assert_true(f->gate_entered);
}

static void gate_open(struct fixture *f)
{
        pthread_mutex_lock(&f->lock);
        f->gate_open = true;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
}

/* ---- the tests ---- */

/* Change `i` completed once, as the `i`-th, on the loop, with `r`. */
static void assert_completed(const struct test_op *ops, size_t i, int r)
{
        const struct test_op *t = &ops[i];

        if (t->done_calls != 1)
                fail_msg("change %zu: done() ran %u times, not once", i, t->done_calls);
        if (t->done_r != r)
                fail_msg("change %zu: done() got %d (%s), not %d", i, t->done_r,
                         strerror(-t->done_r), r);
        if (t->done_order != i)
                fail_msg("change %zu completed as number %u, out of submission order", i,
                         t->done_order);
        if (!t->done_on_loop)
                fail_msg("change %zu: done() ran on another thread than the loop's", i);
}

/* done() runs later, from the loop: never from inside writer_submit(). */
static void assert_not_completed_yet(const struct test_op *ops, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (ops[i].done_calls != 0)
                        fail_msg("change %zu: done() ran inside writer_submit()", i);
}

static void assert_commits(uint64_t n, uint64_t want, size_t changes)
{
        if (n != want)
                fail_msg("%" PRIu64 " transactions committed for %zu changes, not %" PRIu64, n,
                         changes, want);
}

/* One change: written, and its done() called later, on the loop, with the result. */
static void test_one_change(void **state)
{
        struct fixture *f = *state;
        struct test_op *ops = ops_new(f, 1);

        start_writer(f, true);
        writer_submit(f->w, &ops[0].op);
        assert_not_completed_yet(ops, 1);
        assert_int_equal(writer_pending(f->w), 1);

        run_until_done(f, 1);
        assert_int_equal(ops[0].applies, 1);
        assert_completed(ops, 0, 0);
        assert_int_equal(writer_pending(f->w), 0);
        assert_true(key_exists(f, ops[0].n));
        free(ops);
}

/* A change whose write fails hands its error to done(), and nothing of it is stored. */
static void test_one_change_fails(void **state)
{
        struct fixture *f = *state;
        struct test_op *ops = ops_new(f, 2);
        struct key_record rec;

        make_rec(&rec, 1, "taken");
        assert_int_equal(keystore_put_key(f->ks, &rec), 0);
        strcpy(ops[0].name, "taken");
        ops[0].audited = true;
        ops[1].kind = OP_NOTHING;
        ops[1].op.apply = NULL;

        start_writer(f, true);
        writer_submit(f->w, &ops[0].op);
        writer_submit(f->w, &ops[1].op);
        run_until_done(f, 2);
        assert_completed(ops, 0, -EEXIST);
        assert_false(key_exists(f, ops[0].n));
        assert_int_equal(audit_events_of(f, ops[0].n), 0);
        /* No apply: completed after the one before it, with 0. */
        assert_completed(ops, 1, 0);
        free(ops);
}

/*
 * Changes queued while the writer is busy are committed as one group, one
 * transaction for all of them, yet each gets its own done() and result.
 */
static void test_queued_changes_commit_as_one_group(void **state)
{
        struct fixture *f = *state;
        struct test_op *ops = ops_new(f, 1 + N_GROUPED);
        uint64_t before, after;

        start_writer(f, true);
        before = commits(f);
        gate_submit(f, &ops[0]);
        for (size_t i = 1; i <= N_GROUPED; i++)
                writer_submit(f->w, &ops[i].op);
        assert_int_equal(writer_pending(f->w), 1 + N_GROUPED);
        gate_open(f);
        run_until_done(f, 1 + N_GROUPED);
        after = commits(f);

        /* The gate's own transaction, and one for the fifty behind it. */
        assert_commits(after - before, 2, 1 + N_GROUPED);
        for (size_t i = 0; i <= N_GROUPED; i++) {
                assert_completed(ops, i, 0);
                assert_true(key_exists(f, ops[i].n));
        }
        assert_int_equal(writer_pending(f->w), 0);
        free(ops);
}

/*
 * In a group, a change that fails is undone alone, with its audit record,
 * even the part of it already written; those before and after it commit
 * in the same transaction.
 */
static void test_failed_change_undone_alone(void **state)
{
        struct fixture *f = *state;
        struct test_op *ops = ops_new(f, 4);
        uint64_t before;
        char *error = NULL;

        for (size_t i = 0; i < 4; i++)
                ops[i].audited = true;
        /* Its first key is new, its second takes the name ops[1] stores just before: -EEXIST
         * after the first was written. */
        ops[2].kind = OP_PUT_PAIR;
        ops[2].n = 2000;
        strcpy(ops[2].name, "fresh");
        ops[2].n2 = 2001;
        strcpy(ops[2].name2, ops[1].name);

        start_writer(f, true);
        before = commits(f);
        gate_submit(f, &ops[0]);
        for (size_t i = 1; i < 4; i++)
                writer_submit(f->w, &ops[i].op);
        gate_open(f);
        run_until_done(f, 4);

        assert_commits(commits(f) - before, 2, 4);
        assert_completed(ops, 0, 0);
        assert_completed(ops, 1, 0);
        assert_completed(ops, 2, -EEXIST);
        assert_completed(ops, 3, 0);
        assert_true(key_exists(f, ops[1].n));
        assert_true(key_exists(f, ops[3].n));
        assert_false(key_exists(f, 2000));
        assert_false(key_exists(f, 2001));
        assert_int_equal(audit_events_of(f, ops[1].n), 1);
        assert_int_equal(audit_events_of(f, 2000), 0);
        assert_int_equal(audit_events_of(f, ops[3].n), 1);
        if (keystore_check_indexes(f->ks, &error) < 0)
                fail_msg("indexes: %s", error);
        free(ops);
}

/* A flood: several groups, fewer commits than changes, and every change in submission order. */
static void flood(struct fixture *f, bool threaded)
{
        struct test_op *ops = ops_new(f, 1 + N_FLOOD);
        unsigned last = 0;
        uint64_t before, n_commits;

        for (size_t i = 1; i <= N_FLOOD; i++)
                if (i % 3 == 0)
                        ops[i].kind = OP_META_LAST;
                else if (i % 100 == 51)
                        /* The name of the first one's key: refused. */
                        strcpy(ops[i].name, ops[1].name);

        start_writer(f, threaded);
        before = commits(f);
        if (threaded)
                gate_submit(f, &ops[0]);
        else
                writer_submit(f->w, &ops[0].op);
        for (size_t i = 1; i <= N_FLOOD; i++)
                writer_submit(f->w, &ops[i].op);
        assert_not_completed_yet(ops, 1 + N_FLOOD);
        if (threaded)
                gate_open(f);
        run_until_done(f, 1 + N_FLOOD);

        n_commits = commits(f) - before;
        if (n_commits >= N_FLOOD / 10)
                fail_msg("%" PRIu64 " transactions committed for %d changes", n_commits,
                         1 + N_FLOOD);
        for (size_t i = 0; i <= N_FLOOD; i++) {
                bool refused = i % 3 != 0 && i % 100 == 51;

                assert_completed(ops, i, refused ? -EEXIST : 0);
                if (ops[i].kind == OP_PUT)
                        assert_true(key_exists(f, ops[i].n) == !refused);
        }
        /* Applied in submission order (none was retried). */
        assert_int_equal(f->n_applied, 1 + N_FLOOD);
        for (unsigned i = 0; i < f->n_applied; i++)
                if (f->applied[i] != i)
                        fail_msg("change %u written as number %u, out of submission order",
                                 f->applied[i], i);
        /* The store saw them in that order too: the last one written wins. */
        assert_int_equal(keystore_meta_get(f->ks, "last", &last, sizeof(last), NULL), 0);
        assert_int_equal(last, N_FLOOD - N_FLOOD % 3);
        assert_int_equal(writer_pending(f->w), 0);
        free(ops);
}

static void test_flood_in_order(void **state)
{
        flood(*state, true);
}

static void test_flood_in_order_threadless(void **state)
{
        flood(*state, false);
}

/*
 * Shutdown with changes in flight (one being written, the rest queued, one
 * more submitted by a done() meanwhile): writer_free() writes each and runs
 * its done() exactly once, on the caller's thread, before it returns.
 */
static void shutdown_in_flight(struct fixture *f, bool threaded)
{
        struct test_op *ops = ops_new(f, 1 + N_GROUPED + 1);
        struct test_op *follow = &ops[1 + N_GROUPED];

        ops[N_GROUPED / 2].follow = follow;
        start_writer(f, threaded);
        if (threaded)
                gate_submit(f, &ops[0]);
        else
                writer_submit(f->w, &ops[0].op);
        for (size_t i = 1; i <= N_GROUPED; i++)
                writer_submit(f->w, &ops[i].op);
        gate_open(f);
        writer_free(f->w);
        f->w = NULL;

        for (size_t i = 0; i <= N_GROUPED + 1; i++) {
                assert_completed(ops, i, 0);
                assert_null(ops[i].owned);
                assert_true(key_exists(f, ops[i].n));
        }
        free(ops);
}

static void test_shutdown_with_changes_in_flight(void **state)
{
        shutdown_in_flight(*state, true);
}

static void test_shutdown_with_changes_in_flight_threadless(void **state)
{
        shutdown_in_flight(*state, false);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        const struct CMUnitTest tests[] = {
            T(test_one_change),
            T(test_one_change_fails),
            T(test_queued_changes_commit_as_one_group),
            T(test_failed_change_undone_alone),
            T(test_flood_in_order),
            T(test_flood_in_order_threadless),
            T(test_shutdown_with_changes_in_flight),
            T(test_shutdown_with_changes_in_flight_threadless),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
