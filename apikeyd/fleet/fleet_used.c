/* SPDX-License-Identifier: MIT */
/*
 * Last uses across the fleet: each host writes the last uses of keys it
 * has seen since its last write under <prefix>/hosts/<host>/used/<id>
 * (its own prefix, which its etcd role may write), in batches every
 * fleet_last_used_interval, never on the Verify path; a manager reads them
 * with the hosts' reports (fleet_hosts.c) and keeps the latest per key.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet_internal.h"
#include "log.h"
#include "timeutil.h"

/* etcd takes at most 128 operations in one Txn (--max-txn-ops). */
#define USED_TXN_MAX 100
/* Uses waiting for etcd: beyond this many keys, the newest are not kept. */
#define USED_PENDING_MAX 100000

/* ---- a table of uses by key id ---- */

void fleet_uses_free(struct fleet_uses *t)
{
        for (size_t i = 0; i < t->size; i++) {
                free(t->slots[i].service);
                free(t->slots[i].from);
        }
        free(t->slots);
        *t = (struct fleet_uses){};
}

static size_t use_slot(const struct fleet_use *slots, size_t size, const char *id)
{
        uint32_t h = 2166136261u;
        size_t i;

        for (size_t k = 0; k < TOKEN_ID_LEN; k++)
                h = (h ^ (uint8_t)id[k]) * 16777619u;
        for (i = h & (size - 1); slots[i].id[0] && memcmp(slots[i].id, id, TOKEN_ID_LEN) != 0;
             i = (i + 1) & (size - 1))
                ;
        return i;
}

const struct fleet_use *fleet_uses_find(const struct fleet_uses *t, const char *id)
{
        size_t i;

        if (!t->size)
                return NULL;
        i = use_slot(t->slots, t->size, id);
        return t->slots[i].id[0] ? &t->slots[i] : NULL;
}

static char *dup_or_null(const char *s)
{
        return s && *s ? strdup(s) : NULL;
}

/* Keep the use if it is the key's latest: 1 if kept, 0 if not later, -ENOMEM. */
int fleet_uses_put(struct fleet_uses *t, const char *id, uint64_t at, const char *host,
                   const char *service, const char *from)
{
        struct fleet_use *u;
        char *s, *fr;
        size_t i;

        if (2 * (t->n + 1) > t->size) {
                size_t size = t->size ? t->size * 2 : 64;
                struct fleet_use *slots = calloc(size, sizeof(*slots));

                if (!slots)
                        return -ENOMEM;
                for (size_t k = 0; k < t->size; k++)
                        if (t->slots[k].id[0])
                                slots[use_slot(slots, size, t->slots[k].id)] = t->slots[k];
                free(t->slots);
                t->slots = slots;
                t->size = size;
        }
        i = use_slot(t->slots, t->size, id);
        u = &t->slots[i];
        if (u->id[0] && u->at >= at)
                return 0;
        s = dup_or_null(service);
        fr = dup_or_null(from);
        if ((service && *service && !s) || (from && *from && !fr)) {
                free(s);
                free(fr);
                return -ENOMEM;
        }
        if (!u->id[0]) {
                memcpy(u->id, id, TOKEN_ID_LEN);
                t->n++;
        }
        free(u->service);
        free(u->from);
        u->at = at;
        u->service = s;
        u->from = fr;
        str_copy(u->host, sizeof(u->host), host ? host : "");
        return 1;
}

/* ---- this host's uses, written to etcd ---- */

void fleet_note_used(struct fleet *f, const struct last_used *entries, size_t n)
{
        size_t dropped = 0;

        if (!f)
                return;
        for (size_t i = 0; i < n; i++) {
                if (strlen(entries[i].id) != TOKEN_ID_LEN ||
                    (f->used.n >= USED_PENDING_MAX && !fleet_uses_find(&f->used, entries[i].id)) ||
                    fleet_uses_put(&f->used, entries[i].id, entries[i].at, NULL, entries[i].service,
                                   entries[i].from) < 0)
                        dropped++;
        }
        if (dropped)
                log_warning("fleet: %zu last uses not kept for etcd (out of memory or more than "
                            "%d keys waiting)",
                            dropped, USED_PENDING_MAX);
}

