/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the keystore (apikeyd/store/keystore*.c) against LMDB on disk in a
 * fresh temporary directory per test.  Where a test must see or damage what
 * is stored without going through the keystore, it closes the keystore and
 * opens the file with plain LMDB calls.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "keystore.h"

/* Enough keys in one group to outgrow a 64 KiB map. */
#define GROUP_TEST_KEYS 200

#define NOW    1700000000000000ull
#define SECOND 1000000ull
#define HOUR   (3600 * SECOND)
#define DAY    (24 * HOUR)

struct fixture {
        char dir[256];
        char path[300];
        struct keystore *ks;
};

static void ks_open(struct fixture *f, uint64_t mapsize, uint64_t audit_max, unsigned flags)
{
        struct keystore_options opts = {.mapsize = mapsize, .audit_max = audit_max, .flags = flags};
        char *error = NULL;
        int r;

        r = keystore_open(f->dir, &opts, &f->ks, &error);
        if (r < 0)
                fail_msg("keystore_open: %s (%s)", strerror(-r), error ? error : "no message");
        assert_null(error);
}

static void ks_close(struct fixture *f)
{
        keystore_close(f->ks);
        f->ks = NULL;
}

/* Throw the store away and start a new one. */
static void ks_wipe(struct fixture *f, uint64_t mapsize, uint64_t audit_max, unsigned flags)
{
        char lock[320];

        ks_close(f);
        snprintf(lock, sizeof(lock), "%s-lock", f->path);
        unlink(f->path);
        unlink(lock);
        ks_open(f, mapsize, audit_max, flags);
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        const char *tmp = getenv("TMPDIR");

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "%s/test-keystore-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, KEYSTORE_FILE);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        char lock[320];

        ks_close(f);
        snprintf(lock, sizeof(lock), "%s-lock", f->path);
        unlink(f->path);
        unlink(lock);
        assert_int_equal(rmdir(f->dir), 0);
        free(f);
        return 0;
}

/* ---- records ---- */

static uint64_t splitmix64(uint64_t x)
{
        x += 0x9e3779b97f4a7c15ull;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        return x ^ (x >> 31);
}

/* Distinct for distinct `n` (splitmix64 is a bijection and 62^11 > 2^64), in no useful order. */
static void make_id(uint64_t n, char id[TOKEN_ID_LEN + 1])
{
        uint64_t x = splitmix64(n);

        id[0] = BASE62_ALPHABET[(n * 7) % 62];
        for (int i = TOKEN_ID_LEN - 1; i >= 1; i--) {
                id[i] = BASE62_ALPHABET[x % 62];
                x /= 62;
        }
        id[TOKEN_ID_LEN] = '\0';
}

static void make_rec(struct key_record *rec, uint64_t n, const char *owner, const char *name)
{
        *rec = (struct key_record){
            .status = KEY_STATUS_ENABLED,
            .role = KEY_ROLE_CUSTOM,
            .permissions = KEY_PERM_READ | KEY_PERM_WRITE,
            .created_at = NOW,
            .name = name,
            .owner = owner,
            .created_by = "uid=0",
        };
        make_id(n, rec->id);
        for (size_t i = 0; i < KEY_HASH_SIZE; i++)
                rec->hash[i] = (uint8_t)(n + i);
}

static void put(struct fixture *f, uint64_t n, const char *owner, const char *name)
{
        struct key_record rec;

        make_rec(&rec, n, owner, name);
        assert_int_equal(keystore_put_key(f->ks, &rec), 0);
}

static void assert_opt_equal(const char *a, const char *b)
{
        if (!a || !*a)
                assert_null(b);
        else
                assert_string_equal(a, b);
}

static void assert_records_equal(const struct key_record *a, const struct key_record *b)
{
        assert_string_equal(a->id, b->id);
        assert_int_equal(a->status, b->status);
        assert_int_equal(a->role, b->role);
        assert_int_equal(a->permissions, b->permissions);
        assert_memory_equal(a->hash, b->hash, KEY_HASH_SIZE);
        assert_int_equal(a->created_at, b->created_at);
        assert_int_equal(a->expires_at, b->expires_at);
        assert_int_equal(a->last_used_at, b->last_used_at);
        assert_string_equal(a->name, b->name);
        assert_opt_equal(a->description, b->description);
        assert_string_equal(a->owner, b->owner);
        assert_opt_equal(a->created_by, b->created_by);
        assert_opt_equal(a->last_used_service, b->last_used_service);
        assert_opt_equal(a->last_used_from, b->last_used_from);
        assert_int_equal(a->n_scope, b->n_scope);
        for (size_t i = 0; i < a->n_scope; i++)
                assert_string_equal(a->scope[i], b->scope[i]);
}

static int get_status(struct fixture *f, const char *id)
{
        struct key_record rec;
        void *storage = NULL;
        int r = keystore_get(f->ks, id, &rec, &storage);

        if (r == 0)
                r = rec.status;
        free(storage);
        return r;
}

static void verify_ok(struct fixture *f)
{
        char *error = NULL;
        int r = keystore_check_indexes(f->ks, &error);

        if (r < 0)
                fail_msg("keystore_check_indexes: %s (%s)", strerror(-r), error ? error : "");
        assert_null(error);
}

/* ---- listing helpers ---- */

#define MAX_SEEN 256

struct seen {
        size_t n;
        char ids[MAX_SEEN][TOKEN_ID_LEN + 1];
};

static int collect(const struct key_record *rec, void *userdata)
{
        struct seen *s = userdata;

        assert_true(s->n < MAX_SEEN);
        memcpy(s->ids[s->n++], rec->id, TOKEN_ID_LEN + 1);
        return 0;
}

static int list_ids(struct fixture *f, const struct key_filter *filter, struct seen *s)
{
        char cursor[TOKEN_ID_LEN + 1];
        int r;

        s->n = 0;
        r = keystore_list(f->ks, filter, NULL, 0, collect, s, cursor);
        if (r == 0)
                assert_string_equal(cursor, "");
        return r;
}

static int cmp_ids(const void *a, const void *b)
{
        return memcmp(a, b, TOKEN_ID_LEN);
}

/* ---- raw LMDB access ---- */

struct raw {
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi keys, names, owners, audit, meta, children;
};

static void raw_open(struct fixture *f, struct raw *raw, bool write)
{
        ks_close(f);
        assert_int_equal(mdb_env_create(&raw->env), 0);
        assert_int_equal(mdb_env_set_maxdbs(raw->env, 7), 0);
        assert_int_equal(mdb_env_set_mapsize(raw->env, 1ull << 30), 0);
        assert_int_equal(mdb_env_open(raw->env, f->path, MDB_NOSUBDIR, 0600), 0);
        assert_int_equal(mdb_txn_begin(raw->env, NULL, write ? 0 : MDB_RDONLY, &raw->txn), 0);
        assert_int_equal(mdb_dbi_open(raw->txn, "keys", 0, &raw->keys), 0);
        assert_int_equal(mdb_dbi_open(raw->txn, "names", 0, &raw->names), 0);
        assert_int_equal(mdb_dbi_open(raw->txn, "owners", MDB_DUPSORT | MDB_DUPFIXED, &raw->owners),
                         0);
        assert_int_equal(mdb_dbi_open(raw->txn, "audit", 0, &raw->audit), 0);
        assert_int_equal(mdb_dbi_open(raw->txn, "meta", 0, &raw->meta), 0);
        assert_int_equal(
            mdb_dbi_open(raw->txn, "children", MDB_DUPSORT | MDB_DUPFIXED, &raw->children), 0);
}

static void raw_close(struct raw *raw)
{
        assert_int_equal(mdb_txn_commit(raw->txn), 0);
        mdb_env_close(raw->env);
}

static void raw_put(struct raw *raw, MDB_dbi dbi, const void *k, size_t klen, const void *v,
                    size_t vlen)
{
        MDB_val key = {klen, (void *)k}, val = {vlen, (void *)v};

        assert_int_equal(mdb_put(raw->txn, dbi, &key, &val, 0), 0);
}

static void raw_del(struct raw *raw, MDB_dbi dbi, const void *k, size_t klen, const void *v,
                    size_t vlen)
{
        MDB_val key = {klen, (void *)k}, val = {vlen, (void *)v};

        assert_int_equal(mdb_del(raw->txn, dbi, &key, v ? &val : NULL), 0);
}

static size_t raw_entries(struct raw *raw, MDB_dbi dbi)
{
        MDB_stat st;

        assert_int_equal(mdb_stat(raw->txn, dbi, &st), 0);
        return st.ms_entries;
}

/* ---- tests ---- */

