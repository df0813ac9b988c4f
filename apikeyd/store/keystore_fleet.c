/* SPDX-License-Identifier: MIT */
/* The keystore as a fleet replica: see keystore_fleet.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "keystore_fleet.h"
#include "keystore_internal.h"

/* Remove the key `id` and its index entries, if it is there; 1 if it was. */
static int remove_in(struct keystore *ks, MDB_txn *txn, const char *id)
{
        MDB_val k = {TOKEN_ID_LEN, (void *)id}, v;
        struct key_record rec;
        char nk[NAME_KEY_MAX];
        int rc;

        rc = mdb_get(txn, ks->keys, &k, &v);
        if (rc == MDB_NOTFOUND)
                return 0;
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        if (decode_entry(&k, &v, &rec) >= 0) {
                MDB_val nv, nkv = {name_key(nk, rec.owner, rec.name), nk};

                /* The names entry only if it is this key's. */
                rc = mdb_get(txn, ks->names, &nkv, &nv);
                if (rc == MDB_SUCCESS && val_is_id(&nv, id))
                        rc = mdb_del(txn, ks->names, &nkv, NULL);
                if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
                        return ks_err(ks, rc);
                rc = mdb_del(txn, ks->owners, &(MDB_val){strlen(rec.owner), (void *)rec.owner},
                             &(MDB_val){TOKEN_ID_LEN, (void *)id});
                if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
                        return ks_err(ks, rc);
                if (rec.parent[0] && !ks->no_children) {
                        rc =
                            mdb_del(txn, ks->children, &(MDB_val){TOKEN_ID_LEN, (void *)rec.parent},
                                    &(MDB_val){TOKEN_ID_LEN, (void *)id});
                        if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
                                return ks_err(ks, rc);
                }
        } else {
                /* A damaged record: its index entries found by value. */
                MDB_dbi dbis[] = {ks->names, ks->owners, ks->children};

                for (size_t i = 0; i < (ks->no_children ? 2u : 3u); i++) {
                        _cleanup_cursor_ MDB_cursor *c = NULL;
                        MDB_val ck, cv;

                        rc = mdb_cursor_open(txn, dbis[i], &c);
                        if (rc != MDB_SUCCESS)
                                return ks_err(ks, rc);
                        for (rc = mdb_cursor_get(c, &ck, &cv, MDB_FIRST); rc == MDB_SUCCESS;
                             rc = mdb_cursor_get(c, &ck, &cv, MDB_NEXT))
                                if (val_is_id(&cv, id) &&
                                    (rc = mdb_cursor_del(c, 0)) != MDB_SUCCESS)
                                        return ks_err(ks, rc);
                        if (rc != MDB_NOTFOUND)
                                return ks_err(ks, rc);
                }
        }
        rc = mdb_del(txn, ks->keys, &k, NULL);
        return rc == MDB_SUCCESS ? 1 : ks_err(ks, rc);
}

/* A key gone from the fleet: its record and indexes, and its usage history. */
static int delete_in(struct keystore *ks, MDB_txn *txn, const char *id)
{
        int r = remove_in(ks, txn, id);

        if (r > 0) {
                int u = usage_delete_in(ks, txn, id);
                if (u < 0)
                        return u;
        }
        return r;
}

/* This host's last use, if later than the one `rec` carries: the record re-encoded with it. */
static int keep_last_used(struct keystore *ks, MDB_txn *txn, struct key_record *rec, void **ret_buf,
                          size_t *ret_len)
{
        MDB_val k = {TOKEN_ID_LEN, rec->id}, v;
        struct key_record old;
        int rc;

        *ret_buf = NULL;
        rc = mdb_get(txn, ks->keys, &k, &v);
        if (rc == MDB_NOTFOUND)
                return 0;
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        if (decode_entry(&k, &v, &old) < 0 || old.last_used_at <= rec->last_used_at)
                return 0;
        rec->last_used_at = old.last_used_at;
        rec->last_used_service = old.last_used_service;
        rec->last_used_from = old.last_used_from;
        /* Encoded before `old`'s bytes (in the map) can change. */
        return record_encode(rec, ret_buf, ret_len);
}

