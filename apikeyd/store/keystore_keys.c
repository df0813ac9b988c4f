/* SPDX-License-Identifier: MIT */
/*
 * Keys and their indexes: a record under its id in keys, with its names
 * (owner NUL name), owners and children entries kept in step in the same
 * write.  Putting keys (with the per-owner limit), reading them (a copy, or
 * a view into the map), updating them, changing their status (revoking a
 * key revokes every key created through it), deleting them, walking their
 * lineage and children, and recording when they were last used.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "keystore_internal.h"

int decode_entry(const MDB_val *k, const MDB_val *v, struct key_record *ret)
{
        int r;

        if (k->mv_size != TOKEN_ID_LEN)
                return -EBADMSG;
        r = record_decode(v->mv_data, v->mv_size, ret);
        /* A newer record format needs a newer schema, which open refused:
         * inside a store we accepted, any decode failure is damage. */
        if (r < 0)
                return -EBADMSG;
        if (!val_is_id(k, ret->id))
                return -EBADMSG;
        return 0;
}

size_t name_key(char buf[static NAME_KEY_MAX], const char *owner, const char *name)
{
        size_t o = strlen(owner), n = strlen(name);

        memcpy(buf, owner, o);
        buf[o] = '\0';
        memcpy(buf + o + 1, name, n);
        return o + 1 + n;
}

/*
 * The record under `id` in a write transaction, decoded from a private copy:
 * a view into the map would go stale at the transaction's next write.
 */
int copy_record(struct keystore *ks, MDB_txn *txn, const char *id, void **ret_storage,
                struct key_record *ret)
{
        _cleanup_free_ void *copy = NULL;
        MDB_val k = {TOKEN_ID_LEN, (void *)id}, v;
        int rc, r;

        rc = mdb_get(txn, ks->keys, &k, &v);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);

        copy = malloc(v.mv_size ? v.mv_size : 1);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, v.mv_data, v.mv_size);

        r = decode_entry(&k, &(MDB_val){v.mv_size, copy}, ret);
        if (r < 0)
                return r;
        *ret_storage = TAKE_PTR(copy);
        return 0;
}

int put_encoded(struct keystore *ks, MDB_txn *txn, const struct key_record *rec, unsigned flags,
                void **ret_buf, size_t *ret_len)
{
        _cleanup_free_ void *buf = NULL;
        size_t len;
        int rc, r;

        r = record_encode(rec, &buf, &len);
        if (r < 0)
                return r;

        rc = mdb_put(txn, ks->keys, &(MDB_val){TOKEN_ID_LEN, (void *)rec->id}, &(MDB_val){len, buf},
                     flags);
        if (rc == MDB_KEYEXIST)
                return -ENOTUNIQ;
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);

        if (ret_buf) {
                *ret_buf = TAKE_PTR(buf);
                *ret_len = len;
        }
        return 0;
}

int names_add(struct keystore *ks, MDB_txn *txn, const struct key_record *rec)
{
        char nk[NAME_KEY_MAX];
        MDB_val k = {name_key(nk, rec->owner, rec->name), nk};
        int rc;

        rc =
            mdb_put(txn, ks->names, &k, &(MDB_val){TOKEN_ID_LEN, (void *)rec->id}, MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST)
                return -EEXIST;
        return ks_err(ks, rc);
}

/* Remove the names entry of `rec`, but only if it is this key's. */
int names_remove(struct keystore *ks, MDB_txn *txn, const struct key_record *rec)
{
        char nk[NAME_KEY_MAX];
        MDB_val k = {name_key(nk, rec->owner, rec->name), nk}, v;
        int rc;

        rc = mdb_get(txn, ks->names, &k, &v);
        if (rc == MDB_NOTFOUND)
                return 0;
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        if (!val_is_id(&v, rec->id))
                return 0;
        return ks_err(ks, mdb_del(txn, ks->names, &k, NULL));
}

static int index_add(struct keystore *ks, MDB_txn *txn, const struct key_record *rec)
{
        int rc, r;

        r = names_add(ks, txn, rec);
        if (r < 0)
                return r;
        rc = mdb_put(txn, ks->owners, &(MDB_val){strlen(rec->owner), (void *)rec->owner},
                     &(MDB_val){TOKEN_ID_LEN, (void *)rec->id}, MDB_NODUPDATA);
        /* Already there is what we want. */
        if (rc == MDB_KEYEXIST)
                return 0;
        return ks_err(ks, rc);
}