static void test_open_creates_store(void **state)
{
        struct fixture *f = *state;
        struct keystore *ks = NULL;
        char lock[320], missing[300], *error = NULL;
        uint8_t schema[8];
        size_t len = 0;
        struct stat st;

        assert_int_equal(stat(f->path, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 0177, 0);
        snprintf(lock, sizeof(lock), "%s-lock", f->path);
        assert_int_equal(stat(lock, &st), 0);
        assert_int_equal(st.st_mode & 0177, 0);

        assert_int_equal(keystore_meta_get(f->ks, "schema", schema, sizeof(schema), &len), 0);
        assert_int_equal(len, 4);
        assert_int_equal(schema[0], KEYSTORE_SCHEMA_VERSION);
        assert_int_equal(schema[1] | schema[2] | schema[3], 0);

        /* The directory must exist; the failure says which file. */
        snprintf(missing, sizeof(missing), "%s/nope", f->dir);
        assert_int_equal(keystore_open(missing, NULL, &ks, &error), -ENOENT);
        assert_null(ks);
        assert_non_null(error);
        assert_non_null(strstr(error, missing));
        free(error);
        assert_int_equal(keystore_open(missing, NULL, &ks, NULL), -ENOENT);
        assert_int_equal(keystore_open(NULL, NULL, &ks, NULL), -EINVAL);

        /* Reopening an existing store keeps the schema as it is. */
        ks_close(f);
        ks_open(f, 0, 0, 0);
        assert_int_equal(keystore_meta_get(f->ks, "schema", schema, sizeof(schema), &len), 0);
        assert_int_equal(schema[0], KEYSTORE_SCHEMA_VERSION);
}

static void test_put_get(void **state)
{
        struct fixture *f = *state;
        static const char *const scope[] = {"sshd", "sudo"};
        struct key_record rec, out;
        void *storage = NULL;

        make_rec(&rec, 1, "alice", "deploy");
        rec.description = "CI";
        rec.role = KEY_ROLE_ADMIN;
        rec.permissions = KEY_PERM_ALL;
        rec.expires_at = NOW + DAY;
        rec.last_used_at = NOW + 5;
        rec.last_used_service = "sshd";
        rec.last_used_from = "192.0.2.1";
        rec.n_scope = 2;
        rec.scope[0] = scope[0];
        rec.scope[1] = scope[1];
        assert_int_equal(keystore_put_key(f->ks, &rec), 0);

        assert_int_equal(keystore_get(f->ks, rec.id, &out, &storage), 0);
        assert_non_null(storage);
        assert_records_equal(&rec, &out);
        free(storage);

        /* Existence check. */
        assert_int_equal(keystore_get(f->ks, rec.id, NULL, NULL), 0);
        assert_int_equal(keystore_get(f->ks, "000000000000", NULL, NULL), -ENOENT);
        storage = NULL;
        assert_int_equal(keystore_get(f->ks, "000000000000", &out, &storage), -ENOENT);
        assert_null(storage);
        assert_int_equal(keystore_get(f->ks, "short", NULL, NULL), -EINVAL);
        assert_int_equal(keystore_get(f->ks, NULL, NULL, NULL), -EINVAL);
        assert_int_equal(keystore_get(f->ks, rec.id, &out, NULL), -EINVAL);
        verify_ok(f);
}

/* A view decodes the record in place, and the read transaction lasts until it ends. */
static void test_view(void **state)
{
        struct fixture *f = *state;
        struct key_record rec, out;
        void *storage = NULL;

        make_rec(&rec, 1, "alice", "deploy");
        rec.description = "first";
        assert_int_equal(keystore_put_key(f->ks, &rec), 0);
        {
                _cleanup_key_view_ struct key_view v = {0};

                assert_int_equal(keystore_view(f->ks, rec.id, &v), 0);
                assert_ptr_equal(v.ks, f->ks);
                assert_records_equal(&rec, &v.rec);
                /* Other reads may run inside the view. */
                assert_int_equal(keystore_get(f->ks, rec.id, &out, &storage), 0);
                assert_records_equal(&rec, &out);
                free(storage);
                key_view_end(&v);
                assert_null(v.ks);
                key_view_end(&v); /* twice, then by the cleanup: nothing more */
        }
        /* A view begun after a change sees the change. */
        struct key_update u = {.fields = KEY_UPDATE_DESCRIPTION, .description = "second"};
        assert_int_equal(keystore_update_key(f->ks, rec.id, &u, &out, &storage), 0);
        free(storage);
        {
                _cleanup_key_view_ struct key_view v = {0};

                assert_int_equal(keystore_view(f->ks, rec.id, &v), 0);
                assert_string_equal(v.rec.description, "second");
        }
        struct key_view none = {.ks = f->ks};
        assert_int_equal(keystore_view(f->ks, "000000000000", &none), -ENOENT);
        assert_null(none.ks);
        key_view_end(&none);
        assert_int_equal(keystore_view(f->ks, "short", &none), -EINVAL);
        assert_int_equal(keystore_view(f->ks, NULL, &none), -EINVAL);
        assert_null(none.ks);
        verify_ok(f);
}

static void test_put_refusals(void **state)
{
        struct fixture *f = *state;
        struct key_record rec, batch[3];
        uint64_t counts[5];

        put(f, 1, "alice", "deploy");
        /* Same name, same owner. */
        make_rec(&rec, 2, "alice", "deploy");
        assert_int_equal(keystore_put_key(f->ks, &rec), -EEXIST);
        assert_int_equal(keystore_get(f->ks, rec.id, NULL, NULL), -ENOENT);
        /* Same name, another owner. */
        put(f, 3, "bob", "deploy");
        /* Same id. */
        make_rec(&rec, 1, "carol", "other");
        assert_int_equal(keystore_put_key(f->ks, &rec), -ENOTUNIQ);
        /* Invalid records. */
        make_rec(&rec, 4, "alice", "");
        assert_int_equal(keystore_put_key(f->ks, &rec), -EINVAL);
        make_rec(&rec, 4, "alice", "x");
        rec.role = KEY_ROLE_ADMIN;
        assert_int_equal(keystore_put_key(f->ks, &rec), -EINVAL);
        make_rec(&rec, 4, "alice", "x");
        rec.id[0] = '-';
        assert_int_equal(keystore_put_key(f->ks, &rec), -EINVAL);
        assert_int_equal(keystore_put_key(f->ks, NULL), -EINVAL);

        /* A batch is all or nothing. */
        make_rec(&batch[0], 10, "dave", "a");
        make_rec(&batch[1], 11, "dave", "b");
        make_rec(&batch[2], 12, "dave", "a");
        assert_int_equal(keystore_put_keys(f->ks, batch, 3), -EEXIST);
        assert_int_equal(keystore_get(f->ks, batch[0].id, NULL, NULL), -ENOENT);
        assert_int_equal(keystore_get(f->ks, batch[1].id, NULL, NULL), -ENOENT);
        batch[2].name = "";
        assert_int_equal(keystore_put_keys(f->ks, batch, 3), -EINVAL);
        make_rec(&batch[2], 1, "dave", "c"); /* an id already stored */
        assert_int_equal(keystore_put_keys(f->ks, batch, 3), -ENOTUNIQ);
        assert_int_equal(keystore_get(f->ks, batch[0].id, NULL, NULL), -ENOENT);
        assert_int_equal(keystore_put_keys(f->ks, batch, 0), 0);
        assert_int_equal(keystore_put_keys(f->ks, batch, 2), 0);

        assert_int_equal(keystore_count(f->ks, NOW, counts), 0);
        assert_int_equal(counts[KEY_STATUS_ENABLED], 4);
        verify_ok(f);
}

static void test_update(void **state)
{
        struct fixture *f = *state;
        static const char *const scope[] = {"billing-api", "sshd"};
        static const char *const too_many[KEY_SCOPE_MAX + 1] = {0};
        struct key_record a, b, out;
        struct key_update upd;
        void *storage = NULL;
        char long_name[KEY_NAME_MAX + 2];

        make_rec(&a, 1, "alice", "one");
        make_rec(&b, 2, "alice", "two");
        assert_int_equal(keystore_put_key(f->ks, &a), 0);
        assert_int_equal(keystore_put_key(f->ks, &b), 0);

        upd = (struct key_update){
            .fields = KEY_UPDATE_NAME | KEY_UPDATE_DESCRIPTION | KEY_UPDATE_SCOPE |
                      KEY_UPDATE_PERMISSIONS | KEY_UPDATE_EXPIRES,
            .name = "uno",
            .description = "renamed",
            .n_scope = 2,
            .scope = scope,
            .role = KEY_ROLE_ADMIN,
            .permissions = KEY_PERM_ALL,
            .expires_at = NOW + DAY,
        };
        assert_int_equal(keystore_update_key(f->ks, a.id, &upd, &out, &storage), 0);
        assert_string_equal(out.name, "uno");
        assert_string_equal(out.description, "renamed");
        assert_int_equal(out.n_scope, 2);
        assert_string_equal(out.scope[0], "billing-api");
        assert_string_equal(out.scope[1], "sshd");
        assert_int_equal(out.role, KEY_ROLE_ADMIN);
        assert_int_equal(out.permissions, KEY_PERM_ALL);
        assert_int_equal(out.expires_at, NOW + DAY);
        /* untouched fields */
        assert_string_equal(out.owner, "alice");
        assert_memory_equal(out.hash, a.hash, KEY_HASH_SIZE);
        assert_int_equal(out.created_at, a.created_at);
        a = out;
        {
                struct key_record got;
                void *got_storage = NULL;

                assert_int_equal(keystore_get(f->ks, a.id, &got, &got_storage), 0);
                assert_records_equal(&a, &got);
                free(got_storage);
        }
        free(storage);
        storage = NULL;

        /* The old name is free again, the new one is taken. */
        put(f, 3, "alice", "one");
        upd = (struct key_update){.fields = KEY_UPDATE_NAME, .name = "uno"};
        assert_int_equal(keystore_update_key(f->ks, b.id, &upd, NULL, NULL), -EEXIST);
        /* Renaming to its own name changes nothing. */
        assert_int_equal(keystore_update_key(f->ks, a.id, &upd, NULL, NULL), 0);
        /* The same name under another owner is fine. */
        put(f, 4, "bob", "uno");

        /* Clear description and scope, and set "never expires". */
        upd = (struct key_update){
            .fields = KEY_UPDATE_DESCRIPTION | KEY_UPDATE_SCOPE | KEY_UPDATE_EXPIRES,
        };
        assert_int_equal(keystore_update_key(f->ks, a.id, &upd, &out, &storage), 0);
        assert_null(out.description);
        assert_int_equal(out.n_scope, 0);
        assert_int_equal(out.expires_at, 0);
        free(storage);
        storage = NULL;

        /* Refusals leave the key as it was. */
        memset(long_name, 'x', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = '\0';
        upd = (struct key_update){.fields = KEY_UPDATE_NAME, .name = long_name};
        assert_int_equal(keystore_update_key(f->ks, a.id, &upd, NULL, NULL), -EINVAL);
        upd = (struct key_update){.fields = KEY_UPDATE_NAME, .name = ""};
        assert_int_equal(keystore_update_key(f->ks, a.id, &upd, NULL, NULL), -EINVAL);
        upd = (struct key_update){.fields = KEY_UPDATE_NAME, .name = NULL};
        assert_int_equal(keystore_update_key(f->ks, a.id, &upd, NULL, NULL), -EINVAL);
        upd = (struct key_update){
            .fields = KEY_UPDATE_PERMISSIONS,
            .role = KEY_ROLE_ADMIN,
            .permissions = KEY_PERM_READ,
        };
        assert_int_equal(keystore_update_key(f->ks, a.id, &upd, NULL, NULL), -EINVAL);
        upd = (struct key_update){
            .fields = KEY_UPDATE_PERMISSIONS,
            .role = KEY_ROLE_CUSTOM,
            .permissions = 0,
        };
        assert_int_equal(keystore_update_key(f->ks, a.id, &upd, NULL, NULL), -EINVAL);
        upd = (struct key_update){
            .fields = KEY_UPDATE_SCOPE, .n_scope = KEY_SCOPE_MAX + 1, .scope = too_many};
        assert_int_equal(keystore_update_key(f->ks, a.id, &upd, NULL, NULL), -EINVAL);
        upd = (struct key_update){.fields = KEY_UPDATE_SCOPE, .n_scope = 2, .scope = NULL};
        assert_int_equal(keystore_update_key(f->ks, a.id, &upd, NULL, NULL), -EINVAL);
        upd = (struct key_update){.fields = 1u << 7};
        assert_int_equal(keystore_update_key(f->ks, a.id, &upd, NULL, NULL), -EINVAL);
        {
                struct key_record got;
                void *got_storage = NULL;

                assert_int_equal(keystore_get(f->ks, a.id, &got, &got_storage), 0);
                assert_string_equal(got.name, "uno");
                assert_int_equal(got.role, KEY_ROLE_ADMIN);
                free(got_storage);
        }

        upd = (struct key_update){.fields = KEY_UPDATE_NAME, .name = "x"};
        assert_int_equal(keystore_update_key(f->ks, "000000000000", &upd, NULL, NULL), -ENOENT);
        assert_int_equal(keystore_update_key(f->ks, "bad", &upd, NULL, NULL), -EINVAL);
        assert_int_equal(keystore_update_key(f->ks, a.id, NULL, NULL, NULL), -EINVAL);
        verify_ok(f);
}

static void test_set_status(void **state)
{
        struct fixture *f = *state;
        struct key_record a, out;
        struct key_update upd = {.fields = KEY_UPDATE_NAME, .name = "new"};
        void *storage = NULL;

        make_rec(&a, 1, "alice", "k");
        assert_int_equal(keystore_put_key(f->ks, &a), 0);

        assert_int_equal(keystore_set_status(f->ks, a.id, KEY_STATUS_DISABLED, &out, &storage), 0);
        assert_int_equal(out.status, KEY_STATUS_DISABLED);
        assert_string_equal(out.name, "k");
        free(storage);
        assert_int_equal(get_status(f, a.id), KEY_STATUS_DISABLED);
        assert_int_equal(keystore_set_status(f->ks, a.id, KEY_STATUS_DISABLED, NULL, NULL), 0);
        assert_int_equal(keystore_set_status(f->ks, a.id, KEY_STATUS_ENABLED, NULL, NULL), 0);
        assert_int_equal(get_status(f, a.id), KEY_STATUS_ENABLED);
        storage = NULL;
        assert_int_equal(keystore_set_status(f->ks, a.id, KEY_STATUS_ENABLED, &out, &storage), 0);
        assert_int_equal(out.status, KEY_STATUS_ENABLED);
        free(storage);

        assert_int_equal(keystore_set_status(f->ks, a.id, KEY_STATUS_EXPIRED, NULL, NULL), -EINVAL);
        assert_int_equal(keystore_set_status(f->ks, a.id, 0, NULL, NULL), -EINVAL);
        assert_int_equal(
            keystore_set_status(f->ks, "000000000000", KEY_STATUS_DISABLED, NULL, NULL), -ENOENT);

        /* Revoked is final. */
        storage = NULL;
        assert_int_equal(keystore_set_status(f->ks, a.id, KEY_STATUS_REVOKED, &out, &storage), 0);
        assert_int_equal(out.status, KEY_STATUS_REVOKED);
        free(storage);
        storage = NULL;
        assert_int_equal(keystore_set_status(f->ks, a.id, KEY_STATUS_REVOKED, &out, &storage), 0);
        assert_int_equal(out.status, KEY_STATUS_REVOKED);
        free(storage);
        assert_int_equal(keystore_set_status(f->ks, a.id, KEY_STATUS_ENABLED, NULL, NULL), -ESTALE);
        assert_int_equal(keystore_set_status(f->ks, a.id, KEY_STATUS_DISABLED, NULL, NULL),
                         -ESTALE);
        assert_int_equal(keystore_update_key(f->ks, a.id, &upd, NULL, NULL), -ESTALE);
        assert_int_equal(get_status(f, a.id), KEY_STATUS_REVOKED);
        {
                struct seen s;

                /* It stays listed. */
                assert_int_equal(list_ids(f, NULL, &s), 0);
                assert_int_equal(s.n, 1);
        }
        /* A revoked key can still be deleted. */
        assert_int_equal(keystore_delete_key(f->ks, a.id), 0);
        assert_int_equal(keystore_set_status(f->ks, a.id, KEY_STATUS_REVOKED, NULL, NULL), -ENOENT);
        verify_ok(f);
}

static void test_delete(void **state)
{
        struct fixture *f = *state;
        struct key_filter filter = {.owner = "alice"};
        struct key_record a;
        struct seen s;

        put(f, 1, "alice", "one");
        put(f, 2, "alice", "two");
        put(f, 3, "bob", "one");
        make_rec(&a, 2, "alice", "two");

        assert_int_equal(keystore_delete_key(f->ks, a.id), 0);
        assert_int_equal(keystore_get(f->ks, a.id, NULL, NULL), -ENOENT);
        assert_int_equal(keystore_delete_key(f->ks, a.id), -ENOENT);
        assert_int_equal(keystore_delete_key(f->ks, "nope"), -EINVAL);
        assert_int_equal(list_ids(f, &filter, &s), 0);
        assert_int_equal(s.n, 1);
        verify_ok(f);

        /* Its name is free again, under a new id. */
        put(f, 4, "alice", "two");
        assert_int_equal(list_ids(f, &filter, &s), 0);
        assert_int_equal(s.n, 2);
        verify_ok(f);
}

/* A model of what the store should hold, to check it against. */
#define MODEL_MAX 400
#define N_OWNERS  5
#define N_NAMES   12

static const char *const model_owners[N_OWNERS] = {"alice", "bob", "carol", "dave", "eve"};
static const char *const model_names[N_NAMES] = {"a", "b", "c", "d", "e", "f",
                                                 "g", "h", "i", "j", "k", "l"};

struct model_key {
        bool alive;
        char id[TOKEN_ID_LEN + 1];
        int owner, name;
        int status;
};

static struct model_key model[MODEL_MAX];

static bool model_name_taken(int owner, int name, int except)
{
        for (int i = 0; i < MODEL_MAX; i++)
                if (i != except && model[i].alive && model[i].owner == owner &&
                    model[i].name == name)
                        return true;
        return false;
}

static struct model_key *model_find(const void *id, size_t len)
{
        if (len != TOKEN_ID_LEN)
                return NULL;
        for (int i = 0; i < MODEL_MAX; i++)
                if (model[i].alive && memcmp(model[i].id, id, TOKEN_ID_LEN) == 0)
                        return &model[i];
        return NULL;
}

/* Walk the three databases with plain LMDB and compare them with the model, both ways. */
static void raw_check_model(struct fixture *f)
{
        struct raw raw;
        MDB_cursor *c;
        MDB_val k, v;
        size_t alive = 0, n;
        int rc;

        for (int i = 0; i < MODEL_MAX; i++)
                alive += model[i].alive;

        raw_open(f, &raw, false);

        assert_int_equal(raw_entries(&raw, raw.keys), alive);
        assert_int_equal(mdb_cursor_open(raw.txn, raw.keys, &c), 0);
        for (n = 0, rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), n++) {
                struct model_key *m = model_find(k.mv_data, k.mv_size);
                struct key_record rec;

                assert_non_null(m);
                assert_int_equal(record_decode(v.mv_data, v.mv_size, &rec), 0);
                assert_memory_equal(rec.id, k.mv_data, TOKEN_ID_LEN);
                assert_string_equal(rec.owner, model_owners[m->owner]);
                assert_string_equal(rec.name, model_names[m->name]);
                assert_int_equal(rec.status, m->status);
        }
        assert_int_equal(rc, MDB_NOTFOUND);
        assert_int_equal(n, alive);
        mdb_cursor_close(c);

        assert_int_equal(raw_entries(&raw, raw.names), alive);
        assert_int_equal(mdb_cursor_open(raw.txn, raw.names, &c), 0);
        for (n = 0, rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), n++) {
                struct model_key *m = model_find(v.mv_data, v.mv_size);
                const char *owner, *name;
                char expect[64];
                size_t elen;

                assert_non_null(m);
                owner = model_owners[m->owner];
                name = model_names[m->name];
                elen = (size_t)snprintf(expect, sizeof(expect), "%s%c%s", owner, '\0', name);
                assert_int_equal(k.mv_size, elen);
                assert_memory_equal(k.mv_data, expect, elen);
        }
        assert_int_equal(rc, MDB_NOTFOUND);
        assert_int_equal(n, alive);
        mdb_cursor_close(c);

        assert_int_equal(raw_entries(&raw, raw.owners), alive);
        assert_int_equal(mdb_cursor_open(raw.txn, raw.owners, &c), 0);
        for (n = 0, rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), n++) {
                struct model_key *m = model_find(v.mv_data, v.mv_size);
                const char *owner;

                assert_non_null(m);
                owner = model_owners[m->owner];
                assert_int_equal(k.mv_size, strlen(owner));
                assert_memory_equal(k.mv_data, owner, k.mv_size);
        }
        assert_int_equal(rc, MDB_NOTFOUND);
        assert_int_equal(n, alive);
        mdb_cursor_close(c);

        raw_close(&raw);
}

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rng(void)
{
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 0x2545f4914f6cdd1dull;
}

