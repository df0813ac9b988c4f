/* SPDX-License-Identifier: MIT */
/*
 * A manager's bulk changes (fleet_publish_batch() in fleet.h): the keys
 * of one ChangeMatching or CreateMany, as the local keystore has them
 * after its one write, written to etcd in one Txn.  Each key's part of the
 * Txn is fleet_publish()'s for one key (fleet_publish_key() and
 * fleet_publish_key_name());
 * the Txn goes the same way, through a waiter (fleet_publish.c): another
 * member after a failed try, a check of what etcd holds after a try that
 * may have been written, answered once this replica has applied its
 * revision, and a resync that puts back what etcd has when it fails.
 * When its compares fail and it created keys, whose name entries are
 * read one after the other (a Txn that compares the entry as absent, then
 * the entry itself, as fleet_publish() reads one) tells a name another
 * manager gave meanwhile from a key changed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet_internal.h"
#include "log.h"

struct batch_key {
        char id[TOKEN_ID_LEN + 1];
        enum fleet_batch_kind kind;
        char *owner, *name; /* FLEET_BATCH_DELETED: the name it leaves */
        char *name_key;     /* FLEET_BATCH_CREATED: base64 of its name index entry, once sent */
};

struct fleet_batch {
        struct batch_key *keys;
        size_t n, allocated;
        size_t n_created, n_deleted;
        /* While it is written */
        struct fleet *f;
        fleet_published_fn done;
        void *userdata;
        size_t checking; /* 1 + the index of the key whose name is read */
        size_t taken;    /* 1 + the index of the key whose name another key has */
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
                free(b->keys[i].name_key);
        }
        b->n = b->n_created = b->n_deleted = 0;
        b->checking = b->taken = 0;
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

size_t fleet_batch_taken(const struct fleet_batch *b)
{
        return b->taken;
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

        if (!rec->parent[0] || !batch_has(b, rec->parent) || batch_has(b, rec->id))
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

static void batch_name_read(int r, void *userdata);

/*
 * Read the name entry of the next key created, from b->checking: a Txn that
 * succeeds if it is absent; if not, whose it is (fleet_publish.c's check of
 * one name: -EEXIST when another key's).  -ENOENT: no key left.
 */
static int batch_read_next_name(struct fleet_batch *b)
{
        for (size_t i = b->checking; i < b->n; i++) {
                _cleanup_free_ char *body = NULL, *check = NULL, *name_key = NULL;

                if (!b->keys[i].name_key)
                        continue;
                if (asprintf(&body,
                             "{\"compare\":[{\"key\":\"%s\",\"target\":\"CREATE\","
                             "\"result\":\"EQUAL\",\"create_revision\":\"0\"}]}",
                             b->keys[i].name_key) < 0) {
                        body = NULL;
                        return -ENOMEM;
                }
                check = strdup(body);
                name_key = strdup(b->keys[i].name_key);
                if (!check || !name_key)
                        return -ENOMEM;
                b->checking = i + 1;
                return fleet_txn_send(b->f, &body, &check, &name_key, b->keys[i].id,
                                      batch_name_read, b);
        }
        return -ENOENT;
}

static void batch_name_read(int r, void *userdata)
{
        struct fleet_batch *b = userdata;

        if (r >= 0) {
                /* Free: the next one. */
                r = batch_read_next_name(b);
                if (r >= 0)
                        return;
                r = -ESTALE;
        } else if (r == -EEXIST)
                b->taken = b->checking;
        else
                r = -ESTALE;
        b->done(r, b->userdata);
}

/* The Txn's answer: on a compare that failed, whether a name was taken. */
static void batch_published(int r, void *userdata)
{
        struct fleet_batch *b = userdata;

        if (r == -ESTALE && b->n_created > 0 && !b->f->stopping) {
                b->checking = 0;
                if (batch_read_next_name(b) >= 0)
                        return;
        }
        b->done(r, b->userdata);
}

int fleet_publish_batch(struct fleet *f, struct fleet_batch *b, fleet_published_fn done,
                        void *userdata)
{
        json_t *txn = NULL, *check = NULL, *compare, *success, *check_compare;
        _cleanup_free_ char *body = NULL, *check_body = NULL;
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
                struct batch_key *k = &b->keys[i];
                struct key_record was = {.owner = k->owner, .name = k->name};

                free(k->name_key);
                k->name_key = NULL;
                r = fleet_publish_key(f, k->id, compare, success, check_compare);
                if (r >= 0 && k->kind != FLEET_BATCH_CHANGED)
                        r = fleet_publish_key_name(f, k->id,
                                                   k->kind == FLEET_BATCH_DELETED ? &was : NULL,
                                                   compare, success, check_compare, &k->name_key);
        }
        if (r >= 0 && (!(body = json_dumps(txn, JSON_COMPACT)) ||
                       !(check_body = json_dumps(check, JSON_COMPACT))))
                r = -ENOMEM;
        if (r >= 0) {
                b->f = f;
                b->done = done;
                b->userdata = userdata;
                b->checking = b->taken = 0;
                /* No name_key: the names are read after, if a compare fails. */
                r = fleet_txn_send(f, &body, &check_body, NULL, b->keys[0].id, batch_published, b);
        }
        if (r >= 0)
                log_debug("fleet: %zu keys to etcd in one transaction", b->n);
        json_decref(txn);
        json_decref(check);
        return r;
}
