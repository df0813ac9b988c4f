/* SPDX-License-Identifier: MIT */
/*
 * What the methods keep in memory between calls, and how it reaches the
 * keystore: the lockout counts (loaded at start, saved in the background),
 * the queue of failed verifies for the audit database, the last-use times;
 * each written as one batch by the writer, retried when that fails.  Also
 * the start (api_init: the shared secret, from its file) and the end (api_finish,
 * api_done).
 */
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "fleet.h"
#include "key_limits.h"
#include "log.h"
#include "hygiene.h"
#include "sessions.h"
#include "state.h"

#define META_SHARED_SECRET "shared_secret"
#define META_LOCKOUT       "lockout"

/* The keyed hash state after the key block, so each signature starts from it. */
int api_sign_state_reset(struct api *a)
{
        if (!a->sign_state) {
                a->sign_state = sodium_malloc(sizeof(*a->sign_state));
                if (!a->sign_state)
                        return -ENOMEM;
        }
        return crypto_generichash_init(a->sign_state, a->shared_secret, SHARED_SECRET_SIZE,
                                       API_SIGNATURE_SIZE) < 0
                   ? -EINVAL
                   : 0;
}

/*
 * Whether a saved lockout name is one this version counts: a source
 * ("uid:…", "from:…") or a key from a source ("key:<id>@…").  Counts saved
 * before keys were counted per source ("key:<id>", the key from anywhere)
 * no longer apply.
 */
static bool lockout_name_applies(const char *name, void *userdata)
{
        size_t *dropped = userdata;

        if (strncmp(name, "uid:", 4) == 0 || strncmp(name, "from:", 5) == 0 ||
            (strncmp(name, "key:", 4) == 0 && strlen(name) > 4 + TOKEN_ID_LEN + 1 &&
             name[4 + TOKEN_ID_LEN] == '@'))
                return true;
        (*dropped)++;
        return false;
}

/* The lockout counts saved by the last run; a damaged blob is dropped, not fatal. */
static int load_lockout(struct api *a)
{
        _cleanup_free_ void *buf = NULL;
        size_t len = 0;
        int r;

        r = keystore_meta_get(a->ks, META_LOCKOUT, NULL, 0, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0 && r != -ENOBUFS)
                return r;
        buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        r = keystore_meta_get(a->ks, META_LOCKOUT, buf, len, &len);
        if (r < 0)
                return r;
        size_t dropped = 0;
        if (lockout_load(&a->lockout, buf, len, now_usec(), lockout_name_applies, &dropped) < 0)
                log_warning("the saved lockout counts are damaged; starting without them");
        else if (dropped > 0) {
                log_warning("%zu saved lockout count%s of a kind no longer kept (a key counted "
                            "from every source) dropped; starting without them",
                            dropped, dropped == 1 ? "" : "s");
                a->lockout.dirty = true; /* written without them at the next flush */
        }
        return 0;
}

/*
 * A write of what the daemon batches in memory (lockout counts, failed
 * verifies, last-used times): no caller waits for it, and what fails
 * waits for the next flush.
 */
struct batch {
        struct write_op op; /* first: the writer hands it back */
        struct api *api;
        int (*write)(struct batch *b, struct keystore *ks);
        void (*finish)(struct batch *b, int r);
        void *blob; /* lockout counts */
        size_t blob_len;
        struct queued_verify *verifies; /* failed verifies */
        struct audit_event *evs;
        size_t n;
        struct last_used *used; /* last-used times */
};

static int batch_apply(struct keystore_tx *tx, struct write_op *op)
{
        struct batch *b = (struct batch *)op;

        return b->write(b, keystore_tx_keystore(tx));
}

static void batch_done(struct write_op *op, int r)
{
        struct batch *b = (struct batch *)op;

        b->finish(b, r);
        free(b->blob);
        free(b->verifies);
        free(b->evs);
        free(b->used);
        free(b);
}

static struct batch *batch_new(struct api *a, int (*write)(struct batch *, struct keystore *),
                               void (*finish)(struct batch *, int))
{
        struct batch *b = calloc(1, sizeof(*b));

        if (!b)
                return NULL;
        b->api = a;
        b->write = write;
        b->finish = finish;
        b->op.apply = batch_apply;
        b->op.done = batch_done;
        return b;
}

static int lockout_write(struct batch *b, struct keystore *ks)
{
        return keystore_meta_put(ks, META_LOCKOUT, b->blob, b->blob_len);
}