static int index_remove(struct keystore *ks, MDB_txn *txn, const struct key_record *rec)
{
        int rc, r;

        r = names_remove(ks, txn, rec);
        if (r < 0)
                return r;
        rc = mdb_del(txn, ks->owners, &(MDB_val){strlen(rec->owner), (void *)rec->owner},
                     &(MDB_val){TOKEN_ID_LEN, (void *)rec->id});
        if (rc == MDB_NOTFOUND)
                return 0;
        return ks_err(ks, rc);
}

/* Remove every entry of `dbi` whose value is `id`: for a record we cannot decode. */
static int index_scrub(struct keystore *ks, MDB_txn *txn, MDB_dbi dbi, const char *id)
{
        _cleanup_cursor_ MDB_cursor *c = NULL;
        MDB_val k, v;
        int rc;

        rc = mdb_cursor_open(txn, dbi, &c);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                if (!val_is_id(&v, id))
                        continue;
                rc = mdb_cursor_del(c, 0);
                if (rc != MDB_SUCCESS)
                        return ks_err(ks, rc);
        }
        return rc == MDB_NOTFOUND ? 0 : ks_err(ks, rc);
}

/* ---- keys ---- */

static int put_in(struct keystore *ks, MDB_txn *txn, const struct key_record *rec)
{
        int r;

        r = put_encoded(ks, txn, rec, MDB_NOOVERWRITE, NULL, NULL);
        if (r < 0)
                return r;
        r = index_add(ks, txn, rec);
        if (r < 0 || !rec->parent[0])
                return r;
        return ks_err(ks, mdb_put(txn, ks->children, &(MDB_val){TOKEN_ID_LEN, (void *)rec->parent},
                                  &(MDB_val){TOKEN_ID_LEN, (void *)rec->id}, MDB_NODUPDATA));
}

int put_key_in(struct keystore *ks, MDB_txn *txn, const struct key_record *rec)
{
        return put_in(ks, txn, rec);
}

struct put_ctx {
        const struct key_record *recs;
        size_t n;
        uint64_t max_owned; /* 0 = no limit */
};

/* The keys of `owner` that are not revoked and, as `like`, invited or not, in `txn`. */
static int count_owned_in(struct keystore *ks, MDB_txn *txn, const char *owner,
                          const struct key_record *like, uint64_t *ret)
{
        _cleanup_cursor_ MDB_cursor *c = NULL;
        MDB_val k = {strlen(owner), (void *)owner}, v;
        uint64_t n = 0;
        int rc, r;

        rc = mdb_cursor_open(txn, ks->owners, &c);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY); rc == MDB_SUCCESS;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT_DUP)) {
                struct key_record rec;
                MDB_val rv;

                if (v.mv_size != TOKEN_ID_LEN)
                        return -EBADMSG;
                rc = mdb_get(txn, ks->keys, &v, &rv);
                if (rc != MDB_SUCCESS)
                        return rc == MDB_NOTFOUND ? -EBADMSG : ks_err(ks, rc);
                r = decode_entry(&v, &rv, &rec);
                if (r < 0)
                        return r;
                if (rec.status != KEY_STATUS_REVOKED &&
                    !((rec.flags ^ like->flags) & KEY_FLAG_NO_LOGIN))
                        n++;
        }
        if (rc != MDB_NOTFOUND)
                return ks_err(ks, rc);
        *ret = n;
        return 0;
}