static void test_indexes_after_random_changes(void **state)
{
        struct fixture *f = *state;

        memset(model, 0, sizeof(model));
        for (int step = 0; step < 4000; step++) {
                int i = (int)(rng() % MODEL_MAX);
                struct model_key *m = &model[i];
                int op = (int)(rng() % 4);

                if (!m->alive) {
                        struct key_record rec;
                        int owner = (int)(rng() % N_OWNERS), name = (int)(rng() % N_NAMES);
                        bool taken = model_name_taken(owner, name, -1);

                        /* A new id each time, so a deleted id is never reused. */
                        make_rec(&rec, (uint64_t)step << 16 | (uint64_t)i, model_owners[owner],
                                 model_names[name]);
                        assert_int_equal(keystore_put_key(f->ks, &rec), taken ? -EEXIST : 0);
                        if (!taken)
                                *m = (struct model_key){true, {0}, owner, name, KEY_STATUS_ENABLED};
                        memcpy(m->id, rec.id, sizeof(m->id));
                        continue;
                }

                if (op == 0) {
                        assert_int_equal(keystore_delete_key(f->ks, m->id), 0);
                        m->alive = false;
                } else if (op == 1) {
                        int name = (int)(rng() % N_NAMES);
                        struct key_update upd = {.fields = KEY_UPDATE_NAME,
                                                 .name = model_names[name]};
                        int expect = m->status == KEY_STATUS_REVOKED       ? -ESTALE
                                     : model_name_taken(m->owner, name, i) ? -EEXIST
                                                                           : 0;

                        assert_int_equal(keystore_update_key(f->ks, m->id, &upd, NULL, NULL),
                                         expect);
                        if (expect == 0)
                                m->name = name;
                } else {
                        int status = 1 + (int)(rng() % 3);
                        int expect = m->status == KEY_STATUS_REVOKED && status != KEY_STATUS_REVOKED
                                         ? -ESTALE
                                         : 0;

                        assert_int_equal(keystore_set_status(f->ks, m->id, status, NULL, NULL),
                                         expect);
                        if (expect == 0)
                                m->status = status;
                }
        }

        verify_ok(f);
        raw_check_model(f);

        /* Reopening finds everything. */
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        for (int i = 0; i < MODEL_MAX; i++) {
                if (model[i].alive)
                        assert_int_equal(get_status(f, model[i].id), model[i].status);
                else if (model[i].id[0])
                        assert_int_equal(get_status(f, model[i].id), -ENOENT);
        }
        verify_ok(f);
}

static void test_reopen(void **state)
{
        struct fixture *f = *state;
        char names[50][16];
        uint64_t counts[5];

        for (int i = 0; i < 50; i++) {
                snprintf(names[i], sizeof(names[i]), "key-%d", i);
                put(f, (uint64_t)i, i % 2 ? "alice" : "bob", names[i]);
        }
        for (int i = 0; i < 50; i += 5) {
                char id[TOKEN_ID_LEN + 1];

                make_id((uint64_t)i, id);
                assert_int_equal(keystore_set_status(f->ks, id, KEY_STATUS_REVOKED, NULL, NULL), 0);
        }
        /* A synced store this time. */
        ks_close(f);
        ks_open(f, 0, 0, 0);
        ks_close(f);
        ks_open(f, 0, 0, 0);

        for (int i = 0; i < 50; i++) {
                struct key_record rec;
                void *storage = NULL;
                char id[TOKEN_ID_LEN + 1];

                make_id((uint64_t)i, id);
                assert_int_equal(keystore_get(f->ks, id, &rec, &storage), 0);
                assert_string_equal(rec.name, names[i]);
                assert_string_equal(rec.owner, i % 2 ? "alice" : "bob");
                assert_int_equal(rec.status, i % 5 ? KEY_STATUS_ENABLED : KEY_STATUS_REVOKED);
                free(storage);
        }
        assert_int_equal(keystore_count(f->ks, NOW, counts), 0);
        assert_int_equal(counts[KEY_STATUS_ENABLED], 40);
        assert_int_equal(counts[KEY_STATUS_REVOKED], 10);
        verify_ok(f);
}

/* ---- keys created through keys ---- */

/* A key `n` created through key `parent` (0 = none). */
static void put_child(struct fixture *f, uint64_t n, uint64_t parent, const char *name)
{
        struct key_record rec;

        make_rec(&rec, n, "alice", name);
        if (parent)
                make_id(parent, rec.parent);
        assert_int_equal(keystore_put_key(f->ks, &rec), 0);
}

static enum key_status status_of(struct fixture *f, uint64_t n)
{
        _cleanup_free_ void *storage = NULL;
        struct key_record rec;
        char id[TOKEN_ID_LEN + 1];

        make_id(n, id);
        assert_int_equal(keystore_get(f->ks, id, &rec, &storage), 0);
        return rec.status;
}

static void test_tree_revoke(void **state)
{
        struct fixture *f = *state;
        struct key_status_change sc = {.status = KEY_STATUS_REVOKED};
        char id[TOKEN_ID_LEN + 1], kids[4][TOKEN_ID_LEN + 1];
        size_t n;

        /* 1 -> 2 -> 3, 1 -> 4, and 5 on its own. */
        put_child(f, 1, 0, "top");
        put_child(f, 2, 1, "mid");
        put_child(f, 3, 2, "leaf");
        put_child(f, 4, 1, "other");
        put_child(f, 5, 0, "alone");
        make_id(1, id);
        assert_int_equal(keystore_children(f->ks, id, kids, 4, &n), 0);
        assert_int_equal(n, 2);
        make_id(2, id);
        assert_int_equal(keystore_children(f->ks, id, kids, 4, &n), 0);
        assert_int_equal(n, 1);
        make_id(3, id);
        assert_string_equal(kids[0], id);

        /* Revoking the middle key revokes below it only. */
        make_id(2, id);
        assert_int_equal(keystore_change_status(f->ks, id, &sc, NULL, NULL), 0);
        assert_int_equal(sc.ret_revoked, 1);
        assert_int_equal(status_of(f, 3), KEY_STATUS_REVOKED);
        assert_int_equal(status_of(f, 1), KEY_STATUS_ENABLED);
        assert_int_equal(status_of(f, 4), KEY_STATUS_ENABLED);

        /* Revoking the top: the one not yet revoked follows. */
        make_id(1, id);
        sc = (struct key_status_change){.status = KEY_STATUS_REVOKED};
        assert_int_equal(keystore_change_status(f->ks, id, &sc, NULL, NULL), 0);
        assert_int_equal(sc.ret_revoked, 1);
        assert_int_equal(status_of(f, 4), KEY_STATUS_REVOKED);
        assert_int_equal(status_of(f, 5), KEY_STATUS_ENABLED);
        verify_ok(f);
}

