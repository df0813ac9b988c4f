/* SPDX-License-Identifier: MIT */
/*
 * The writes of a key's lifecycle beyond its fields: a use spent by a
 * VALID verify (max_uses, and the retirement of the key a rotation
 * replaced), a rotation (the successor put, the predecessor's grace set,
 * both linked and the keys created through the predecessor handed to the
 * successor, in one transaction) and the change of a key's limits.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "keystore_internal.h"

/* ---- a use spent ---- */

struct spend_ctx {
        const char *id;
        uint64_t now;
        char *retired;
};

/* End the grace of `id` at `now`: its expiry moves to `now` unless it is earlier. */
static int retire_in(struct keystore *ks, MDB_txn *txn, const char *id, uint64_t now)
{
        _cleanup_free_ void *storage = NULL;
        struct key_record old;
        int r;

        r = copy_record(ks, txn, id, &storage, &old);
        if (r == -ENOENT)
                return 0; /* deleted meanwhile: nothing left to retire */
        if (r < 0)
                return r;
        if (old.expires_at != 0 && old.expires_at <= now)
                return 0;
        old.expires_at = now;
        return put_encoded(ks, txn, &old, 0, NULL, NULL);
}

static int spend_in(struct keystore *ks, MDB_txn *txn, void *userdata)
{
        struct spend_ctx *c = userdata;
        _cleanup_free_ void *storage = NULL;
        struct key_record rec;
        int r;

        c->retired[0] = '\0';
        r = copy_record(ks, txn, c->id, &storage, &rec);
        if (r < 0)
                return r;
        if (record_effective_status(&rec, c->now) != KEY_STATUS_ENABLED)
                return -ESTALE;
        if (rec.max_uses) {
                if (rec.uses >= rec.max_uses)
                        return -EDQUOT;
                rec.uses++;
        }
        if (rec.flags & KEY_FLAG_RETIRE_ON_FIRST_USE) {
                rec.flags &= (uint8_t)~KEY_FLAG_RETIRE_ON_FIRST_USE;
                r = retire_in(ks, txn, rec.replaces, c->now);
                if (r < 0)
                        return r;
                memcpy(c->retired, rec.replaces, sizeof(rec.replaces));
        }
        return put_encoded(ks, txn, &rec, 0, NULL, NULL);
}

int keystore_spend_use(struct keystore *ks, const char *id, uint64_t now,
                       char ret_retired[TOKEN_ID_LEN + 1])
{
        struct spend_ctx c = {.id = id, .now = now, .retired = ret_retired};

        if (!ks || !token_id_valid(id))
                return -EINVAL;
        return write_txn(ks, spend_in, &c);
}

/* ---- a rotation ---- */

/*
 * The predecessor's name once its successor has taken it: "<name> (old
 * <id>)", unique as the id is, the name cut (at a character's start) so
 * that it fits KEY_NAME_MAX.
 */
static void retired_name(const char *name, const char *id, char buf[static KEY_NAME_MAX + 1])
{
        size_t suffix = STRLEN(" (old )") + TOKEN_ID_LEN, n = strlen(name);

        if (n > KEY_NAME_MAX - suffix) {
                n = KEY_NAME_MAX - suffix;
                /* Not inside a UTF-8 sequence: back to the byte that starts one. */
                while (n > 0 && ((unsigned char)name[n] & 0xc0) == 0x80)
                        n--;
        }
        snprintf(buf, KEY_NAME_MAX + 1, "%.*s (old %s)", (int)n, name, id);
}

/*
 * The keys created through `from` count as created through `to` from now
 * on: they live on with the successor, not die with the key it replaces.
 */
static int adopt_children(struct keystore *ks, MDB_txn *txn, const char *from, const char *to)
{
        _cleanup_free_ char(*ids)[TOKEN_ID_LEN] = NULL;
        size_t n;
        int r, rc;

        r = children_in(ks, txn, from, &ids, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ void *storage = NULL;
                char id[TOKEN_ID_LEN + 1];
                struct key_record child;

                memcpy(id, ids[i], TOKEN_ID_LEN);
                id[TOKEN_ID_LEN] = '\0';
                r = copy_record(ks, txn, id, &storage, &child);
                if (r < 0)
                        return r;
                memcpy(child.parent, to, sizeof(child.parent));
                r = put_encoded(ks, txn, &child, 0, NULL, NULL);
                if (r < 0)
                        return r;
                rc = mdb_del(txn, ks->children, &(MDB_val){TOKEN_ID_LEN, (void *)from},
                             &(MDB_val){TOKEN_ID_LEN, ids[i]});
                if (rc != MDB_SUCCESS)
                        return ks_err(ks, rc);
                rc = mdb_put(txn, ks->children, &(MDB_val){TOKEN_ID_LEN, (void *)to},
                             &(MDB_val){TOKEN_ID_LEN, ids[i]}, MDB_NODUPDATA);
                if (rc != MDB_SUCCESS)
                        return ks_err(ks, rc);
        }
        return 0;
}

struct rotate_ctx {
        const char *id;
        struct key_rotation *rot;
        void *new_buf, *old_buf;
        size_t new_len, old_len;
};

static void rotate_reset(struct rotate_ctx *c)
{
        free(c->new_buf);
        free(c->old_buf);
        c->new_buf = c->old_buf = NULL;
}

