/* SPDX-License-Identifier: MIT */
/*
 * The audit log: events appended to one of its two retentions (the
 * admins' management events kept apart from the rest, each bounded by
 * audit_max), listed merged in sequence order, and the events a group
 * write appends in its own transaction (keystore_tx_audit()), which commit
 * with it or not at all.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "keystore_internal.h"

static int audit_decode(const MDB_val *k, const MDB_val *v, struct audit_event *ret)
{
        uint64_t seq_be;
        int r;

        if (k->mv_size != sizeof(seq_be))
                return -EBADMSG;
        r = audit_record_decode(v->mv_data, v->mv_size, ret);
        if (r < 0)
                return r;
        memcpy(&seq_be, k->mv_data, sizeof(seq_be));
        ret->seq = be64toh(seq_be);
        return 0;
}

/* Raise `*seq` to the sequence number of the last event in `dbi`, if higher. */
static int audit_last_seq(struct keystore *ks, MDB_txn *txn, MDB_dbi dbi, uint64_t *seq)
{
        _cleanup_cursor_ MDB_cursor *cur = NULL;
        MDB_val k, v;
        uint64_t seq_be;
        int rc;

        rc = mdb_cursor_open(txn, dbi, &cur);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        if (rc == MDB_NOTFOUND)
                return 0;
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        if (k.mv_size != sizeof(seq_be))
                return -EBADMSG;
        memcpy(&seq_be, k.mv_data, sizeof(seq_be));
        if (be64toh(seq_be) > *seq)
                *seq = be64toh(seq_be);
        return 0;
}

/*
 * Append to the event's own retention, numbered after the last event of
 * either, and drop the oldest of that retention beyond audit_max: a cursor
 * step per event dropped, whatever the size of the log.
 */
int append_audit_in(struct keystore *ks, MDB_txn *txn, void *userdata)
{
        struct audit_ctx *c = userdata;
        MDB_dbi dbi = c->admin ? ks->audit_admin : ks->audit;
        _cleanup_cursor_ MDB_cursor *cur = NULL;
        MDB_val k, v;
        uint64_t seq = 0, seq_be;
        MDB_stat st;
        int rc, r;

        if (c->admin && !ks->has_audit_admin)
                return -EROFS; /* only a read-only handle lacks it */
        r = audit_last_seq(ks, txn, ks->audit, &seq);
        if (r >= 0 && ks->has_audit_admin)
                r = audit_last_seq(ks, txn, ks->audit_admin, &seq);
        if (r < 0)
                return r;
        if (++seq == 0)
                return -EOVERFLOW;

        rc = mdb_cursor_open(txn, dbi, &cur);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        /* Big-endian keys sort numerically, so every new event goes at the end. */
        seq_be = htobe64(seq);
        rc = mdb_cursor_put(cur, &(MDB_val){sizeof(seq_be), &seq_be},
                            &(MDB_val){c->len, (void *)c->buf}, MDB_APPEND);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);

        rc = mdb_stat(txn, dbi, &st);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        for (size_t excess = st.ms_entries > ks->audit_max ? st.ms_entries - ks->audit_max : 0;
             excess > 0; excess--) {
                rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
                if (rc == MDB_SUCCESS)
                        rc = mdb_cursor_del(cur, 0);
                if (rc != MDB_SUCCESS)
                        return ks_err(ks, rc);
        }
        return 0;
}

int keystore_append_audit(struct keystore *ks, const struct audit_event *ev)
{
        _cleanup_free_ void *buf = NULL;
        struct audit_ctx c;
        size_t len;
        int r;

        if (!ks || !ev)
                return -EINVAL;
        r = audit_record_encode(ev, &buf, &len);
        if (r < 0)
                return r;
        c = (struct audit_ctx){buf, len, ev->admin};
        return write_txn(ks, append_audit_in, &c);
}

struct keystore *keystore_tx_keystore(struct keystore_tx *tx)
{
        return tx->ks;
}

int keystore_tx_audit(struct keystore_tx *tx, const struct audit_event *ev)
{
        _cleanup_free_ void *buf = NULL;
        struct audit_ctx c;
        size_t len;
        int r;

        if (!tx || !ev)
                return -EINVAL;
        r = audit_record_encode(ev, &buf, &len);
        if (r < 0)
                return r;
        c = (struct audit_ctx){buf, len, ev->admin};
        return append_audit_in(tx->ks, tx->txn, &c);
}

struct audits_ctx {
        const struct audit_event *evs;
        void **bufs;
        size_t *lens;
        size_t n;
};

