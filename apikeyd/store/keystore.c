/* SPDX-License-Identifier: MIT */
/*
 * The keystore on LMDB: the environment and its six databases, the schema
 * check at open, every write as one transaction (growing the map when it
 * fills up), the names and owners indexes kept in step with the records,
 * the bounded audit log and the consistency check over all of it.
 *
 * Reads reuse one read-only transaction per handle, reset after each use
 * and renewed before the next: a lookup keeps its reader slot instead of
 * claiming one under the lock file's mutex every time, yet holds no
 * snapshot (and so pins no old pages) between calls.
 *
 * Reads may run on one thread while keystore_write_group() runs on
 * another.  Both look into the memory map, which resizing replaces: a
 * read or a write transaction holds `map_lock` shared, a resize holds it
 * exclusively.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lmdb.h>

#include "keystore_internal.h"

#define KEYSTORE_MAXDBS 7
/* Doublings a single write may ask for: a bulk load into a small map needs several. */
#define KEYSTORE_MAX_GROWTH 16
#define SCHEMA_KEY          "schema"

int mdb_to_errno(int rc)
{
        switch (rc) {
        case MDB_SUCCESS:
                return 0;
        case MDB_NOTFOUND:
                return -ENOENT;
        case MDB_KEYEXIST:
                return -EEXIST;
        case MDB_MAP_FULL:
                return -ENOSPC;
        case MDB_CORRUPTED:
        case MDB_PAGE_NOTFOUND:
        case MDB_INVALID:
        case MDB_INCOMPATIBLE:
                return -EBADMSG;
        case MDB_VERSION_MISMATCH:
                return -EPROTONOSUPPORT;
        case MDB_TXN_FULL:
                return -E2BIG;
        case MDB_BAD_VALSIZE:
                return -EINVAL;
        }
        /* LMDB passes system errors through as positive errno values. */
        return rc > 0 ? -rc : -EIO;
}

int ks_err(struct keystore *ks, int rc)
{
        if (rc == MDB_MAP_FULL)
                ks->map_full = true;
        return mdb_to_errno(rc);
}

static _printf_(2, 0) void set_errorv(char **ret_error, const char *fmt, va_list ap)
{
        if (!ret_error)
                return;
        free(*ret_error);
        if (vasprintf(ret_error, fmt, ap) < 0)
                *ret_error = NULL;
}

static _printf_(2, 3) void set_error(char **ret_error, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        set_errorv(ret_error, fmt, ap);
        va_end(ap);
}

/* Describe the failure in `*ret_error` and return `r`. */
_printf_(3, 4) int fail_with(char **ret_error, int r, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        set_errorv(ret_error, fmt, ap);
        va_end(ap);
        return r;
}

static void map_share(struct keystore *ks)
{
        (void)pthread_rwlock_rdlock(&ks->map_lock);
}

static void map_unlock(struct keystore *ks)
{
        (void)pthread_rwlock_unlock(&ks->map_lock);
}

void drop_read_txn(struct keystore *ks)
{
        if (ks->rtxn) {
                mdb_txn_abort(ks->rtxn);
                ks->rtxn = NULL;
        }
}

/* Resize to `size` (0: the size another process set); the caller holds no transaction. */
static int resize_map(struct keystore *ks, size_t size)
{
        int rc;

        /* Exclusive: no thread may be looking into the old map.  The read
         * transaction is idle then (read_depth is 0), whoever's it is. */
        (void)pthread_rwlock_wrlock(&ks->map_lock);
        drop_read_txn(ks);
        rc = mdb_env_set_mapsize(ks->env, size);
        map_unlock(ks);
        return ks_err(ks, rc);
}

/* Another process grew the map beyond ours: adopt its size. */
static int adopt_mapsize(struct keystore *ks)
{
        return resize_map(ks, 0);
}

static int grow_map(struct keystore *ks)
{
        MDB_envinfo info;
        int rc;

        rc = mdb_env_info(ks->env, &info);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        if (info.me_mapsize > SIZE_MAX / 2)
                return -ENOSPC;
        return resize_map(ks, info.me_mapsize * 2);
}

