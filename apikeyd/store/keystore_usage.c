/* SPDX-License-Identifier: MIT */
/* A key's usage history in the keystore; see keystore_usage.h. */
#include <endian.h>
#include <errno.h>

#include "keystore_internal.h"
#include "keystore_usage.h"
#include "text_check.h"

#define USE_KEY_LEN    (TOKEN_ID_LEN + 1 + 8)
#define SOURCE_KEY_LEN (TOKEN_ID_LEN + 1)
/* How far a known source's last use moves before it is written again. */
#define SOURCE_SEEN_STEP (60 * 60 * UINT64_C(1000000))

static void use_key(uint8_t buf[static USE_KEY_LEN], const char *id, uint64_t at)
{
        uint64_t be = htobe64(at);

        memcpy(buf, id, TOKEN_ID_LEN);
        buf[TOKEN_ID_LEN] = 'u';
        memcpy(buf + TOKEN_ID_LEN + 1, &be, sizeof(be));
}

static bool is_use_of(const MDB_val *k, const char *id)
{
        return k->mv_size == USE_KEY_LEN && memcmp(k->mv_data, id, TOKEN_ID_LEN) == 0 &&
               ((const uint8_t *)k->mv_data)[TOKEN_ID_LEN] == 'u';
}

const char *usage_source_of(const struct usage_entry *e, char *ret_kind)
{
        if (e->rhost && e->rhost[0]) {
                *ret_kind = USAGE_SOURCE_RHOST;
                return e->rhost;
        }
        *ret_kind = USAGE_SOURCE_SERVICE;
        return e->service ? e->service : "";
}

/* Drop the oldest uses of `id` beyond `keep`: counted, then deleted from the oldest. */
static int trim_uses(struct keystore *ks, MDB_txn *txn, const char *id, size_t keep)
{
        _cleanup_cursor_ MDB_cursor *c = NULL;
        uint8_t kb[USE_KEY_LEN];
        MDB_val k = {sizeof(kb), kb}, v;
        size_t n = 0;
        int rc;

        rc = mdb_cursor_open(txn, ks->usage, &c);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        use_key(kb, id, 0);
        for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == MDB_SUCCESS && is_use_of(&k, id);
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
                n++;
        if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
                return ks_err(ks, rc);
        k = (MDB_val){sizeof(kb), kb};
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        /* After a delete, MDB_NEXT gives the entry that followed it. */
        for (; n > keep && rc == MDB_SUCCESS && is_use_of(&k, id); n--) {
                rc = mdb_cursor_del(c, 0);
                if (rc == MDB_SUCCESS)
                        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
        return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? 0 : ks_err(ks, rc);
}

static int put_use(struct keystore *ks, MDB_txn *txn, const struct key_use *u)
{
        _cleanup_free_ void *buf = NULL;
        uint8_t kb[USE_KEY_LEN];
        size_t len;
        int rc, r;

        r = usage_entry_encode(&u->e, &buf, &len);
        if (r < 0)
                return r;
        /* Two uses in the same microsecond: the later one a microsecond on. */
        for (uint64_t at = u->e.at;; at++) {
                use_key(kb, u->id, at);
                rc = mdb_put(txn, ks->usage, &(MDB_val){sizeof(kb), kb}, &(MDB_val){len, buf},
                             MDB_NOOVERWRITE);
                if (rc != MDB_KEYEXIST)
                        return ks_err(ks, rc);
        }
}

/* Note a VALID use's source among the key's; 1 if it was not known, with how many were. */
static int note_source(struct keystore *ks, MDB_txn *txn, const struct key_use *u,
                       size_t *ret_n_known)
{
        struct usage_source s[USAGE_SOURCES_MAX + 1];
        char kb[SOURCE_KEY_LEN], kind, copy[USAGE_STRING_MAX + 1];
        _cleanup_free_ void *buf = NULL;
        const char *name = usage_source_of(&u->e, &kind);
        MDB_val k = {sizeof(kb), kb}, v;
        size_t n = 0, len, found = SIZE_MAX;
        int rc, r;

        memcpy(kb, u->id, TOKEN_ID_LEN);
        kb[TOKEN_ID_LEN] = 's';
        rc = mdb_get(txn, ks->usage, &k, &v);
        if (rc == MDB_SUCCESS) {
                /* Damaged: started afresh, as if the key had been used from nowhere. */
                if (usage_sources_decode(v.mv_data, v.mv_size, s, &n) < 0)
                        n = 0;
        } else if (rc != MDB_NOTFOUND)
                return ks_err(ks, rc);
        for (size_t i = 0; i < n && found == SIZE_MAX; i++)
                if (s[i].kind == kind && STREQ(s[i].name, name))
                        found = i;
        *ret_n_known = n;
        if (found != SIZE_MAX) {
                /* Known: its time moves forward, by the hour at least, so a
                 * busy source does not rewrite the set at every use. */
                if (u->e.at < s[found].seen_at + SOURCE_SEEN_STEP)
                        return 0;
                s[found].seen_at = u->e.at;
        } else {
                /* Full: the source seen longest ago makes room. */
                if (n == USAGE_SOURCES_MAX) {
                        size_t oldest = 0;
                        for (size_t i = 1; i < n; i++)
                                if (s[i].seen_at < s[oldest].seen_at)
                                        oldest = i;
                        s[oldest] = s[--n];
                }
                str_copy(copy, sizeof(copy), name);
                s[n++] = (struct usage_source){.seen_at = u->e.at, .kind = kind, .name = copy};
        }
        /* The names view the old value: encoded before it is replaced. */
        r = usage_sources_encode(s, n, &buf, &len);
        if (r < 0)
                return r;
        rc = mdb_put(txn, ks->usage, &k, &(MDB_val){len, buf}, 0);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        return found == SIZE_MAX;
}

/* The use of a storable key and text, or 0 to skip it. */
static bool use_storable(const struct key_use *u)
{
        const char *s[] = {u->e.service, u->e.rhost, u->e.tty};

        if (!token_id_valid(u->id) || !u->e.code || !u->e.code[0] ||
            strlen(u->e.code) > USAGE_CODE_MAX)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(s); i++)
                if (s[i] && !text_valid(s[i], USAGE_STRING_MAX))
                        return false;
        return true;
}

