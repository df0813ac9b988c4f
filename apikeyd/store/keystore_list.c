/* SPDX-License-Identifier: MIT */
/*
 * Listing and counting keys: keystore_list() pages through all keys in id
 * order, or an owner's through the owners index, under a filter;
 * keystore_count() and keystore_n_keys() count them.
 */
#include <errno.h>
#include <string.h>

#include <lmdb.h>

#include "keystore_internal.h"

struct list_walk {
        const struct key_filter *filter;
        size_t limit;
        keystore_list_fn fn;
        void *userdata;
        size_t n;
        char last[TOKEN_ID_LEN + 1];
        bool done; /* the limit is reached */
        bool more; /* and something follows */
};

static bool filter_match(const struct key_filter *f, const struct key_record *rec)
{
        if (!f)
                return true;
        if (f->owner && !STREQ(f->owner, rec->owner))
                return false;
        if (f->status != 0 && (int)record_effective_status(rec, f->now) != f->status)
                return false;
        if (f->name_prefix && strncmp(rec->name, f->name_prefix, strlen(f->name_prefix)) != 0)
                return false;
        if (f->expiring_within != 0) {
                if (rec->expires_at == 0 || rec->expires_at <= f->now)
                        return false;
                if (rec->expires_at - f->now > f->expiring_within)
                        return false;
        }
        return true;
}

/* 0 to go on, else what the walk returns. */
static int list_visit(struct list_walk *w, const struct key_record *rec)
{
        int r;

        if (!filter_match(w->filter, rec))
                return 0;
        memcpy(w->last, rec->id, sizeof(w->last));
        w->n++;
        r = w->fn(rec, w->userdata);
        if (r != 0)
                return r;
        if (w->limit != 0 && w->n >= w->limit)
                w->done = true;
        return 0;
}

static int list_all(struct keystore *ks, MDB_txn *txn, const char *after, struct list_walk *w)
{
        _cleanup_cursor_ MDB_cursor *c = NULL;
        MDB_val k, v;
        int rc, r;

        rc = mdb_cursor_open(txn, ks->keys, &c);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);

        if (after) {
                k = (MDB_val){TOKEN_ID_LEN, (void *)after};
                rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
                if (rc == MDB_SUCCESS && val_is_id(&k, after))
                        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        } else
                rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);

        for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                struct key_record rec;

                if (w->done) {
                        w->more = true;
                        return 0;
                }
                r = decode_entry(&k, &v, &rec);
                if (r < 0)
                        return r;
                r = list_visit(w, &rec);
                if (r != 0)
                        return r;
        }
        return rc == MDB_NOTFOUND ? 0 : ks_err(ks, rc);
}

/* The owner's ids come from the owners index, which dupsort keeps in id order. */
static int list_owner(struct keystore *ks, MDB_txn *txn, const char *owner, const char *after,
                      struct list_walk *w)
{
        _cleanup_cursor_ MDB_cursor *c = NULL;
        size_t olen = strnlen(owner, KEY_OWNER_MAX + 1);
        MDB_val k = {olen, (void *)owner}, v;
        int rc, r;

        /* No key can have such an owner, and LMDB refuses empty or oversized keys. */
        if (olen == 0 || olen > KEY_OWNER_MAX)
                return 0;

        rc = mdb_cursor_open(txn, ks->owners, &c);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);

        if (after) {
                v = (MDB_val){TOKEN_ID_LEN, (void *)after};
                rc = mdb_cursor_get(c, &k, &v, MDB_GET_BOTH_RANGE);
                if (rc == MDB_SUCCESS && val_is_id(&v, after))
                        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT_DUP);
        } else
                rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY);

        for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT_DUP)) {
                struct key_record rec;
                MDB_val rk, rv;

                if (w->done) {
                        w->more = true;
                        return 0;
                }
                if (v.mv_size != TOKEN_ID_LEN)
                        return -EBADMSG;
                rk = v;
                rc = mdb_get(txn, ks->keys, &rk, &rv);
                if (rc == MDB_NOTFOUND)
                        return -EBADMSG; /* the index names a key that is gone */
                if (rc != MDB_SUCCESS)
                        return ks_err(ks, rc);
                r = decode_entry(&rk, &rv, &rec);
                if (r < 0)
                        return r;
                if (!STREQ(rec.owner, owner))
                        return -EBADMSG;
                r = list_visit(w, &rec);
                if (r != 0)
                        return r;
        }
        return rc == MDB_NOTFOUND ? 0 : ks_err(ks, rc);
}

