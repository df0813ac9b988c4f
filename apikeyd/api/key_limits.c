/* SPDX-License-Identifier: MIT */
/*
 * A key's limits at Verify; see limits.h.  A key without limits never
 * comes here (limits_apply_to() is the one test it pays).
 *
 * max_uses and the retirement by first use: the use is written by the
 * writer (keystore_spend_use(), which checks again in its transaction, so
 * racing verifies are counted one after the other) and synced before the
 * call is answered; the call waits meanwhile, and is then answered by
 * running the verify again with the outcome settled (verify_settle()),
 * so the answer is built exactly as any other.
 *
 * rate_limit: a window opens at a key's first VALID verify and lasts the
 * key's window; at most its count of VALID verifies in it, the others
 * RATE_LIMITED (never counted for lockout: the secret was right).  Kept
 * in memory: a restart forgets the windows.  Calls that act with the key
 * in `auth` are not verifies, and are not counted.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fleet.h"
#include "key_limits.h"
#include "log.h"
#include "message_ids.h"
#include "sessions.h"
#include "state.h"
#include "text.h"
#include "timeutil.h"
#include "verify.h"

/* ---- rate windows ---- */

struct rate_entry {
        char id[TOKEN_ID_LEN]; /* id[0] == '\0': free */
        uint32_t count;
        uint64_t end; /* µs: the window is over */
};

/* Open addressing on the id (random base62), rebuilt without the windows
 * that are over before it grows. */
struct rate_table {
        struct rate_entry *e;
        size_t cap, n; /* cap a power of two */
};

static size_t rate_slot(const struct rate_table *t, const char *id)
{
        uint64_t h = 1469598103934665603ull;

        for (size_t i = 0; i < TOKEN_ID_LEN; i++)
                h = (h ^ (unsigned char)id[i]) * 1099511628211ull;
        for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1))
                if (!t->e[i].id[0] || memcmp(t->e[i].id, id, TOKEN_ID_LEN) == 0)
                        return i;
}

/* Room for one more: the windows over at `now` dropped, the table doubled if still half full. */
static int rate_make_room(struct rate_table *t, uint64_t now)
{
        struct rate_table next = {.cap = t->cap ? t->cap : 64};
        size_t live = 0;

        if (t->cap && (t->n + 1) * 2 <= t->cap)
                return 0;
        for (size_t i = 0; i < t->cap; i++)
                live += t->e[i].id[0] && t->e[i].end > now;
        while ((live + 1) * 2 > next.cap)
                next.cap *= 2;
        next.e = calloc(next.cap, sizeof(*next.e));
        if (!next.e)
                return -ENOMEM;
        for (size_t i = 0; i < t->cap; i++)
                if (t->e[i].id[0] && t->e[i].end > now) {
                        next.e[rate_slot(&next, t->e[i].id)] = t->e[i];
                        next.n++;
                }
        free(t->e);
        *t = next;
        return 0;
}

/* Whether `rec` may have one more VALID verify at `now`; counts it if so. */
static bool rate_take(struct api *a, const struct key_record *rec, uint64_t now)
{
        struct rate_table *t = a->rates;
        struct rate_entry *e;

        if (!t) {
                t = a->rates = calloc(1, sizeof(*t));
                if (!t)
                        return false; /* out of memory: refused, never let through */
        }
        if (rate_make_room(t, now) < 0)
                return false;
        e = &t->e[rate_slot(t, rec->id)];
        if (!e->id[0]) {
                memcpy(e->id, rec->id, TOKEN_ID_LEN);
                t->n++;
                e->end = 0;
        }
        if (e->end <= now) {
                e->end = now + rec->rate_limit_window;
                e->count = 0;
        }
        if (e->count >= rec->rate_limit_count)
                return false;
        e->count++;
        return true;
}

void limits_free(struct api *a)
{
        if (a->rates)
                free(a->rates->e);
        free(a->rates);
        a->rates = NULL;
}

/* ---- a use written before the answer ---- */

