/* SPDX-License-Identifier: MIT */
/*
 * A manager's writes (fleet_publish() in fleet.h): a key's record as the
 * local keystore has it after a management change, with the keys created
 * through it, written to etcd in one Txn with compares, answered once the
 * replica has applied it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet_internal.h"
#include "log.h"
#include "timeutil.h"

void fleet_waiter_free(struct waiter *w)
{
        etcd_request_cancel(w->req);
        free(w->body);
        free(w->check_body);
        free(w->name_key);
        free(w);
}

/* ---- a manager's writes ---- */

/* A member that has not answered a try in 1.5 s (its leader died under
 * the request, which etcd answers only after its own 7 s) is left for the
 * next, within WRITE_TIMEOUT. */
#define PUBLISH_TIMEOUT WRITE_TIMEOUT
#define PUBLISH_TRY     (1500 * MSEC)

const char *fleet_write_error(int r)
{
        switch (r) {
        case -EEXIST:
                return "another manager gave the name to a key first; nothing was changed";
        case -ESTALE:
                return "the key changed in etcd meanwhile (another manager); nothing was changed: "
                       "try again";
        case -ETIMEDOUT:
                return "etcd did not confirm the change in time; it takes effect on every host "
                       "if etcd has it (apikeyctl get shows which)";
        default:
                return "etcd could not be reached; nothing was changed";
        }
}

bool fleet_can_write(const struct fleet *f)
{
        return f && f->cfg->fleet_manage && fleet_online(f) && f->pepper == PEPPER_OK;
}

struct collect {
        char (*ids)[TOKEN_ID_LEN + 1];
        size_t n, allocated;
};

static int collect_add(struct collect *c, const char *id)
{
        for (size_t i = 0; i < c->n; i++)
                if (STREQ(c->ids[i], id))
                        return 0;
        if (c->n == c->allocated) {
                size_t want = c->allocated ? c->allocated * 2 : 16;
                char(*ids)[TOKEN_ID_LEN + 1] = realloc(c->ids, want * sizeof(*ids));

                if (!ids)
                        return -ENOMEM;
                c->ids = ids;
                c->allocated = want;
        }
        memcpy(c->ids[c->n++], id, TOKEN_ID_LEN + 1);
        return 1;
}

/* Keys whose parent is among the collected ones (a deleted key's children still name it). */
static int collect_child(const struct key_record *rec, void *userdata)
{
        struct collect *c = userdata;

        if (!rec->parent[0])
                return 0;
        for (size_t i = 0; i < c->n; i++)
                if (STREQ(c->ids[i], rec->parent)) {
                        int r = collect_add(c, rec->id);

                        return r < 0 ? r : 0;
                }
        return 0;
}

static void on_published(struct etcd_request *req, int r, long status, const char *body, size_t len,
                         const char *error, void *userdata);
static void waiter_end(struct fleet *f, struct waiter *w, int r);
static int post_name_check(struct fleet *f, struct waiter *w);

static int post_txn(struct fleet *f, struct waiter *w)
{
        return etcd_post(f->client,
                         &(struct etcd_post){.endpoint = f->endpoints[w->endpoint],
                                             .path = "/v3/kv/txn",
                                             .body = w->checking ? w->check_body : w->body,
                                             .token = f->token,
                                             .timeout_usec = PUBLISH_TRY,
                                             .done = on_published,
                                             .userdata = w},
                         &w->req);
}