int keystore_list(struct keystore *ks, const struct key_filter *filter, const char *cursor,
                  size_t limit, keystore_list_fn fn, void *userdata,
                  char ret_cursor[TOKEN_ID_LEN + 1])
{
        struct list_walk w = {
            .filter = filter,
            .limit = limit,
            .fn = fn,
            .userdata = userdata,
        };
        char after[TOKEN_ID_LEN + 1] = "";
        MDB_txn *txn;
        int r;

        /* Callers page with one buffer for both cursors: read it before writing it. */
        if (cursor && *cursor != '\0') {
                if (!token_id_valid(cursor)) {
                        if (ret_cursor)
                                ret_cursor[0] = '\0';
                        return -EINVAL;
                }
                memcpy(after, cursor, sizeof(after));
        }
        if (ret_cursor)
                ret_cursor[0] = '\0';
        if (!ks || !fn)
                return -EINVAL;
        if (filter && (filter->status < 0 || filter->status > KEY_STATUS_EXPIRED))
                return -EINVAL;

        r = read_begin(ks, &txn);
        if (r < 0)
                return r;
        if (filter && filter->owner)
                r = list_owner(ks, txn, filter->owner, after[0] ? after : NULL, &w);
        else
                r = list_all(ks, txn, after[0] ? after : NULL, &w);
        read_end(ks);

        if (r < 0)
                return r;
        /* Stopped by the callback, or by the limit with keys left to look at. */
        if (ret_cursor && (r != 0 || w.more))
                memcpy(ret_cursor, w.last, TOKEN_ID_LEN + 1);
        return r;
}

int keystore_tx_list(struct keystore_tx *tx, const struct key_filter *filter, keystore_list_fn fn,
                     void *userdata)
{
        struct list_walk w = {.filter = filter, .fn = fn, .userdata = userdata};

        if (!tx || !fn)
                return -EINVAL;
        if (filter && (filter->status < 0 || filter->status > KEY_STATUS_EXPIRED))
                return -EINVAL;
        if (filter && filter->owner)
                return list_owner(tx->ks, tx->txn, filter->owner, NULL, &w);
        return list_all(tx->ks, tx->txn, NULL, &w);
}

static int count_in(struct keystore *ks, MDB_txn *txn, uint64_t now, uint64_t counts[5])
{
        _cleanup_cursor_ MDB_cursor *c = NULL;
        MDB_val k, v;
        int rc, r;

        rc = mdb_cursor_open(txn, ks->keys, &c);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                struct key_record rec;

                r = decode_entry(&k, &v, &rec);
                if (r < 0)
                        return r;
                counts[record_effective_status(&rec, now)]++;
        }
        return rc == MDB_NOTFOUND ? 0 : ks_err(ks, rc);
}

int keystore_n_keys(struct keystore *ks, uint64_t *ret)
{
        MDB_txn *txn;
        MDB_stat st;
        int rc, r;

        if (!ks || !ret)
                return -EINVAL;
        r = read_begin(ks, &txn);
        if (r < 0)
                return r;
        rc = mdb_stat(txn, ks->keys, &st);
        read_end(ks);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        *ret = st.ms_entries;
        return 0;
}

int keystore_count(struct keystore *ks, uint64_t now, uint64_t ret_counts[5])
{
        uint64_t counts[5] = {};
        MDB_txn *txn;
        int r;

        if (!ks || !ret_counts)
                return -EINVAL;
        r = read_begin(ks, &txn);
        if (r < 0)
                return r;
        r = count_in(ks, txn, now, counts);
        read_end(ks);
        if (r < 0)
                return r;
        memcpy(ret_counts, counts, sizeof(counts));
        return 0;
}
