/* SPDX-License-Identifier: MIT */
/* Keys' usage history on the daemon's side; see usage.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "authz.h"
#include "keystore_usage.h"
#include "log.h"
#include "methods.h"
#include "state.h"
#include "text_check.h"
#include "timeutil.h"
#include "usage.h"

static void uses_free(struct usage_uses *s)
{
        free(s->uses);
        free(s->text);
        *s = (struct usage_uses){0};
}

void usage_queue_done(struct usage_queue *u)
{
        uses_free(&u->noted);
        uses_free(&u->taken);
        u->has_taken = false;
}

/* `s` copied into the text of `to`: its offset + 1, 0 for NULL, or -ENOMEM. */
static int64_t text_put(struct usage_uses *to, const char *s)
{
        size_t n;

        if (!s)
                return 0;
        n = strnlen(s, USAGE_STRING_MAX + 1);
        if (to->text_len + n + 1 > to->text_cap) {
                size_t cap = to->text_cap ? to->text_cap : 4096;
                char *t;

                while (cap < to->text_len + n + 1)
                        cap *= 2;
                t = realloc(to->text, cap);
                if (!t)
                        return -ENOMEM;
                to->text = t;
                to->text_cap = cap;
        }
        memcpy(to->text + to->text_len, s, n);
        to->text[to->text_len + n] = '\0';
        to->text_len += n + 1;
        return (int64_t)(to->text_len - n - 1) + 1;
}

static const char *text_at(const struct usage_uses *s, uint32_t off)
{
        return off ? s->text + off - 1 : NULL;
}

static int uses_add(struct usage_uses *to, const char *id, uint64_t at, uint8_t code,
                    const char *service, const char *rhost, const char *tty)
{
        struct queued_use *e;
        size_t text_len = to->text_len;
        int64_t sv, rh, tt;

        if (to->n == to->cap) {
                size_t cap = to->cap ? to->cap * 2 : 64;
                struct queued_use *p = realloc(to->uses, cap * sizeof(*p));

                if (!p)
                        return -ENOMEM;
                to->uses = p;
                to->cap = cap;
        }
        sv = text_put(to, service);
        rh = sv < 0 ? sv : text_put(to, rhost);
        tt = rh < 0 ? rh : text_put(to, tty);
        if (tt < 0) {
                to->text_len = text_len;
                return -ENOMEM;
        }
        e = &to->uses[to->n++];
        memcpy(e->id, id, TOKEN_ID_LEN);
        e->id[TOKEN_ID_LEN] = '\0';
        e->at = at;
        e->code = code;
        e->service = (uint32_t)sv;
        e->rhost = (uint32_t)rh;
        e->tty = (uint32_t)tt;
        return 0;
}

void usage_note(struct usage_queue *u, const char *id, uint64_t at, enum verify_code code,
                const char *service, const char *rhost, const char *tty)
{
        if (u->noted.n >= USAGE_QUEUE_MAX ||
            uses_add(&u->noted, id, at, (uint8_t)code, service, rhost, tty) < 0)
                u->dropped++;
}

/* ---- the flush ---- */

struct usage_batch {
        struct write_op op; /* first: the writer hands it back */
        struct api *api;
        struct key_use *uses;
        size_t n;
        struct key_new_source *found;
        size_t n_found;
};

/* The text of a use's source, for the journal and the audit: "rhost 192.0.2.7", "service sshd". */
static void source_text(const struct usage_entry *e, char *buf, size_t size)
{
        char kind;
        const char *name = usage_source_of(e, &kind);

        if (kind == USAGE_SOURCE_RHOST)
                snprintf(buf, size, "rhost %s", name);
        else if (name[0])
                snprintf(buf, size, "local service %s", name);
        else
                snprintf(buf, size, "a local call naming no service");
}

static int usage_batch_apply(struct keystore_tx *tx, struct write_op *op)
{
        struct usage_batch *b = (struct usage_batch *)op;
        struct keystore *ks = keystore_tx_keystore(tx);
        int r;

        r = keystore_record_uses(ks, b->uses, b->n, b->api->config->usage_history, b->found,
                                 &b->n_found);
        for (size_t i = 0; r >= 0 && i < b->n_found; i++) {
                const struct key_use *u = &b->uses[b->found[i].use];
                char actor[8 + TOKEN_ID_LEN], detail[USAGE_STRING_MAX * 3 + 64];
                size_t len;

                snprintf(actor, sizeof(actor), "key=%s", u->id);
                source_text(&u->e, detail, sizeof(detail));
                len = strlen(detail);
                if (u->e.rhost && u->e.service)
                        snprintf(detail + len, sizeof(detail) - len, ", service %s", u->e.service);
                r = keystore_tx_audit(tx, &(struct audit_event){.time = u->e.at,
                                                                .actor = actor,
                                                                .action = "new-source",
                                                                .key_id = u->id,
                                                                .result = "ok",
                                                                .detail = detail});
        }
        return r;
}