static void on_name_checked(struct etcd_request *req, int r, long status, const char *body,
                            size_t len, const char *error, void *userdata)
{
        struct waiter *w = userdata;
        struct fleet *f = w->f;
        _cleanup_free_ char *msg = NULL;
        struct etcd_range rg = {};
        int code = 0;
        bool taken;

        w->req = NULL;
        if (r < 0 || status != 200 || etcd_decode_range(body, len, &rg, &code, &msg) < 0) {
                fleet_answer_failed(f, "reading the name index", r, status, error, code, msg);
                waiter_end(f, w, -ESTALE);
                return;
        }
        /* Another key's: not this write's own entry (a try that landed, then changed). */
        taken = rg.n_kvs > 0 && !(rg.kvs[0].value_len == strlen(w->id) &&
                                  memcmp(rg.kvs[0].value, w->id, rg.kvs[0].value_len) == 0);
        etcd_range_done(&rg);
        if (taken) {
                log_info("fleet: the name was taken in etcd meanwhile (another manager); the "
                         "local change is undone by a resync");
                waiter_end(f, w, -EEXIST);
        } else {
                log_warning("fleet: a key changed in etcd since this replica saw it; the local "
                            "change is undone by a resync");
                waiter_end(f, w, -ESTALE);
        }
}

static int post_name_check(struct fleet *f, struct waiter *w)
{
        _cleanup_free_ char *body = NULL;

        if (asprintf(&body, "{\"key\":\"%s\"}", w->name_key) < 0)
                return -ENOMEM;
        return etcd_post(f->client,
                         &(struct etcd_post){.endpoint = f->endpoints[w->endpoint],
                                             .path = "/v3/kv/range",
                                             .body = body,
                                             .token = f->token,
                                             .timeout_usec = PUBLISH_TRY,
                                             .done = on_name_checked,
                                             .userdata = w},
                         &w->req);
}

static void waiter_end(struct fleet *f, struct waiter *w, int r)
{
        for (struct waiter **p = &f->waiters; *p; p = &(*p)->next)
                if (*p == w) {
                        *p = w->next;
                        break;
                }
        w->done(r, w->userdata);
        fleet_waiter_free(w);
        /* Not written: the replica goes back to what etcd has. */
        if (!f->stopping)
                fleet_restart(f, true);
}

static void on_published(struct etcd_request *req, int r, long status, const char *body, size_t len,
                         const char *error, void *userdata)
{
        struct waiter *w = userdata;
        struct fleet *f = w->f;
        _cleanup_free_ char *msg = NULL;
        struct etcd_header h;
        bool ok = false;
        int code = 0;

        w->req = NULL;
        r = r < 0 ? r : etcd_decode_txn(body, len, &h, &ok, &code, &msg);
        if (r < 0 || status != 200) {
                fleet_answer_failed(f, "writing keys", r, status, error, code, msg);
                /* Another member, while there is time: a try that timed out may
                 * have been written, which the compares then tell (below). */
                if (fleet_now_mono() + PUBLISH_TRY / 2 < w->deadline && ++w->tries < 8) {
                        w->endpoint = (w->endpoint + 1) % f->n_endpoints;
                        if (post_txn(f, w) >= 0)
                                return;
                }
                waiter_end(f, w, r == -ETIMEDOUT || w->tries > 0 ? -ETIMEDOUT : -EHOSTUNREACH);
                return;
        }
        if (!ok && w->tries > 0 && !w->checking) {
                /* A compare failed after a try that may have been written: is
                 * what etcd holds exactly what this write put there? */
                w->checking = true;
                if (post_txn(f, w) >= 0)
                        return;
        }
        if (!ok && w->name_key && !w->naming) {
                /* Whose is the name now: another manager's key's, or still free? */
                w->naming = true;
                if (post_name_check(f, w) >= 0)
                        return;
        }
        if (!ok) {
                log_warning("fleet: a key changed in etcd since this replica saw it; the local "
                            "change is undone by a resync");
                waiter_end(f, w, -ESTALE);
                return;
        }
        w->revision = h.revision;
        w->deadline = fleet_now_mono() + PUBLISH_TIMEOUT;
        fleet_waiters_wake(f, 0);
}