static int append_audits_in(struct keystore *ks, MDB_txn *txn, void *userdata)
{
        struct audits_ctx *c = userdata;

        for (size_t i = 0; i < c->n; i++) {
                struct audit_ctx one = {c->bufs[i], c->lens[i], c->evs[i].admin};
                int r = append_audit_in(ks, txn, &one);
                if (r < 0)
                        return r;
        }
        return 0;
}

int keystore_append_audits(struct keystore *ks, const struct audit_event *evs, size_t n)
{
        struct audits_ctx c = {.evs = evs};
        int r = 0;

        if (!ks || (!evs && n))
                return -EINVAL;
        if (n == 0)
                return 0;
        c.bufs = calloc(n, sizeof(*c.bufs));
        c.lens = calloc(n, sizeof(*c.lens));
        if (!c.bufs || !c.lens)
                r = -ENOMEM;
        for (; r >= 0 && c.n < n; c.n++)
                r = audit_record_encode(&evs[c.n], &c.bufs[c.n], &c.lens[c.n]);
        if (r >= 0)
                r = write_txn(ks, append_audits_in, &c);
        for (size_t i = 0; c.bufs && i < n; i++)
                free(c.bufs[i]);
        free(c.bufs);
        free(c.lens);
        return r;
}

/* One retention's events from a sequence number on; `rc` is MDB_SUCCESS while on one. */
struct audit_walk {
        MDB_cursor *c;
        MDB_val k, v;
        int rc;
        bool admin;
};

static int audit_walk_start(struct keystore *ks, MDB_txn *txn, MDB_dbi dbi, bool admin,
                            const uint64_t *start_be, struct audit_walk *w)
{
        int rc = mdb_cursor_open(txn, dbi, &w->c);

        if (rc != MDB_SUCCESS) {
                w->c = NULL;
                return ks_err(ks, rc);
        }
        w->admin = admin;
        w->k = (MDB_val){sizeof(*start_be), (void *)start_be};
        w->rc = mdb_cursor_get(w->c, &w->k, &w->v, MDB_SET_RANGE);
        return 0;
}

/* Both retentions merged in sequence order. */
static int list_audit_in(struct keystore *ks, MDB_txn *txn, uint64_t after_seq, uint64_t since,
                         const char *key_id, size_t limit, keystore_audit_fn fn, void *userdata)
{
        uint64_t start_be = htobe64(after_seq + 1);
        struct audit_walk w[2] = {{.rc = MDB_NOTFOUND}, {.rc = MDB_NOTFOUND}};
        size_t n = 0;
        int r;

        r = audit_walk_start(ks, txn, ks->audit, false, &start_be, &w[0]);
        if (r >= 0 && ks->has_audit_admin)
                r = audit_walk_start(ks, txn, ks->audit_admin, true, &start_be, &w[1]);

        while (r >= 0) {
                struct audit_walk *next = NULL;
                struct audit_event ev;

                for (size_t i = 0; i < ELEMENTSOF(w); i++) {
                        if (w[i].rc != MDB_SUCCESS && w[i].rc != MDB_NOTFOUND) {
                                r = ks_err(ks, w[i].rc);
                                break;
                        }
                        if (w[i].rc == MDB_SUCCESS &&
                            (!next || mdb_cmp(txn, ks->audit, &w[i].k, &next->k) < 0))
                                next = &w[i];
                }
                if (r < 0 || !next)
                        break;

                r = audit_decode(&next->k, &next->v, &ev);
                if (r < 0)
                        break;
                ev.admin = next->admin;
                next->rc = mdb_cursor_get(next->c, &next->k, &next->v, MDB_NEXT);
                if (ev.time < since)
                        continue;
                if (key_id && (!ev.key_id || !STREQ(ev.key_id, key_id)))
                        continue;
                r = fn(&ev, userdata);
                if (r != 0 || (limit != 0 && ++n >= limit))
                        break;
        }
        for (size_t i = 0; i < ELEMENTSOF(w); i++)
                if (w[i].c)
                        mdb_cursor_close(w[i].c);
        return r;
}

int keystore_list_audit(struct keystore *ks, uint64_t after_seq, uint64_t since, const char *key_id,
                        size_t limit, keystore_audit_fn fn, void *userdata)
{
        MDB_txn *txn;
        int r;

        if (!ks || !fn)
                return -EINVAL;
        if (after_seq == UINT64_MAX)
                return 0;

        r = read_begin(ks, &txn);
        if (r < 0)
                return r;
        r = list_audit_in(ks, txn, after_seq, since, key_id, limit, fn, userdata);
        read_end(ks);
        return r;
}
