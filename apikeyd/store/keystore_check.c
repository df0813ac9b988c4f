/* SPDX-License-Identifier: MIT */
/*
 * The keystore's consistency check (keystore_check_indexes(), what
 * `apikeyd --check` runs): every record decodes and has its names, owners
 * and children entries, and every index entry points back at a key that
 * agrees with it.
 */
#include <errno.h>
#include <string.h>

#include <lmdb.h>

#include "keystore_internal.h"

/* Index keys and values may be anything: print only the harmless part. */
static const char *show(const void *p, size_t n, char *buf, size_t size)
{
        const unsigned char *s = p;
        size_t i;

        for (i = 0; i < n && i + 1 < size; i++)
                buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
        buf[i] = '\0';
        return buf;
}

#define SHOW_MAX (NAME_KEY_MAX + 1)

static int check_parent(struct keystore *ks, MDB_txn *txn, const struct key_record *rec,
                        char **ret_error);
static int check_target(struct keystore *ks, MDB_txn *txn, const MDB_val *id,
                        struct key_record *ret);

static int check_keys(struct keystore *ks, MDB_txn *txn, char **ret_error)
{
        _cleanup_cursor_ MDB_cursor *c = NULL, *oc = NULL;
        char a[SHOW_MAX], b[SHOW_MAX];
        MDB_val k, v;
        int rc, r;

        rc = mdb_cursor_open(txn, ks->keys, &c);
        if (rc == MDB_SUCCESS)
                rc = mdb_cursor_open(txn, ks->owners, &oc);
        if (rc != MDB_SUCCESS)
                return fail_with(ret_error, ks_err(ks, rc), "reading keys: %s", mdb_strerror(rc));

        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                char nk[NAME_KEY_MAX];
                struct key_record rec;
                MDB_val nv, ok, ov;

                r = decode_entry(&k, &v, &rec);
                if (r < 0)
                        return fail_with(ret_error, -EBADMSG, "key %s: record is corrupt (%s)",
                                         show(k.mv_data, k.mv_size, a, sizeof(a)), strerror(-r));

                rc =
                    mdb_get(txn, ks->names, &(MDB_val){name_key(nk, rec.owner, rec.name), nk}, &nv);
                if (rc == MDB_NOTFOUND)
                        return fail_with(ret_error, -EBADMSG,
                                         "key %s: no names entry for owner \"%s\" name \"%s\"",
                                         rec.id, rec.owner, rec.name);
                if (rc != MDB_SUCCESS)
                        return fail_with(ret_error, ks_err(ks, rc), "reading names: %s",
                                         mdb_strerror(rc));
                if (!val_is_id(&nv, rec.id))
                        return fail_with(ret_error, -EBADMSG,
                                         "key %s: its names entry points at \"%s\"", rec.id,
                                         show(nv.mv_data, nv.mv_size, b, sizeof(b)));

                ok = (MDB_val){strlen(rec.owner), (void *)rec.owner};
                ov = (MDB_val){TOKEN_ID_LEN, rec.id};
                rc = mdb_cursor_get(oc, &ok, &ov, MDB_GET_BOTH);
                if (rc == MDB_NOTFOUND)
                        return fail_with(ret_error, -EBADMSG,
                                         "key %s: no owners entry for owner \"%s\"", rec.id,
                                         rec.owner);
                if (rc != MDB_SUCCESS)
                        return fail_with(ret_error, ks_err(ks, rc), "reading owners: %s",
                                         mdb_strerror(rc));
                r = check_parent(ks, txn, &rec, ret_error);
                if (r < 0)
                        return r;
        }
        if (rc != MDB_NOTFOUND)
                return fail_with(ret_error, ks_err(ks, rc), "reading keys: %s", mdb_strerror(rc));
        return 0;
}

/* A key whose parent still exists is among the parent's children. */
static int check_parent(struct keystore *ks, MDB_txn *txn, const struct key_record *rec,
                        char **ret_error)
{
        _cleanup_cursor_ MDB_cursor *c = NULL;
        MDB_val pk = {TOKEN_ID_LEN, (void *)rec->parent}, pv, ck, cv;
        int rc;

        if (!rec->parent[0] || ks->no_children)
                return 0;
        rc = mdb_get(txn, ks->keys, &pk, &pv);
        if (rc == MDB_NOTFOUND)
                return 0; /* deleted: it took its children entries with it */
        if (rc == MDB_SUCCESS)
                rc = mdb_cursor_open(txn, ks->children, &c);
        if (rc != MDB_SUCCESS)
                return fail_with(ret_error, ks_err(ks, rc), "reading children: %s",
                                 mdb_strerror(rc));
        ck = pk;
        cv = (MDB_val){TOKEN_ID_LEN, (void *)rec->id};
        rc = mdb_cursor_get(c, &ck, &cv, MDB_GET_BOTH);
        if (rc == MDB_NOTFOUND)
                return fail_with(ret_error, -EBADMSG,
                                 "key %s: not among the children of its parent %s", rec->id,
                                 rec->parent);
        if (rc != MDB_SUCCESS)
                return fail_with(ret_error, ks_err(ks, rc), "reading children: %s",
                                 mdb_strerror(rc));
        return 0;
}

/* The key an index entry points at; every record already decoded in check_keys. */
static int check_target(struct keystore *ks, MDB_txn *txn, const MDB_val *id,
                        struct key_record *ret)
{
        MDB_val rv;
        int rc;

        if (id->mv_size != TOKEN_ID_LEN)
                return -ENOENT;
        rc = mdb_get(txn, ks->keys, (MDB_val *)id, &rv);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        return decode_entry(id, &rv, ret);
}

