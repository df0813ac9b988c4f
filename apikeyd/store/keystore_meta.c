/* SPDX-License-Identifier: MIT */
/*
 * The meta database's named values besides the schema version: what the
 * daemon keeps there (keystore_meta_get/put/del), a value deleted
 * overwritten with zeros first.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "keystore_internal.h"

#define META_NAME_MAX 256

static bool meta_name_valid(const char *name)
{
        size_t n;

        if (!name)
                return false;
        n = strnlen(name, META_NAME_MAX + 1);
        return n > 0 && n <= META_NAME_MAX;
}

int keystore_meta_get(struct keystore *ks, const char *name, void *buf, size_t size,
                      size_t *ret_len)
{
        MDB_txn *txn;
        MDB_val v;
        int rc, r = 0;

        if (!ks || !meta_name_valid(name) || (size > 0 && !buf))
                return -EINVAL;

        r = read_begin(ks, &txn);
        if (r < 0)
                return r;
        rc = mdb_get(txn, ks->meta, &(MDB_val){strlen(name), (void *)name}, &v);
        if (rc != MDB_SUCCESS)
                r = ks_err(ks, rc);
        else {
                /* The length is reported even when it does not fit, so callers can size a buffer.
                 */
                if (ret_len)
                        *ret_len = v.mv_size;
                if (v.mv_size > size)
                        r = -ENOBUFS;
                else if (v.mv_size > 0)
                        memcpy(buf, v.mv_data, v.mv_size);
        }
        read_end(ks);
        return r;
}

struct meta_ctx {
        const char *name;
        const void *data;
        size_t len;
};

static int meta_put_in(struct keystore *ks, MDB_txn *txn, void *userdata)
{
        struct meta_ctx *c = userdata;
        static const char empty;

        return ks_err(ks,
                      mdb_put(txn, ks->meta, &(MDB_val){strlen(c->name), (void *)c->name},
                              &(MDB_val){c->len, c->len ? (void *)c->data : (void *)&empty}, 0));
}

int keystore_meta_put(struct keystore *ks, const char *name, const void *data, size_t len)
{
        struct meta_ctx c = {name, data, len};

        if (!ks || !meta_name_valid(name) || (len > 0 && !data))
                return -EINVAL;
        return write_txn(ks, meta_put_in, &c);
}

/* The value overwritten with zeros in place, then deleted: no copy of it stays on the live page. */
static int meta_del_in(struct keystore *ks, MDB_txn *txn, void *userdata)
{
        const char *name = userdata;
        MDB_val k = {strlen(name), (void *)name}, v;
        _cleanup_free_ void *zero = NULL;
        int rc;

        rc = mdb_get(txn, ks->meta, &k, &v);
        if (rc != MDB_SUCCESS)
                return ks_err(ks, rc);
        zero = calloc(1, v.mv_size ? v.mv_size : 1);
        if (!zero)
                return -ENOMEM;
        rc = mdb_put(txn, ks->meta, &k, &(MDB_val){v.mv_size, zero}, 0);
        if (rc == MDB_SUCCESS)
                rc = mdb_del(txn, ks->meta, &k, NULL);
        return ks_err(ks, rc);
}

int keystore_meta_del(struct keystore *ks, const char *name)
{
        if (!ks || !meta_name_valid(name))
                return -EINVAL;
        return write_txn(ks, meta_del_in, (void *)name);
}