static void test_tree_delete(void **state)
{
        struct fixture *f = *state;
        char id[TOKEN_ID_LEN + 1], kids[2][TOKEN_ID_LEN + 1];
        size_t n = 99;

        put_child(f, 1, 0, "top");
        put_child(f, 2, 1, "mid");
        put_child(f, 3, 2, "leaf");
        make_id(2, id);
        assert_int_equal(keystore_delete_tree(f->ks, id, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(status_of(f, 3), KEY_STATUS_REVOKED);
        assert_int_equal(keystore_get(f->ks, id, NULL, NULL), -ENOENT);
        /* The deleted key is no longer a child of its parent, nor a parent. */
        make_id(1, id);
        assert_int_equal(keystore_children(f->ks, id, kids, 2, &n), 0);
        assert_int_equal(n, 0);
        make_id(2, id);
        assert_int_equal(keystore_children(f->ks, id, kids, 2, &n), 0);
        assert_int_equal(n, 0);
        verify_ok(f);
}

static void test_tree_lineage(void **state)
{
        struct fixture *f = *state;
        _cleanup_free_ void *storage = NULL;
        struct key_record leaf;
        char id[TOKEN_ID_LEN + 1], blocked[TOKEN_ID_LEN + 1];
        unsigned depth;

        put_child(f, 1, 0, "top");
        put_child(f, 2, 1, "mid");
        put_child(f, 3, 2, "leaf");
        make_id(3, id);
        assert_int_equal(keystore_get(f->ks, id, &leaf, &storage), 0);
        assert_int_equal(keystore_lineage(f->ks, &leaf, NOW, blocked, &depth), 0);
        assert_int_equal(depth, 2);

        /* Disabling the top suspends the leaf; its own status stays. */
        make_id(1, id);
        assert_int_equal(keystore_set_status(f->ks, id, KEY_STATUS_DISABLED, NULL, NULL), 0);
        assert_int_equal(keystore_lineage(f->ks, &leaf, NOW, blocked, NULL), 1);
        assert_string_equal(blocked, id);
        assert_int_equal(status_of(f, 3), KEY_STATUS_ENABLED);
        assert_int_equal(keystore_set_status(f->ks, id, KEY_STATUS_ENABLED, NULL, NULL), 0);
        assert_int_equal(keystore_lineage(f->ks, &leaf, NOW, blocked, NULL), 0);

        /* An expired or deleted ancestor ends it too. */
        make_id(2, id);
        assert_int_equal(keystore_delete_key(f->ks, id), 0);
        assert_int_equal(keystore_lineage(f->ks, &leaf, NOW, blocked, NULL), 1);
        assert_string_equal(blocked, id);
}

static void test_admin_disable_mark(void **state)
{
        struct fixture *f = *state;
        _cleanup_free_ void *storage = NULL;
        struct key_record rec;
        char id[TOKEN_ID_LEN + 1];
        struct key_status_change sc = {.status = KEY_STATUS_DISABLED, .by_admin = true};

        put(f, 1, "alice", "k");
        make_id(1, id);
        assert_int_equal(keystore_change_status(f->ks, id, &sc, &rec, &storage), 0);
        assert_int_equal(rec.flags, KEY_FLAG_ADMIN_DISABLED);
        free(TAKE_PTR(storage));
        /* The owner cannot enable it; an admin can, which clears the mark. */
        assert_int_equal(keystore_set_status(f->ks, id, KEY_STATUS_ENABLED, NULL, NULL), -EPERM);
        assert_int_equal(status_of(f, 1), KEY_STATUS_DISABLED);
        sc = (struct key_status_change){.status = KEY_STATUS_ENABLED, .by_admin = true};
        assert_int_equal(keystore_change_status(f->ks, id, &sc, &rec, &storage), 0);
        assert_int_equal(rec.flags, 0);
        assert_int_equal(rec.status, KEY_STATUS_ENABLED);
        /* An owner's Disable leaves no mark. */
        assert_int_equal(keystore_set_status(f->ks, id, KEY_STATUS_DISABLED, NULL, NULL), 0);
        assert_int_equal(keystore_set_status(f->ks, id, KEY_STATUS_ENABLED, NULL, NULL), 0);
}

/* The daemon's own Disable of a key unused since a time: the reason, kept until an Enable. */
static void test_disable_unused(void **state)
{
        struct fixture *f = *state;
        _cleanup_free_ void *storage = NULL;
        struct key_record rec;
        char id[TOKEN_ID_LEN + 1];
        struct key_status_change sc = {
            .status = KEY_STATUS_DISABLED, .reason = "unused", .unused_before = NOW};

        put(f, 1, "alice", "k");
        make_id(1, id);
        /* Created at NOW: not unused before NOW. */
        assert_int_equal(keystore_change_status(f->ks, id, &sc, NULL, NULL), -EALREADY);
        assert_int_equal(status_of(f, 1), KEY_STATUS_ENABLED);
        sc.unused_before = NOW + 1;
        assert_int_equal(keystore_change_status(f->ks, id, &sc, &rec, &storage), 0);
        assert_int_equal(rec.status, KEY_STATUS_DISABLED);
        assert_string_equal(rec.disabled_reason, "unused");
        assert_int_equal(rec.flags, 0); /* its owner may enable it */
        free(TAKE_PTR(storage));
        /* Not enabled any more: nothing to do. */
        assert_int_equal(keystore_change_status(f->ks, id, &sc, NULL, NULL), -EALREADY);
        /* Another Disable keeps the reason; an Enable clears it. */
        assert_int_equal(keystore_set_status(f->ks, id, KEY_STATUS_DISABLED, &rec, &storage), 0);
        assert_string_equal(rec.disabled_reason, "unused");
        free(TAKE_PTR(storage));
        assert_int_equal(keystore_set_status(f->ks, id, KEY_STATUS_ENABLED, &rec, &storage), 0);
        assert_null(rec.disabled_reason);
        free(TAKE_PTR(storage));
        /* Used since: left alone. */
        struct last_used lu = {.at = NOW + 5};
        memcpy(lu.id, id, sizeof(lu.id));
        assert_int_equal(keystore_record_last_used(f->ks, &lu, 1), 0);
        sc.unused_before = NOW + 5;
        assert_int_equal(keystore_change_status(f->ks, id, &sc, NULL, NULL), -EALREADY);
        sc.unused_before = NOW + 6;
        assert_int_equal(keystore_change_status(f->ks, id, &sc, NULL, NULL), 0);
        assert_int_equal(status_of(f, 1), KEY_STATUS_DISABLED);
}

static void test_schema_1_upgraded(void **state)
{
        struct fixture *f = *state;
        const uint8_t one[4] = {1, 0, 0, 0};
        uint8_t schema[4];
        size_t len;

        put(f, 1, "alice", "k");
        assert_int_equal(keystore_meta_put(f->ks, "schema", one, sizeof(one)), 0);
        ks_close(f);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        assert_int_equal(keystore_meta_get(f->ks, "schema", schema, sizeof(schema), &len), 0);
        assert_int_equal(schema[0], KEYSTORE_SCHEMA_VERSION);
        /* Keys of the older schema keep working and gain children. */
        put_child(f, 2, 1, "child");
        assert_int_equal(status_of(f, 1), KEY_STATUS_ENABLED);
        verify_ok(f);
}

static void test_schema_newer_refused(void **state)
{
        struct fixture *f = *state;
        const uint8_t seven[4] = {7, 0, 0, 0};
        struct keystore_options ro = {.flags = KEYSTORE_READONLY};
        struct keystore *ks = NULL;
        char *error = NULL;

        put(f, 1, "alice", "k");
        assert_int_equal(keystore_meta_put(f->ks, "schema", seven, sizeof(seven)), 0);
        ks_close(f);

        assert_int_equal(keystore_open(f->dir, NULL, &ks, &error), -EPROTONOSUPPORT);
        assert_null(ks);
        assert_non_null(error);
        assert_string_equal(error, "keystore schema version 7 is newer than this apikeyd "
                                   "supports (2); refusing to open it");
        free(error);
        assert_int_equal(keystore_open(f->dir, NULL, &ks, NULL), -EPROTONOSUPPORT);
        assert_int_equal(keystore_open(f->dir, &ro, &ks, NULL), -EPROTONOSUPPORT);
}

static void test_schema_missing(void **state)
{
        struct fixture *f = *state;
        struct keystore *ks = NULL;
        struct raw raw;
        char *error = NULL;
        uint8_t schema[4];
        size_t len;

        /* On an empty store it is simply written again. */
        raw_open(f, &raw, true);
        raw_del(&raw, raw.meta, "schema", 6, NULL, 0);
        raw_close(&raw);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        assert_int_equal(keystore_meta_get(f->ks, "schema", schema, sizeof(schema), &len), 0);
        assert_int_equal(len, 4);
        assert_int_equal(schema[0], KEYSTORE_SCHEMA_VERSION);

        /* A store with keys but no schema is not ours to guess about. */
        put(f, 1, "alice", "k");
        raw_open(f, &raw, true);
        raw_del(&raw, raw.meta, "schema", 6, NULL, 0);
        raw_close(&raw);
        assert_int_equal(keystore_open(f->dir, NULL, &ks, &error), -EBADMSG);
        assert_null(ks);
        assert_non_null(error);
        assert_non_null(strstr(error, "no schema version"));
        free(error);

        /* A schema value of the wrong size is corrupt too. */
        raw_open(f, &raw, true);
        raw_put(&raw, raw.meta, "schema", 6, "\1\0", 2);
        raw_close(&raw);
        assert_int_equal(keystore_open(f->dir, NULL, &ks, &error), -EBADMSG);
        assert_non_null(error);
        free(error);

        /* Put it back for the teardown's sake. */
        raw_open(f, &raw, true);
        raw_put(&raw, raw.meta, "schema", 6, "\1\0\0\0", 4);
        raw_close(&raw);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        verify_ok(f);
}

static int count_cb(const struct key_record *rec, void *userdata)
{
        (*(size_t *)userdata)++;
        return 0;
}

static void expect_broken(struct fixture *f, const char *bad_id, const char *owner, int want)
{
        struct key_filter by_owner = {.owner = owner};
        struct key_record rec;
        void *storage = NULL;
        char *error = NULL;
        uint64_t counts[5];
        size_t n = 0;
        char cursor[TOKEN_ID_LEN + 1] = "x";

        assert_int_equal(keystore_get(f->ks, bad_id, &rec, &storage), want);
        assert_null(storage);
        assert_int_equal(keystore_get(f->ks, bad_id, NULL, NULL), want);
        assert_int_equal(keystore_list(f->ks, NULL, NULL, 0, count_cb, &n, cursor), want);
        assert_string_equal(cursor, "");
        assert_int_equal(keystore_list(f->ks, &by_owner, NULL, 0, count_cb, &n, NULL), want);
        assert_int_equal(keystore_count(f->ks, NOW, counts), want);
        assert_int_equal(keystore_check_indexes(f->ks, &error), want);
        assert_non_null(error);
        assert_non_null(strstr(error, bad_id));
        free(error);
}

static void test_corrupt_record(void **state)
{
        struct fixture *f = *state;
        struct key_record a, b, c;
        void *enc = NULL;
        size_t len;
        struct raw raw;
        uint64_t counts[5];
        size_t n = 0;

        make_rec(&a, 1, "alice", "a");
        make_rec(&b, 2, "alice", "b");
        make_rec(&c, 3, "bob", "c");
        assert_int_equal(keystore_put_key(f->ks, &a), 0);
        assert_int_equal(keystore_put_key(f->ks, &b), 0);
        assert_int_equal(keystore_put_key(f->ks, &c), 0);
        assert_int_equal(record_encode(&b, &enc, &len), 0);

        /* Truncated by one byte. */
        raw_open(f, &raw, true);
        raw_put(&raw, raw.keys, b.id, TOKEN_ID_LEN, enc, len - 1);
        raw_close(&raw);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        expect_broken(f, b.id, "alice", -EBADMSG);
        /* The others are still readable. */
        assert_int_equal(keystore_get(f->ks, a.id, NULL, NULL), 0);
        assert_int_equal(keystore_get(f->ks, c.id, NULL, NULL), 0);

        /* Empty, garbage, a version byte of 0, a NUL inside the name. */
        {
                static const uint8_t garbage[] = "\x01 this is not a record";
                uint8_t *mangled = malloc(len);

                assert_non_null(mangled);
                memcpy(mangled, enc, len);
                mangled[RECORD_FIXED_SIZE + 2] = '\0'; /* the name "b" becomes a NUL */
                raw_open(f, &raw, true);
                raw_put(&raw, raw.keys, b.id, TOKEN_ID_LEN, "", 0);
                raw_close(&raw);
                ks_open(f, 0, 0, KEYSTORE_NOSYNC);
                expect_broken(f, b.id, "alice", -EBADMSG);

                raw_open(f, &raw, true);
                raw_put(&raw, raw.keys, b.id, TOKEN_ID_LEN, garbage, sizeof(garbage));
                raw_close(&raw);
                ks_open(f, 0, 0, KEYSTORE_NOSYNC);
                expect_broken(f, b.id, "alice", -EBADMSG);

                raw_open(f, &raw, true);
                raw_put(&raw, raw.keys, b.id, TOKEN_ID_LEN, mangled, len);
                raw_close(&raw);
                ks_open(f, 0, 0, KEYSTORE_NOSYNC);
                expect_broken(f, b.id, "alice", -EBADMSG);

                /* A newer record format in a store of our schema can only be damage. */
                memcpy(mangled, enc, len);
                mangled[0] = RECORD_VERSION + 1;
                raw_open(f, &raw, true);
                raw_put(&raw, raw.keys, b.id, TOKEN_ID_LEN, mangled, len);
                raw_close(&raw);
                ks_open(f, 0, 0, KEYSTORE_NOSYNC);
                expect_broken(f, b.id, "alice", -EBADMSG);
                free(mangled);
        }

        /* A valid record filed under another key's id. */
        {
                void *enc_a = NULL;
                size_t len_a;

                assert_int_equal(record_encode(&a, &enc_a, &len_a), 0);
                raw_open(f, &raw, true);
                raw_put(&raw, raw.keys, b.id, TOKEN_ID_LEN, enc_a, len_a);
                raw_close(&raw);
                free(enc_a);
                ks_open(f, 0, 0, KEYSTORE_NOSYNC);
                expect_broken(f, b.id, "alice", -EBADMSG);
        }

        /* Deleting the damaged key removes it and its index entries. */
        assert_int_equal(keystore_delete_key(f->ks, b.id), 0);
        verify_ok(f);
        assert_int_equal(keystore_list(f->ks, NULL, NULL, 0, count_cb, &n, NULL), 0);
        assert_int_equal(n, 2);
        assert_int_equal(keystore_count(f->ks, NOW, counts), 0);
        assert_int_equal(counts[KEY_STATUS_ENABLED], 2);
        /* And its name can be used again. */
        assert_int_equal(keystore_put_key(f->ks, &b), 0);
        verify_ok(f);
        free(enc);
}

static void test_verify_finds_children_damage(void **state)
{
        struct fixture *f = *state;
        char top[TOKEN_ID_LEN + 1], child[TOKEN_ID_LEN + 1], other[TOKEN_ID_LEN + 1];
        struct raw raw;
        char *error = NULL;

        put_child(f, 1, 0, "top");
        put_child(f, 2, 1, "child");
        put_child(f, 3, 0, "other");
        make_id(1, top);
        make_id(2, child);
        make_id(3, other);
        verify_ok(f);

        /* A child missing from its parent's entries. */
        raw_open(f, &raw, true);
        raw_del(&raw, raw.children, top, TOKEN_ID_LEN, child, TOKEN_ID_LEN);
        raw_close(&raw);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        assert_int_equal(keystore_check_indexes(f->ks, &error), -EBADMSG);
        assert_non_null(strstr(error, "not among the children of its parent"));
        free(error);

        /* An entry naming a key created through another, or none. */
        raw_open(f, &raw, true);
        raw_put(&raw, raw.children, top, TOKEN_ID_LEN, child, TOKEN_ID_LEN);
        raw_put(&raw, raw.children, top, TOKEN_ID_LEN, other, TOKEN_ID_LEN);
        raw_close(&raw);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        assert_int_equal(keystore_check_indexes(f->ks, &error), -EBADMSG);
        assert_non_null(strstr(error, "created through"));
        free(error);

        /* Entries left under a parent that was deleted. */
        raw_open(f, &raw, true);
        raw_del(&raw, raw.children, top, TOKEN_ID_LEN, other, TOKEN_ID_LEN);
        raw_close(&raw);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        assert_int_equal(keystore_delete_key(f->ks, top), 0);
        verify_ok(f);
        raw_open(f, &raw, true);
        raw_put(&raw, raw.children, top, TOKEN_ID_LEN, child, TOKEN_ID_LEN);
        raw_close(&raw);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        error = NULL;
        assert_int_equal(keystore_check_indexes(f->ks, &error), -EBADMSG);
        assert_non_null(strstr(error, "a key that no longer exists"));
        free(error);
}

static void test_verify_finds_index_damage(void **state)
{
        struct fixture *f = *state;
        struct key_record a, b;
        struct raw raw;
        char *error = NULL;

        make_rec(&a, 1, "alice", "a");
        make_rec(&b, 2, "bob", "b");
        assert_int_equal(keystore_put_key(f->ks, &a), 0);
        assert_int_equal(keystore_put_key(f->ks, &b), 0);
        verify_ok(f);

        /* A key without its names entry. */
        raw_open(f, &raw, true);
        raw_del(&raw, raw.names, "alice\0a", 7, NULL, 0);
        raw_close(&raw);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        assert_int_equal(keystore_check_indexes(f->ks, &error), -EBADMSG);
        assert_non_null(strstr(error, "no names entry"));
        free(error);

        /* A names entry pointing at the wrong key. */
        raw_open(f, &raw, true);
        raw_put(&raw, raw.names, "alice\0a", 7, b.id, TOKEN_ID_LEN);
        raw_close(&raw);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        assert_int_equal(keystore_check_indexes(f->ks, &error), -EBADMSG);
        free(error);

        /* An owners entry missing, then an extra one pointing nowhere. */
        raw_open(f, &raw, true);
        raw_put(&raw, raw.names, "alice\0a", 7, a.id, TOKEN_ID_LEN);
        raw_del(&raw, raw.owners, "bob", 3, b.id, TOKEN_ID_LEN);
        raw_close(&raw);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        assert_int_equal(keystore_check_indexes(f->ks, &error), -EBADMSG);
        assert_non_null(strstr(error, "no owners entry"));
        free(error);

        raw_open(f, &raw, true);
        raw_put(&raw, raw.owners, "bob", 3, b.id, TOKEN_ID_LEN);
        raw_put(&raw, raw.owners, "bob", 3, "000000000000", TOKEN_ID_LEN);
        raw_close(&raw);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        assert_int_equal(keystore_check_indexes(f->ks, &error), -EBADMSG);
        assert_non_null(strstr(error, "missing key"));
        free(error);
        {
                /* The owner walk refuses the dangling entry too. */
                struct key_filter by_owner = {.owner = "bob"};
                size_t n = 0;

                assert_int_equal(keystore_list(f->ks, &by_owner, NULL, 0, count_cb, &n, NULL),
                                 -EBADMSG);
        }

        /* An extra names entry for a key that is gone. */
        raw_open(f, &raw, true);
        raw_del(&raw, raw.owners, "bob", 3, "000000000000", TOKEN_ID_LEN);
        raw_put(&raw, raw.names, "carol\0x", 7, "000000000000", TOKEN_ID_LEN);
        raw_close(&raw);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        assert_int_equal(keystore_check_indexes(f->ks, &error), -EBADMSG);
        assert_non_null(strstr(error, "missing key"));
        free(error);

        /* An owners entry filed under the wrong owner. */
        raw_open(f, &raw, true);
        raw_del(&raw, raw.names, "carol\0x", 7, NULL, 0);
        raw_put(&raw, raw.owners, "carol", 5, a.id, TOKEN_ID_LEN);
        raw_close(&raw);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        assert_int_equal(keystore_check_indexes(f->ks, &error), -EBADMSG);
        assert_non_null(strstr(error, "belongs"));
        free(error);

        raw_open(f, &raw, true);
        raw_del(&raw, raw.owners, "carol", 5, a.id, TOKEN_ID_LEN);
        raw_close(&raw);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        verify_ok(f);
}

struct filter_case {
        uint64_t n;
        const char *owner, *name;
        int status;
        uint64_t expires_at;
};

static const struct filter_case filter_keys[] = {
    {1, "alice", "web-1", KEY_STATUS_ENABLED, 0},
    {2, "alice", "web-2", KEY_STATUS_DISABLED, NOW + HOUR},
    {3, "alice", "db-1", KEY_STATUS_REVOKED, NOW + HOUR},
    {4, "alice", "ci", KEY_STATUS_ENABLED, NOW - SECOND}, /* expired */
    {5, "bob", "web-1", KEY_STATUS_ENABLED, NOW + 2 * DAY},
    {6, "bob", "webhook", KEY_STATUS_DISABLED, NOW}, /* expires right now: expired */
    {7, "bob", "db-1", KEY_STATUS_ENABLED, NOW + 40 * DAY},
    {8, "carol", "w", KEY_STATUS_ENABLED, NOW + DAY}, /* exactly at the edge of a day */
    {9, "carol", "web", KEY_STATUS_DISABLED, 0},
    {10, "bobby", "web-1", KEY_STATUS_ENABLED, 0},
};

/* The expected answer, written out plainly and separately from the keystore's. */
static bool case_matches(const struct filter_case *c, const struct key_filter *f)
{
        int effective;

        if (f->owner && strcmp(f->owner, c->owner) != 0)
                return false;
        if (f->name_prefix && strncmp(c->name, f->name_prefix, strlen(f->name_prefix)) != 0)
                return false;
        if (c->status == KEY_STATUS_REVOKED)
                effective = KEY_STATUS_REVOKED;
        else if (c->expires_at && c->expires_at <= f->now)
                effective = KEY_STATUS_EXPIRED;
        else
                effective = c->status;
        if (f->status && f->status != effective)
                return false;
        if (f->expiring_within &&
            !(c->expires_at > f->now && c->expires_at <= f->now + f->expiring_within))
                return false;
        return true;
}

static void check_filter(struct fixture *f, const struct key_filter *filter, size_t want_n)
{
        char expect[ELEMENTSOF(filter_keys)][TOKEN_ID_LEN + 1];
        size_t n_expect = 0;
        struct seen s;

        for (size_t i = 0; i < ELEMENTSOF(filter_keys); i++)
                if (case_matches(&filter_keys[i], filter))
                        make_id(filter_keys[i].n, expect[n_expect++]);
        qsort(expect, n_expect, sizeof(expect[0]), cmp_ids);
        assert_int_equal(n_expect, want_n);

        assert_int_equal(list_ids(f, filter, &s), 0);
        assert_int_equal(s.n, n_expect);
        for (size_t i = 0; i < n_expect; i++)
                assert_string_equal(s.ids[i], expect[i]);
}

static void test_list_filters(void **state)
{
        struct fixture *f = *state;
        struct seen s;

        for (size_t i = 0; i < ELEMENTSOF(filter_keys); i++) {
                const struct filter_case *c = &filter_keys[i];
                struct key_record rec;

                make_rec(&rec, c->n, c->owner, c->name);
                rec.status = (uint8_t)c->status;
                rec.expires_at = c->expires_at;
                assert_int_equal(keystore_put_key(f->ks, &rec), 0);
        }

        check_filter(f, &(struct key_filter){.now = NOW}, 10);
        check_filter(f, &(struct key_filter){.owner = "alice", .now = NOW}, 4);
        check_filter(f, &(struct key_filter){.owner = "bob", .now = NOW}, 3);
        check_filter(f, &(struct key_filter){.owner = "bobby", .now = NOW}, 1);
        check_filter(f, &(struct key_filter){.owner = "nobody", .now = NOW}, 0);
        check_filter(f, &(struct key_filter){.owner = "", .now = NOW}, 0);
        check_filter(f, &(struct key_filter){.status = KEY_STATUS_ENABLED, .now = NOW}, 5);
        check_filter(f, &(struct key_filter){.status = KEY_STATUS_DISABLED, .now = NOW}, 2);
        check_filter(f, &(struct key_filter){.status = KEY_STATUS_REVOKED, .now = NOW}, 1);
        check_filter(f, &(struct key_filter){.status = KEY_STATUS_EXPIRED, .now = NOW}, 2);
        /* Later, more have expired. */
        check_filter(f, &(struct key_filter){.status = KEY_STATUS_EXPIRED, .now = NOW + 3 * DAY},
                     5);
        check_filter(f, &(struct key_filter){.name_prefix = "web", .now = NOW}, 6);
        check_filter(f, &(struct key_filter){.name_prefix = "web-", .now = NOW}, 4);
        check_filter(f, &(struct key_filter){.name_prefix = "", .now = NOW}, 10);
        check_filter(f, &(struct key_filter){.name_prefix = "zzz", .now = NOW}, 0);
        check_filter(f, &(struct key_filter){.expiring_within = DAY, .now = NOW}, 3);
        check_filter(f, &(struct key_filter){.expiring_within = 30 * DAY, .now = NOW}, 4);
        check_filter(f, &(struct key_filter){.expiring_within = HOUR - 1, .now = NOW}, 0);
        check_filter(f, &(struct key_filter){.expiring_within = UINT64_MAX / 4, .now = NOW}, 5);
        /* Combined. */
        check_filter(
            f,
            &(struct key_filter){
                .owner = "bob", .status = KEY_STATUS_ENABLED, .name_prefix = "web", .now = NOW},
            1);
        check_filter(f,
                     &(struct key_filter){.owner = "alice",
                                          .expiring_within = DAY,
                                          .status = KEY_STATUS_DISABLED,
                                          .now = NOW},
                     1);

        assert_int_equal(list_ids(f, &(struct key_filter){.status = 5}, &s), -EINVAL);
        assert_int_equal(list_ids(f, &(struct key_filter){.status = -1}, &s), -EINVAL);
        assert_int_equal(keystore_list(f->ks, NULL, NULL, 0, NULL, NULL, NULL), -EINVAL);
}

static int stop_at_first(const struct key_record *rec, void *userdata)
{
        (*(int *)userdata)++;
        return 42;
}

static int page_walk(struct fixture *f, const struct key_filter *filter, size_t limit,
                     struct seen *all)
{
        char cursor[TOKEN_ID_LEN + 1] = "";
        int pages = 0;

        all->n = 0;
        do {
                size_t before = all->n;
                char next[TOKEN_ID_LEN + 1];

                assert_int_equal(keystore_list(f->ks, filter, cursor, limit, collect, all, next),
                                 0);
                assert_true(all->n - before <= limit);
                if (next[0])
                        assert_string_equal(next, all->ids[all->n - 1]);
                memcpy(cursor, next, sizeof(cursor));
                pages++;
        } while (cursor[0]);
        return pages;
}

static void test_list_paging(void **state)
{
        struct fixture *f = *state;
        struct key_filter alice = {.owner = "alice"};
        struct seen all, s;
        char cursor[TOKEN_ID_LEN + 1];
        int called = 0;

        for (uint64_t i = 0; i < 10; i++) {
                char name[16];

                snprintf(name, sizeof(name), "k%" PRIu64, i);
                put(f, i, i < 9 ? "alice" : "bob", name);
        }
        assert_int_equal(list_ids(f, NULL, &all), 0);
        assert_int_equal(all.n, 10);
        for (size_t i = 1; i < all.n; i++)
                assert_true(strcmp(all.ids[i - 1], all.ids[i]) < 0);

        /* 10 keys by 3: 3 + 3 + 3 + 1, the last page ends the walk. */
        assert_int_equal(page_walk(f, NULL, 3, &s), 4);
        assert_int_equal(s.n, 10);
        assert_memory_equal(s.ids, all.ids, sizeof(all.ids[0]) * 10);
        /* 9 of alice's by 3: the third page already knows nothing follows. */
        assert_int_equal(page_walk(f, &alice, 3, &s), 3);
        assert_int_equal(s.n, 9);
        /* by 1 and by more than there are */
        assert_int_equal(page_walk(f, NULL, 1, &s), 10);
        assert_int_equal(page_walk(f, NULL, 100, &s), 1);
        assert_int_equal(s.n, 10);

        /* A cursor whose key was deleted meanwhile still continues after it. */
        s.n = 0;
        assert_int_equal(keystore_list(f->ks, NULL, NULL, 4, collect, &s, cursor), 0);
        assert_string_equal(cursor, all.ids[3]);
        assert_int_equal(keystore_delete_key(f->ks, all.ids[3]), 0);
        s.n = 0;
        assert_int_equal(keystore_list(f->ks, NULL, cursor, 2, collect, &s, cursor), 0);
        assert_int_equal(s.n, 2);
        assert_string_equal(s.ids[0], all.ids[4]);
        assert_string_equal(s.ids[1], all.ids[5]);
        /* The same through the owner index, when the deleted key was alice's. */
        s.n = 0;
        assert_int_equal(keystore_list(f->ks, &alice, all.ids[3], 1, collect, &s, NULL), 0);
        assert_int_equal(s.n, 1);
        assert_true(strcmp(s.ids[0], all.ids[3]) > 0);

        /* Past the end, "" as no cursor, a malformed cursor. */
        s.n = 0;
        assert_int_equal(keystore_list(f->ks, NULL, "zzzzzzzzzzzz", 0, collect, &s, cursor), 0);
        assert_int_equal(s.n, 0);
        assert_string_equal(cursor, "");
        assert_int_equal(keystore_list(f->ks, NULL, "", 0, collect, &s, cursor), 0);
        assert_int_equal(s.n, 9);
        assert_int_equal(keystore_list(f->ks, NULL, "bad", 0, collect, &s, cursor), -EINVAL);

        /* The callback stops the walk; the cursor says where. */
        assert_int_equal(keystore_list(f->ks, NULL, NULL, 0, stop_at_first, &called, cursor), 42);
        assert_int_equal(called, 1);
        assert_string_equal(cursor, all.ids[0]);
}

struct nested {
        struct keystore *ks;
        struct key_record rec;
        int get, put;
};

static int nested_cb(const struct key_record *rec, void *userdata)
{
        struct nested *n = userdata;
        struct key_record got;
        void *storage = NULL;

        n->get = keystore_get(n->ks, rec->id, &got, &storage);
        if (n->get == 0)
                assert_string_equal(got.id, rec->id);
        free(storage);
        n->put = keystore_put_key(n->ks, &n->rec);
        return 0;
}

static void test_calls_inside_list_callback(void **state)
{
        struct fixture *f = *state;
        struct nested n = {.ks = f->ks};
        size_t count = 0;

        put(f, 1, "alice", "a");
        make_rec(&n.rec, 2, "alice", "b");
        assert_int_equal(keystore_list(f->ks, NULL, NULL, 0, nested_cb, &n, NULL), 0);
        /* Reads nest in the walk's snapshot; writes would pull it away. */
        assert_int_equal(n.get, 0);
        assert_int_equal(n.put, -EBUSY);
        /* Both work again afterwards. */
        assert_int_equal(keystore_put_key(f->ks, &n.rec), 0);
        assert_int_equal(keystore_list(f->ks, NULL, NULL, 0, count_cb, &count, NULL), 0);
        assert_int_equal(count, 2);
}

#define BULK_N      100000
#define BULK_BATCH  1000
#define BULK_OWNERS 40
#define BULK_PAGE   1000

struct bulk_walk {
        uint8_t *seen;
        size_t n;
        char last[TOKEN_ID_LEN + 1];
        const char *owner;
};

static int bulk_cb(const struct key_record *rec, void *userdata)
{
        struct bulk_walk *w = userdata;
        unsigned long idx;

        /* Ascending across pages means nothing was repeated out of order. */
        assert_true(strcmp(w->last, rec->id) < 0);
        memcpy(w->last, rec->id, sizeof(w->last));
        assert_int_equal(sscanf(rec->name, "k%lu", &idx), 1);
        assert_true(idx < BULK_N);
        assert_int_equal(w->seen[idx], 0);
        w->seen[idx] = 1;
        w->n++;
        if (w->owner)
                assert_string_equal(rec->owner, w->owner);
        return 0;
}

static size_t bulk_pages(struct fixture *f, const char *owner, struct bulk_walk *w)
{
        struct key_filter filter = {.owner = owner};
        char cursor[TOKEN_ID_LEN + 1] = "";
        size_t pages = 0;

        memset(w->seen, 0, BULK_N);
        w->n = 0;
        w->last[0] = '\0';
        w->owner = owner;
        do {
                size_t before = w->n;

                assert_int_equal(keystore_list(f->ks, owner ? &filter : NULL, cursor, BULK_PAGE,
                                               bulk_cb, w, cursor),
                                 0);
                assert_true(w->n - before <= BULK_PAGE);
                if (cursor[0])
                        assert_int_equal(w->n - before, BULK_PAGE);
                pages++;
        } while (cursor[0]);
        return pages;
}

static void test_bulk_100k(void **state)
{
        struct fixture *f = *state;
        static struct key_record batch[BULK_BATCH];
        static char names[BULK_BATCH][16];
        static char owners[BULK_OWNERS][16];
        struct bulk_walk w = {.seen = calloc(BULK_N, 1)};
        uint64_t counts[5];
        size_t pages;

        assert_non_null(w.seen);
        for (int o = 0; o < BULK_OWNERS; o++)
                snprintf(owners[o], sizeof(owners[o]), "user%02d", o);

        for (size_t base = 0; base < BULK_N; base += BULK_BATCH) {
                for (size_t i = 0; i < BULK_BATCH; i++) {
                        size_t n = base + i;

                        snprintf(names[i], sizeof(names[i]), "k%06zu", n);
                        make_rec(&batch[i], n, owners[n % BULK_OWNERS], names[i]);
                }
                assert_int_equal(keystore_put_keys(f->ks, batch, BULK_BATCH), 0);
        }

        assert_int_equal(keystore_count(f->ks, NOW, counts), 0);
        assert_int_equal(counts[KEY_STATUS_ENABLED], BULK_N);

        pages = bulk_pages(f, NULL, &w);
        assert_int_equal(w.n, BULK_N);
        assert_true(pages == BULK_N / BULK_PAGE || pages == BULK_N / BULK_PAGE + 1);
        for (size_t i = 0; i < BULK_N; i++)
                assert_int_equal(w.seen[i], 1);

        /* One owner's 2,500 keys through the owners index. */
        pages = bulk_pages(f, "user07", &w);
        assert_int_equal(w.n, BULK_N / BULK_OWNERS);
        assert_int_equal(pages, 3);
        for (size_t i = 0; i < BULK_N; i++)
                assert_int_equal(w.seen[i], i % BULK_OWNERS == 7);

        verify_ok(f);
        free(w.seen);
}

static void test_last_used(void **state)
{
        struct fixture *f = *state;
        char a[TOKEN_ID_LEN + 1], b[TOKEN_ID_LEN + 1], missing[TOKEN_ID_LEN + 1];
        char long_service[KEY_FIELD_MAX + 50], utf8[KEY_FIELD_MAX + 2];
        struct key_record rec;
        void *storage = NULL;

        put(f, 1, "alice", "a");
        put(f, 2, "alice", "b");
        make_id(1, a);
        make_id(2, b);
        make_id(3, missing);

        {
                struct last_used batch[4] = {
                    {.at = NOW + 10, .service = "sshd", .from = "192.0.2.1"},
                    {.at = NOW + 11, .service = "sudo"},
                    {.at = NOW + 12},
                    {.id = "not-an-id", .at = NOW + 13},
                };

                memcpy(batch[0].id, a, sizeof(a));
                memcpy(batch[1].id, missing, sizeof(missing));
                memcpy(batch[2].id, b, sizeof(b));
                assert_int_equal(keystore_record_last_used(f->ks, batch, 4), 0);
        }
        assert_int_equal(keystore_get(f->ks, a, &rec, &storage), 0);
        assert_int_equal(rec.last_used_at, NOW + 10);
        assert_string_equal(rec.last_used_service, "sshd");
        assert_string_equal(rec.last_used_from, "192.0.2.1");
        assert_string_equal(rec.name, "a");
        free(storage);
        storage = NULL;
        assert_int_equal(keystore_get(f->ks, b, &rec, &storage), 0);
        assert_int_equal(rec.last_used_at, NOW + 12);
        assert_null(rec.last_used_service);
        assert_null(rec.last_used_from);
        free(storage);
        storage = NULL;
        assert_int_equal(keystore_get(f->ks, missing, NULL, NULL), -ENOENT);

        /* An older use does not overwrite a newer one. */
        {
                struct last_used old = {.at = NOW + 5, .service = "sudo"};

                memcpy(old.id, a, sizeof(a));
                assert_int_equal(keystore_record_last_used(f->ks, &old, 1), 0);
                assert_int_equal(keystore_get(f->ks, a, &rec, &storage), 0);
                assert_int_equal(rec.last_used_at, NOW + 10);
                assert_string_equal(rec.last_used_service, "sshd");
                free(storage);
                storage = NULL;
        }

        /* Over-long values are cut to the field's size, on a character boundary. */
        memset(long_service, 's', sizeof(long_service) - 1);
        long_service[sizeof(long_service) - 1] = '\0';
        memset(utf8, 'h', KEY_FIELD_MAX - 1);
        memcpy(utf8 + KEY_FIELD_MAX - 1, "\xc3\xa9", 3); /* 255 + 2 bytes of "é" */
        {
                struct last_used e = {.at = NOW + 20, .service = long_service, .from = utf8};

                memcpy(e.id, a, sizeof(a));
                assert_int_equal(keystore_record_last_used(f->ks, &e, 1), 0);
                assert_int_equal(keystore_get(f->ks, a, &rec, &storage), 0);
                assert_int_equal(strlen(rec.last_used_service), KEY_FIELD_MAX);
                assert_int_equal(strlen(rec.last_used_from), KEY_FIELD_MAX - 1);
                free(storage);
                storage = NULL;
        }

        /* A revoked key still records its use (someone tried it). */
        assert_int_equal(keystore_set_status(f->ks, b, KEY_STATUS_REVOKED, NULL, NULL), 0);
        {
                struct last_used e = {.at = NOW + 30, .service = "sshd"};

                memcpy(e.id, b, sizeof(b));
                assert_int_equal(keystore_record_last_used(f->ks, &e, 1), 0);
                assert_int_equal(keystore_get(f->ks, b, &rec, &storage), 0);
                assert_int_equal(rec.last_used_at, NOW + 30);
                assert_int_equal(rec.status, KEY_STATUS_REVOKED);
                free(storage);
        }
        assert_int_equal(keystore_record_last_used(f->ks, NULL, 0), 0);
        assert_int_equal(keystore_record_last_used(f->ks, NULL, 1), -EINVAL);
        verify_ok(f);
}

#define MAX_EVENTS 64

struct events {
        size_t n;
        struct audit_event ev[MAX_EVENTS];
        char strings[MAX_EVENTS][5][64];
};

static void keep(char *dst, const char *src, const char **ret)
{
        if (!src) {
                *ret = NULL;
                return;
        }
        snprintf(dst, 64, "%s", src);
        *ret = dst;
}

static int collect_event(const struct audit_event *ev, void *userdata)
{
        struct events *e = userdata;
        size_t i = e->n++;

        assert_true(i < MAX_EVENTS);
        e->ev[i] = *ev;
        keep(e->strings[i][0], ev->actor, &e->ev[i].actor);
        keep(e->strings[i][1], ev->action, &e->ev[i].action);
        keep(e->strings[i][2], ev->key_id, &e->ev[i].key_id);
        keep(e->strings[i][3], ev->result, &e->ev[i].result);
        keep(e->strings[i][4], ev->detail, &e->ev[i].detail);
        return 0;
}

static int stop_event(const struct audit_event *ev, void *userdata)
{
        return 7;
}

static void list_events(struct fixture *f, uint64_t after, uint64_t since, const char *key_id,
                        size_t limit, struct events *e)
{
        e->n = 0;
        assert_int_equal(keystore_list_audit(f->ks, after, since, key_id, limit, collect_event, e),
                         0);
}

static void test_audit(void **state)
{
        struct fixture *f = *state;
        static struct events e;
        char detail[5000];

        for (int i = 1; i <= 5; i++) {
                struct audit_event ev = {
                    .time = (uint64_t)i * 100,
                    .actor = i % 2 ? "uid=0" : "key=7Hq2LmX9aB3z",
                    .action = i == 5 ? "revoke" : "create",
                    .key_id = i == 3 ? NULL : (i % 2 ? "AAAAAAAAAAAA" : "BBBBBBBBBBBB"),
                    .result = i == 4 ? "io.apikeyd.Keys.NameTaken" : "ok",
                    .detail = i == 2 ? "name=deploy" : NULL,
                    .seq = 999, /* ignored: the keystore numbers events */
                };

                assert_int_equal(keystore_append_audit(f->ks, &ev), 0);
        }

        list_events(f, 0, 0, NULL, 0, &e);
        assert_int_equal(e.n, 5);
        for (size_t i = 0; i < 5; i++) {
                assert_int_equal(e.ev[i].seq, i + 1);
                assert_int_equal(e.ev[i].time, (i + 1) * 100);
        }
        assert_string_equal(e.ev[0].actor, "uid=0");
        assert_string_equal(e.ev[1].actor, "key=7Hq2LmX9aB3z");
        assert_string_equal(e.ev[4].action, "revoke");
        assert_string_equal(e.ev[0].key_id, "AAAAAAAAAAAA");
        assert_null(e.ev[2].key_id);
        assert_string_equal(e.ev[3].result, "io.apikeyd.Keys.NameTaken");
        assert_string_equal(e.ev[1].detail, "name=deploy");
        assert_null(e.ev[0].detail);

        list_events(f, 2, 0, NULL, 0, &e);
        assert_int_equal(e.n, 3);
        assert_int_equal(e.ev[0].seq, 3);
        list_events(f, 0, 300, NULL, 0, &e);
        assert_int_equal(e.n, 3);
        assert_int_equal(e.ev[0].time, 300);
        list_events(f, 0, 0, "AAAAAAAAAAAA", 0, &e);
        assert_int_equal(e.n, 2);
        assert_int_equal(e.ev[0].seq, 1);
        assert_int_equal(e.ev[1].seq, 5);
        list_events(f, 1, 0, "BBBBBBBBBBBB", 1, &e);
        assert_int_equal(e.n, 1);
        assert_int_equal(e.ev[0].seq, 2);
        list_events(f, 0, 0, NULL, 2, &e);
        assert_int_equal(e.n, 2);
        list_events(f, 5, 0, NULL, 0, &e);
        assert_int_equal(e.n, 0);
        list_events(f, UINT64_MAX, 0, NULL, 0, &e);
        assert_int_equal(e.n, 0);
        assert_int_equal(keystore_list_audit(f->ks, 0, 0, NULL, 0, stop_event, NULL), 7);

        /* Refusals. */
        memset(detail, 'd', sizeof(detail) - 1);
        detail[sizeof(detail) - 1] = '\0';
        assert_int_equal(
            keystore_append_audit(f->ks, &(struct audit_event){.action = "x", .result = "ok"}),
            -EINVAL);
        assert_int_equal(
            keystore_append_audit(f->ks,
                                  &(struct audit_event){.actor = "a", .action = "x", .result = ""}),
            -EINVAL);
        assert_int_equal(keystore_append_audit(f->ks, &(struct audit_event){.actor = "a",
                                                                            .action = "x",
                                                                            .result = "ok",
                                                                            .detail = detail}),
                         -EINVAL);
        assert_int_equal(keystore_append_audit(f->ks, NULL), -EINVAL);

        /* Numbering continues after a reopen. */
        ks_close(f);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        assert_int_equal(
            keystore_append_audit(
                f->ks,
                &(struct audit_event){.time = 600, .actor = "a", .action = "x", .result = "ok"}),
            0);
        list_events(f, 5, 0, NULL, 0, &e);
        assert_int_equal(e.n, 1);
        assert_int_equal(e.ev[0].seq, 6);
}

/* A change of its own: `write` (a put or a delete) and its audit event `ev`. */
struct audited {
        const struct audit_event *ev;
        const struct key_record *put;
        const char *delete_id;
        bool audit_after; /* the event after the write rather than before */
};

static int audited_fn(struct keystore_tx *tx, void *userdata)
{
        const struct audited *a = userdata;
        struct keystore *ks = keystore_tx_keystore(tx);
        int r = 0;

        if (!a->audit_after)
                r = keystore_tx_audit(tx, a->ev);
        if (r >= 0)
                r = a->put ? keystore_put_key(ks, a->put) : keystore_delete_key(ks, a->delete_id);
        if (r >= 0 && a->audit_after)
                r = keystore_tx_audit(tx, a->ev);
        return r;
}

static int audited_change(struct keystore *ks, const struct audited *a)
{
        struct keystore_write c = {.fn = audited_fn, .userdata = (void *)a};

        assert_int_equal(keystore_write_group(ks, &c, 1), 0);
        return c.result;
}

static void test_audit_with_change(void **state)
{
        struct fixture *f = *state;
        static struct events e;
        struct key_record rec;
        struct audit_event ev = {.time = NOW, .actor = "uid=0", .action = "create", .result = "ok"};

        /* A change's event is committed with it... */
        make_rec(&rec, 1, "alice", "laptop");
        ev.key_id = rec.id;
        assert_int_equal(audited_change(f->ks, &(struct audited){.ev = &ev, .put = &rec}), 0);
        list_events(f, 0, 0, NULL, 0, &e);
        assert_int_equal(e.n, 1);
        assert_string_equal(e.ev[0].action, "create");
        assert_string_equal(e.ev[0].key_id, rec.id);

        /* ...and not at all when the change is refused, whether the event
         * came before the refused write or not, */
        make_rec(&rec, 2, "alice", "laptop");
        ev.key_id = rec.id;
        assert_int_equal(audited_change(f->ks, &(struct audited){.ev = &ev, .put = &rec}), -EEXIST);
        assert_int_equal(
            audited_change(f->ks, &(struct audited){.ev = &ev, .put = &rec, .audit_after = true}),
            -EEXIST);
        list_events(f, 0, 0, NULL, 0, &e);
        assert_int_equal(e.n, 1);
        assert_int_equal(keystore_get(f->ks, rec.id, NULL, NULL), -ENOENT);

        /* and a write outside any change appends none. */
        make_rec(&rec, 3, "alice", "phone");
        assert_int_equal(keystore_put_key(f->ks, &rec), 0);
        list_events(f, 0, 0, NULL, 0, &e);
        assert_int_equal(e.n, 1);

        ev.action = "delete";
        ev.key_id = rec.id;
        assert_int_equal(
            audited_change(f->ks,
                           &(struct audited){.ev = &ev, .delete_id = rec.id, .audit_after = true}),
            0);
        list_events(f, 0, 0, NULL, 0, &e);
        assert_int_equal(e.n, 2);
        assert_string_equal(e.ev[1].action, "delete");
        assert_true(e.ev[1].seq == e.ev[0].seq + 1);

        /* An event that cannot be encoded fails its change, which writes nothing. */
        make_rec(&rec, 4, "alice", "tablet");
        ev.actor = NULL;
        assert_int_equal(
            audited_change(f->ks, &(struct audited){.ev = &ev, .put = &rec, .audit_after = true}),
            -EINVAL);
        assert_int_equal(keystore_get(f->ks, rec.id, NULL, NULL), -ENOENT);
        list_events(f, 0, 0, NULL, 0, &e);
        assert_int_equal(e.n, 2);
}

/* One change of a group test: a key to put, with its audit event. */
struct group_put {
        struct key_record rec;
        uint64_t max_owned;
};

static int group_put_fn(struct keystore_tx *tx, void *userdata)
{
        struct group_put *p = userdata;
        struct audit_event ev = {
            .time = NOW, .actor = "uid=0", .action = "create", .key_id = p->rec.id, .result = "ok"};
        int r = keystore_tx_audit(tx, &ev);

        return r < 0 ? r
                     : keystore_put_key_limited(keystore_tx_keystore(tx), &p->rec, p->max_owned);
}

/* Keys invited for an owner and the owner's own keys: each kind its own allowance. */
static void test_put_limited_counts_invited_keys_apart(void **state)
{
        struct fixture *f = *state;
        struct key_record rec[6];

        for (int i = 0; i < 6; i++) {
                char name[16];
                snprintf(name, sizeof(name), "k%d", i);
                make_rec(&rec[i], 100 + i, "alice", name);
                rec[i].name = strdup(name);
                if (i >= 3)
                        rec[i].flags = KEY_FLAG_NO_LOGIN;
        }
        assert_int_equal(keystore_put_key_limited(f->ks, &rec[0], 2), 0);
        assert_int_equal(keystore_put_key_limited(f->ks, &rec[1], 2), 0);
        assert_int_equal(keystore_put_key_limited(f->ks, &rec[2], 2), -EDQUOT);
        assert_int_equal(keystore_put_key_limited(f->ks, &rec[3], 2), 0);
        assert_int_equal(keystore_put_key_limited(f->ks, &rec[4], 2), 0);
        assert_int_equal(keystore_put_key_limited(f->ks, &rec[5], 2), -EDQUOT);
        assert_int_equal(keystore_put_key_limited(f->ks, &rec[2], 2), -EDQUOT);
        for (int i = 0; i < 6; i++)
                free((char *)rec[i].name);
}

static void test_write_group(void **state)
{
        struct fixture *f = *state;
        static struct events e;
        struct group_put p[5];
        struct keystore_write changes[5];
        char *err = NULL;

        /* A change that fails is undone alone, with its audit event; each
         * sees the ones before it (the name, the owner's count). */
        make_rec(&p[0].rec, 1, "alice", "laptop");
        make_rec(&p[1].rec, 2, "alice", "laptop"); /* the name is taken by p[0] */
        make_rec(&p[2].rec, 3, "alice", "phone");  /* alice's second key */
        make_rec(&p[3].rec, 4, "alice", "tablet"); /* a third: over the limit of 2 */
        make_rec(&p[4].rec, 5, "bob", "laptop");
        for (size_t i = 0; i < ELEMENTSOF(p); i++) {
                p[i].max_owned = 2;
                changes[i] = (struct keystore_write){.fn = group_put_fn, .userdata = &p[i]};
        }
        assert_int_equal(keystore_write_group(f->ks, changes, ELEMENTSOF(changes)), 0);
        assert_int_equal(changes[0].result, 0);
        assert_int_equal(changes[1].result, -EEXIST);
        assert_int_equal(changes[2].result, 0);
        assert_int_equal(changes[3].result, -EDQUOT);
        assert_int_equal(changes[4].result, 0);
        assert_int_equal(keystore_get(f->ks, p[0].rec.id, NULL, NULL), 0);
        assert_int_equal(keystore_get(f->ks, p[1].rec.id, NULL, NULL), -ENOENT);
        assert_int_equal(keystore_get(f->ks, p[3].rec.id, NULL, NULL), -ENOENT);
        assert_int_equal(keystore_get(f->ks, p[4].rec.id, NULL, NULL), 0);
        list_events(f, 0, 0, NULL, 0, &e);
        assert_int_equal(e.n, 3);
        assert_string_equal(e.ev[0].key_id, p[0].rec.id);
        assert_string_equal(e.ev[1].key_id, p[2].rec.id);
        assert_string_equal(e.ev[2].key_id, p[4].rec.id);
        assert_int_equal(keystore_check_indexes(f->ks, &err), 0);
        assert_null(err);

        /* A group that does not fit the map grows it and runs again. */
        ks_wipe(f, 64 * 1024, 0, KEYSTORE_NOSYNC);
        {
                static struct group_put many[GROUP_TEST_KEYS];
                static struct keystore_write ch[GROUP_TEST_KEYS];
                static char names[GROUP_TEST_KEYS][16];

                for (size_t i = 0; i < GROUP_TEST_KEYS; i++) {
                        snprintf(names[i], sizeof(names[i]), "k%zu", i);
                        make_rec(&many[i].rec, 100 + i, "carol", names[i]);
                        many[i].rec.description = "d";
                        many[i].max_owned = 0;
                        ch[i] = (struct keystore_write){.fn = group_put_fn, .userdata = &many[i]};
                }
                assert_int_equal(keystore_write_group(f->ks, ch, GROUP_TEST_KEYS), 0);
                for (size_t i = 0; i < GROUP_TEST_KEYS; i++)
                        assert_int_equal(ch[i].result, 0);
                /* Every change's event, the last one numbered after all of them. */
                list_events(f, GROUP_TEST_KEYS - 1, 0, NULL, 0, &e);
                assert_int_equal(e.n, 1);
                assert_string_equal(e.ev[0].key_id, many[GROUP_TEST_KEYS - 1].rec.id);
                assert_int_equal(keystore_check_indexes(f->ks, &err), 0);
        }

        assert_int_equal(keystore_write_group(f->ks, NULL, 0), 0);
}

static void test_audit_batch(void **state)
{
        struct fixture *f = *state;
        static struct events e;
        struct audit_event evs[3] = {
            {.time = NOW, .actor = "uid=1", .action = "verify", .result = "NOT_FOUND"},
            {.time = NOW + 1, .actor = "uid=2", .action = "verify", .result = "DISABLED"},
            {.time = NOW + 2, .actor = "uid=3", .action = "verify", .result = "EXPIRED"},
        };

        assert_int_equal(keystore_append_audits(f->ks, evs, 0), 0);
        assert_int_equal(keystore_append_audits(f->ks, evs, 3), 0);
        list_events(f, 0, 0, NULL, 0, &e);
        assert_int_equal(e.n, 3);
        for (size_t i = 0; i < 3; i++) {
                assert_string_equal(e.ev[i].result, evs[i].result);
                assert_true(e.ev[i].seq == i + 1);
        }
        /* All or nothing: one bad event keeps the whole batch out. */
        evs[1].action = NULL;
        assert_int_equal(keystore_append_audits(f->ks, evs, 3), -EINVAL);
        list_events(f, 0, 0, NULL, 0, &e);
        assert_int_equal(e.n, 3);
}

static void test_audit_prune(void **state)
{
        struct fixture *f = *state;
        static struct events e;

        ks_close(f);
        ks_open(f, 0, 10, KEYSTORE_NOSYNC);
        for (int i = 1; i <= 25; i++) {
                struct audit_event ev = {
                    .time = (uint64_t)i, .actor = "a", .action = "x", .result = "ok"};

                assert_int_equal(keystore_append_audit(f->ks, &ev), 0);
        }
        list_events(f, 0, 0, NULL, 0, &e);
        assert_int_equal(e.n, 10);
        for (size_t i = 0; i < 10; i++)
                assert_int_equal(e.ev[i].seq, 16 + i);

        /* A smaller bound takes effect at the next append. */
        ks_close(f);
        ks_open(f, 0, 5, KEYSTORE_NOSYNC);
        assert_int_equal(
            keystore_append_audit(
                f->ks,
                &(struct audit_event){.time = 26, .actor = "a", .action = "x", .result = "ok"}),
            0);
        list_events(f, 0, 0, NULL, 0, &e);
        assert_int_equal(e.n, 5);
        assert_int_equal(e.ev[0].seq, 22);
        assert_int_equal(e.ev[4].seq, 26);
}

/* An admin's changes outlive any volume of other events, and reads merge both in order. */
static void test_audit_admin_retention(void **state)
{
        struct fixture *f = *state;
        static struct events e;
        struct audit_event ev = {.actor = "uid=0(root)", .action = "create", .result = "ok"};
        struct audit_event flood[8];

        ks_close(f);
        ks_open(f, 0, 4, KEYSTORE_NOSYNC);
        ev.admin = true;
        ev.time = 1;
        assert_int_equal(keystore_append_audit(f->ks, &ev), 0); /* seq 1 */
        ev.admin = false;
        ev.actor = "uid=1000(alice)";
        ev.action = "update";
        for (int i = 0; i < 30; i++) {
                ev.time = 2 + (uint64_t)i;
                assert_int_equal(keystore_append_audit(f->ks, &ev), 0); /* seq 2..31 */
        }
        /* A batch (failed verifies, refusals) counts against the same part. */
        for (size_t i = 0; i < ELEMENTSOF(flood); i++)
                flood[i] = (struct audit_event){
                    .time = 40 + i, .actor = "uid=1000", .action = "verify", .result = "NOT_FOUND"};
        assert_int_equal(keystore_append_audits(f->ks, flood, ELEMENTSOF(flood)), 0); /* 32..39 */

        list_events(f, 0, 0, NULL, 0, &e);
        assert_int_equal(e.n, 5);
        assert_int_equal(e.ev[0].seq, 1);
        assert_string_equal(e.ev[0].actor, "uid=0(root)");
        assert_true(e.ev[0].admin);
        for (size_t i = 1; i < 5; i++) {
                assert_int_equal(e.ev[i].seq, 35 + i);
                assert_false(e.ev[i].admin);
        }

        /* An admin's event in a change, numbered after the others. */
        struct key_record rec;
        make_rec(&rec, 1, "alice", "laptop");
        ev = (struct audit_event){.time = 50,
                                  .actor = "key=AAAAAAAAAAAA(ops) uid=0(root)",
                                  .action = "create",
                                  .key_id = rec.id,
                                  .result = "ok",
                                  .admin = true};
        assert_int_equal(audited_change(f->ks, &(struct audited){.ev = &ev, .put = &rec}), 0);
        list_events(f, 0, 0, NULL, 0, &e);
        assert_int_equal(e.n, 6);
        assert_int_equal(e.ev[5].seq, 40);
        assert_true(e.ev[5].admin);
        /* Paging and filters see the merged order. */
        list_events(f, 1, 0, NULL, 2, &e);
        assert_int_equal(e.n, 2);
        assert_int_equal(e.ev[0].seq, 36);
        list_events(f, 39, 0, NULL, 0, &e);
        assert_int_equal(e.n, 1);
        assert_int_equal(e.ev[0].seq, 40);
        list_events(f, 0, 0, rec.id, 0, &e);
        assert_int_equal(e.n, 1);
        list_events(f, 0, 48, NULL, 0, &e);
        assert_int_equal(e.n, 1);

        /* Admins' own volume drops only admins' older events; numbering
         * goes on across a reopen. */
        ev.key_id = NULL;
        for (int i = 0; i < 4; i++)
                assert_int_equal(keystore_append_audit(f->ks, &ev), 0); /* 41..44 */
        ks_close(f);
        ks_open(f, 0, 4, KEYSTORE_NOSYNC);
        assert_int_equal(keystore_append_audit(f->ks, &ev), 0); /* 45 */
        list_events(f, 0, 0, NULL, 0, &e);
        assert_int_equal(e.n, 8);
        assert_int_equal(e.ev[0].seq, 36);
        assert_false(e.ev[3].admin);
        assert_int_equal(e.ev[4].seq, 42);
        assert_int_equal(e.ev[7].seq, 45);
        assert_true(e.ev[7].admin);

        /* A read-only handle reads both. */
        ks_close(f);
        ks_open(f, 0, 0, KEYSTORE_READONLY);
        list_events(f, 0, 0, NULL, 0, &e);
        assert_int_equal(e.n, 8);
        assert_int_equal(keystore_append_audit(f->ks, &ev), -EROFS);
}

static void test_audit_corrupt(void **state)
{
        struct fixture *f = *state;
        const uint8_t key[8] = {0, 0, 0, 0, 0, 0, 0, 2};
        static struct events e;
        struct raw raw;

        for (int i = 0; i < 3; i++)
                assert_int_equal(
                    keystore_append_audit(
                        f->ks, &(struct audit_event){.actor = "a", .action = "x", .result = "ok"}),
                    0);
        raw_open(f, &raw, true);
        raw_put(&raw, raw.audit, key, sizeof(key), "\1\0\0", 3);
        raw_close(&raw);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        e.n = 0;
        assert_int_equal(keystore_list_audit(f->ks, 0, 0, NULL, 0, collect_event, &e), -EBADMSG);
        assert_int_equal(e.n, 1);
        /* Past the damage it reads fine. */
        list_events(f, 2, 0, NULL, 0, &e);
        assert_int_equal(e.n, 1);
}

static void test_meta(void **state)
{
        struct fixture *f = *state;
        char buf[16];
        size_t len = 0;

        assert_int_equal(keystore_meta_get(f->ks, "greeting", buf, sizeof(buf), &len), -ENOENT);
        assert_int_equal(keystore_meta_put(f->ks, "greeting", "hello", 5), 0);
        assert_int_equal(keystore_meta_get(f->ks, "greeting", buf, sizeof(buf), &len), 0);
        assert_int_equal(len, 5);
        assert_memory_equal(buf, "hello", 5);
        assert_int_equal(keystore_meta_get(f->ks, "greeting", buf, 5, &len), 0);
        len = 0;
        assert_int_equal(keystore_meta_get(f->ks, "greeting", buf, 4, &len), -ENOBUFS);
        assert_int_equal(len, 5);
        assert_int_equal(keystore_meta_get(f->ks, "greeting", NULL, 0, &len), -ENOBUFS);
        assert_int_equal(keystore_meta_get(f->ks, "greeting", buf, 5, NULL), 0);

        assert_int_equal(keystore_meta_put(f->ks, "greeting", "hi", 2), 0);
        assert_int_equal(keystore_meta_get(f->ks, "greeting", buf, sizeof(buf), &len), 0);
        assert_int_equal(len, 2);
        assert_memory_equal(buf, "hi", 2);
        assert_int_equal(keystore_meta_put(f->ks, "empty", NULL, 0), 0);
        assert_int_equal(keystore_meta_get(f->ks, "empty", NULL, 0, &len), 0);
        assert_int_equal(len, 0);

        assert_int_equal(keystore_meta_put(f->ks, "", "x", 1), -EINVAL);
        assert_int_equal(keystore_meta_put(f->ks, NULL, "x", 1), -EINVAL);
        assert_int_equal(keystore_meta_put(f->ks, "x", NULL, 1), -EINVAL);
        assert_int_equal(keystore_meta_get(f->ks, "", buf, sizeof(buf), &len), -EINVAL);

        /* It survives a reopen. */
        ks_close(f);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);
        assert_int_equal(keystore_meta_get(f->ks, "greeting", buf, sizeof(buf), &len), 0);
        assert_memory_equal(buf, "hi", 2);
}

static void test_count(void **state)
{
        struct fixture *f = *state;
        uint64_t counts[5] = {9, 9, 9, 9, 9};
        static const struct {
                int status;
                uint64_t expires_at;
        } keys[] = {
            {KEY_STATUS_ENABLED, 0},
            {KEY_STATUS_ENABLED, NOW + DAY},
            {KEY_STATUS_DISABLED, 0},
            {KEY_STATUS_REVOKED, NOW - DAY}, /* revoked outranks expired */
            {KEY_STATUS_ENABLED, NOW - DAY},
            {KEY_STATUS_DISABLED, NOW},
        };

        assert_int_equal(keystore_count(f->ks, NOW, counts), 0);
        for (int i = 0; i < 5; i++)
                assert_int_equal(counts[i], 0);

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                struct key_record rec;
                char name[8];

                snprintf(name, sizeof(name), "k%zu", i);
                make_rec(&rec, i, "alice", name);
                rec.status = (uint8_t)keys[i].status;
                rec.expires_at = keys[i].expires_at;
                assert_int_equal(keystore_put_key(f->ks, &rec), 0);
        }
        assert_int_equal(keystore_count(f->ks, NOW, counts), 0);
        assert_int_equal(counts[0], 0);
        assert_int_equal(counts[KEY_STATUS_ENABLED], 2);
        assert_int_equal(counts[KEY_STATUS_DISABLED], 1);
        assert_int_equal(counts[KEY_STATUS_REVOKED], 1);
        assert_int_equal(counts[KEY_STATUS_EXPIRED], 2);
        assert_int_equal(keystore_count(f->ks, NOW - 2 * DAY, counts), 0);
        assert_int_equal(counts[KEY_STATUS_ENABLED], 3);
        assert_int_equal(counts[KEY_STATUS_DISABLED], 2);
        assert_int_equal(counts[KEY_STATUS_EXPIRED], 0);
        assert_int_equal(keystore_count(f->ks, NOW, NULL), -EINVAL);
}