struct record_ctx {
        const struct key_use *uses;
        size_t n, keep;
        struct key_new_source *ret_new;
        size_t n_new;
        const char **put; /* the ids of the uses written, to trim each key once */
        size_t n_put;
};

static int cmp_id(const void *x, const void *y)
{
        return memcmp(*(const char *const *)x, *(const char *const *)y, TOKEN_ID_LEN);
}

static int record_one(struct keystore *ks, MDB_txn *txn, struct record_ctx *c, size_t i)
{
        const struct key_use *u = &c->uses[i];
        struct key_record rec;
        MDB_val k = {TOKEN_ID_LEN, (void *)u->id}, v;
        size_t n_known = 0;
        int rc, r;

        if (!use_storable(u))
                return 0;
        rc = mdb_get(txn, ks->keys, &k, &v);
        if (rc == MDB_NOTFOUND)
                return 0; /* deleted since */
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        if (c->keep > 0) {
                r = put_use(ks, txn, u);
                if (r < 0)
                        return r;
                c->put[c->n_put++] = u->id;
        }
        if (!STREQ(u->e.code, "VALID"))
                return 0;
        r = note_source(ks, txn, u, &n_known);
        if (r <= 0)
                return r;
        struct key_new_source *ns = &c->ret_new[c->n_new++];
        *ns = (struct key_new_source){.use = i, .n_known = n_known};
        /* Read again: the writes above may have moved the page it was on. */
        rc = mdb_get(txn, ks->keys, &k, &v);
        if (rc == MDB_SUCCESS && decode_entry(&k, &v, &rec) >= 0) {
                str_copy(ns->owner, sizeof(ns->owner), rec.owner);
                str_copy(ns->name, sizeof(ns->name), rec.name);
        }
        return 0;
}

