/* SPDX-License-Identifier: MIT */
/*
 * The Rotate method: a successor of a key, with every field of it but a
 * new id and secret, made in one transaction with the end of the old
 * key's grace (keystore_rotate()).  Authorized as an Update of the key
 * that changes nothing: whoever may update the key may rotate it, and the
 * successor holds exactly what the key held.
 *
 * On a fleet's manager the rotation's records then go to etcd in one Txn
 * (fleet_publish_rotation()), and the call is answered once this replica
 * has applied it.  The retirement by first use is refused there: a host
 * that verifies cannot write to etcd, so the successor's first use on one
 * host would end the old key's grace on that host alone.
 */
#include <errno.h>
#include <stdio.h>

#include <sodium.h>

#include "change.h"
#include "expiry.h"
#include "fleet.h"
#include "log.h"
#include "methods.h"
#include "sessions.h"
#include "text.h"
#include "timeutil.h"

/* The old key's detail: "replaced by <id>; works until <time>". */
static void rotate_detail(struct change *ch)
{
        char end[TIMESTAMP_MAX];

        if (!ch->rec.expires_at || timestamp_format(ch->rec.expires_at, end) < 0)
                str_copy(end, sizeof(end), "?");
        snprintf(ch->detail_buf, sizeof(ch->detail_buf), "replaced by %s; works until %s",
                 ch->updated.id, end);
        ch->detail = ch->detail_buf;
}

/* The keys created through the key rotated, its successor's now. */
struct moved {
        const char *parent;
        size_t n;
};

static int count_moved(const struct key_record *rec, void *userdata)
{
        struct moved *m = userdata;

        m->n += STREQ(rec->parent, m->parent);
        return 0;
}

static int rotate_write(struct change *ch, struct keystore_tx *tx)
{
        struct keystore *ks = keystore_tx_keystore(tx);
        struct key_rotation *rot = &ch->rotation;
        struct key_record fresh = {0};
        struct moved moved;
        char replaces[32];
        struct audit_event ev;
        int r;

        for (int attempt = 0;; attempt++) {
                r = keystore_rotate(ks, ch->key_id, rot);
                /* The id is taken (a chance in 62^12): another id, so another token. */
                if (r != -ENOTUNIQ || attempt >= 3)
                        break;
                r = api_new_token(ch->q.api, &fresh, ch->token);
                if (r < 0)
                        return r;
                memcpy(rot->new_id, fresh.id, sizeof(rot->new_id));
                memcpy(rot->new_hash, fresh.hash, sizeof(rot->new_hash));
                sodium_memzero(&fresh, sizeof(fresh));
        }
        if (r < 0)
                return r;
        /* The records as they are now, kept where change.c frees them. */
        free(ch->updated_storage);
        ch->updated = rot->ret_new;
        ch->updated_storage = rot->ret_new_storage;
        free(ch->storage);
        ch->rec = rot->ret_old;
        ch->storage = rot->ret_old_storage;
        rot->ret_new_storage = rot->ret_old_storage = NULL;

        /* A fleet's manager writes the rotation to etcd in one Txn: within etcd's limit. */
        if (ch->q.api->fleet) {
                moved = (struct moved){.parent = ch->updated.id};
                r = keystore_tx_list(tx, &(struct key_filter){.now = ch->q.now}, count_moved,
                                     &moved);
                if (r < 0)
                        return r;
                if (fleet_rotation_ops(moved.n, ch->rec.replaces[0]) > FLEET_TXN_OPS)
                        return -E2BIG;
        }
        rotate_detail(ch);
        r = change_audit(ch, tx, &ch->rec);
        if (r < 0)
                return r;
        snprintf(replaces, sizeof(replaces), "replaces %s", ch->rec.id);
        ev = (struct audit_event){
            .time = ch->q.now,
            .actor = ch->q.who.actor,
            .action = "rotate",
            .key_id = ch->updated.id,
            .result = "ok",
            .detail = replaces,
            .admin = ch->q.who.admin,
        };
        return keystore_tx_audit(tx, &ev);
}