static void test_map_growth(void **state)
{
        struct fixture *f = *state;
        static struct key_record batch[3000];
        static char names[3000][16];
        uint64_t counts[5];
        struct stat st;

        ks_wipe(f, 64 * 1024, 0, KEYSTORE_NOSYNC);

        /* One at a time: each write grows the map at most once. */
        for (uint64_t i = 0; i < 1000; i++) {
                char name[16];

                snprintf(name, sizeof(name), "single-%" PRIu64, i);
                put(f, i, "alice", name);
        }
        /* A batch far larger than the map: several doublings in one write. */
        for (size_t i = 0; i < ELEMENTSOF(batch); i++) {
                snprintf(names[i], sizeof(names[i]), "batch-%zu", i);
                make_rec(&batch[i], 100000 + i, "bob", names[i]);
        }
        assert_int_equal(keystore_put_keys(f->ks, batch, ELEMENTSOF(batch)), 0);
        assert_int_equal(keystore_count(f->ks, NOW, counts), 0);
        assert_int_equal(counts[KEY_STATUS_ENABLED], 4000);
        verify_ok(f);

        /* The file can only be this large if the map grew. */
        assert_int_equal(stat(f->path, &st), 0);
        assert_true(st.st_size > 64 * 1024);

        /* Reopening with the small size adopts the file's. */
        ks_close(f);
        ks_open(f, 64 * 1024, 0, KEYSTORE_NOSYNC);
        assert_int_equal(keystore_count(f->ks, NOW, counts), 0);
        assert_int_equal(counts[KEY_STATUS_ENABLED], 4000);
        put(f, 200000, "carol", "after-reopen");
        verify_ok(f);
}

