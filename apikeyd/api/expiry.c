/* SPDX-License-Identifier: MIT */
/* Expiry warnings and GetStatus's expiry counts; see expiry.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expiry.h"
#include "log.h"
#include "request.h"
#include "state.h"
#include "text_check.h"

#define META_EXPIRY_WARNED "expiry_warned"

void expiry_done(struct expiry_state *e)
{
        free(e->marks);
        *e = (struct expiry_state){0};
}

void expiry_key_changed(struct api *a, const struct key_record *rec)
{
        const struct apikeyd_config *cfg = a->config;
        struct expiry_state *e = &a->expiry;
        uint64_t now = now_usec();

        if (cfg->n_expiry_warnings == 0)
                return;
        if (!rec) {
                e->rescan = true;
                return;
        }
        if (!rec->expires_at || rec->expires_at <= now)
                return;
        /* Within the longest warning (the first): a warning may be due, or a
         * mark change, so look again.  Beyond it: look when the key comes
         * within one, as at the end of a scan, without reading every key. */
        if (rec->expires_at - now <= cfg->expiry_warnings_usec[0]) {
                e->rescan = true;
                return;
        }
        for (unsigned i = 0; i < cfg->n_expiry_warnings; i++) {
                uint64_t at = rec->expires_at - cfg->expiry_warnings_usec[i];

                if (e->loaded && at < e->next)
                        e->next = at;
        }
}

static int cmp_mark(const void *x, const void *y)
{
        return memcmp(((const struct expiry_mark *)x)->id, ((const struct expiry_mark *)y)->id,
                      TOKEN_ID_LEN);
}

/* Sorted by id, for mark_of(): a scan looks up each key within a warning. */
static void sort_marks(struct expiry_state *e)
{
        if (e->n_marks > 1)
                qsort(e->marks, e->n_marks, sizeof(*e->marks), cmp_mark);
}

/* The marks stored by the last run; damaged ones are dropped (at worst a warning comes again). */
static void load_marks(struct api *a)
{
        _cleanup_free_ void *buf = NULL;
        size_t len = 0;
        int r;

        a->expiry.loaded = true;
        r = keystore_meta_get(a->ks, META_EXPIRY_WARNED, NULL, 0, &len);
        if (r == -ENOENT)
                return;
        if (r == -ENOBUFS && (buf = malloc(len ? len : 1)))
                r = keystore_meta_get(a->ks, META_EXPIRY_WARNED, buf, len, &len);
        if (r >= 0)
                r = expiry_marks_decode(buf, len, &a->expiry.marks, &a->expiry.n_marks);
        if (r >= 0)
                sort_marks(&a->expiry);
        if (r < 0)
                log_warning("the expiry warnings given are not readable (%s); keys may be warned "
                            "of again",
                            strerror(-r));
}

/* A warning to give: what its journal entry says. */
struct expiry_warning {
        char id[TOKEN_ID_LEN + 1];
        char name[KEY_NAME_MAX + 1];
        char owner[KEY_OWNER_MAX + 1];
        uint64_t expires_at, warning;
};

struct scan {
        struct api *a;
        uint64_t now;
        struct expiry_mark *marks; /* the new set */
        size_t n_marks, cap_marks;
        struct expiry_warning *warnings;
        size_t n_warnings, cap_warnings;
        uint64_t next;
        bool changed;
};

static const struct expiry_mark *mark_of(const struct api *a, const char *id)
{
        struct expiry_mark key;

        if (a->expiry.n_marks == 0)
                return NULL;
        memcpy(key.id, id, TOKEN_ID_LEN);
        return bsearch(&key, a->expiry.marks, a->expiry.n_marks, sizeof(key), cmp_mark);
}

static int grow(void **p, size_t *cap, size_t n, size_t size)
{
        void *q;

        if (n < *cap)
                return 0;
        q = realloc(*p, (*cap ? *cap * 2 : 16) * size);
        if (!q)
                return -ENOMEM;
        *p = q;
        *cap = *cap ? *cap * 2 : 16;
        return 0;
}