static void lockout_finish(struct batch *b, int r)
{
        if (r < 0) {
                b->api->lockout.dirty = true;
                log_error("writing the lockout counts failed (will retry): %s", strerror(-r));
        }
}

/* The lockout counts as a blob to write, or NULL when they have not changed. */
static struct batch *lockout_batch(struct api *a)
{
        struct batch *b;
        int r;

        if (!a->lockout.dirty)
                return NULL;
        b = batch_new(a, lockout_write, lockout_finish);
        r = b ? lockout_save(&a->lockout, now_usec(), &b->blob, &b->blob_len) : -ENOMEM;
        if (r < 0) {
                free(b);
                log_error("saving the lockout counts failed (will retry): %s", strerror(-r));
                return NULL;
        }
        return b;
}

void api_save_lockout(struct api *a)
{
        struct batch *b = lockout_batch(a);

        if (b)
                writer_submit(a->writer, &b->op);
}

/*
 * A keystore made before the shared secret had a file of its own keeps it
 * in its meta database: the file is written (durably) with that same
 * secret, so integrations keep working, then the entry is removed and the
 * keystore compacted, so no copy of the secret stays in keys.mdb.
 */
static int migrate_shared_secret(struct api *a)
{
        _cleanup_free_ char *err = NULL;
        bool moved = true;
        uint8_t *old;
        size_t len = 0;
        int r;

        r = keystore_meta_get(a->ks, META_SHARED_SECRET, NULL, 0, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0 && r != -ENOBUFS)
                return r;
        old = sodium_malloc(SHARED_SECRET_SIZE);
        if (!old)
                return -ENOMEM;
        r = len == SHARED_SECRET_SIZE
                ? keystore_meta_get(a->ks, META_SHARED_SECRET, old, SHARED_SECRET_SIZE, &len)
                : -EBADMSG;
        if (r >= 0) {
                /* A file already there is newer (the last start stopped before the removal). */
                r = shared_secret_load(a->state_dir, false, a->shared_secret, &err);
                if (r == -ENOENT) {
                        free(err);
                        err = NULL;
                        r = shared_secret_store(a->state_dir, old, &err);
                }
        } else if (r == -EBADMSG) {
                log_warning("the shared secret kept in the keystore is damaged; dropping it");
                moved = false;
                r = 0;
        }
        sodium_free(old);
        if (r < 0) {
                log_error("%s", err ? err : "cannot move the shared secret out of the keystore");
                return r;
        }
        r = keystore_meta_del(a->ks, META_SHARED_SECRET);
        if (r >= 0)
                r = keystore_compact(&a->ks, &err);
        if (r < 0) {
                log_error("cannot remove the shared secret from the keystore: %s",
                          err ? err : strerror(-r));
                return r;
        }
        if (moved)
                log_info("moved the shared secret from the keystore to %s/%s", a->state_dir,
                         SHARED_SECRET_FILE);
        return 0;
}

int api_init(struct api *a)
{
        _cleanup_free_ char *err = NULL;
        int r;

        lockout_init(&a->lockout, a->config->lockout_threshold, a->config->lockout_window_usec);
        r = load_lockout(a);
        if (r < 0)
                return r;
        a->shared_secret = sodium_malloc(SHARED_SECRET_SIZE);
        if (!a->shared_secret)
                return -ENOMEM;
        r = migrate_shared_secret(a);
        if (r < 0)
                return r;
        r = shared_secret_load(a->state_dir, false, a->shared_secret, &err);
        if (r == -ENOENT) {
                free(err);
                err = NULL;
                r = shared_secret_load(a->state_dir, true, a->shared_secret, &err);
                if (r >= 0)
                        log_info("created the shared secret for integrations in %s/%s",
                                 a->state_dir, SHARED_SECRET_FILE);
        }
        if (r < 0) {
                log_error("%s", err ? err : strerror(-r));
                return r;
        }
        return api_sign_state_reset(a);
}

static int audits_write(struct batch *b, struct keystore *ks)
{
        return keystore_append_audits(ks, b->evs, b->n);
}

static void audits_finish(struct batch *b, int r)
{
        struct api *a = b->api;

        if (r >= 0)
                return;
        log_error("writing the audit of failed verifies failed (will retry): %s", strerror(-r));
        /* Back in front of those queued since, as far as there is room. */
        if (!a->audit_queue)
                a->audit_queue = calloc(API_AUDIT_QUEUE_MAX, sizeof(*a->audit_queue));
        if (!a->audit_queue || a->n_audit_queue + b->n > API_AUDIT_QUEUE_MAX) {
                a->audit_dropped += b->n;
                return;
        }
        memmove(a->audit_queue + b->n, a->audit_queue, a->n_audit_queue * sizeof(*a->audit_queue));
        memcpy(a->audit_queue, b->verifies, b->n * sizeof(*a->audit_queue));
        a->n_audit_queue += b->n;
}