struct spend {
        struct write_op op; /* first: the writer hands it back */
        struct request q;
        struct verify_args v;
        char token[TOKEN_MAX_LEN + 1];
        char *text[_VERIFY_TEXT_MAX];
        char id[TOKEN_ID_LEN + 1];
        char owner[KEY_OWNER_MAX + 1];
        char retired[TOKEN_ID_LEN + 1]; /* the key whose grace the use ended */
};

static void spend_free(struct spend *s)
{
        sodium_memzero(s->token, sizeof(s->token));
        for (size_t i = 0; i < _VERIFY_TEXT_MAX; i++)
                free(s->text[i]);
        free(s);
}

static int spend_apply(struct keystore_tx *tx, struct write_op *op)
{
        struct spend *s = (struct spend *)op;
        char detail[64 + TOKEN_ID_LEN];
        int r;

        r = keystore_spend_use(keystore_tx_keystore(tx), s->id, s->q.now, s->retired);
        if (r < 0 || !s->retired[0])
                return r;
        snprintf(detail, sizeof(detail), "grace ended by the first use of its successor %s", s->id);
        struct audit_event ev = {
            .time = s->q.now,
            .actor = "apikeyd",
            .action = "retire",
            .key_id = s->retired,
            .result = "ok",
            .detail = detail,
        };
        return keystore_tx_audit(tx, &ev);
}

/* The journal entry of a key retired by its successor's first use. */
static void journal_retired(const struct spend *s)
{
        struct audit_fields f = {.n = 0};
        char message[128];

        api_field(&f, MESSAGE_ID_KEY_CHANGED, "");
        api_field(&f, "APIKEY_ACTION=", "retire");
        api_field(&f, "APIKEY_ID=", s->retired);
        api_field(&f, "APIKEY_OWNER=", s->owner);
        api_field(&f, "APIKEY_REPLACED_BY=", s->id);
        snprintf(message, sizeof(message),
                 "key %s retired: its successor %s was used for the first time", s->retired, s->id);
        log_fields(LOG_NOTICE, message, f.v, f.n);
}

static void spend_done(struct write_op *op, int r)
{
        struct spend *s = (struct spend *)op;

        s->v.settled = true;
        if (r >= 0)
                s->v.settled_code = VERIFY_CODE_VALID;
        else if (r == -EDQUOT)
                s->v.settled_code = VERIFY_CODE_USAGE_EXCEEDED;
        else if (r == -ESTALE)
                /* Disabled, revoked or expired meanwhile: the verify run
                 * again says which, before it would come to this. */
                s->v.settled_code = VERIFY_CODE_DISABLED;
        else {
                log_event(LOG_ERR, MESSAGE_ID_STORAGE_ERROR,
                          "spending a use of key %s failed: %s; answered UNAVAILABLE", s->id,
                          strerror(-r));
                s->v.settled_code = VERIFY_CODE_UNAVAILABLE;
        }
        if (s->retired[0]) {
                journal_retired(s);
                sessions_sweep(s->q.api);
        }
        r = verify_settle(&s->q, &s->v);
        if (r < 0)
                api_reply_failed(&s->q, r);
        connection_resume(s->q.conn);
        spend_free(s);
}

static int spend_submit(struct request *q, const struct verify_args *v,
                        const struct key_record *rec)
{
        struct spend *s;

        if (v->token_len > TOKEN_MAX_LEN)
                return -EINVAL; /* cannot be: the token parsed */
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->q = *q;
        s->q.params = NULL; /* the call's tree is not kept: what is read is copied */
        s->v = *v;
        memcpy(s->token, v->token, v->token_len);
        s->v.token = s->token;
        for (size_t i = 0; i < _VERIFY_TEXT_MAX; i++) {
                if (!v->text[i])
                        continue;
                s->text[i] = strdup(v->text[i]);
                if (!s->text[i]) {
                        spend_free(s);
                        return -ENOMEM;
                }
                s->v.text[i] = s->text[i];
        }
        memcpy(s->id, rec->id, sizeof(s->id));
        str_copy(s->owner, sizeof(s->owner), rec->owner);
        s->op.apply = spend_apply;
        s->op.done = spend_done;
        connection_defer(q->conn);
        writer_submit(q->api->writer, &s->op);
        return 1;
}