static int rotate_in(struct keystore *ks, MDB_txn *txn, void *userdata)
{
        struct rotate_ctx *c = userdata;
        const struct key_rotation *rot = c->rot;
        _cleanup_free_ void *storage = NULL;
        struct key_record old, next;
        char name[KEY_NAME_MAX + 1];
        uint64_t end;
        int r;

        rotate_reset(c);
        r = copy_record(ks, txn, c->id, &storage, &old);
        if (r < 0)
                return r;
        /* Revoked first, then what says what to do instead. */
        if (old.status == KEY_STATUS_REVOKED)
                return -ESTALE;
        if (old.replaced_by[0])
                return -EALREADY;
        switch (record_effective_status(&old, rot->now)) {
        case KEY_STATUS_REVOKED:
                return -ESTALE;
        case KEY_STATUS_EXPIRED:
                return -EKEYEXPIRED;
        case KEY_STATUS_DISABLED:
                return -EKEYREJECTED;
        case KEY_STATUS_ENABLED:
                break;
        }
        /* At most two keys of a rotation work at once: the key rotated and
         * its successor.  Rotated again in its own predecessor's grace, that
         * grace ends now (else rotating again and again would keep any
         * number of keys alive). */
        if (old.replaces[0]) {
                r = retire_in(ks, txn, old.replaces, rot->now);
                if (r < 0)
                        return r;
        }

        /* The successor: every field of the key but what makes it another
         * key (id, secret, creation) and what it has not done yet (used). */
        next = old;
        memcpy(next.id, rot->new_id, sizeof(next.id));
        memcpy(next.hash, rot->new_hash, sizeof(next.hash));
        next.created_at = rot->now;
        next.created_by = rot->created_by;
        next.last_used_at = 0;
        next.last_used_service = next.last_used_from = NULL;
        memcpy(next.replaces, old.id, sizeof(next.replaces));
        next.replaced_by[0] = '\0';
        /* Its own retirement of the key rotated, if asked: never one the
         * key rotated was to make of its own predecessor. */
        next.flags &= (uint8_t)~KEY_FLAG_RETIRE_ON_FIRST_USE;
        if (rot->retire_on_first_use)
                next.flags |= KEY_FLAG_RETIRE_ON_FIRST_USE;

        /* The predecessor gives its name up, lives through its grace, and
         * points at its successor. */
        r = names_remove(ks, txn, &old);
        if (r < 0)
                return r;
        retired_name(old.name, old.id, name);
        old.name = name;
        r = names_add(ks, txn, &old);
        if (r < 0)
                return r;
        end = rot->now + rot->grace;
        if (old.expires_at == 0 || end < old.expires_at)
                old.expires_at = end;
        memcpy(old.replaced_by, next.id, sizeof(old.replaced_by));
        if (record_validate(&old) < 0 || record_validate(&next) < 0)
                return -EINVAL;
        r = put_encoded(ks, txn, &old, 0, &c->old_buf, &c->old_len);
        if (r < 0)
                return r;
        r = put_key_in(ks, txn, &next);
        if (r < 0)
                return r;
        r = adopt_children(ks, txn, old.id, next.id);
        if (r < 0)
                return r;
        return record_encode(&next, &c->new_buf, &c->new_len);
}

/* A buffer handed out as a record decoded from it. */
static int hand_out_record(void *buf, size_t len, struct key_record *ret, void **ret_storage)
{
        int r = record_decode(buf, len, ret);

        if (r < 0) {
                free(buf);
                return -EBADMSG;
        }
        *ret_storage = buf;
        return 0;
}

int keystore_rotate(struct keystore *ks, const char *id, struct key_rotation *rot)
{
        struct rotate_ctx c = {.id = id, .rot = rot};
        int r;

        if (!ks || !rot || !token_id_valid(id) || !token_id_valid(rot->new_id))
                return -EINVAL;
        r = write_txn(ks, rotate_in, &c);
        if (r < 0) {
                rotate_reset(&c);
                return r;
        }
        r = hand_out_record(c.old_buf, c.old_len, &rot->ret_old, &rot->ret_old_storage);
        if (r < 0) {
                free(c.new_buf);
                return r;
        }
        r = hand_out_record(c.new_buf, c.new_len, &rot->ret_new, &rot->ret_new_storage);
        if (r < 0) {
                free(rot->ret_old_storage);
                rot->ret_old_storage = NULL;
        }
        return r;
}

/* ---- a key's limits changed ---- */

struct limits_ctx {
        const char *id;
        const struct key_limits *lim;
        void *buf;
        size_t len;
};

static int set_limits_in(struct keystore *ks, MDB_txn *txn, void *userdata)
{
        struct limits_ctx *c = userdata;
        const struct key_limits *l = c->lim;
        _cleanup_free_ void *storage = NULL;
        struct key_record rec;
        int r;

        free(c->buf);
        c->buf = NULL;
        r = copy_record(ks, txn, c->id, &storage, &rec);
        if (r < 0)
                return r;
        if (rec.status == KEY_STATUS_REVOKED)
                return -ESTALE;
        if (l->fields & KEY_LIMIT_MAX_USES) {
                /* The uses spent stay spent: a new allowance counts them. */
                rec.max_uses = l->max_uses;
                if (rec.uses > rec.max_uses)
                        rec.uses = rec.max_uses;
        }
        if (l->fields & KEY_LIMIT_RATE) {
                rec.rate_limit_count = l->rate_limit_count;
                rec.rate_limit_window = l->rate_limit_window;
        }
        if (record_validate(&rec) < 0)
                return -EINVAL;
        return put_encoded(ks, txn, &rec, 0, &c->buf, &c->len);
}

int keystore_set_limits(struct keystore *ks, const char *id, const struct key_limits *lim,
                        struct key_record *ret, void **ret_storage)
{
        struct limits_ctx c = {.id = id, .lim = lim};
        int r;

        if (!ks || !lim || !ret || !ret_storage || !token_id_valid(id))
                return -EINVAL;
        r = write_txn(ks, set_limits_in, &c);
        if (r < 0) {
                free(c.buf);
                return r;
        }
        return hand_out_record(c.buf, c.len, ret, ret_storage);
}