static void test_readonly(void **state)
{
        struct fixture *f = *state;
        struct key_record rec;
        size_t n = 0;
        uint8_t buf[4];
        size_t len;

        put(f, 1, "alice", "a");
        ks_close(f);
        ks_open(f, 0, 0, KEYSTORE_READONLY);
        assert_int_equal(keystore_get(f->ks, "000000000000", NULL, NULL), -ENOENT);
        assert_int_equal(keystore_list(f->ks, NULL, NULL, 0, count_cb, &n, NULL), 0);
        assert_int_equal(n, 1);
        assert_int_equal(keystore_meta_get(f->ks, "schema", buf, sizeof(buf), &len), 0);
        verify_ok(f);

        make_rec(&rec, 2, "alice", "b");
        assert_int_equal(keystore_put_key(f->ks, &rec), -EROFS);
        assert_int_equal(keystore_meta_put(f->ks, "x", "y", 1), -EROFS);
        make_id(1, rec.id);
        assert_int_equal(keystore_delete_key(f->ks, rec.id), -EROFS);
        assert_int_equal(
            keystore_append_audit(
                f->ks, &(struct audit_event){.actor = "a", .action = "x", .result = "ok"}),
            -EROFS);
        ks_close(f);
        ks_open(f, 0, 0, KEYSTORE_NOSYNC);

        /* Read-only on a directory with no store in it. */
        {
                struct keystore_options ro = {.flags = KEYSTORE_READONLY};
                struct keystore *ks = NULL;
                char *error = NULL;
                char empty[300];

                snprintf(empty, sizeof(empty), "%s/empty", f->dir);
                assert_int_equal(mkdir(empty, 0700), 0);
                assert_true(keystore_open(empty, &ro, &ks, &error) < 0);
                assert_null(ks);
                assert_non_null(error);
                free(error);
                assert_int_equal(rmdir(empty), 0);
        }
}

