/* SPDX-License-Identifier: MIT */
/*
 * Keys disabled when unused for disable_unused_after; see hygiene.h.
 *
 * A timer walks the enabled keys on the loop (a read transaction, as List
 * does) and finds those whose last use -- the one noted in memory and not
 * flushed yet too -- or, never used, whose creation (or not_before, when
 * later) lies that long ago.  It hands them to the writer in one op, after
 * the pending last uses, so the write sees every use noted before it; the
 * write checks each key again (still enabled, still unused: a use or an
 * owner's Enable since is not undone) and disables it with disabled_reason
 * "unused" and its audit event in one transaction.  Back on the loop each
 * is journaled and the sessions of the keys disabled end, as on Disable.
 * One batch at a time; a walk finds at most HYGIENE_BATCH_MAX keys, the
 * next tick the rest.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-event.h>

#include "hygiene.h"
#include "log.h"
#include "message_ids.h"
#include "request.h"
#include "sessions.h"
#include "state.h"
#include "text.h"

#define HYGIENE_BATCH_MAX 1000
#define HYGIENE_REASON    "unused"
#define HYGIENE_ACTOR     "apikeyd"
#define HYGIENE_TICK_MIN  USEC_PER_SEC
#define HYGIENE_TICK_MAX  USEC_PER_HOUR

struct hygiene_key {
        char id[TOKEN_ID_LEN + 1];
        char owner[KEY_OWNER_MAX + 1];
        uint64_t since; /* last used, or created / valid from */
        int result;     /* the write's: 0 disabled, -EALREADY used or changed since, ... */
};

struct hygiene_batch {
        struct write_op op; /* first: the writer hands it back */
        struct api *a;
        uint64_t now, cutoff;
        size_t n;
        struct hygiene_key keys[HYGIENE_BATCH_MAX];
};

struct hygiene {
        sd_event_source *timer;
        uint64_t tick;
        bool busy; /* a batch is with the writer */
};

/* When `rec` was last used, noted in memory or stored, or else became usable. */
static uint64_t unused_since(const struct api *a, const struct key_record *rec)
{
        const struct lastused_entry *pending = lastused_find(&a->lastused, rec->id);
        uint64_t since = rec->last_used_at > rec->created_at ? rec->last_used_at : rec->created_at;

        if (pending && pending->at > since)
                since = pending->at;
        if (rec->not_before > since)
                since = rec->not_before;
        return since;
}

static int collect(const struct key_record *rec, void *userdata)
{
        struct hygiene_batch *b = userdata;
        uint64_t since = unused_since(b->a, rec);
        struct hygiene_key *k;

        if (since >= b->cutoff)
                return 0;
        if (b->n >= HYGIENE_BATCH_MAX)
                return 1; /* the rest on the next tick */
        k = &b->keys[b->n++];
        str_copy(k->id, sizeof(k->id), rec->id);
        str_copy(k->owner, sizeof(k->owner), rec->owner);
        k->since = since;
        return 0;
}

/* On the writer's thread: each key, checked again, disabled with its audit event. */
static int batch_apply(struct keystore_tx *tx, struct write_op *op)
{
        struct hygiene_batch *b = (struct hygiene_batch *)op;
        struct keystore *ks = keystore_tx_keystore(tx);
        char detail[64];

        snprintf(detail, sizeof(detail), "reason=%s", HYGIENE_REASON);
        for (size_t i = 0; i < b->n; i++) {
                struct key_status_change sc = {
                    .status = KEY_STATUS_DISABLED,
                    .reason = HYGIENE_REASON,
                    .unused_before = b->cutoff,
                };
                struct audit_event ev = {
                    .time = b->now,
                    .actor = HYGIENE_ACTOR,
                    .action = "disable",
                    .key_id = b->keys[i].id,
                    .result = "ok",
                    .detail = detail,
                    /* The daemon's own change, kept as an admin's is. */
                    .admin = true,
                };
                int r = keystore_change_status(ks, b->keys[i].id, &sc, NULL, NULL);

                if (r >= 0)
                        r = keystore_tx_audit(tx, &ev);
                b->keys[i].result = r;
                if (r < 0 && r != -EALREADY && r != -ENOENT && r != -ESTALE)
                        return r; /* the store failed: none of it, the next tick again */
        }
        return 0;
}