int read_begin(struct keystore *ks, MDB_txn **ret)
{
        MDB_txn *txn;
        int rc;

        if (ks->read_depth > 0) {
                ks->read_depth++;
                *ret = ks->rtxn;
                return 0;
        }

        map_share(ks);
        if (ks->rtxn) {
                rc = mdb_txn_renew(ks->rtxn);
                if (rc != MDB_SUCCESS)
                        drop_read_txn(ks);
        }
        if (!ks->rtxn) {
                rc = mdb_txn_begin(ks->env, NULL, MDB_RDONLY, &txn);
                if (rc == MDB_MAP_RESIZED) {
                        int r;

                        map_unlock(ks);
                        r = adopt_mapsize(ks);
                        if (r < 0)
                                return r;
                        map_share(ks);
                        rc = mdb_txn_begin(ks->env, NULL, MDB_RDONLY, &txn);
                }
                if (rc != MDB_SUCCESS) {
                        map_unlock(ks);
                        return ks_err(ks, rc);
                }
                ks->rtxn = txn;
        }

        ks->read_depth = 1;
        *ret = ks->rtxn;
        return 0;
}

void read_end(struct keystore *ks)
{
        if (--ks->read_depth == 0) {
                mdb_txn_reset(ks->rtxn);
                map_unlock(ks);
        }
}

static int write_txn_once(struct keystore *ks, write_fn fn, void *userdata);

int write_txn(struct keystore *ks, write_fn fn, void *userdata)
{
        int r = write_txn_once(ks, fn, userdata);

        /* An attached audit event belongs to this write alone, done or not. */
        drop_next_audit(ks);
        return r;
}

/* The body and the attached audit event, in `txn`. */
static int write_body(struct keystore *ks, MDB_txn *txn, write_fn fn, void *userdata)
{
        int r = fn(ks, txn, userdata);

        if (r >= 0 && ks->next_audit) {
                struct audit_ctx ac = {ks->next_audit, ks->next_audit_len, ks->next_audit_admin};
                int k = append_audit_in(ks, txn, &ac);
                if (k < 0)
                        r = k;
        }
        return r;
}

/* One change of a group, in a transaction nested in the group's: undone alone if it fails. */
static int write_nested(struct keystore *ks, write_fn fn, void *userdata)
{
        MDB_txn *txn;
        int rc, r;

        rc = mdb_txn_begin(ks->env, ks->group, 0, &txn);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        r = write_body(ks, txn, fn, userdata);
        if (r < 0) {
                mdb_txn_abort(txn);
                return r;
        }
        rc = mdb_txn_commit(txn);
        if (rc != MDB_SUCCESS) {
                ks->group_broken = true;
                return ks_err(ks, rc);
        }
        return r;
}

/*
 * Begin a write transaction with the map held shared (map_unlock() after
 * commit or abort); a map another process grew is adopted first.
 */
static int write_begin(struct keystore *ks, MDB_txn **ret)
{
        for (bool adopted = false;;) {
                int rc, r;

                map_share(ks);
                rc = mdb_txn_begin(ks->env, NULL, 0, ret);
                if (rc == MDB_SUCCESS)
                        return 0;
                map_unlock(ks);
                if (rc != MDB_MAP_RESIZED || adopted)
                        return ks_err(ks, rc);
                adopted = true;
                r = adopt_mapsize(ks);
                if (r < 0)
                        return r;
        }
}