/* The journal event of a VALID use from a source the key had not been used from. */
static void journal_new_source(const struct key_use *u, const struct key_new_source *ns)
{
        struct audit_fields f = {.n = 0};
        char source[USAGE_STRING_MAX + 32], message[1536], at[TIMESTAMP_MAX] = "";

        source_text(&u->e, source, sizeof(source));
        (void)timestamp_format(u->e.at, at);
        api_field(&f, MESSAGE_ID_KEY_NEW_SOURCE, "");
        api_field(&f, "APIKEY_EVENT=", "new_source");
        api_field(&f, "APIKEY_ID=", u->id);
        if (ns->owner[0])
                api_field(&f, "APIKEY_OWNER=", ns->owner);
        if (ns->name[0])
                api_field(&f, "APIKEY_NAME=", ns->name);
        if (u->e.service)
                api_field(&f, "APIKEY_SERVICE=", u->e.service);
        if (u->e.rhost)
                api_field(&f, "APIKEY_RHOST=", u->e.rhost);
        if (u->e.tty)
                api_field(&f, "APIKEY_TTY=", u->e.tty);
        api_field(&f, "APIKEY_USED_AT=", at);
        api_field_uint(&f, "APIKEY_SOURCES_KNOWN=", (unsigned long)ns->n_known);
        snprintf(message, sizeof(message), "key %s (%s of %s) used from a new source: %s%s%s",
                 u->id, ns->name, ns->owner, source, u->e.rhost && u->e.service ? ", service " : "",
                 u->e.rhost && u->e.service ? u->e.service : "");
        log_fields(LOG_NOTICE, message, f.v, f.n);
}

static void usage_batch_done(struct write_op *op, int r)
{
        struct usage_batch *b = (struct usage_batch *)op;
        struct usage_queue *u = &b->api->usage;

        if (r >= 0)
                for (size_t i = 0; i < b->n_found; i++)
                        journal_new_source(&b->uses[b->found[i].use], &b->found[i]);
        else {
                /* Back in front of those noted since, as far as there is room. */
                struct usage_uses again = {0};

                log_error("writing the usage history failed (will retry): %s", strerror(-r));
                for (size_t k = 0; k < 2; k++) {
                        const struct usage_uses *s = k == 0 ? &u->taken : &u->noted;

                        for (size_t i = 0; i < s->n; i++) {
                                const struct queued_use *e = &s->uses[i];

                                if (again.n >= USAGE_QUEUE_MAX ||
                                    uses_add(&again, e->id, e->at, e->code, text_at(s, e->service),
                                             text_at(s, e->rhost), text_at(s, e->tty)) < 0)
                                        u->dropped++;
                        }
                }
                uses_free(&u->noted);
                u->noted = again;
        }
        uses_free(&u->taken);
        u->has_taken = false;
        free(b->uses);
        free(b->found);
        free(b);
}

void usage_flush(struct api *a)
{
        struct usage_queue *u = &a->usage;
        struct usage_batch *b;

        if (u->dropped) {
                log_warning("%" PRIu64 " uses of keys were left out of their usage history "
                            "(more than %d between two writes, or out of memory)",
                            u->dropped, USAGE_QUEUE_MAX);
                u->dropped = 0;
        }
        /* The last batch still being written: these wait for the next flush. */
        if (u->has_taken || u->noted.n == 0)
                return;
        b = calloc(1, sizeof(*b));
        if (b) {
                b->uses = calloc(u->noted.n, sizeof(*b->uses));
                b->found = calloc(u->noted.n, sizeof(*b->found));
        }
        if (!b || !b->uses || !b->found) {
                if (b) {
                        free(b->uses);
                        free(b->found);
                }
                free(b);
                log_error("writing the usage history failed (will retry): %s", strerror(ENOMEM));
                return;
        }
        u->taken = u->noted;
        u->noted = (struct usage_uses){0};
        u->has_taken = true;
        for (size_t i = 0; i < u->taken.n; i++) {
                const struct queued_use *e = &u->taken.uses[i];

                memcpy(b->uses[i].id, e->id, sizeof(e->id));
                b->uses[i].e = (struct usage_entry){
                    .at = e->at,
                    .code = verify_code_to_string(e->code),
                    .service = text_at(&u->taken, e->service),
                    .rhost = text_at(&u->taken, e->rhost),
                    .tty = text_at(&u->taken, e->tty),
                };
        }
        b->n = u->taken.n;
        b->api = a;
        b->op.apply = usage_batch_apply;
        b->op.done = usage_batch_done;
        writer_submit(a->writer, &b->op);
}