/* The refusal of a key that cannot be rotated, by what keystore_rotate() found. */
static int refuse_rotation(struct request *q, const char *id, int r)
{
        char reason[160];

        switch (r) {
        case -ESTALE:
                return api_reply_error(q, ERR_REVOKED, json_pack("{s:s}", "id", id));
        case -EKEYEXPIRED:
                snprintf(reason, sizeof(reason),
                         "key %s has expired; an expired key cannot be rotated (create a new "
                         "one)",
                         id);
                break;
        case -EKEYREJECTED:
                snprintf(reason, sizeof(reason), "key %s is disabled; enable it before rotating it",
                         id);
                break;
        case -EALREADY:
                snprintf(reason, sizeof(reason),
                         "key %s was already rotated; rotate its successor instead", id);
                break;
        default:
                return r;
        }
        return api_reply_authz(q, -EDQUOT, reason);
}

static int rotate_answer(struct change *ch, int r)
{
        struct request *q = &ch->q;
        char replaces[32];
        json_t *reply;

        if (r == -ENOENT)
                return api_reply_no_such_key(q, ch->key_id);
        if (r == -EEXIST)
                /* A fleet's manager: another gave the old key's new name first. */
                return api_reply_error(
                    q, ERR_NAME_TAKEN,
                    json_pack("{s:s, s:s}", "owner", ch->rec.owner, "name", ch->rec.name));
        if (r == -E2BIG) {
                char reason[320];

                snprintf(reason, sizeof(reason),
                         "in fleet mode a rotation is one etcd transaction, and etcd takes at "
                         "most %d operations in one (--max-txn-ops): key %s has too many keys "
                         "created through it to move them to its successor in one; nothing "
                         "was changed",
                         FLEET_TXN_OPS, ch->key_id);
                return api_reply_reason(q, ERR_POLICY, reason);
        }
        if (r < 0)
                return refuse_rotation(q, ch->key_id, r);
        snprintf(replaces, sizeof(replaces), "replaces %s", ch->rec.id);
        change_journal(q, "rotate", &ch->rec, ch->detail);
        change_journal(q, "rotate", &ch->updated, replaces);
        sessions_sweep(q->api);
        reply = json_pack("{s:o, s:s, s:o}", "key", api_key_json(q->api, &ch->updated, q->now),
                          "token", ch->token, "previous", api_key_json(q->api, &ch->rec, q->now));
        return api_reply(q, reply);
}

static void rotate_finish(struct change *ch, int r)
{
        r = ch->answer(ch, r);
        if (r < 0)
                api_reply_failed(&ch->q, r);
        connection_resume(ch->q.conn);
        change_free(ch);
}

/* etcd has the rotation, and this replica too (or not: nothing was changed). */
static void rotate_published(int r, void *userdata)
{
        struct change *ch = userdata;

        /* The old key's new name taken by another manager first: NameTaken. */
        if (r >= 0 || r == -EEXIST) {
                rotate_finish(ch, r);
                return;
        }
        log_warning("%s: not written to etcd: %s", ch->q.method, strerror(-r));
        (void)api_reply_reason(&ch->q, ERR_INTERNAL, fleet_write_error(r));
        connection_resume(ch->q.conn);
        change_free(ch);
}

/* On a fleet's manager: the write is done; the rotation goes to etcd. */
static void rotate_written(struct write_op *op, int r)
{
        struct change *ch = (struct change *)op;

        if (r < 0) {
                rotate_finish(ch, r);
                return;
        }
        expiry_key_changed(ch->q.api, NULL);
        r = fleet_publish_rotation(ch->q.api->fleet, ch->rec.id, ch->updated.id, ch->rec.replaces,
                                   rotate_published, ch);
        if (r < 0)
                rotate_published(r, ch);
}