static int write_txn_once(struct keystore *ks, write_fn fn, void *userdata)
{
        if (ks->flags & KEYSTORE_READONLY)
                return -EROFS;
        if (ks->group)
                return write_nested(ks, fn, userdata);
        /* A list callback writing would pull the snapshot from under its own
         * walk.  (A group's writes run on their own thread, beside reads.) */
        if (!ks->grouping && ks->read_depth > 0)
                return -EBUSY;

        for (unsigned growth = 0;;) {
                MDB_txn *txn;
                int rc, r;

                r = write_begin(ks, &txn);
                if (r < 0)
                        return r;
                ks->map_full = false;
                r = write_body(ks, txn, fn, userdata);
                if (r < 0)
                        mdb_txn_abort(txn);
                else {
                        rc = mdb_txn_commit(txn);
                        if (rc != MDB_SUCCESS)
                                r = ks_err(ks, rc);
                }
                map_unlock(ks);
                if (r >= 0 || !ks->map_full || growth++ >= KEYSTORE_MAX_GROWTH)
                        return r;

                r = grow_map(ks);
                if (r < 0)
                        return r;
        }
}

static void group_fail(struct keystore_change *changes, size_t n, int r)
{
        for (size_t i = 0; i < n; i++)
                if (changes[i].result >= 0)
                        changes[i].result = r;
}

/* Each change in a transaction of its own: when a group cannot be committed as one. */
static void group_one_by_one(struct keystore *ks, struct keystore_change *changes, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                changes[i].result = changes[i].fn(ks, changes[i].userdata);
                drop_next_audit(ks);
        }
}

static int write_group(struct keystore *ks, struct keystore_change *changes, size_t n)
{
        for (unsigned growth = 0;;) {
                MDB_txn *txn;
                int rc, r;

                r = write_begin(ks, &txn);
                if (r < 0)
                        return r;
                ks->map_full = ks->group_broken = false;
                ks->group = txn;
                for (size_t i = 0; i < n; i++) {
                        changes[i].result = changes[i].fn(ks, changes[i].userdata);
                        drop_next_audit(ks);
                }
                ks->group = NULL;

                if (ks->map_full || ks->group_broken) {
                        bool full = ks->map_full;

                        mdb_txn_abort(txn);
                        map_unlock(ks);
                        /* Past the growth we allow, each change gets its own answer. */
                        if (!full || growth++ >= KEYSTORE_MAX_GROWTH) {
                                group_one_by_one(ks, changes, n);
                                return 0;
                        }
                        r = grow_map(ks);
                        if (r < 0)
                                return r;
                        continue;
                }

                rc = mdb_txn_commit(txn);
                map_unlock(ks);
                if (rc == MDB_SUCCESS)
                        return 0;
                r = ks_err(ks, rc);
                if (!ks->map_full || growth++ >= KEYSTORE_MAX_GROWTH)
                        return r;
                r = grow_map(ks);
                if (r < 0)
                        return r;
        }
}