static int check_names(struct keystore *ks, MDB_txn *txn, char **ret_error)
{
        _cleanup_cursor_ MDB_cursor *c = NULL;
        char a[SHOW_MAX], b[SHOW_MAX];
        MDB_val k, v;
        int rc, r;

        rc = mdb_cursor_open(txn, ks->names, &c);
        if (rc != MDB_SUCCESS)
                return fail_with(ret_error, ks_err(ks, rc), "reading names: %s", mdb_strerror(rc));

        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                const char *sep = memchr(k.mv_data, '\0', k.mv_size);
                struct key_record rec;
                size_t olen;

                show(k.mv_data, k.mv_size, a, sizeof(a));
                if (!sep)
                        return fail_with(ret_error, -EBADMSG,
                                         "names entry \"%s\" has no owner/name separator", a);
                olen = (size_t)(sep - (const char *)k.mv_data);

                r = check_target(ks, txn, &v, &rec);
                if (r == -ENOENT)
                        return fail_with(ret_error, -EBADMSG,
                                         "names entry \"%s\" points at missing key \"%s\"", a,
                                         show(v.mv_data, v.mv_size, b, sizeof(b)));
                if (r < 0)
                        return fail_with(ret_error, r, "names entry \"%s\": %s", a, strerror(-r));
                if (strlen(rec.owner) != olen || memcmp(rec.owner, k.mv_data, olen) != 0 ||
                    !val_is_string(&(MDB_val){k.mv_size - olen - 1, (char *)sep + 1}, rec.name))
                        return fail_with(ret_error, -EBADMSG,
                                         "names entry \"%s\" points at key %s, which is owner "
                                         "\"%s\" name \"%s\"",
                                         a, rec.id, rec.owner, rec.name);
        }
        if (rc != MDB_NOTFOUND)
                return fail_with(ret_error, ks_err(ks, rc), "reading names: %s", mdb_strerror(rc));
        return 0;
}

/*
 * An index whose values are key ids (owners, children): every entry names
 * an existing key whose `field` is the entry's key.
 */
struct index_check {
        const char *index;    /* "owners" */
        const char *relation; /* "which belongs to" */
        const char *(*field)(const struct key_record *rec);
        bool keyed_by_id; /* the entry's key is a key id, which must exist */
};

static const char *rec_owner(const struct key_record *rec)
{
        return rec->owner;
}

static const char *rec_parent(const struct key_record *rec)
{
        return rec->parent;
}

static int check_index(struct keystore *ks, MDB_txn *txn, MDB_dbi dbi, const struct index_check *ic,
                       char **ret_error)
{
        _cleanup_cursor_ MDB_cursor *c = NULL;
        char a[SHOW_MAX], b[SHOW_MAX];
        MDB_val k, v;
        int rc, r;

        rc = mdb_cursor_open(txn, dbi, &c);
        if (rc != MDB_SUCCESS)
                return fail_with(ret_error, ks_err(ks, rc), "reading %s: %s", ic->index,
                                 mdb_strerror(rc));

        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                struct key_record rec;

                show(k.mv_data, k.mv_size, a, sizeof(a));
                if (ic->keyed_by_id) {
                        /* Deleting a key takes the entries under it along. */
                        MDB_val under;
                        rc = mdb_get(txn, ks->keys, &k, &under);
                        if (rc == MDB_NOTFOUND)
                                return fail_with(ret_error, -EBADMSG,
                                                 "%s entry of %s, a key that no longer exists",
                                                 ic->index, a);
                        if (rc != MDB_SUCCESS)
                                return fail_with(ret_error, ks_err(ks, rc), "reading keys: %s",
                                                 mdb_strerror(rc));
                }
                r = check_target(ks, txn, &v, &rec);
                if (r == -ENOENT)
                        return fail_with(ret_error, -EBADMSG,
                                         "%s entry \"%s\" points at missing key \"%s\"", ic->index,
                                         a, show(v.mv_data, v.mv_size, b, sizeof(b)));
                if (r < 0)
                        return fail_with(ret_error, r, "%s entry \"%s\": %s", ic->index, a,
                                         strerror(-r));
                if (!val_is_string(&k, ic->field(&rec)))
                        return fail_with(ret_error, -EBADMSG,
                                         "%s entry \"%s\" points at key %s, %s \"%s\"", ic->index,
                                         a, rec.id, ic->relation, ic->field(&rec));
        }
        if (rc != MDB_NOTFOUND)
                return fail_with(ret_error, ks_err(ks, rc), "reading %s: %s", ic->index,
                                 mdb_strerror(rc));
        return 0;
}

static int check_owners(struct keystore *ks, MDB_txn *txn, char **ret_error)
{
        static const struct index_check ic = {"owners", "which belongs to", rec_owner, false};

        return check_index(ks, txn, ks->owners, &ic, ret_error);
}

/* Every children entry is under an existing key and names an existing key
 * created through it. */
static int check_children(struct keystore *ks, MDB_txn *txn, char **ret_error)
{
        static const struct index_check ic = {"children", "created through", rec_parent, true};

        if (ks->no_children)
                return 0;
        return check_index(ks, txn, ks->children, &ic, ret_error);
}

int keystore_check_indexes(struct keystore *ks, char **ret_error)
{
        MDB_txn *txn;
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (!ks)
                return -EINVAL;

        r = read_begin(ks, &txn);
        if (r < 0)
                return r;
        /* Records to indexes, then each index back to the records: together
         * they show the three databases describe the same set of keys. */
        r = check_keys(ks, txn, ret_error);
        if (r >= 0)
                r = check_names(ks, txn, ret_error);
        if (r >= 0)
                r = check_owners(ks, txn, ret_error);
        if (r >= 0)
                r = check_children(ks, txn, ret_error);
        read_end(ks);
        return r;
}