int limits_verify(struct request *q, const struct verify_args *v, const struct key_record *rec,
                  enum verify_code *code)
{
        struct api *a = q->api;

        if (v->settled) {
                *code = v->settled_code;
                return 0;
        }
        if (rec->max_uses && rec->uses >= rec->max_uses) {
                *code = VERIFY_CODE_USAGE_EXCEEDED;
                return 0;
        }
        if (rec->rate_limit_count && !rate_take(a, rec, q->now)) {
                *code = VERIFY_CODE_RATE_LIMITED;
                return 0;
        }
        if (!rec->max_uses && !(rec->flags & KEY_FLAG_RETIRE_ON_FIRST_USE))
                return 0;
        if (a->fleet) {
                /* Each host has its own replica: a use spent here would be
                 * unknown to the others (Create and Rotate refuse such keys
                 * in fleet mode; this one was made before). */
                log_warning("key %s has max_uses or retires its predecessor on first use, "
                            "which fleet mode does not count across hosts; answered UNAVAILABLE",
                            rec->id);
                *code = VERIFY_CODE_UNAVAILABLE;
                return 0;
        }
        return spend_submit(q, v, rec);
}

/* ---- parameters ---- */

/* "COUNT/DURATION": count 1 to 2^32-1, a window from 1s to 365d. */
static int rate_parse(const char *s, uint32_t *ret_count, uint64_t *ret_window)
{
        const char *slash = strchr(s, '/');
        uint64_t count = 0, window;

        if (!slash || slash == s || slash - s > 10)
                return -EINVAL;
        for (const char *p = s; p < slash; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                count = count * 10 + (uint64_t)(*p - '0');
        }
        if (count == 0 || count > UINT32_MAX)
                return -EINVAL;
        if (duration_parse(slash + 1, &window) < 0 || window < USEC_PER_SEC ||
            window > 365 * USEC_PER_DAY)
                return -EINVAL;
        *ret_count = (uint32_t)count;
        *ret_window = window;
        return 0;
}

int limits_parse(struct request *q, const struct method_params *p, struct key_limits *ret)
{
        *ret = (struct key_limits){0};
        if (p->max_uses.set) {
                if (p->max_uses.value < 0)
                        return api_reply_invalid_reason(
                                   q, "max_uses",
                                   "it is negative; max_uses is the number of VALID verifies "
                                   "the key may have, 1 or more (0: no limit)"),
                               -EINVAL;
                if (p->max_uses.value > 0 && q->api->fleet)
                        return api_reply_reason(q, ERR_POLICY,
                                                "max_uses is not available in fleet mode: each "
                                                "host verifies on its own replica, and a use "
                                                "spent on one would not be counted on the "
                                                "others"),
                               -EINVAL;
                ret->fields |= KEY_LIMIT_MAX_USES;
                ret->max_uses = (uint64_t)p->max_uses.value;
        }
        if (p->rate_limit) {
                if (!STREQ(p->rate_limit, "none") &&
                    rate_parse(p->rate_limit, &ret->rate_limit_count, &ret->rate_limit_window) < 0)
                        return api_reply_invalid_reason(
                                   q, "rate_limit",
                                   "it is not COUNT/DURATION; rate_limit is the VALID verifies a "
                                   "window may have, as 100/1m: a count from 1 to 4294967295, "
                                   "a window from 1s to 365d (none: no limit)"),
                               -EINVAL;
                ret->fields |= KEY_LIMIT_RATE;
        }
        return 0;
}

void limits_rate_format(uint32_t count, uint64_t window, char *buf, size_t size)
{
        char d[DURATION_FORMAT_MAX];

        if (duration_format(window, d, sizeof(d)) < 0)
                str_copy(d, sizeof(d), "?");
        snprintf(buf, size, "%" PRIu32 "/%s", count, d);
}