int keystore_write_group(struct keystore *ks, struct keystore_change *changes, size_t n)
{
        int r = 0;

        if (!ks || (n > 0 && !changes))
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                changes[i].result = 0;
        if (ks->flags & KEYSTORE_READONLY)
                r = -EROFS;
        else if (n == 0 || ks->grouping)
                r = n == 0 ? 0 : -EBUSY;
        else {
                ks->grouping = true;
                /* Alone, a change needs no nesting: its own transaction is as atomic. */
                if (n == 1)
                        group_one_by_one(ks, changes, n);
                else
                        r = write_group(ks, changes, n);
                ks->grouping = false;
        }
        if (r < 0)
                group_fail(changes, n, r);
        return r;
}

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
static int copy_record(struct keystore *ks, MDB_txn *txn, const char *id, void **ret_storage,
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

static int put_encoded(struct keystore *ks, MDB_txn *txn, const struct key_record *rec,
                       unsigned flags, void **ret_buf, size_t *ret_len)
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

static int names_add(struct keystore *ks, MDB_txn *txn, const struct key_record *rec)
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
static int names_remove(struct keystore *ks, MDB_txn *txn, const struct key_record *rec)
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

/* ---- open and close ---- */

struct open_ctx {
        const char *path;
        char **ret_error;
};

static int open_dbs(struct keystore *ks, MDB_txn *txn, bool create)
{
        const unsigned c = create ? MDB_CREATE : 0;
        const struct {
                const char *name;
                unsigned flags;
                MDB_dbi *dbi;
        } dbs[] = {
            {"keys", c, &ks->keys},
            {"names", c, &ks->names},
            {"owners", c | MDB_DUPSORT | MDB_DUPFIXED, &ks->owners},
            {"audit", c, &ks->audit},
            {"meta", c, &ks->meta},
            {"children", c | MDB_DUPSORT | MDB_DUPFIXED, &ks->children},
        };

        int rc;

        for (size_t i = 0; i < ELEMENTSOF(dbs); i++) {
                rc = mdb_dbi_open(txn, dbs[i].name, dbs[i].flags, dbs[i].dbi);
                /* Schema 1 had no children index; read-only, it is simply empty. */
                if (rc == MDB_NOTFOUND && !create && dbs[i].dbi == &ks->children) {
                        ks->no_children = true;
                        continue;
                }
                if (rc != MDB_SUCCESS)
                        return ks_err(ks, rc);
        }
        /* A store from before admins' events were kept apart has no such
         * database until it is opened for writing. */
        rc = mdb_dbi_open(txn, "audit_admin", c, &ks->audit_admin);
        if (rc == MDB_NOTFOUND && !create)
                return 0;
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        ks->has_audit_admin = true;
        return 0;
}

static int store_has_keys(struct keystore *ks, MDB_txn *txn, bool *ret)
{
        const MDB_dbi dbis[] = {ks->keys, ks->names, ks->owners};

        *ret = false;
        for (size_t i = 0; i < ELEMENTSOF(dbis); i++) {
                MDB_stat st;
                int rc = mdb_stat(txn, dbis[i], &st);

                if (rc != MDB_SUCCESS)
                        return ks_err(ks, rc);
                if (st.ms_entries > 0)
                        *ret = true;
        }
        return 0;
}

static int check_schema(struct keystore *ks, MDB_txn *txn, struct open_ctx *c)
{
        MDB_val k = {STRLEN(SCHEMA_KEY), (void *)SCHEMA_KEY}, v;
        uint32_t le, version;
        bool has_keys;
        int rc, r;

        rc = mdb_get(txn, ks->meta, &k, &v);
        if (rc == MDB_NOTFOUND) {
                r = store_has_keys(ks, txn, &has_keys);
                if (r < 0)
                        return r;
                if (has_keys) {
                        set_error(c->ret_error,
                                  "keystore %s holds keys but no schema version; refusing to "
                                  "open it",
                                  c->path);
                        return -EBADMSG;
                }
                if (ks->flags & KEYSTORE_READONLY)
                        return 0;
                le = htole32(KEYSTORE_SCHEMA_VERSION);
                return ks_err(ks, mdb_put(txn, ks->meta, &k, &(MDB_val){sizeof(le), &le}, 0));
        }
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);

        if (v.mv_size != sizeof(le)) {
                set_error(c->ret_error,
                          "keystore %s has a malformed schema version (%zu bytes, not 4)", c->path,
                          v.mv_size);
                return -EBADMSG;
        }
        memcpy(&le, v.mv_data, sizeof(le));
        version = le32toh(le);
        if (version == 0) {
                set_error(c->ret_error, "keystore %s has schema version 0, which never existed",
                          c->path);
                return -EBADMSG;
        }
        if (version > KEYSTORE_SCHEMA_VERSION) {
                set_error(c->ret_error,
                          "keystore schema version %" PRIu32
                          " is newer than this apikeyd supports (%d); refusing to open it",
                          version, KEYSTORE_SCHEMA_VERSION);
                return -EPROTONOSUPPORT;
        }
        if (version < KEYSTORE_SCHEMA_VERSION && !(ks->flags & KEYSTORE_READONLY)) {
                /* Schema 1 to 2 adds the children index, empty: no key of a
                 * schema-1 store was created through another. */
                le = htole32(KEYSTORE_SCHEMA_VERSION);
                return ks_err(ks, mdb_put(txn, ks->meta, &k, &(MDB_val){sizeof(le), &le}, 0));
        }
        return 0;
}