/* ---- a key's lifecycle: uses spent, rotation, limits (keystore_limits.c) ---- */

static void test_spend_use(void **state)
{
        struct fixture *f = *state;
        char retired[TOKEN_ID_LEN + 1] = "x";
        struct key_record rec, got;
        void *storage = NULL;

        make_rec(&rec, 1, "alice", "once");
        rec.max_uses = 2;
        assert_int_equal(keystore_put_key(f->ks, &rec), 0);
        assert_int_equal(keystore_spend_use(f->ks, rec.id, NOW, retired), 0);
        assert_string_equal(retired, "");
        assert_int_equal(keystore_spend_use(f->ks, rec.id, NOW, retired), 0);
        assert_int_equal(keystore_spend_use(f->ks, rec.id, NOW, retired), -EDQUOT);
        assert_int_equal(keystore_get(f->ks, rec.id, &got, &storage), 0);
        assert_int_equal(got.uses, 2);
        free(storage);
        /* Gone, or no longer enabled: nothing spent. */
        assert_int_equal(keystore_spend_use(f->ks, "AAAAAAAAAAAA", NOW, retired), -ENOENT);
        make_rec(&rec, 2, "alice", "expired");
        rec.max_uses = 2;
        rec.expires_at = NOW;
        assert_int_equal(keystore_put_key(f->ks, &rec), 0);
        assert_int_equal(keystore_spend_use(f->ks, rec.id, NOW, retired), -ESTALE);
        verify_ok(f);
}

