/* SPDX-License-Identifier: MIT */
/*
 * What the keystore's files share, internal to apikeyd/store/ (nothing
 * outside it includes this; its interface is keystore.h): the handle, the
 * LMDB error mapping, the read and write transaction machinery, the audit
 * event a write carries along, and the decoding of a keys entry.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <lmdb.h>

#include "keystore.h"

#define NAME_KEY_MAX (KEY_OWNER_MAX + 1 + KEY_NAME_MAX)

struct keystore {
        MDB_env *env;
        MDB_dbi keys, names, owners, audit, meta, children;
        bool no_children;     /* a read-only handle on a store from before the children index */
        MDB_dbi audit_admin;  /* admins' management events (keystore.h: retention) */
        bool has_audit_admin; /* a read-only handle of an older store may have none */
        MDB_dbi usage;        /* keys' usage history (keystore_usage.h) */
        bool has_usage;       /* the same */
        pthread_rwlock_t map_lock;
        bool map_lock_ready;
        /* The reading thread's: */
        MDB_txn *rtxn;       /* the reused read transaction; NULL until first needed */
        unsigned read_depth; /* > 0 while rtxn is live (nested reads from list callbacks) */
        uint64_t audit_max;
        unsigned flags;
        /* The writing thread's: */
        bool map_full;     /* the last write failed with MDB_MAP_FULL */
        bool grouping;     /* inside keystore_write_group() */
        MDB_txn *current;  /* the running group write's transaction: writes nest in it */
        bool group_broken; /* a nested commit failed, which may leave the group unusable */
};

/* A group write's transaction (keystore.h). */
struct keystore_tx {
        struct keystore *ks;
        MDB_txn *txn;
};

static inline void cursor_closep(MDB_cursor **c)
{
        if (*c)
                mdb_cursor_close(*c);
}

#define _cleanup_cursor_ _cleanup_(cursor_closep)

/* ---- errors ---- */

int mdb_to_errno(int rc);
/* mdb_to_errno(), noting MDB_MAP_FULL so the write is retried in a grown map. */
int ks_err(struct keystore *ks, int rc);
/* Describe the failure in `*ret_error` and return `r`. */
_printf_(3, 4) int fail_with(char **ret_error, int r, const char *fmt, ...);

/* ---- transactions ---- */

/* Drop the idle read transaction: resizing the map needs none open in this process. */
void drop_read_txn(struct keystore *ks);
/* The handle's read transaction, renewed; nested calls share it.  read_end() each. */
int read_begin(struct keystore *ks, MDB_txn **ret);
void read_end(struct keystore *ks);

/*
 * The body of a write transaction: returns >= 0 to commit, < 0 to abort.
 * It may run more than once (after the map was grown), so it must not keep
 * anything from an earlier run.
 */
typedef int (*write_fn)(struct keystore *ks, MDB_txn *txn, void *userdata);

/* Run `fn` in a write transaction of its own, or nested in the running group write's. */
int write_txn(struct keystore *ks, write_fn fn, void *userdata);

/* ---- audit ---- */

struct audit_ctx {
        const void *buf;
        size_t len;
        bool admin; /* kept under the admins' retention */
};

/* Append the encoded event `userdata` (struct audit_ctx) in `txn`. */
int append_audit_in(struct keystore *ks, MDB_txn *txn, void *userdata);

/* ---- usage history ---- */

/* Remove the usage history of key `id` in `txn` (keystore_usage.c). */
int usage_delete_in(struct keystore *ks, MDB_txn *txn, const char *id);

/* ---- key records ---- */

static inline bool val_is_id(const MDB_val *v, const char *id)
{
        return v->mv_size == TOKEN_ID_LEN && memcmp(v->mv_data, id, TOKEN_ID_LEN) == 0;
}

static inline bool val_is_string(const MDB_val *v, const char *s)
{
        size_t n = strlen(s);

        return v->mv_size == n && memcmp(v->mv_data, s, n) == 0;
}

/* A keys entry as a record: the key must be the id the record carries. */
int decode_entry(const MDB_val *k, const MDB_val *v, struct key_record *ret);
/* The names index key of `owner` and `name`: owner NUL name; returns its length. */
size_t name_key(char buf[static NAME_KEY_MAX], const char *owner, const char *name);
/* The record under `id` in a write transaction, decoded from a private copy (free() it). */
int copy_record(struct keystore *ks, MDB_txn *txn, const char *id, void **ret_storage,
                struct key_record *ret);
/* Encode and put `rec` under its id (mdb_put `flags`); the bytes in `*ret_buf` if non-NULL. */
int put_encoded(struct keystore *ks, MDB_txn *txn, const struct key_record *rec, unsigned flags,
                void **ret_buf, size_t *ret_len);
/* The names entry of `rec` (-EEXIST if taken), and its removal if it is this key's. */
int names_add(struct keystore *ks, MDB_txn *txn, const struct key_record *rec);
int names_remove(struct keystore *ks, MDB_txn *txn, const struct key_record *rec);
/* The ids of the keys created through `id` (the children index), in a new array (free() it). */
int children_in(struct keystore *ks, MDB_txn *txn, const char *id, char (**ret)[TOKEN_ID_LEN],
                size_t *ret_n);
/* A new key with its names, owners and children entries. */
int put_key_in(struct keystore *ks, MDB_txn *txn, const struct key_record *rec);