/* The Txn's compare and its request for one key, and the check's compare. */
static int publish_one(struct fleet *f, const char *id, json_t *compare, json_t *success,
                       json_t *check)
{
        _cleanup_free_ char *key = NULL, *key_b64 = NULL, *value_b64 = NULL;
        _cleanup_free_ void *storage = NULL, *buf = NULL;
        struct key_record rec;
        char rev[24];
        size_t len;
        int r;

        if (asprintf(&key, "%s%s", f->keys_prefix, id) < 0) {
                key = NULL;
                return -ENOMEM;
        }
        key_b64 = etcd_base64(key, strlen(key));
        if (!key_b64)
                return -ENOMEM;
        /* The gateway takes int64 as a string; an absent key's mod revision is 0. */
        snprintf(rev, sizeof(rev), "%lld", (long long)fleet_modrev_get(f, id));
        if (json_array_append_new(compare,
                                  json_pack("{s:s, s:s, s:s, s:s}", "key", key_b64, "target", "MOD",
                                            "result", "EQUAL", "mod_revision", rev)) < 0)
                return -ENOMEM;
        r = keystore_get(f->ks, id, &rec, &storage);
        if (r == -ENOENT) {
                if (json_array_append_new(check, json_pack("{s:s, s:s, s:s, s:s}", "key", key_b64,
                                                           "target", "VERSION", "result", "EQUAL",
                                                           "version", "0")) < 0)
                        return -ENOMEM;
                return json_array_append_new(success, json_pack("{s:{s:s}}", "request_delete_range",
                                                                "key", key_b64)) < 0
                           ? -ENOMEM
                           : 0;
        }
        if (r < 0)
                return r;
        r = record_encode(&rec, &buf, &len);
        if (r < 0)
                return r;
        value_b64 = etcd_base64(buf, len);
        if (!value_b64)
                return -ENOMEM;
        if (json_array_append_new(check,
                                  json_pack("{s:s, s:s, s:s, s:s}", "key", key_b64, "target",
                                            "VALUE", "result", "EQUAL", "value", value_b64)) < 0)
                return -ENOMEM;
        return json_array_append_new(success, json_pack("{s:{s:s, s:s}}", "request_put", "key",
                                                        key_b64, "value", value_b64)) < 0
                   ? -ENOMEM
                   : 0;
}

/* <prefix>/names/<owner>/<name> in base64: the name index, owner/name -> key id. */
static char *name_key_b64(const struct fleet *f, const char *owner, const char *name)
{
        _cleanup_free_ char *key = NULL;

        if (asprintf(&key, "%s/names/%s/%s", f->cfg->fleet_prefix, owner, name) < 0)
                return NULL;
        return etcd_base64(key, strlen(key));
}

/*
 * Names are unique per owner across the fleet: a key that takes a name
 * (created, or renamed) writes its entry in the name index only if none is
 * there (create revision 0), in the same Txn; a name it leaves (renamed,
 * deleted) has its entry removed.  `*ret_taken` is the entry taken, for
 * telling a name another manager took first from another change.
 */
static int publish_name(struct fleet *f, const char *id, const struct key_record *was,
                        json_t *compare, json_t *success, json_t *check, char **ret_taken)
{
        _cleanup_free_ void *storage = NULL;
        struct key_record rec;
        bool have, same;
        int r;

        r = keystore_get(f->ks, id, &rec, &storage);
        if (r < 0 && r != -ENOENT)
                return r;
        have = r >= 0;
        same = have && was && STREQ(was->owner, rec.owner) && STREQ(was->name, rec.name);
        if (have && !same) {
                _cleanup_free_ char *id_b64 = etcd_base64(id, strlen(id));
                char *k = name_key_b64(f, rec.owner, rec.name);

                if (!k || !id_b64 ||
                    json_array_append_new(compare, json_pack("{s:s, s:s, s:s, s:s}", "key", k,
                                                             "target", "CREATE", "result", "EQUAL",
                                                             "create_revision", "0")) < 0 ||
                    json_array_append_new(success, json_pack("{s:{s:s, s:s}}", "request_put", "key",
                                                             k, "value", id_b64)) < 0 ||
                    json_array_append_new(check, json_pack("{s:s, s:s, s:s, s:s}", "key", k,
                                                           "target", "VALUE", "result", "EQUAL",
                                                           "value", id_b64)) < 0) {
                        free(k);
                        return -ENOMEM;
                }
                *ret_taken = k;
        }
        if (was && !same) {
                _cleanup_free_ char *k = name_key_b64(f, was->owner, was->name);

                if (!k ||
                    json_array_append_new(
                        success, json_pack("{s:{s:s}}", "request_delete_range", "key", k)) < 0 ||
                    json_array_append_new(check, json_pack("{s:s, s:s, s:s, s:s}", "key", k,
                                                           "target", "VERSION", "result", "EQUAL",
                                                           "version", "0")) < 0)
                        return -ENOMEM;
        }
        return 0;
}