static int record_in(struct keystore *ks, MDB_txn *txn, void *userdata)
{
        struct record_ctx *c = userdata;

        c->n_new = c->n_put = 0; /* a run after the map grew starts again */
        for (size_t i = 0; i < c->n; i++) {
                int r = record_one(ks, txn, c, i);
                if (r < 0)
                        return r;
        }
        /* Each key's oldest uses beyond `keep` go, once per key. */
        if (c->n_put > 1)
                qsort(c->put, c->n_put, sizeof(*c->put), cmp_id);
        for (size_t i = 0; i < c->n_put; i++) {
                int r;

                if (i > 0 && memcmp(c->put[i - 1], c->put[i], TOKEN_ID_LEN) == 0)
                        continue;
                r = trim_uses(ks, txn, c->put[i], c->keep);
                if (r < 0)
                        return r;
        }
        return 0;
}

int keystore_record_uses(struct keystore *ks, const struct key_use *uses, size_t n, size_t keep,
                         struct key_new_source *ret_new, size_t *ret_n_new)
{
        struct record_ctx c = {.uses = uses, .n = n, .keep = keep, .ret_new = ret_new};
        int r;

        *ret_n_new = 0;
        if (!ks || (n > 0 && (!uses || !ret_new)))
                return -EINVAL;
        if (n == 0)
                return 0;
        c.put = calloc(n, sizeof(*c.put));
        if (!c.put)
                return -ENOMEM;
        r = write_txn(ks, record_in, &c);
        free(c.put);
        if (r >= 0)
                *ret_n_new = c.n_new;
        return r;
}

int keystore_list_uses(struct keystore *ks, const char *id, uint64_t before, size_t limit,
                       keystore_use_fn fn, void *userdata)
{
        _cleanup_cursor_ MDB_cursor *c = NULL;
        uint8_t kb[USE_KEY_LEN];
        MDB_val k = {sizeof(kb), kb}, v;
        MDB_txn *txn;
        size_t n = 0;
        int rc, r;

        if (!ks || !token_id_valid(id) || !fn)
                return -EINVAL;
        if (!ks->has_usage)
                return 0; /* a read-only handle of a store from before usage history */
        r = read_begin(ks, &txn);
        if (r < 0)
                return r;
        rc = mdb_cursor_open(txn, ks->usage, &c);
        if (rc != MDB_SUCCESS) {
                read_end(ks);
                return ks_err(ks, rc);
        }
        use_key(kb, id, UINT64_MAX);
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        rc = rc == MDB_SUCCESS ? mdb_cursor_get(c, &k, &v, MDB_PREV)
                               : mdb_cursor_get(c, &k, &v, MDB_LAST);
        r = 0;
        while (rc == MDB_SUCCESS && is_use_of(&k, id) && (limit == 0 || n < limit)) {
                struct usage_entry e;

                if (usage_entry_decode(v.mv_data, v.mv_size, &e) >= 0 &&
                    (before == 0 || e.at < before)) {
                        n++;
                        r = fn(&e, userdata);
                        if (r != 0)
                                break;
                }
                rc = mdb_cursor_get(c, &k, &v, MDB_PREV);
        }
        if (r == 0 && rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
                r = ks_err(ks, rc);
        mdb_cursor_close(c);
        c = NULL;
        read_end(ks);
        return r;
}

int usage_delete_in(struct keystore *ks, MDB_txn *txn, const char *id)
{
        _cleanup_cursor_ MDB_cursor *c = NULL;
        MDB_val k = {TOKEN_ID_LEN, (void *)id}, v;
        int rc;

        if (!ks->has_usage)
                return 0;
        rc = mdb_cursor_open(txn, ks->usage, &c);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        while (rc == MDB_SUCCESS && k.mv_size > TOKEN_ID_LEN &&
               memcmp(k.mv_data, id, TOKEN_ID_LEN) == 0) {
                rc = mdb_cursor_del(c, 0);
                if (rc == MDB_SUCCESS)
                        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
        return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? 0 : ks_err(ks, rc);
}