static void on_used_written(struct etcd_request *req, int r, long status, const char *body,
                            size_t len, const char *error, void *userdata)
{
        struct fleet *f = userdata;
        _cleanup_free_ char *msg = NULL;
        struct fleet_uses sent = f->used_sent;
        int code = 0;

        f->used_req = NULL;
        f->used_sent = (struct fleet_uses){};
        if (r < 0 || status != 200 || etcd_decode_txn(body, len, NULL, NULL, &code, &msg) < 0) {
                fleet_answer_failed(f, "writing this host's last uses", r, status, error, code,
                                    msg);
                /* Back with the uses noted meanwhile, for the next interval. */
                for (size_t i = 0; i < sent.size; i++)
                        if (sent.slots[i].id[0])
                                (void)fleet_uses_put(&f->used, sent.slots[i].id, sent.slots[i].at,
                                                     NULL, sent.slots[i].service,
                                                     sent.slots[i].from);
                fleet_uses_free(&sent);
                return;
        }
        fleet_uses_free(&sent);
        /* More than one Txn's worth: the rest now, in this interval. */
        if (f->used.n > 0)
                fleet_write_used(f, true);
}

static json_t *use_put(const struct fleet *f, const struct fleet_use *u)
{
        _cleanup_free_ char *key = NULL, *key_b64 = NULL, *value = NULL, *value_b64 = NULL;
        json_t *v = json_pack("{s:I}", "at", (json_int_t)u->at);

        if (v && u->service)
                json_object_set_new(v, "service", json_string(u->service));
        if (v && u->from)
                json_object_set_new(v, "from", json_string(u->from));
        value = v ? json_dumps(v, JSON_COMPACT) : NULL;
        json_decref(v);
        if (!value || asprintf(&key, "%s/hosts/%s/used/%.*s", f->cfg->fleet_prefix, f->host,
                               TOKEN_ID_LEN, u->id) < 0)
                return NULL;
        key_b64 = etcd_base64(key, strlen(key));
        value_b64 = etcd_base64(value, strlen(value));
        if (!key_b64 || !value_b64)
                return NULL;
        return json_pack("{s:{s:s, s:s}}", "request_put", "key", key_b64, "value", value_b64);
}

void fleet_write_used(struct fleet *f, bool now)
{
        _cleanup_free_ char *body = NULL;
        json_t *txn, *ops;
        size_t taken = 0;

        if (f->used_req || f->used.n == 0 || !f->following)
                return;
        if (!now && fleet_now_mono() - f->used_mono < f->cfg->fleet_last_used_interval_usec)
                return;
        f->used_mono = fleet_now_mono();
        txn = json_pack("{s:[]}", "success");
        ops = json_object_get(txn, "success");
        /* Up to one Txn's worth moves to used_sent; the rest waits for its answer. */
        for (size_t i = 0; ops && i < f->used.size && taken < USED_TXN_MAX; i++) {
                struct fleet_use *u = &f->used.slots[i];
                json_t *op;

                if (!u->id[0])
                        continue;
                op = use_put(f, u);
                if (!op || json_array_append_new(ops, op) < 0 ||
                    fleet_uses_put(&f->used_sent, u->id, u->at, NULL, u->service, u->from) < 0)
                        break;
                taken++;
        }
        if (taken > 0) {
                /* The table without the entries taken. */
                struct fleet_uses rest = {};

                for (size_t i = 0; i < f->used.size; i++) {
                        struct fleet_use *u = &f->used.slots[i];

                        if (u->id[0] && !fleet_uses_find(&f->used_sent, u->id))
                                (void)fleet_uses_put(&rest, u->id, u->at, NULL, u->service,
                                                     u->from);
                }
                fleet_uses_free(&f->used);
                f->used = rest;
        }
        body = taken > 0 ? json_dumps(txn, JSON_COMPACT) : NULL;
        json_decref(txn);
        if (!body || etcd_post(f->client,
                               &(struct etcd_post){.endpoint = fleet_endpoint(f),
                                                   .path = "/v3/kv/txn",
                                                   .body = body,
                                                   .token = f->token,
                                                   .timeout_usec = UNARY_TIMEOUT,
                                                   .done = on_used_written,
                                                   .userdata = f},
                               &f->used_req) < 0) {
                f->used_req = NULL;
                /* Not sent: back to wait for the next interval. */
                for (size_t i = 0; i < f->used_sent.size; i++) {
                        struct fleet_use *u = &f->used_sent.slots[i];

                        if (u->id[0])
                                (void)fleet_uses_put(&f->used, u->id, u->at, NULL, u->service,
                                                     u->from);
                }
                fleet_uses_free(&f->used_sent);
        }
}

/* ---- a manager's view: the latest use of each key across the hosts ---- */

void fleet_merge_last_use(const struct fleet *f, const char *id, uint64_t *at, const char **service,
                          const char **from, const char **host)
{
        const struct fleet_use *u;

        if (!f || !f->cfg->fleet_manage)
                return;
        u = fleet_uses_find(&f->seen, id);
        if (u && u->at > *at) {
                *at = u->at;
                *service = u->service;
                *from = u->from;
                *host = u->host;
        } else if (*at)
                *host = f->host;
}