/* ---- GetUsage ---- */

static json_t *use_json(uint64_t at, const char *code, const char *service, const char *rhost,
                        const char *tty)
{
        char t[TIMESTAMP_MAX] = "";
        json_t *o;

        (void)timestamp_format(at, t);
        o = json_pack("{s:s, s:s}", "time", t, "code", code);
        if (o) {
                api_set_string(o, "service", service);
                api_set_string(o, "rhost", rhost);
                api_set_string(o, "tty", tty);
        }
        return o;
}

struct usage_list {
        json_t *uses;
        size_t limit;
};

static int add_use(struct usage_list *l, json_t *o)
{
        if (!o || json_array_append_new(l->uses, o) < 0)
                return -ENOMEM;
        return json_array_size(l->uses) >= l->limit ? 1 : 0;
}

static int stored_use(const struct usage_entry *e, void *userdata)
{
        return add_use(userdata, use_json(e->at, e->code, e->service, e->rhost, e->tty));
}

/* The uses of `id` in `s` not written yet, newest first; 1 when `l` is full. */
static int pending_uses(struct usage_list *l, const struct usage_uses *s, const char *id,
                        uint64_t *oldest)
{
        for (size_t i = s->n; i-- > 0;) {
                const struct queued_use *e = &s->uses[i];
                int r;

                if (memcmp(e->id, id, TOKEN_ID_LEN) != 0)
                        continue;
                *oldest = e->at;
                r = add_use(l,
                            use_json(e->at, verify_code_to_string(e->code), text_at(s, e->service),
                                     text_at(s, e->rhost), text_at(s, e->tty)));
                if (r != 0)
                        return r;
        }
        return 0;
}

static int method_get_usage(struct request *q)
{
        static const struct param spec[] = {
            PARAM(id, JSON_STRING, true),
            PARAM(limit, JSON_INTEGER, false),
            PARAM(auth, JSON_STRING, false),
            {NULL, 0, false, 0},
        };
        struct api *a = q->api;
        struct usage_queue *u = &a->usage;
        struct method_params p;
        struct usage_list l;
        _cleanup_free_ void *storage = NULL;
        struct key_record rec;
        const char *reason;
        uint64_t oldest = 0;
        int r;

        if (api_decode_params(q, spec, &p) < 0)
                return 0;
        if (!token_id_valid(p.id))
                return api_reply_invalid(q, "id");
        if (p.limit.set && (p.limit.value < 1 || p.limit.value > API_LIST_MAX))
                return api_reply_invalid_reason(q, "limit", "expected a number from 1 to 1000");
        r = keystore_get(a->ks, p.id, &rec, &storage);
        if (r == -ENOENT)
                return api_reply_no_such_key(q, p.id);
        if (r < 0)
                return api_reply_internal(q, "reading a key", r);
        str_copy(q->key_id, sizeof(q->key_id), rec.id);
        r = authz_check(&q->who, AUTHZ_READ, rec.owner, &reason);
        if (r < 0)
                return api_reply_authz(q, r, reason);

        /* A key keeps its newest usage_history uses: no more to show. */
        l = (struct usage_list){.uses = json_array(), .limit = a->config->usage_history};
        if (p.limit.set && (size_t)p.limit.value < l.limit)
                l.limit = (size_t)p.limit.value;
        if (!l.uses)
                return -ENOMEM;
        /* Newest first: those noted, those being written, then the stored
         * ones older than what is being written (which may be stored already). */
        r = l.limit == 0 ? 1 : pending_uses(&l, &u->noted, rec.id, &oldest);
        oldest = 0;
        if (r == 0 && u->has_taken)
                r = pending_uses(&l, &u->taken, rec.id, &oldest);
        if (r == 0)
                r = keystore_list_uses(a->ks, rec.id, oldest, l.limit - json_array_size(l.uses),
                                       stored_use, &l);
        if (r < 0) {
                json_decref(l.uses);
                return r == -ENOMEM ? r : api_reply_internal(q, "reading the usage history", r);
        }
        return api_reply(q, json_pack("{s:o}", "uses", l.uses));
}

const struct method usage_methods[] = {
    {KEYS_METHOD_GET_USAGE, method_get_usage, true, false},
    {NULL, NULL, false, false},
};