static int put_in(struct keystore *ks, MDB_txn *txn, const struct fleet_change *c, bool *refused)
{
        _cleanup_free_ void *kept = NULL;
        const void *bytes = c->record;
        size_t len = c->len;
        struct key_record rec;
        char nk[NAME_KEY_MAX];
        int rc, r;

        *refused = record_decode(c->record, c->len, &rec) < 0 || !STREQ(rec.id, c->id);
        if (*refused) {
                r = remove_in(ks, txn, c->id);
                return r < 0 ? r : 0;
        }
        r = keep_last_used(ks, txn, &rec, &kept, &len);
        if (r < 0)
                return r;
        if (kept)
                bytes = kept;
        else
                len = c->len;
        r = remove_in(ks, txn, c->id);
        if (r < 0)
                return r;
        /* A view into `c->record` again: keep_last_used may have pointed it at the map. */
        if (record_decode(bytes, len, &rec) < 0)
                return -EBADMSG;
        rc = mdb_put(txn, ks->keys, &(MDB_val){TOKEN_ID_LEN, (void *)c->id},
                     &(MDB_val){len, (void *)bytes}, 0);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        /* etcd is the truth: a name another key held here (renamed in the
         * same revision, later in it) is this key's now. */
        rc = mdb_put(txn, ks->names, &(MDB_val){name_key(nk, rec.owner, rec.name), nk},
                     &(MDB_val){TOKEN_ID_LEN, (void *)c->id}, 0);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        rc = mdb_put(txn, ks->owners, &(MDB_val){strlen(rec.owner), (void *)rec.owner},
                     &(MDB_val){TOKEN_ID_LEN, (void *)c->id}, MDB_NODUPDATA);
        if (rc != MDB_SUCCESS && rc != MDB_KEYEXIST)
                return ks_err(ks, rc);
        if (rec.parent[0] && !ks->no_children) {
                rc = mdb_put(txn, ks->children, &(MDB_val){TOKEN_ID_LEN, rec.parent},
                             &(MDB_val){TOKEN_ID_LEN, (void *)c->id}, MDB_NODUPDATA);
                if (rc != MDB_SUCCESS && rc != MDB_KEYEXIST)
                        return ks_err(ks, rc);
        }
        return 0;
}

static int cmp_change_id(const void *a, const void *b)
{
        return memcmp(((const struct fleet_change *)a)->id, ((const struct fleet_change *)b)->id,
                      TOKEN_ID_LEN);
}

/* Every key not among the (sorted) changes removed. */
static int remove_others(struct keystore *ks, MDB_txn *txn, const struct fleet_change *sorted,
                         size_t n, size_t *ret_removed)
{
        char id[TOKEN_ID_LEN + 1];
        MDB_val k, v;
        int rc, r;

        for (;;) {
                _cleanup_cursor_ MDB_cursor *c = NULL;
                bool found = false;

                /* Reopened after each removal: deleting under a cursor that then
                 * moves on is what LMDB's own tools avoid. */
                rc = mdb_cursor_open(txn, ks->keys, &c);
                if (rc != MDB_SUCCESS)
                        return ks_err(ks, rc);
                for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
                     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                        struct fleet_change key = {};

                        if (k.mv_size != TOKEN_ID_LEN)
                                continue;
                        memcpy(key.id, k.mv_data, TOKEN_ID_LEN);
                        if (n && bsearch(&key, sorted, n, sizeof(*sorted), cmp_change_id))
                                continue;
                        memcpy(id, key.id, sizeof(id));
                        found = true;
                        break;
                }
                if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
                        return ks_err(ks, rc);
                if (!found)
                        return 0;
                mdb_cursor_close(TAKE_PTR(c));
                r = delete_in(ks, txn, id);
                if (r < 0)
                        return r;
                (*ret_removed)++;
        }
}