static int init_in(struct keystore *ks, MDB_txn *txn, void *userdata)
{
        struct open_ctx *c = userdata;
        int r;

        r = open_dbs(ks, txn, !(ks->flags & KEYSTORE_READONLY));
        if (r == -ENOENT) {
                set_error(c->ret_error, "keystore %s has not been initialized", c->path);
                return r;
        }
        if (r < 0)
                return r;
        return check_schema(ks, txn, c);
}

/* A read-only handle cannot write, so its databases are looked up in a read transaction. */
static int init_readonly(struct keystore *ks, struct open_ctx *c)
{
        MDB_txn *txn;
        int rc, r;

        rc = mdb_txn_begin(ks->env, NULL, MDB_RDONLY, &txn);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        r = init_in(ks, txn, c);
        if (r < 0) {
                mdb_txn_abort(txn);
                return r;
        }
        /* Committing keeps the database handles for the life of the environment. */
        return ks_err(ks, mdb_txn_commit(txn));
}

void keystore_close(struct keystore *ks)
{
        if (!ks)
                return;
        drop_read_txn(ks);
        drop_next_audit(ks);
        if (ks->env)
                mdb_env_close(ks->env);
        if (ks->map_lock_ready)
                (void)pthread_rwlock_destroy(&ks->map_lock);
        free(ks);
}

static int map_lock_init(struct keystore *ks)
{
        pthread_rwlockattr_t attr;
        int r;

        r = pthread_rwlockattr_init(&attr);
        if (r != 0)
                return -r;
        /* A resize waits for the reads in progress, but not for a steady
         * stream of new ones.  Readers never take the lock twice. */
        (void)pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        r = pthread_rwlock_init(&ks->map_lock, &attr);
        (void)pthread_rwlockattr_destroy(&attr);
        if (r != 0)
                return -r;
        ks->map_lock_ready = true;
        return 0;
}

static void keystore_closep(struct keystore **ks)
{
        keystore_close(*ks);
}

static int open_env(struct keystore *ks, const char *path, uint64_t mapsize, char **ret_error)
{
        unsigned flags;
        int dead, rc;

        rc = mdb_env_create(&ks->env);
        if (rc != MDB_SUCCESS) {
                ks->env = NULL;
                return mdb_to_errno(rc);
        }
        rc = mdb_env_set_maxdbs(ks->env, KEYSTORE_MAXDBS);
        if (rc == MDB_SUCCESS)
                rc = mdb_env_set_mapsize(ks->env, (size_t)mapsize);
        if (rc != MDB_SUCCESS)
                return mdb_to_errno(rc);

        /* MDB_NOTLS: the reused read transaction belongs to the handle, not to a thread. */
        flags = MDB_NOSUBDIR | MDB_NOTLS;
        if (ks->flags & KEYSTORE_NOSYNC)
                flags |= MDB_NOSYNC;
        if (ks->flags & KEYSTORE_READONLY)
                flags |= MDB_RDONLY;
        rc = mdb_env_open(ks->env, path, flags, 0600);
        if (rc != MDB_SUCCESS)
                return fail_with(ret_error, mdb_to_errno(rc), "cannot open keystore %s: %s", path,
                                 mdb_strerror(rc));

        /* A process killed inside a read transaction leaves its reader slot
         * behind, pinning old pages so the file only grows. */
        rc = mdb_reader_check(ks->env, &dead);
        if (rc != MDB_SUCCESS)
                return fail_with(ret_error, mdb_to_errno(rc),
                                 "cannot clear stale readers of keystore %s: %s", path,
                                 mdb_strerror(rc));
        return 0;
}