static void test_rotate_and_retire(void **state)
{
        struct fixture *f = *state;
        struct key_rotation rot = {.now = NOW, .created_by = "uid=0", .grace = DAY};
        char retired[TOKEN_ID_LEN + 1];
        struct key_record old, got;
        void *storage = NULL;

        make_rec(&old, 1, "alice", "deploy");
        old.expires_at = NOW + 30 * DAY;
        old.max_uses = 10;
        old.uses = 3;
        assert_int_equal(keystore_put_key(f->ks, &old), 0);
        struct key_record child;
        make_rec(&child, 5, "alice", "job");
        memcpy(child.parent, old.id, sizeof(child.parent));
        assert_int_equal(keystore_put_key(f->ks, &child), 0);
        make_id(2, rot.new_id);
        memset(rot.new_hash, 0xab, sizeof(rot.new_hash));
        rot.retire_on_first_use = true;
        assert_int_equal(keystore_rotate(f->ks, old.id, &rot), 0);
        assert_string_equal(rot.ret_new.id, rot.new_id);
        assert_string_equal(rot.ret_new.name, "deploy");
        assert_string_equal(rot.ret_new.replaces, old.id);
        assert_int_equal(rot.ret_new.expires_at, old.expires_at);
        assert_int_equal(rot.ret_new.uses, 3);
        assert_true(rot.ret_new.flags & KEY_FLAG_RETIRE_ON_FIRST_USE);
        assert_string_equal(rot.ret_old.replaced_by, rot.new_id);
        assert_int_equal(rot.ret_old.expires_at, NOW + DAY);
        assert_true(strncmp(rot.ret_old.name, "deploy (old ", 12) == 0);
        /* The key created through the old one is the successor's now. */
        char kids[2][TOKEN_ID_LEN + 1];
        size_t n_kids;
        assert_int_equal(keystore_children(f->ks, rot.new_id, kids, 2, &n_kids), 0);
        assert_int_equal(n_kids, 1);
        assert_string_equal(kids[0], child.id);
        assert_int_equal(keystore_children(f->ks, old.id, kids, 2, &n_kids), 0);
        assert_int_equal(n_kids, 0);
        free(rot.ret_new_storage);
        free(rot.ret_old_storage);
        verify_ok(f);
        /* Once rotated, never again. */
        make_id(3, rot.new_id);
        assert_int_equal(keystore_rotate(f->ks, old.id, &rot), -EALREADY);
        /* The successor's first use ends the grace and clears its flag. */
        make_id(2, rot.new_id);
        assert_int_equal(keystore_spend_use(f->ks, rot.new_id, NOW + HOUR, retired), 0);
        assert_string_equal(retired, old.id);
        assert_int_equal(keystore_get(f->ks, old.id, &got, &storage), 0);
        assert_int_equal(got.expires_at, NOW + HOUR);
        free(storage);
        assert_int_equal(keystore_get(f->ks, rot.new_id, &got, &storage), 0);
        assert_false(got.flags & KEY_FLAG_RETIRE_ON_FIRST_USE);
        assert_int_equal(got.uses, 4);
        free(storage);
        assert_int_equal(keystore_spend_use(f->ks, rot.new_id, NOW + HOUR, retired), 0);
        assert_string_equal(retired, "");
        verify_ok(f);
}

static void test_rotate_twice(void **state)
{
        struct fixture *f = *state;
        struct key_rotation rot = {
            .now = NOW, .created_by = "uid=0", .grace = DAY, .retire_on_first_use = true};
        struct key_rotation again = {.now = NOW + HOUR, .created_by = "uid=0", .grace = DAY};
        struct key_record old, got;
        void *storage = NULL;

        make_rec(&old, 1, "alice", "deploy");
        assert_int_equal(keystore_put_key(f->ks, &old), 0);
        make_id(2, rot.new_id);
        assert_int_equal(keystore_rotate(f->ks, old.id, &rot), 0);
        free(rot.ret_new_storage);
        free(rot.ret_old_storage);
        /* The successor rotated before its first use: the next one does not
         * take over its retirement of the first key unless asked, and the
         * first key's grace ends: two keys of a rotation work at most. */
        make_id(3, again.new_id);
        assert_int_equal(keystore_rotate(f->ks, rot.new_id, &again), 0);
        assert_false(again.ret_new.flags & KEY_FLAG_RETIRE_ON_FIRST_USE);
        assert_string_equal(again.ret_new.replaces, rot.new_id);
        assert_int_equal(again.ret_old.expires_at, NOW + HOUR + DAY);
        free(again.ret_new_storage);
        free(again.ret_old_storage);
        assert_int_equal(keystore_get(f->ks, old.id, &got, &storage), 0);
        assert_int_equal(got.expires_at, NOW + HOUR);
        free(storage);
        verify_ok(f);
}

static void test_rotate_refusals(void **state)
{
        struct fixture *f = *state;
        struct key_rotation rot = {.now = NOW, .created_by = "uid=0"};
        struct key_record rec;
        char name[KEY_NAME_MAX + 1];

        make_id(9, rot.new_id);
        make_rec(&rec, 1, "alice", "revoked");
        rec.status = KEY_STATUS_REVOKED;
        assert_int_equal(keystore_put_key(f->ks, &rec), 0);
        assert_int_equal(keystore_rotate(f->ks, rec.id, &rot), -ESTALE);
        make_rec(&rec, 2, "alice", "expired");
        rec.expires_at = NOW;
        assert_int_equal(keystore_put_key(f->ks, &rec), 0);
        assert_int_equal(keystore_rotate(f->ks, rec.id, &rot), -EKEYEXPIRED);
        make_rec(&rec, 3, "alice", "disabled");
        rec.status = KEY_STATUS_DISABLED;
        assert_int_equal(keystore_put_key(f->ks, &rec), 0);
        assert_int_equal(keystore_rotate(f->ks, rec.id, &rot), -EKEYREJECTED);
        assert_int_equal(keystore_rotate(f->ks, "AAAAAAAAAAAA", &rot), -ENOENT);
        /* The longest name, in two-byte characters: cut at a character's start. */
        for (size_t i = 0; i < KEY_NAME_MAX; i += 2)
                memcpy(name + i, "\xc3\xa9", 2);
        name[KEY_NAME_MAX] = '\0';
        make_rec(&rec, 4, "alice", name);
        assert_int_equal(keystore_put_key(f->ks, &rec), 0);
        assert_int_equal(keystore_rotate(f->ks, rec.id, &rot), 0);
        assert_true(strlen(rot.ret_old.name) <= KEY_NAME_MAX);
        assert_string_equal(rot.ret_new.name, name);
        free(rot.ret_new_storage);
        free(rot.ret_old_storage);
        verify_ok(f);
}

static void test_set_limits(void **state)
{
        struct fixture *f = *state;
        struct key_limits l = {.fields = KEY_LIMIT_MAX_USES, .max_uses = 5};
        struct key_record rec, got;
        void *storage = NULL;

        make_rec(&rec, 1, "alice", "metered");
        rec.max_uses = 4;
        rec.uses = 3;
        assert_int_equal(keystore_put_key(f->ks, &rec), 0);
        assert_int_equal(keystore_set_limits(f->ks, rec.id, &l, &got, &storage), 0);
        assert_int_equal(got.max_uses, 5);
        assert_int_equal(got.uses, 3);
        free(storage);
        l.max_uses = 2;
        assert_int_equal(keystore_set_limits(f->ks, rec.id, &l, &got, &storage), 0);
        assert_int_equal(got.uses, 2);
        free(storage);
        l = (struct key_limits){.fields = KEY_LIMIT_MAX_USES | KEY_LIMIT_RATE,
                                .rate_limit_count = 100,
                                .rate_limit_window = 60 * SECOND};
        assert_int_equal(keystore_set_limits(f->ks, rec.id, &l, &got, &storage), 0);
        assert_int_equal(got.max_uses, 0);
        assert_int_equal(got.uses, 0);
        assert_int_equal(got.rate_limit_count, 100);
        free(storage);
        /* A window without a count is no rate limit: refused. */
        l = (struct key_limits){.fields = KEY_LIMIT_RATE, .rate_limit_window = SECOND};
        assert_int_equal(keystore_set_limits(f->ks, rec.id, &l, &got, &storage), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
            T(test_open_creates_store),
            T(test_put_get),
            T(test_view),
            T(test_put_refusals),
            T(test_update),
            T(test_set_status),
            T(test_delete),
            T(test_indexes_after_random_changes),
            T(test_reopen),
            T(test_tree_revoke),
            T(test_tree_delete),
            T(test_tree_lineage),
            T(test_admin_disable_mark),
            T(test_disable_unused),
            T(test_schema_1_upgraded),
            T(test_schema_newer_refused),
            T(test_schema_missing),
            T(test_corrupt_record),
            T(test_verify_finds_index_damage),
            T(test_verify_finds_children_damage),
            T(test_list_filters),
            T(test_list_paging),
            T(test_calls_inside_list_callback),
            T(test_bulk_100k),
            T(test_last_used),
            T(test_audit),
            T(test_audit_with_change),
            T(test_put_limited_counts_invited_keys_apart),
            T(test_write_group),
            T(test_audit_batch),
            T(test_audit_prune),
            T(test_audit_admin_retention),
            T(test_audit_corrupt),
            T(test_meta),
            T(test_count),
            T(test_map_growth),
            T(test_readonly),
            T(test_spend_use),
            T(test_rotate_and_retire),
            T(test_rotate_twice),
            T(test_rotate_refusals),
            T(test_set_limits),
#undef T
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