int fleet_publish(struct fleet *f, const char *id, const struct key_record *was,
                  bool with_descendants, fleet_published_fn done, void *userdata)
{
        struct collect c = {};
        json_t *txn = NULL, *check = NULL;
        _cleanup_free_ char *body = NULL, *check_body = NULL, *taken = NULL;
        int r;

        if (!f || !f->cfg->fleet_manage)
                return -EOPNOTSUPP;
        r = collect_add(&c, id);
        /* A revoke or delete revokes the keys created through the key: theirs too. */
        for (size_t before = 0; r >= 0 && with_descendants && before != c.n;) {
                struct key_filter all = {.now = now_usec()};

                before = c.n;
                r = keystore_list(f->ks, &all, NULL, 0, collect_child, &c, NULL);
        }
        txn = json_pack("{s:[], s:[]}", "compare", "success");
        check = json_pack("{s:[]}", "compare");
        if (r >= 0 && (!txn || !check))
                r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < c.n; i++)
                r = publish_one(f, c.ids[i], json_object_get(txn, "compare"),
                                json_object_get(txn, "success"), json_object_get(check, "compare"));
        if (r >= 0)
                r = publish_name(f, id, was, json_object_get(txn, "compare"),
                                 json_object_get(txn, "success"), json_object_get(check, "compare"),
                                 &taken);
        if (r >= 0 && (!(body = json_dumps(txn, JSON_COMPACT)) ||
                       !(check_body = json_dumps(check, JSON_COMPACT))))
                r = -ENOMEM;
        if (r >= 0)
                r = fleet_txn_send(f, &body, &check_body, &taken, id, done, userdata);
        json_decref(txn);
        json_decref(check);
        free(c.ids);
        return r;
}

/* ---- for a manager's writes of many keys (fleet_bulk.c, fleet_rotate.c) ---- */

int fleet_txn_send(struct fleet *f, char **body, char **check_body, char **name_key, const char *id,
                   fleet_published_fn done, void *userdata)
{
        struct waiter *w = calloc(1, sizeof(*w));
        int r;

        if (!w)
                return -ENOMEM;
        *w = (struct waiter){.f = f,
                             .deadline = fleet_now_mono() + PUBLISH_TIMEOUT,
                             .body = TAKE_PTR(*body),
                             .check_body = TAKE_PTR(*check_body),
                             .name_key = name_key ? TAKE_PTR(*name_key) : NULL,
                             .endpoint = f->current,
                             .done = done,
                             .userdata = userdata};
        str_copy(w->id, sizeof(w->id), id);
        r = post_txn(f, w);
        if (r < 0) {
                fleet_waiter_free(w);
                return r;
        }
        w->next = f->waiters;
        f->waiters = w;
        return 0;
}

int fleet_publish_key(struct fleet *f, const char *id, json_t *compare, json_t *success,
                      json_t *check)
{
        return publish_one(f, id, compare, success, check);
}

int fleet_publish_key_name(struct fleet *f, const char *id, const struct key_record *was,
                           json_t *compare, json_t *success, json_t *check, char **ret_taken)
{
        return publish_name(f, id, was, compare, success, check, ret_taken);
}