static int put_keys_in(struct keystore *ks, MDB_txn *txn, void *userdata)
{
        struct put_ctx *c = userdata;

        for (size_t i = 0; i < c->n; i++) {
                int r;

                if (c->max_owned) {
                        uint64_t n;

                        r = count_owned_in(ks, txn, c->recs[i].owner, &c->recs[i], &n);
                        if (r < 0)
                                return r;
                        if (n >= c->max_owned)
                                return -EDQUOT;
                }
                r = put_in(ks, txn, &c->recs[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

int keystore_put_keys(struct keystore *ks, const struct key_record *recs, size_t n)
{
        struct put_ctx c = {recs, n, 0};

        if (!ks || (n > 0 && !recs))
                return -EINVAL;
        /* Refuse an invalid batch before any transaction is opened. */
        for (size_t i = 0; i < n; i++)
                if (record_validate(&recs[i]) < 0)
                        return -EINVAL;
        if (n == 0)
                return 0;
        return write_txn(ks, put_keys_in, &c);
}

int keystore_put_key(struct keystore *ks, const struct key_record *rec)
{
        if (!rec)
                return -EINVAL;
        return keystore_put_keys(ks, rec, 1);
}

int keystore_put_key_limited(struct keystore *ks, const struct key_record *rec, uint64_t max_owned)
{
        struct put_ctx c = {rec, 1, max_owned};

        if (!ks || !rec)
                return -EINVAL;
        if (record_validate(rec) < 0)
                return -EINVAL;
        return write_txn(ks, put_keys_in, &c);
}

/* Hand a freshly encoded record out as a view into its own buffer. */
static int hand_out(void *buf, size_t len, struct key_record *ret, void **ret_storage)
{
        _cleanup_free_ void *owned = buf;
        int r;

        if (!ret)
                return 0;
        r = record_decode(owned, len, ret);
        if (r < 0)
                return r;
        *ret_storage = TAKE_PTR(owned);
        return 0;
}

static int get_in(struct keystore *ks, MDB_txn *txn, const char *id, void **ret_buf,
                  size_t *ret_len)
{
        _cleanup_free_ void *copy = NULL;
        struct key_record rec;
        MDB_val k = {TOKEN_ID_LEN, (void *)id}, v;
        int rc, r;

        rc = mdb_get(txn, ks->keys, &k, &v);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        r = decode_entry(&k, &v, &rec);
        if (r < 0)
                return r;
        if (!ret_buf)
                return 0;

        copy = malloc(v.mv_size);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, v.mv_data, v.mv_size);
        *ret_buf = TAKE_PTR(copy);
        *ret_len = v.mv_size;
        return 0;
}

int keystore_get(struct keystore *ks, const char *id, struct key_record *ret, void **ret_storage)
{
        MDB_txn *txn;
        void *buf = NULL;
        size_t len = 0;
        int r;

        if (!ks || (ret && !ret_storage))
                return -EINVAL;
        if (!token_id_valid(id))
                return -EINVAL;

        r = read_begin(ks, &txn);
        if (r < 0)
                return r;
        r = get_in(ks, txn, id, ret ? &buf : NULL, &len);
        read_end(ks);
        if (r < 0)
                return r;
        return hand_out(buf, len, ret, ret_storage);
}

int keystore_view(struct keystore *ks, const char *id, struct key_view *ret)
{
        MDB_val k = {TOKEN_ID_LEN, (void *)id}, v;
        MDB_txn *txn;
        int rc, r;

        ret->ks = NULL;
        if (!ks || !token_id_valid(id))
                return -EINVAL;
        r = read_begin(ks, &txn);
        if (r < 0)
                return r;
        rc = mdb_get(txn, ks->keys, &k, &v);
        r = rc == MDB_SUCCESS ? decode_entry(&k, &v, &ret->rec) : ks_err(ks, rc);
        if (r < 0) {
                read_end(ks);
                return r;
        }
        ret->ks = ks;
        return 0;
}

void key_view_end(struct key_view *v)
{
        if (v->ks) {
                read_end(v->ks);
                v->ks = NULL;
        }
}

struct change_ctx {
        const char *id;
        const struct key_update *upd; /* update */
        enum key_status status;       /* set_status */
        void *buf;                    /* the record as it stands after the change */
        size_t len;
};

static void change_reset(struct change_ctx *c)
{
        free(c->buf);
        c->buf = NULL;
        c->len = 0;
}

static int update_in(struct keystore *ks, MDB_txn *txn, void *userdata)
{
        struct change_ctx *c = userdata;
        const struct key_update *u = c->upd;
        _cleanup_free_ void *old_storage = NULL;
        struct key_record old, rec;
        int r;

        change_reset(c);
        r = copy_record(ks, txn, c->id, &old_storage, &old);
        if (r < 0)
                return r;
        if (old.status == KEY_STATUS_REVOKED)
                return -ESTALE;

        rec = old;
        if (u->fields & KEY_UPDATE_NAME)
                rec.name = u->name;
        if (u->fields & KEY_UPDATE_DESCRIPTION)
                rec.description = u->description;
        if (u->fields & KEY_UPDATE_SCOPE) {
                rec.n_scope = u->n_scope;
                for (size_t i = 0; i < u->n_scope; i++)
                        rec.scope[i] = u->scope[i];
        }
        if (u->fields & KEY_UPDATE_PERMISSIONS) {
                rec.role = u->role;
                rec.permissions = u->permissions;
        }
        if (u->fields & KEY_UPDATE_EXPIRES)
                rec.expires_at = u->expires_at;
        if (u->fields & KEY_UPDATE_NOT_BEFORE)
                rec.not_before = u->not_before;
        if (u->fields & KEY_UPDATE_SOURCES) {
                rec.n_sources = u->n_sources;
                for (size_t i = 0; i < u->n_sources; i++)
                        rec.sources[i] = u->sources[i];
        }

        if (record_validate(&rec) < 0)
                return -EINVAL;

        if (!STREQ(rec.name, old.name)) {
                r = names_add(ks, txn, &rec);
                if (r < 0)
                        return r;
                r = names_remove(ks, txn, &old);
                if (r < 0)
                        return r;
        }
        return put_encoded(ks, txn, &rec, 0, &c->buf, &c->len);
}

int keystore_update_key(struct keystore *ks, const char *id, const struct key_update *upd,
                        struct key_record *ret, void **ret_storage)
{
        struct change_ctx c = {.id = id, .upd = upd};
        int r;

        if (!ks || !upd || (ret && !ret_storage))
                return -EINVAL;
        if (!token_id_valid(id))
                return -EINVAL;
        if (upd->fields & ~(unsigned)(KEY_UPDATE_NAME | KEY_UPDATE_DESCRIPTION | KEY_UPDATE_SCOPE |
                                      KEY_UPDATE_PERMISSIONS | KEY_UPDATE_EXPIRES |
                                      KEY_UPDATE_NOT_BEFORE | KEY_UPDATE_SOURCES))
                return -EINVAL;
        if ((upd->fields & KEY_UPDATE_SOURCES) &&
            (upd->n_sources > KEY_SOURCES_MAX || (upd->n_sources > 0 && !upd->sources)))
                return -EINVAL;
        if ((upd->fields & KEY_UPDATE_SCOPE) &&
            (upd->n_scope > KEY_SCOPE_MAX || (upd->n_scope > 0 && !upd->scope)))
                return -EINVAL;

        r = write_txn(ks, update_in, &c);
        if (r < 0) {
                change_reset(&c);
                return r;
        }
        return hand_out(c.buf, c.len, ret, ret_storage);
}

/* The ids of the keys created through `id` (the children index), in a new array. */
int children_in(struct keystore *ks, MDB_txn *txn, const char *id, char (**ret)[TOKEN_ID_LEN],
                size_t *ret_n)
{
        _cleanup_cursor_ MDB_cursor *c = NULL;
        MDB_val k = {TOKEN_ID_LEN, (void *)id}, v;
        char(*ids)[TOKEN_ID_LEN] = NULL;
        size_t n = 0, cap = 0;
        int rc;

        *ret = NULL;
        *ret_n = 0;
        if (ks->no_children)
                return 0;
        rc = mdb_cursor_open(txn, ks->children, &c);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY); rc == MDB_SUCCESS;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT_DUP)) {
                if (v.mv_size != TOKEN_ID_LEN) {
                        free(ids);
                        return -EBADMSG;
                }
                if (n == cap) {
                        void *grown = reallocarray(ids, cap ? cap * 2 : 8, sizeof(*ids));
                        if (!grown) {
                                free(ids);
                                return -ENOMEM;
                        }
                        ids = grown;
                        cap = cap ? cap * 2 : 8;
                }
                memcpy(ids[n++], v.mv_data, TOKEN_ID_LEN);
        }
        if (rc != MDB_NOTFOUND) {
                free(ids);
                return ks_err(ks, rc);
        }
        *ret = ids;
        *ret_n = n;
        return 0;
}