static int scan_one(const struct key_record *rec, void *userdata)
{
        struct scan *s = userdata;
        const struct apikeyd_config *cfg = s->a->config;
        const struct expiry_mark *old;
        uint64_t left, warning = 0;
        int r;

        if (!rec->expires_at || rec->expires_at <= s->now)
                return 0;
        left = rec->expires_at - s->now;
        /* The shortest warning it is within; the next it will come within. */
        for (unsigned i = 0; i < cfg->n_expiry_warnings; i++) {
                uint64_t w = cfg->expiry_warnings_usec[i];

                if (left <= w)
                        warning = w;
                else if (rec->expires_at - w < s->next)
                        s->next = rec->expires_at - w;
        }
        if (!warning)
                return 0;
        old = mark_of(s->a, rec->id);
        if (old && old->expires_at != rec->expires_at)
                old = NULL; /* a new expiry: warned of afresh */
        r = grow((void **)&s->marks, &s->cap_marks, s->n_marks, sizeof(*s->marks));
        if (r < 0)
                return r;
        struct expiry_mark *m = &s->marks[s->n_marks++];
        *m = (struct expiry_mark){.expires_at = rec->expires_at, .warned = warning};
        memcpy(m->id, rec->id, TOKEN_ID_LEN + 1);
        if (old && old->warned <= warning) {
                m->warned = old->warned;
                return 0;
        }
        s->changed = true;
        r = grow((void **)&s->warnings, &s->cap_warnings, s->n_warnings, sizeof(*s->warnings));
        if (r < 0)
                return r;
        struct expiry_warning *w = &s->warnings[s->n_warnings++];
        *w = (struct expiry_warning){.expires_at = rec->expires_at, .warning = warning};
        memcpy(w->id, rec->id, TOKEN_ID_LEN + 1);
        str_copy(w->name, sizeof(w->name), rec->name);
        str_copy(w->owner, sizeof(w->owner), rec->owner);
        return 0;
}

struct marks_write {
        struct write_op op; /* first: the writer hands it back */
        struct api *api;
        void *blob;
        size_t len;
        struct expiry_mark *marks;
        size_t n_marks;
        struct expiry_warning *warnings;
        size_t n_warnings;
        uint64_t now;
};

static int marks_apply(struct keystore_tx *tx, struct write_op *op)
{
        struct marks_write *w = (struct marks_write *)op;

        return keystore_meta_put(keystore_tx_keystore(tx), META_EXPIRY_WARNED, w->blob, w->len);
}

static void journal_warning(const struct expiry_warning *w, uint64_t now)
{
        struct audit_fields f = {.n = 0};
        char at[TIMESTAMP_MAX] = "", within[DURATION_FORMAT_MAX] = "", in[32], message[1024];

        (void)timestamp_format(w->expires_at, at);
        (void)duration_format(w->warning, within, sizeof(within));
        snprintf(in, sizeof(in), "%" PRIu64,
                 w->expires_at > now ? (w->expires_at - now) / USEC_PER_SEC : 0);
        api_field(&f, MESSAGE_ID_KEY_EXPIRING, "");
        api_field(&f, "APIKEY_EVENT=", "expiry_warning");
        api_field(&f, "APIKEY_ID=", w->id);
        api_field(&f, "APIKEY_NAME=", w->name);
        api_field(&f, "APIKEY_OWNER=", w->owner);
        api_field(&f, "APIKEY_EXPIRES_AT=", at);
        api_field(&f, "APIKEY_EXPIRES_IN=", in);
        api_field(&f, "APIKEY_WARNING=", within);
        snprintf(message, sizeof(message), "key %s (%s of %s) expires at %s, within %s", w->id,
                 w->name, w->owner, at, within);
        log_fields(LOG_WARNING, message, f.v, f.n);
}

static void marks_done(struct write_op *op, int r)
{
        struct marks_write *w = (struct marks_write *)op;
        struct expiry_state *e = &w->api->expiry;

        e->writing = false;
        if (r < 0) {
                /* The warnings wait for the next look, which writes them again. */
                log_error("writing the expiry warnings given failed (will retry): %s",
                          strerror(-r));
                e->rescan = true;
                free(w->marks);
        } else {
                for (size_t i = 0; i < w->n_warnings; i++)
                        journal_warning(&w->warnings[i], w->now);
                free(e->marks);
                e->marks = w->marks;
                e->n_marks = w->n_marks;
                sort_marks(e);
        }
        free(w->warnings);
        free(w->blob);
        free(w);
}