/* "0", or a duration. */
static int grace_parse(const char *s, uint64_t *ret)
{
        if (STREQ(s, "0")) {
                *ret = 0;
                return 0;
        }
        return duration_parse(s, ret);
}

static int method_rotate(struct request *q)
{
        static const struct param spec[] = {
            PARAM(id, JSON_STRING, true),
            PARAM(grace, JSON_STRING, false),
            PARAM(retire_on_first_use, JSON_TRUE, false), /* a boolean */
            PARAM(auth, JSON_STRING, false),
            {NULL, 0, false, 0},
        };
        struct api *a = q->api;
        _cleanup_free_ void *storage = NULL;
        struct key_record rec, fresh = {0};
        struct method_params p;
        uint64_t grace = a->config->rotation_grace_usec;
        char token[TOKEN_MAX_LEN + 1];
        const char *reason;
        struct change *ch;
        int r;

        if (api_decode_params(q, spec, &p) < 0)
                return 0;
        if (p.grace && grace_parse(p.grace, &grace) < 0)
                return api_reply_invalid_reason(q, "grace",
                                                "it is not a duration; grace is how long the "
                                                "old key keeps working: 0, or a duration such "
                                                "as 45s, 90m, 12h, 7d, 2w");
        if (a->fleet && p.retire_on_first_use)
                return api_reply_reason(q, ERR_POLICY,
                                        "retire_on_first_use is not available in fleet mode: "
                                        "each host verifies on its own replica and cannot "
                                        "write to etcd, so the successor's first use would "
                                        "end the old key's grace on that host alone; rotate "
                                        "with a short grace instead");
        if (api_load_key(q, p.id, AUTHZ_UPDATE, &rec, &storage) < 0)
                return 0;
        if (a->fleet && rec.max_uses) {
                char why[200];

                /* Made before fleet mode: its successor would answer UNAVAILABLE. */
                snprintf(why, sizeof(why),
                         "key %s has max_uses, which is not available in fleet mode (a use "
                         "spent on one host would not be counted on the others): create its "
                         "successor without it",
                         rec.id);
                return api_reply_reason(q, ERR_POLICY, why);
        }
        /* As an Update that changes nothing: the successor holds what the key holds. */
        struct authz_policy policy = {
            .admin_group = a->config->admin_group,
            .user_max_lifetime = a->config->user_max_lifetime_usec,
        };
        struct authz_grant grant = {
            .fields = 0,
            .owner = rec.owner,
            .role = rec.role,
            .permissions = rec.permissions,
            .scope = rec.scope,
            .n_scope = rec.n_scope,
            .expires_at = rec.expires_at,
            .before = &rec,
        };
        r = authz_check_grant(&q->who, &policy, &grant, q->now, NULL, &reason);
        if (r < 0)
                return api_reply_authz(q, r, reason);

        r = api_new_token(a, &fresh, token);
        if (r < 0)
                return r;
        ch = change_new(q, "rotate", rotate_write, rotate_answer);
        if (!ch) {
                erase(token, sizeof(token));
                sodium_memzero(&fresh, sizeof(fresh));
                return -ENOMEM;
        }
        memcpy(ch->token, token, sizeof(token));
        erase(token, sizeof(token));
        str_copy(ch->key_id, sizeof(ch->key_id), rec.id);
        ch->rec = rec;
        ch->storage = TAKE_PTR(storage);
        ch->rotation = (struct key_rotation){
            .now = q->now,
            .created_by = ch->q.who.actor,
            .grace = grace,
            .retire_on_first_use = p.retire_on_first_use,
        };
        memcpy(ch->rotation.new_id, fresh.id, sizeof(fresh.id));
        memcpy(ch->rotation.new_hash, fresh.hash, sizeof(fresh.hash));
        sodium_memzero(&fresh, sizeof(fresh));
        if (a->fleet)
                ch->op.done = rotate_written;
        return change_submit(ch);
}

const struct method rotate_methods[] = {
    {KEYS_METHOD_ROTATE, method_rotate, true, false},
    {NULL, NULL, false, false},
};