static void journal_disabled(const struct hygiene_batch *b, const struct hygiene_key *k)
{
        const struct apikeyd_config *c = b->a->config;
        char message[512], period[DURATION_FORMAT_MAX], since[TIMESTAMP_MAX];
        struct audit_fields f = {.n = 0};

        if (duration_format(c->disable_unused_after_usec, period, sizeof(period)) < 0)
                str_copy(period, sizeof(period), "?");
        if (timestamp_format(k->since, since) < 0)
                str_copy(since, sizeof(since), "?");
        api_field(&f, MESSAGE_ID_KEY_CHANGED, "");
        api_field(&f, "APIKEY_ACTION=", "disable");
        api_field(&f, "APIKEY_ID=", k->id);
        api_field(&f, "APIKEY_OWNER=", k->owner);
        api_field(&f, "APIKEY_ACTOR=", HYGIENE_ACTOR);
        api_field(&f, "APIKEY_REASON=", HYGIENE_REASON);
        snprintf(message, sizeof(message),
                 "%s: disable key %s of %s: reason=%s, not used since %s "
                 "(disable_unused_after = %s)",
                 HYGIENE_ACTOR, k->id, k->owner, HYGIENE_REASON, since, period);
        log_fields(LOG_NOTICE, message, f.v, f.n);
}

static void batch_done(struct write_op *op, int r)
{
        struct hygiene_batch *b = (struct hygiene_batch *)op;
        struct api *a = b->a;
        size_t n = 0;

        if (r < 0)
                log_warning("disabling unused keys failed: %s; trying again later", strerror(-r));
        for (size_t i = 0; r >= 0 && i < b->n; i++)
                if (b->keys[i].result == 0) {
                        journal_disabled(b, &b->keys[i]);
                        n++;
                }
        if (a->hygiene)
                a->hygiene->busy = false;
        free(b);
        if (n > 0)
                sessions_sweep(a);
}

static void hygiene_run(struct api *a)
{
        struct hygiene *h = a->hygiene;
        struct key_filter f = {.status = KEY_STATUS_ENABLED};
        struct hygiene_batch *b;
        int r;

        if (h->busy)
                return;
        b = calloc(1, sizeof(*b));
        if (!b)
                return;
        b->a = a;
        b->now = f.now = now_usec();
        if (b->now <= a->config->disable_unused_after_usec) {
                free(b);
                return;
        }
        b->cutoff = b->now - a->config->disable_unused_after_usec;
        r = keystore_list(a->ks, &f, NULL, 0, collect, b, NULL);
        if (r < 0 || b->n == 0) {
                if (r < 0)
                        log_warning("looking for unused keys failed: %s", strerror(-r));
                free(b);
                return;
        }
        /* The uses noted so far go to the writer first: the write sees them. */
        api_flush(a);
        b->op.apply = batch_apply;
        b->op.done = batch_done;
        h->busy = true;
        writer_submit(a->writer, &b->op);
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct api *a = userdata;

        hygiene_run(a);
        (void)sd_event_source_set_time(s, usec + a->hygiene->tick);
        (void)sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

int hygiene_start(struct api *a)
{
        uint64_t period = a->config->disable_unused_after_usec;
        struct hygiene *h;
        int r;

        if (period == 0 || a->fleet || !a->event || !a->writer)
                return 0;
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->tick = period / 10;
        if (h->tick < HYGIENE_TICK_MIN)
                h->tick = HYGIENE_TICK_MIN;
        if (h->tick > HYGIENE_TICK_MAX)
                h->tick = HYGIENE_TICK_MAX;
        /* The first look at once: keys unused while the daemon was down. */
        r = sd_event_add_time_relative(a->event, &h->timer, CLOCK_MONOTONIC, 0, 0, on_tick, a);
        if (r < 0) {
                free(h);
                return r;
        }
        a->hygiene = h;
        return 0;
}

void hygiene_free(struct api *a)
{
        if (!a->hygiene)
                return;
        sd_event_source_disable_unref(a->hygiene->timer);
        free(a->hygiene);
        a->hygiene = NULL;
}