/*
 * Revoke every key created through `id`, and those created through them,
 * in `txn`; `*n` counts the keys this revoked.  A chain deeper than
 * KEY_LINEAGE_MAX cannot be made (keystore_lineage() refuses it), so
 * meeting one is damage.
 */
static int revoke_descendants(struct keystore *ks, MDB_txn *txn, const char *id, unsigned depth,
                              size_t *n)
{
        _cleanup_free_ char(*ids)[TOKEN_ID_LEN] = NULL;
        size_t n_ids;
        int r;

        if (depth > KEY_LINEAGE_MAX)
                return -ELOOP;
        r = children_in(ks, txn, id, &ids, &n_ids);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_ids; i++) {
                _cleanup_free_ void *storage = NULL;
                char child[TOKEN_ID_LEN + 1];
                struct key_record rec;

                memcpy(child, ids[i], TOKEN_ID_LEN);
                child[TOKEN_ID_LEN] = '\0';
                r = copy_record(ks, txn, child, &storage, &rec);
                if (r == -ENOENT)
                        continue; /* deleted: nothing left to revoke */
                if (r < 0)
                        return r;
                if (rec.status != KEY_STATUS_REVOKED) {
                        rec.status = KEY_STATUS_REVOKED;
                        r = put_encoded(ks, txn, &rec, 0, NULL, NULL);
                        if (r < 0)
                                return r;
                        (*n)++;
                }
                r = revoke_descendants(ks, txn, child, depth + 1, n);
                if (r < 0)
                        return r;
        }
        return 0;
}