void expiry_check(struct api *a)
{
        struct expiry_state *e = &a->expiry;
        const struct apikeyd_config *cfg = a->config;
        uint64_t now = now_usec();
        struct scan s = {.a = a, .now = now, .next = now + EXPIRY_RESCAN_MAX};
        struct key_filter f = {.status = KEY_STATUS_ENABLED, .now = now};
        struct marks_write *w = NULL;
        int r;

        if (e->writing || cfg->n_expiry_warnings == 0 || (e->loaded && !e->rescan && now < e->next))
                return;
        if (!e->loaded)
                load_marks(a);
        e->rescan = false;
        r = keystore_list(a->ks, &f, NULL, 0, scan_one, &s, NULL);
        /* Marks of keys gone, expired or no longer within a warning are dropped too. */
        if (r >= 0 && !s.changed && s.n_marks == e->n_marks) {
                e->next = s.next;
                goto out;
        }
        w = r >= 0 ? calloc(1, sizeof(*w)) : NULL;
        if (r >= 0 && !w)
                r = -ENOMEM;
        if (r >= 0)
                r = expiry_marks_encode(s.marks, s.n_marks, &w->blob, &w->len);
        if (r < 0) {
                log_error("looking for keys about to expire failed (will retry): %s", strerror(-r));
                free(w);
                e->next = now + EXPIRY_RESCAN_MAX;
                goto out;
        }
        e->next = s.next;
        e->writing = true;
        *w = (struct marks_write){.op = {.apply = marks_apply, .done = marks_done},
                                  .api = a,
                                  .blob = w->blob,
                                  .len = w->len,
                                  .marks = TAKE_PTR(s.marks),
                                  .n_marks = s.n_marks,
                                  .warnings = TAKE_PTR(s.warnings),
                                  .n_warnings = s.n_warnings,
                                  .now = now};
        writer_submit(a->writer, &w->op);
out:
        free(s.marks);
        free(s.warnings);
}

/* ---- GetStatus ---- */

struct status_count {
        uint64_t now;
        uint64_t expiring;
        uint64_t *days;
        size_t n_days, cap_days;
};

static int count_one(const struct key_record *rec, void *userdata)
{
        struct status_count *c = userdata;

        if (!rec->expires_at || rec->expires_at <= c->now)
                return 0;
        if (rec->expires_at - c->now <= EXPIRY_STATUS_WITHIN)
                c->expiring++;
        if (grow((void **)&c->days, &c->cap_days, c->n_days, sizeof(*c->days)) < 0)
                return -ENOMEM;
        c->days[c->n_days++] = rec->expires_at / USEC_PER_DAY;
        return 0;
}

static int cmp_u64(const void *x, const void *y)
{
        uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

        return a < b ? -1 : a > b;
}

int expiry_status(struct request *q, json_t *reply)
{
        struct api *a = q->api;
        struct status_count c = {.now = q->now};
        struct key_filter f = {.status = KEY_STATUS_ENABLED,
                               .owner = q->who.admin ? NULL : q->who.owner,
                               .now = q->now};
        int r = 0;

        if (q->who.admin || q->who.owner[0])
                r = keystore_list(a->ks, &f, NULL, 0, count_one, &c, NULL);
        if (r < 0) {
                free(c.days);
                return r;
        }
        json_object_set_new(reply, "expiring", json_integer((json_int_t)c.expiring));
        /* The first day on which more than expiry_cliff keys expire. */
        if (c.n_days > 1)
                qsort(c.days, c.n_days, sizeof(*c.days), cmp_u64);
        for (size_t i = 0, j; a->config->expiry_cliff && i < c.n_days; i = j) {
                for (j = i; j < c.n_days && c.days[j] == c.days[i]; j++)
                        ;
                if (j - i > a->config->expiry_cliff) {
                        char day[TIMESTAMP_MAX] = "";

                        (void)timestamp_format(c.days[i] * USEC_PER_DAY, day);
                        day[10] = '\0'; /* YYYY-MM-DD */
                        json_object_set_new(reply, "expiry_cliff",
                                            json_pack("{s:s, s:I, s:I}", "day", day, "keys",
                                                      (json_int_t)(j - i), "threshold",
                                                      (json_int_t)a->config->expiry_cliff));
                        break;
                }
        }
        free(c.days);
        return 0;
}