struct queued_verify *api_audit_queue_add(struct api *a)
{
        if (a->n_audit_queue >= API_AUDIT_QUEUE_MAX) {
                a->audit_dropped++;
                return NULL;
        }
        if (!a->audit_queue) {
                a->audit_queue = calloc(API_AUDIT_QUEUE_MAX, sizeof(*a->audit_queue));
                if (!a->audit_queue) {
                        a->audit_dropped++;
                        return NULL;
                }
        }
        return &a->audit_queue[a->n_audit_queue++];
}

/*
 * Hand the queued failed verifies and refused calls to the writer, as one
 * transaction.  They are never admins' management changes, so they count
 * against the ordinary part of the log (keystore.h), whoever caused them.
 */
void api_flush_audit_queue(struct api *a)
{
        struct batch *b;
        size_t n = a->n_audit_queue;

        if (n > 0 && (b = batch_new(a, audits_write, audits_finish))) {
                b->verifies = malloc(n * sizeof(*b->verifies));
                b->evs = calloc(n, sizeof(*b->evs));
                if (b->verifies && b->evs) {
                        memcpy(b->verifies, a->audit_queue, n * sizeof(*b->verifies));
                        for (size_t i = 0; i < n; i++) {
                                const struct queued_verify *v = &b->verifies[i];
                                b->evs[i] = (struct audit_event){
                                    .time = v->time,
                                    .actor = v->actor,
                                    .action = v->action[0] ? v->action : "verify",
                                    .key_id = v->key_id[0] ? v->key_id : NULL,
                                    .result = v->result,
                                    .detail = v->detail[0] ? v->detail : NULL,
                                };
                        }
                        b->n = n;
                        a->n_audit_queue = 0;
                        writer_submit(a->writer, &b->op);
                } else
                        batch_done(&b->op, 0);
        }
        if (a->audit_dropped) {
                log_warning("%" PRIu64 " failed verifies and refused calls were not written to "
                            "the audit database (more than %d pending)",
                            a->audit_dropped, API_AUDIT_QUEUE_MAX);
                a->audit_dropped = 0;
        }
}

static int last_used_write(struct batch *b, struct keystore *ks)
{
        return keystore_record_last_used(ks, b->used, b->n);
}

static void last_used_finish(struct batch *b, int r)
{
        if (r < 0)
                log_error("writing last-used times failed (will retry): %s", strerror(-r));
        lastused_taken_done(&b->api->lastused, r >= 0);
}

static void flush_last_used(struct api *a)
{
        struct batch *b = batch_new(a, last_used_write, last_used_finish);
        int r;

        if (!b) {
                log_error("writing last-used times failed (will retry): %s", strerror(ENOMEM));
                return;
        }
        r = lastused_take(&a->lastused, &b->used, &b->n);
        /* -EBUSY: the last batch is still being written; this one waits for the next flush. */
        if (r < 0 && r != -EBUSY)
                log_error("writing last-used times failed (will retry): %s", strerror(-r));
        if (r < 0 || b->n == 0) {
                free(b->used);
                free(b);
                return;
        }
        /* In fleet mode, for etcd too: a manager shows the latest use across hosts. */
        fleet_note_used(a->fleet, b->used, b->n);
        writer_submit(a->writer, &b->op);
}

void api_flush(struct api *a)
{
        flush_last_used(a);
        usage_flush(a);
        expiry_check(a);
        api_flush_audit_queue(a);
        api_save_lockout(a);
}

void api_finish(struct api *a)
{
        writer_drain(a->writer);
        api_flush(a);
        writer_drain(a->writer);
}

void api_done(struct api *a)
{
        hygiene_free(a);
        sessions_free(a);
        limits_free(a);
        usage_queue_done(&a->usage);
        expiry_done(&a->expiry);
        lockout_done(&a->lockout);
        free(a->audit_queue);
        a->audit_queue = NULL;
        a->n_audit_queue = 0;
        sodium_free(a->shared_secret);
        a->shared_secret = NULL;
        sodium_free(a->sign_state);
        a->sign_state = NULL;
}
