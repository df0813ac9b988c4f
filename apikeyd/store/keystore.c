/* SPDX-License-Identifier: MIT */
/*
 * The keystore on LMDB, its core: the environment and its databases, the
 * schema check (and upgrade) at open, close and compaction, the map grown
 * when it fills up, and the read and write transactions every other part
 * runs in: each write one transaction, or nested in a group's
 * (keystore_write_group()).  The parts: keys and their indexes
 * (keystore_keys.c), listing and counting them (keystore_list.c), the
 * audit log (keystore_audit.c), the meta values (keystore_meta.c) and the
 * consistency check (keystore_check.c); what they share is in
 * keystore_internal.h.
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

#define KEYSTORE_MAXDBS 8
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

/*
 * `fn` in a transaction nested in `parent`: undone alone if it fails.  A
 * nested transaction that cannot begin or commit may leave the group
 * unusable, so the group is then written one by one.
 */
static int write_nested(struct keystore *ks, MDB_txn *parent, write_fn fn, void *userdata)
{
        MDB_txn *txn;
        int rc, r;

        rc = mdb_txn_begin(ks->env, parent, 0, &txn);
        if (rc != MDB_SUCCESS) {
                ks->group_broken = true;
                return ks_err(ks, rc);
        }
        r = fn(ks, txn, userdata);
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

/* `fn` in a top-level write transaction, run again in a grown map if it did not fit. */
static int write_top(struct keystore *ks, write_fn fn, void *userdata)
{
        for (unsigned growth = 0;;) {
                MDB_txn *txn;
                int rc, r;

                r = write_begin(ks, &txn);
                if (r < 0)
                        return r;
                ks->map_full = false;
                r = fn(ks, txn, userdata);
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

int write_txn(struct keystore *ks, write_fn fn, void *userdata)
{
        if (ks->flags & KEYSTORE_READONLY)
                return -EROFS;
        /* Inside a group write: undone alone, so the write may see it refused and go on. */
        if (ks->current)
                return write_nested(ks, ks->current, fn, userdata);
        /* A list callback writing would pull the snapshot from under its own
         * walk.  (A group's writes run on their own thread, beside reads.) */
        if (!ks->grouping && ks->read_depth > 0)
                return -EBUSY;
        return write_top(ks, fn, userdata);
}

/* A group write's fn in `txn`, which the store's writes nest in meanwhile. */
static int run_write(struct keystore *ks, MDB_txn *txn, void *userdata)
{
        struct keystore_write *w = userdata;
        struct keystore_tx tx = {.ks = ks, .txn = txn};
        int r;

        ks->current = txn;
        r = w->fn(&tx, w->userdata);
        ks->current = NULL;
        return r;
}

static void group_fail(struct keystore_write *writes, size_t n, int r)
{
        for (size_t i = 0; i < n; i++)
                if (writes[i].result >= 0)
                        writes[i].result = r;
}

/* Each write in a transaction of its own: alone, or when a group cannot be committed as one. */
static void group_one_by_one(struct keystore *ks, struct keystore_write *writes, size_t n)
{
        for (size_t i = 0; i < n; i++)
                writes[i].result = write_top(ks, run_write, &writes[i]);
}

static int write_group(struct keystore *ks, struct keystore_write *writes, size_t n)
{
        for (unsigned growth = 0;;) {
                MDB_txn *txn;
                int rc, r;

                r = write_begin(ks, &txn);
                if (r < 0)
                        return r;
                ks->map_full = ks->group_broken = false;
                for (size_t i = 0; i < n; i++)
                        writes[i].result = write_nested(ks, txn, run_write, &writes[i]);

                if (ks->map_full || ks->group_broken) {
                        bool full = ks->map_full;

                        mdb_txn_abort(txn);
                        map_unlock(ks);
                        /* Past the growth we allow, each write gets its own answer. */
                        if (!full || growth++ >= KEYSTORE_MAX_GROWTH) {
                                group_one_by_one(ks, writes, n);
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

int keystore_write_group(struct keystore *ks, struct keystore_write *writes, size_t n)
{
        int r = 0;

        if (!ks || (n > 0 && !writes))
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                writes[i].result = 0;
        if (ks->flags & KEYSTORE_READONLY)
                r = -EROFS;
        else if (n == 0 || ks->grouping)
                r = n == 0 ? 0 : -EBUSY;
        else {
                ks->grouping = true;
                /* Alone, a write needs no nesting: its own transaction is as atomic. */
                if (n == 1)
                        group_one_by_one(ks, writes, n);
                else
                        r = write_group(ks, writes, n);
                ks->grouping = false;
        }
        if (r < 0)
                group_fail(writes, n, r);
        return r;
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
        /* Usage history came later still: the same. */
        rc = mdb_dbi_open(txn, "usage", c, &ks->usage);
        if (rc == MDB_NOTFOUND && !create)
                return 0;
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        ks->has_usage = true;
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