struct status_ctx {
        struct change_ctx c;
        struct key_status_change *sc;
};

static int set_status_in(struct keystore *ks, MDB_txn *txn, void *userdata)
{
        struct status_ctx *s = userdata;
        struct change_ctx *c = &s->c;
        _cleanup_free_ void *old_storage = NULL;
        struct key_record rec;
        uint8_t flags;
        int r;

        change_reset(c);
        s->sc->ret_revoked = 0;
        r = copy_record(ks, txn, c->id, &old_storage, &rec);
        if (r < 0)
                return r;
        if (rec.status == KEY_STATUS_REVOKED && c->status != KEY_STATUS_REVOKED)
                return -ESTALE;
        /* Checked here, in the write, so an admin's Disable racing the
         * owner's Enable cannot be undone by it. */
        if (c->status == KEY_STATUS_ENABLED && (rec.flags & KEY_FLAG_ADMIN_DISABLED) &&
            !s->sc->by_admin)
                return -EPERM;
        if (s->sc->unused_before) {
                uint64_t since =
                    rec.last_used_at > rec.created_at ? rec.last_used_at : rec.created_at;
                if (rec.not_before > since)
                        since = rec.not_before;
                if (c->status != KEY_STATUS_DISABLED || rec.status != KEY_STATUS_ENABLED ||
                    since >= s->sc->unused_before)
                        return -EALREADY;
        }
        if (c->status == KEY_STATUS_REVOKED) {
                r = revoke_descendants(ks, txn, c->id, 1, &s->sc->ret_revoked);
                if (r < 0)
                        return r;
        }

        flags = rec.flags;
        if (c->status == KEY_STATUS_ENABLED)
                flags &= (uint8_t)~KEY_FLAG_ADMIN_DISABLED;
        else if (c->status == KEY_STATUS_DISABLED && s->sc->by_admin)
                flags |= KEY_FLAG_ADMIN_DISABLED;
        /* Why the daemon disabled it; an Enable (or a Revoke) ends that. */
        const char *reason = rec.disabled_reason;
        if (c->status != KEY_STATUS_DISABLED)
                reason = NULL;
        else if (s->sc->reason && rec.status == KEY_STATUS_ENABLED)
                reason = s->sc->reason;
        if (rec.status != c->status || rec.flags != flags || reason != rec.disabled_reason) {
                rec.status = (uint8_t)c->status;
                rec.flags = flags;
                rec.disabled_reason = reason;
                return put_encoded(ks, txn, &rec, 0, &c->buf, &c->len);
        }
        /* Nothing to change; the caller still gets the record. */
        return record_encode(&rec, &c->buf, &c->len);
}

