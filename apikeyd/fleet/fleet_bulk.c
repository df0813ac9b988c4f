/* SPDX-License-Identifier: MIT */
/*
 * A manager's bulk changes (fleet_publish_batch() in fleet.h): the keys
 * of one ChangeMatching or CreateMany, as the local keystore has them
 * after its one write, written to etcd in one Txn.  Each key's part of the
 * Txn is fleet_publish()'s for one key (publish_one(), publish_name());
 * the Txn goes the same way, through a waiter (fleet_publish.c): another
 * member after a failed try, a check of what etcd holds after a try that
 * may have been written, answered once this replica has applied its
 * revision, and a resync that puts back what etcd has when it fails.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fleet_internal.h"
#include "log.h"

/* As fleet_publish.c's: within the clients' own timeouts. */
#define BATCH_TIMEOUT (4500 * MSEC)

struct batch_key {
        char id[TOKEN_ID_LEN + 1];
        enum fleet_batch_kind kind;
        char *owner, *name; /* FLEET_BATCH_DELETED: the name it leaves */
};

struct fleet_batch {
        struct batch_key *keys;
        size_t n, allocated;
        size_t n_created, n_deleted;
};

struct fleet_batch *fleet_batch_new(void)
{
        return calloc(1, sizeof(struct fleet_batch));
}

void fleet_batch_reset(struct fleet_batch *b)
{
        for (size_t i = 0; i < b->n; i++) {
                free(b->keys[i].owner);
                free(b->keys[i].name);
        }
        b->n = b->n_created = b->n_deleted = 0;
}

void fleet_batch_free(struct fleet_batch *b)
{
        if (!b)
                return;
        fleet_batch_reset(b);
        free(b->keys);
        free(b);
}

size_t fleet_batch_size(const struct fleet_batch *b)
{
        return b->n;
}

size_t fleet_batch_ops(const struct fleet_batch *b)
{
        /* Compares: one per key, one per name taken.  Requests: one per
         * key, one per name taken or left.  The check's compares are the
         * requests'. */
        return b->n + b->n_created + b->n_deleted;
}

static bool batch_has(const struct fleet_batch *b, const char *id)
{
        for (size_t i = 0; i < b->n; i++)
                if (STREQ(b->keys[i].id, id))
                        return true;
        return false;
}

int fleet_batch_add(struct fleet_batch *b, const struct key_record *rec, enum fleet_batch_kind kind)
{
        struct batch_key *k;

        if (batch_has(b, rec->id))
                return 0;
        if (b->n == b->allocated) {
                size_t n = b->allocated ? b->allocated * 2 : 16;
                struct batch_key *keys = reallocarray(b->keys, n, sizeof(*keys));

                if (!keys)
                        return -ENOMEM;
                b->keys = keys;
                b->allocated = n;
        }
        k = &b->keys[b->n];
        *k = (struct batch_key){.kind = kind};
        str_copy(k->id, sizeof(k->id), rec->id);
        if (kind == FLEET_BATCH_DELETED) {
                k->owner = strdup(rec->owner);
                k->name = strdup(rec->name);
                if (!k->owner || !k->name) {
                        free(k->owner);
                        free(k->name);
                        return -ENOMEM;
                }
                b->n_deleted++;
        }
        b->n_created += kind == FLEET_BATCH_CREATED;
        b->n++;
        return 0;
}

/* A key whose parent is in the batch (a deleted key's children still name it). */
static int batch_child(const struct key_record *rec, void *userdata)
{
        struct fleet_batch *b = userdata;

        if (!rec->parent[0] || !batch_has(b, rec->parent))
                return 0;
        if (fleet_batch_ops(b) >= FLEET_TXN_OPS)
                return -E2BIG; /* one more is too many: no need to count them all */
        return fleet_batch_add(b, rec, FLEET_BATCH_CHANGED);
}

int fleet_batch_add_descendants(struct fleet_batch *b, struct keystore_tx *tx, uint64_t now)
{
        struct key_filter all = {.now = now};
        int r;

        if (fleet_batch_ops(b) > FLEET_TXN_OPS)
                return -E2BIG;
        for (size_t before = SIZE_MAX; before != b->n;) {
                before = b->n;
                r = keystore_tx_list(tx, &all, batch_child, b);
                if (r < 0)
                        return r;
        }
        return 0;
}

int fleet_publish_batch(struct fleet *f, struct fleet_batch *b, fleet_published_fn done,
                        void *userdata)
{
        json_t *txn = NULL, *check = NULL, *compare, *success, *check_compare;
        _cleanup_free_ char *body = NULL, *check_body = NULL;
        struct waiter *w = NULL;
        int r = 0;

        if (!f || !f->cfg->fleet_manage)
                return -EOPNOTSUPP;
        if (b->n == 0)
                return -EINVAL;
        if (fleet_batch_ops(b) > FLEET_TXN_OPS)
                return -E2BIG;
        txn = json_pack("{s:[], s:[]}", "compare", "success");
        check = json_pack("{s:[]}", "compare");
        if (!txn || !check)
                r = -ENOMEM;
        compare = json_object_get(txn, "compare");
        success = json_object_get(txn, "success");
        check_compare = json_object_get(check, "compare");
        for (size_t i = 0; r >= 0 && i < b->n; i++) {
                const struct batch_key *k = &b->keys[i];
                struct key_record was = {.owner = k->owner, .name = k->name};
                _cleanup_free_ char *taken = NULL;

                r = publish_one(f, k->id, compare, success, check_compare);
                if (r >= 0 && k->kind != FLEET_BATCH_CHANGED)
                        r = publish_name(f, k->id, k->kind == FLEET_BATCH_DELETED ? &was : NULL,
                                         compare, success, check_compare, &taken);
        }
        if (r >= 0 && (!(body = json_dumps(txn, JSON_COMPACT)) ||
                       !(check_body = json_dumps(check, JSON_COMPACT))))
                r = -ENOMEM;
        if (r >= 0 && !(w = calloc(1, sizeof(*w))))
                r = -ENOMEM;
        if (r >= 0) {
                /* No name_key: a name another manager took meanwhile is a
                 * compare that failed, as a key that changed is. */
                *w = (struct waiter){.f = f,
                                     .deadline = fleet_now_mono() + BATCH_TIMEOUT,
                                     .body = TAKE_PTR(body),
                                     .check_body = TAKE_PTR(check_body),
                                     .endpoint = f->current,
                                     .done = done,
                                     .userdata = userdata};
                str_copy(w->id, sizeof(w->id), b->keys[0].id);
                r = post_txn(f, w);
        }
        if (r >= 0) {
                log_debug("fleet: %zu keys to etcd in one transaction", b->n);
                w->next = f->waiters;
                f->waiters = w;
                w = NULL;
        }
        if (w)
                fleet_waiter_free(w);
        json_decref(txn);
        json_decref(check);
        return r;
}