struct apply_ctx {
        struct fleet_apply *a;
        const struct fleet_change *sorted;
};

static int apply_in(struct keystore *ks, MDB_txn *txn, void *userdata)
{
        struct apply_ctx *x = userdata;
        struct fleet_apply *a = x->a;
        uint8_t meta[24];
        uint64_t rev = (uint64_t)a->revision;
        int rc, r;

        a->ret_refused = a->ret_removed = 0;
        if (!a->replace_all) {
                MDB_val v;
                uint64_t at = 0;

                rc = mdb_get(txn, ks->meta,
                             &(MDB_val){STRLEN(KEYSTORE_META_FLEET), KEYSTORE_META_FLEET}, &v);
                if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
                        return ks_err(ks, rc);
                for (int i = 0; rc == MDB_SUCCESS && v.mv_size >= 8 && i < 8; i++)
                        at |= (uint64_t)((const uint8_t *)v.mv_data)[i] << (8 * i);
                if (at != (uint64_t)a->after)
                        return -ESTALE;
        }
        if (a->replace_all) {
                r = remove_others(ks, txn, x->sorted, a->n, &a->ret_removed);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < a->n; i++) {
                const struct fleet_change *c = &a->changes[i];
                bool refused = false;

                if (c->record) {
                        r = put_in(ks, txn, c, &refused);
                        a->ret_refused += refused;
                } else {
                        r = delete_in(ks, txn, c->id);
                        a->ret_removed += r > 0;
                }
                if (r < 0)
                        return r;
        }
        for (int i = 0; i < 8; i++) {
                meta[i] = (uint8_t)(rev >> (8 * i));
                meta[8 + i] = (uint8_t)(a->cluster_id >> (8 * i));
                meta[16 + i] = (uint8_t)(a->contact_at >> (8 * i));
        }
        rc = mdb_put(txn, ks->meta, &(MDB_val){STRLEN(KEYSTORE_META_FLEET), KEYSTORE_META_FLEET},
                     &(MDB_val){sizeof(meta), meta}, 0);
        return ks_err(ks, rc);
}

int keystore_fleet_apply(struct keystore *ks, struct fleet_apply *a)
{
        _cleanup_free_ struct fleet_change *sorted = NULL;
        struct apply_ctx x = {.a = a};

        if (!ks || !a || a->revision < 0 || (a->n && !a->changes))
                return -EINVAL;
        for (size_t i = 0; i < a->n; i++)
                if (!token_id_valid(a->changes[i].id))
                        return -EINVAL;
        if (a->replace_all && a->n) {
                sorted = malloc(a->n * sizeof(*sorted));
                if (!sorted)
                        return -ENOMEM;
                memcpy(sorted, a->changes, a->n * sizeof(*sorted));
                qsort(sorted, a->n, sizeof(*sorted), cmp_change_id);
                x.sorted = sorted;
        }
        return write_txn(ks, apply_in, &x);
}

int keystore_fleet_state(struct keystore *ks, int64_t *ret_revision, uint64_t *ret_cluster_id,
                         uint64_t *ret_contact_at)
{
        uint8_t meta[24];
        uint64_t rev = 0, cluster = 0, contact = 0;
        size_t len = 0;
        int r;

        r = keystore_meta_get(ks, KEYSTORE_META_FLEET, meta, sizeof(meta), &len);
        if (r == -ENOENT)
                len = 0;
        else if (r < 0)
                return r;
        else if (len != sizeof(meta))
                return -EBADMSG;
        for (int i = 0; i < 8 && len; i++) {
                rev |= (uint64_t)meta[i] << (8 * i);
                cluster |= (uint64_t)meta[8 + i] << (8 * i);
                contact |= (uint64_t)meta[16 + i] << (8 * i);
        }
        if (rev > INT64_MAX)
                return -EBADMSG;
        if (ret_revision)
                *ret_revision = (int64_t)rev;
        if (ret_cluster_id)
                *ret_cluster_id = cluster;
        if (ret_contact_at)
                *ret_contact_at = contact;
        return 0;
}