int keystore_change_status(struct keystore *ks, const char *id, struct key_status_change *sc,
                           struct key_record *ret, void **ret_storage)
{
        struct status_ctx s = {.c = {.id = id, .status = sc ? sc->status : 0}, .sc = sc};
        int r;

        if (!ks || !sc || (ret && !ret_storage))
                return -EINVAL;
        if (!token_id_valid(id))
                return -EINVAL;
        if (sc->status != KEY_STATUS_ENABLED && sc->status != KEY_STATUS_DISABLED &&
            sc->status != KEY_STATUS_REVOKED)
                return -EINVAL;

        r = write_txn(ks, set_status_in, &s);
        if (r < 0) {
                change_reset(&s.c);
                return r;
        }
        return hand_out(s.c.buf, s.c.len, ret, ret_storage);
}

int keystore_set_status(struct keystore *ks, const char *id, enum key_status status,
                        struct key_record *ret, void **ret_storage)
{
        struct key_status_change sc = {.status = status};

        return keystore_change_status(ks, id, &sc, ret, ret_storage);
}

struct delete_ctx {
        const char *id;
        size_t *ret_revoked;
};

static int delete_in(struct keystore *ks, MDB_txn *txn, void *userdata)
{
        struct delete_ctx *d = userdata;
        const char *id = d->id;
        _cleanup_free_ void *storage = NULL;
        struct key_record rec;
        int rc, r;

        *d->ret_revoked = 0;
        r = copy_record(ks, txn, id, &storage, &rec);
        if (r == -ENOENT)
                return r;
        if (r >= 0) {
                r = index_remove(ks, txn, &rec);
                if (r >= 0 && rec.parent[0] && !ks->no_children) {
                        rc =
                            mdb_del(txn, ks->children, &(MDB_val){TOKEN_ID_LEN, (void *)rec.parent},
                                    &(MDB_val){TOKEN_ID_LEN, (void *)id});
                        r = rc == MDB_NOTFOUND ? 0 : ks_err(ks, rc);
                }
        } else if (r == -EBADMSG) {
                /* Without the record we do not know its owner and name: find its
                 * index entries by value, so deleting is how a damaged key is removed. */
                r = index_scrub(ks, txn, ks->names, id);
                if (r >= 0)
                        r = index_scrub(ks, txn, ks->owners, id);
                if (r >= 0 && !ks->no_children)
                        r = index_scrub(ks, txn, ks->children, id);
        }
        if (r < 0)
                return r;
        /* The keys created through it die with it; they stay listed, revoked. */
        r = revoke_descendants(ks, txn, id, 1, d->ret_revoked);
        if (r < 0)
                return r;
        if (!ks->no_children) {
                rc = mdb_del(txn, ks->children, &(MDB_val){TOKEN_ID_LEN, (void *)id}, NULL);
                if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
                        return ks_err(ks, rc);
        }
        r = usage_delete_in(ks, txn, id);
        if (r < 0)
                return r;
        return ks_err(ks, mdb_del(txn, ks->keys, &(MDB_val){TOKEN_ID_LEN, (void *)id}, NULL));
}

int keystore_delete_tree(struct keystore *ks, const char *id, size_t *ret_revoked)
{
        size_t n = 0;
        struct delete_ctx d = {.id = id, .ret_revoked = ret_revoked ? ret_revoked : &n};

        if (!ks || !token_id_valid(id))
                return -EINVAL;
        return write_txn(ks, delete_in, &d);
}

int keystore_delete_key(struct keystore *ks, const char *id)
{
        return keystore_delete_tree(ks, id, NULL);
}