int keystore_open(const char *dir, const struct keystore_options *opts, struct keystore **ret,
                  char **ret_error)
{
        _cleanup_(keystore_closep) struct keystore *ks = NULL;
        _cleanup_free_ char *path = NULL;
        struct open_ctx c = {.ret_error = ret_error};
        uint64_t mapsize;
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (!dir || !*dir || !ret)
                return -EINVAL;
        if (asprintf(&path, "%s/%s", dir, KEYSTORE_FILE) < 0)
                return -ENOMEM;
        c.path = path;

        ks = calloc(1, sizeof(*ks));
        if (!ks)
                return -ENOMEM;
        r = map_lock_init(ks);
        if (r < 0)
                return r;
        ks->flags = opts ? opts->flags : 0;
        ks->audit_max = opts && opts->audit_max ? opts->audit_max : KEYSTORE_DEFAULT_AUDIT_MAX;
        mapsize = opts && opts->mapsize ? opts->mapsize : KEYSTORE_DEFAULT_MAPSIZE;
        if (mapsize > SIZE_MAX)
                return -EINVAL;

        r = open_env(ks, path, mapsize, ret_error);
        if (r >= 0 && (ks->flags & KEYSTORE_READONLY))
                r = init_readonly(ks, &c);
        else if (r >= 0)
                r = write_txn(ks, init_in, &c);
        if (r < 0) {
                if (ret_error && !*ret_error)
                        set_error(ret_error, "cannot open keystore %s: %s", path, strerror(-r));
                return r;
        }

        *ret = TAKE_PTR(ks);
        return 0;
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

struct put_ctx {
        const struct key_record *recs;
        size_t n;
        uint64_t max_owned; /* 0 = no limit */
};

/* The keys of `owner` that are not revoked, in `txn`. */
static int count_owned_in(struct keystore *ks, MDB_txn *txn, const char *owner, uint64_t *ret)
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
                if (rec.status != KEY_STATUS_REVOKED)
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

                        r = count_owned_in(ks, txn, c->recs[i].owner, &n);
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
                                      KEY_UPDATE_PERMISSIONS | KEY_UPDATE_EXPIRES))
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
static int children_in(struct keystore *ks, MDB_txn *txn, const char *id,
                       char (**ret)[TOKEN_ID_LEN], size_t *ret_n)
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
        if (rec.status != c->status || rec.flags != flags) {
                rec.status = (uint8_t)c->status;
                rec.flags = flags;
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

int keystore_compact(struct keystore **ksp, char **ret_error)
{
        struct keystore *ks = *ksp;
        _cleanup_free_ char *dir = NULL, *tmp = NULL;
        _cleanup_close_ int fd = -1, dirfd = -1;
        struct keystore_options opts;
        const char *path;
        MDB_envinfo info;
        char *slash;
        int rc, r;

        if (ks->flags & KEYSTORE_READONLY)
                return -EROFS;
        rc = mdb_env_get_path(ks->env, &path);
        if (rc == MDB_SUCCESS)
                rc = mdb_env_info(ks->env, &info);
        if (rc != MDB_SUCCESS)
                return fail_with(ret_error, mdb_to_errno(rc), "cannot compact the keystore: %s",
                                 mdb_strerror(rc));
        dir = strdup(path);
        if (!dir || asprintf(&tmp, "%s.compact", path) < 0)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (slash)
                *slash = '\0';
        dirfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return fail_with(ret_error, -errno, "cannot open %s: %m", slash ? dir : ".");
        (void)unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return fail_with(ret_error, -errno, "cannot create %s: %m", tmp);

        drop_read_txn(ks);
        rc = mdb_env_copyfd2(ks->env, fd, MDB_CP_COMPACT);
        r = rc == MDB_SUCCESS ? 0 : mdb_to_errno(rc);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                (void)unlink(tmp);
                errno = -r;
                return fail_with(ret_error, r, "cannot write a compacted copy of %s: %m", path);
        }
        (void)fsync(dirfd);

        /* The handle maps the old file: open the new one in its place. */
        opts = (struct keystore_options){
            .mapsize = info.me_mapsize, .audit_max = ks->audit_max, .flags = ks->flags};
        keystore_close(ks);
        *ksp = NULL;
        return keystore_open(slash ? dir : ".", &opts, ksp, ret_error);
}