/* ---- the Key object ---- */

void limits_key_json(json_t *o, const struct key_record *rec)
{
        char rate[LIMITS_RATE_MAX];

        api_set_string(o, "replaces", rec->replaces[0] ? rec->replaces : NULL);
        api_set_string(o, "replaced_by", rec->replaced_by[0] ? rec->replaced_by : NULL);
        if (rec->flags & KEY_FLAG_RETIRE_ON_FIRST_USE)
                json_object_set_new(o, "retire_on_first_use", json_true());
        if (rec->max_uses) {
                json_object_set_new(o, "max_uses", json_integer((json_int_t)rec->max_uses));
                json_object_set_new(o, "uses_left",
                                    json_integer((json_int_t)(rec->max_uses - rec->uses)));
        }
        if (rec->rate_limit_count) {
                limits_rate_format(rec->rate_limit_count, rec->rate_limit_window, rate,
                                   sizeof(rate));
                api_set_string(o, "rate_limit", rate);
        }
}

static void write_id(struct json_out *o, const char *name, const char *id)
{
        if (id[0]) {
                /* Base62: nothing to escape. */
                json_out_name(o, name, false);
                json_out_raw(o, "\"", 1);
                json_out_raw(o, id, strlen(id));
                json_out_raw(o, "\"", 1);
        }
}

void limits_key_write(struct json_out *o, const struct key_record *rec)
{
        char buf[LIMITS_RATE_MAX + 64];
        int n;

        write_id(o, "replaces", rec->replaces);
        write_id(o, "replaced_by", rec->replaced_by);
        if (rec->flags & KEY_FLAG_RETIRE_ON_FIRST_USE)
                json_out_lit(o, ",\"retire_on_first_use\":true");
        if (rec->max_uses) {
                n = snprintf(buf, sizeof(buf), ",\"max_uses\":%" PRIu64 ",\"uses_left\":%" PRIu64,
                             rec->max_uses, rec->max_uses - rec->uses);
                json_out_raw(o, buf, (size_t)n);
        }
        if (rec->rate_limit_count) {
                limits_rate_format(rec->rate_limit_count, rec->rate_limit_window, buf, sizeof(buf));
                json_out_name(o, "rate_limit", false);
                json_out_string(o, buf);
        }
}

/* ---- an Update's audit detail ---- */

void limits_detail(const struct key_record *old, const struct key_limits *l, char *buf, size_t size)
{
        char from[LIMITS_RATE_MAX], to[LIMITS_RATE_MAX];
        struct text t;

        if (STREQ(buf, "nothing changed"))
                buf[0] = '\0';
        t = (struct text){.buf = buf, .size = size, .len = strlen(buf)};
        if ((l->fields & KEY_LIMIT_MAX_USES) && old->max_uses != l->max_uses) {
                text_add(&t, t.len ? ", max_uses: " : "max_uses: ");
                snprintf(from, sizeof(from), "%" PRIu64, old->max_uses);
                snprintf(to, sizeof(to), "%" PRIu64, l->max_uses);
                text_add(&t, old->max_uses ? from : "none");
                text_add(&t, " -> ");
                text_add(&t, l->max_uses ? to : "none");
        }
        if ((l->fields & KEY_LIMIT_RATE) && (old->rate_limit_count != l->rate_limit_count ||
                                             old->rate_limit_window != l->rate_limit_window)) {
                limits_rate_format(old->rate_limit_count, old->rate_limit_window, from,
                                   sizeof(from));
                limits_rate_format(l->rate_limit_count, l->rate_limit_window, to, sizeof(to));
                text_add(&t, t.len ? ", rate_limit: " : "rate_limit: ");
                text_add(&t, old->rate_limit_count ? from : "none");
                text_add(&t, " -> ");
                text_add(&t, l->rate_limit_count ? to : "none");
        }
        if (t.len == 0)
                text_add(&t, "nothing changed");
}