int keystore_lineage(struct keystore *ks, const struct key_record *rec, uint64_t now,
                     char ret_blocked[TOKEN_ID_LEN + 1], unsigned *ret_depth)
{
        char id[TOKEN_ID_LEN + 1];
        unsigned depth = 0;
        MDB_txn *txn;
        int r, blocked = 0;

        ret_blocked[0] = '\0';
        if (ret_depth)
                *ret_depth = 0;
        if (!rec->parent[0])
                return 0;
        r = read_begin(ks, &txn);
        if (r < 0)
                return r;
        memcpy(id, rec->parent, sizeof(id));
        while (id[0]) {
                MDB_val k = {TOKEN_ID_LEN, id}, v;
                struct key_record up;
                int rc;

                if (++depth > KEY_LINEAGE_MAX) {
                        blocked = 1;
                        break;
                }
                rc = mdb_get(txn, ks->keys, &k, &v);
                if (rc == MDB_NOTFOUND) {
                        blocked = 1; /* deleted: its children were revoked with it */
                        break;
                }
                r = rc == MDB_SUCCESS ? decode_entry(&k, &v, &up) : ks_err(ks, rc);
                if (r < 0) {
                        read_end(ks);
                        return r;
                }
                if (record_effective_status(&up, now) != KEY_STATUS_ENABLED) {
                        blocked = 1;
                        break;
                }
                memcpy(id, up.parent, sizeof(id));
        }
        read_end(ks);
        if (blocked)
                memcpy(ret_blocked, id, TOKEN_ID_LEN + 1);
        if (ret_depth)
                *ret_depth = depth;
        return blocked;
}

int keystore_children(struct keystore *ks, const char *id, char (*ret)[TOKEN_ID_LEN + 1],
                      size_t max, size_t *ret_n)
{
        _cleanup_free_ char(*ids)[TOKEN_ID_LEN] = NULL;
        size_t n;
        MDB_txn *txn;
        int r;

        if (!ks || !token_id_valid(id) || !ret_n)
                return -EINVAL;
        r = read_begin(ks, &txn);
        if (r < 0)
                return r;
        r = children_in(ks, txn, id, &ids, &n);
        read_end(ks);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n && i < max; i++) {
                memcpy(ret[i], ids[i], TOKEN_ID_LEN);
                ret[i][TOKEN_ID_LEN] = '\0';
        }
        *ret_n = n;
        return 0;
}

/* ---- last used ---- */

/* `s` cut to KEY_FIELD_MAX bytes, at a UTF-8 character boundary; NULL for "". */
static const char *clip_field(const char *s, char buf[static KEY_FIELD_MAX + 1])
{
        size_t n;

        if (!s || !*s)
                return NULL;
        n = strnlen(s, KEY_FIELD_MAX + 1);
        if (n <= KEY_FIELD_MAX)
                return s;
        n = KEY_FIELD_MAX;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
                n--;
        memcpy(buf, s, n);
        buf[n] = '\0';
        return buf;
}

struct last_used_ctx {
        const struct last_used *entries;
        size_t n;
};

static int last_used_one(struct keystore *ks, MDB_txn *txn, const struct last_used *e)
{
        _cleanup_free_ void *storage = NULL;
        char service[KEY_FIELD_MAX + 1], from[KEY_FIELD_MAX + 1];
        struct key_record rec;
        int r;

        if (!token_id_valid(e->id))
                return 0;
        r = copy_record(ks, txn, e->id, &storage, &rec);
        /* Gone since it was used, or unreadable: losing a last-used time is
         * better than losing the whole batch. */
        if (r == -ENOENT || r == -EBADMSG)
                return 0;
        if (r < 0)
                return r;
        /* Batches may arrive out of order; a use never moves back in time. */
        if (e->at < rec.last_used_at)
                return 0;

        rec.last_used_at = e->at;
        rec.last_used_service = clip_field(e->service, service);
        rec.last_used_from = clip_field(e->from, from);
        r = put_encoded(ks, txn, &rec, 0, NULL, NULL);
        /* A use the record cannot store (not text_valid()) is dropped, not the batch. */
        return r == -EINVAL ? 0 : r;
}

static int last_used_in(struct keystore *ks, MDB_txn *txn, void *userdata)
{
        struct last_used_ctx *c = userdata;

        for (size_t i = 0; i < c->n; i++) {
                int r = last_used_one(ks, txn, &c->entries[i]);

                if (r < 0)
                        return r;
        }
        return 0;
}

int keystore_record_last_used(struct keystore *ks, const struct last_used *entries, size_t n)
{
        struct last_used_ctx c = {entries, n};

        if (!ks || (n > 0 && !entries))
                return -EINVAL;
        if (n == 0)
                return 0;
        return write_txn(ks, last_used_in, &c);
}
