/* SPDX-License-Identifier: MIT */
/*
 * The bulk methods.
 *
 * ChangeMatching: disable, enable, revoke or delete every key of an owner
 * that matches a filter, in one write transaction.  Each key is authorized
 * as the call on that one key would be (authz_check_status_change()) and
 * audited on its own; a key the caller may see but not change is left as
 * it is and named in the answer.  The keys are matched in the write's own
 * transaction, so a key created just before the change is in it; a dry
 * run matches them on the loop, as they are, and writes nothing.
 *
 * CreateMany: many keys, each checked and authorized by Create's own
 * handler, created in one write (below).
 *
 * On a fleet's manager, the keys one write changed then go to etcd in one
 * Txn (fleet_publish_batch()), and the call is answered once this replica
 * has applied it, as a change of one key is (change.c); the write refuses
 * a change etcd would not take in one Txn, before anything is changed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "change.h"
#include "fleet.h"
#include "log.h"
#include "methods.h"
#include "sessions.h"
#include "state.h"

struct bulk_verb {
        const char *name; /* as called, audited and journaled */
        enum authz_action authz;
        enum key_status status; /* what the key gets; 0 for a delete */
};

static const struct bulk_verb bulk_verbs[] = {
    {"disable", AUTHZ_TOGGLE, KEY_STATUS_DISABLED},
    {"enable", AUTHZ_TOGGLE, KEY_STATUS_ENABLED},
    {"revoke", AUTHZ_REVOKE, KEY_STATUS_REVOKED},
    {"delete", AUTHZ_DELETE, 0},
};

struct bulk_key {
        struct key_record rec; /* as changed; as it was for a delete, a refusal, a dry run */
        void *storage;         /* behind rec */
        const char *reason;    /* refused: why; NULL: changed */
};

struct bulk {
        const struct bulk_verb *verb;
        const struct principal *who;
        struct key_filter filter;
        struct bulk_key *keys;
        size_t n_keys, n_alloc;
        struct fleet_batch *fleet; /* on a fleet's manager: the keys for etcd */
};

static void bulk_reset(struct bulk *b)
{
        for (size_t i = 0; i < b->n_keys; i++)
                free(b->keys[i].storage);
        b->n_keys = 0;
}

static void bulk_free(struct bulk *b)
{
        if (!b)
                return;
        bulk_reset(b);
        free(b->keys);
        fleet_batch_free(b->fleet);
        free(b);
}

/*
 * What the call would do to `rec`: 1 change it, 0 nothing (it is so
 * already: a disabled key is not disabled again, a revoked one neither
 * enabled nor revoked again), -EPERM refuse it, with the reason.
 */
static int bulk_decide(const struct bulk *b, const struct key_record *rec, const char **ret_reason)
{
        switch (b->verb->status) {
        case KEY_STATUS_DISABLED:
                if (rec->status != KEY_STATUS_ENABLED)
                        return 0;
                break;
        case KEY_STATUS_ENABLED:
                if (rec->status != KEY_STATUS_DISABLED)
                        return 0;
                break;
        case KEY_STATUS_REVOKED:
                if (rec->status == KEY_STATUS_REVOKED)
                        return 0;
                break;
        default:
                break;
        }
        if (authz_check_status_change(b->who, b->verb->authz, b->verb->status, rec, ret_reason) < 0)
                return -EPERM;
        return 1;
}

/* A matching key: kept, a copy of it, if the call changes or refuses it. */
static int bulk_consider(const struct key_record *rec, void *userdata)
{
        struct bulk *b = userdata;
        const char *reason = NULL;
        struct bulk_key *k;
        void *buf;
        size_t len;
        int act, r;

        act = bulk_decide(b, rec, &reason);
        if (act == 0)
                return 0;
        if (b->n_keys == b->n_alloc) {
                size_t n = b->n_alloc ? b->n_alloc * 2 : 16;
                struct bulk_key *keys = reallocarray(b->keys, n, sizeof(*keys));
                if (!keys)
                        return -ENOMEM;
                b->keys = keys;
                b->n_alloc = n;
        }
        /* A view into the map goes stale at the write's next change. */
        r = record_encode(rec, &buf, &len);
        if (r < 0)
                return r;
        k = &b->keys[b->n_keys];
        r = record_decode(buf, len, &k->rec);
        if (r < 0) {
                free(buf);
                return r;
        }
        k->storage = buf;
        k->reason = act < 0 ? reason : NULL;
        b->n_keys++;
        return 0;
}

/*
 * On a fleet's manager, in the write: the keys changed, with those created
 * through them for a revoke or a delete, for the one Txn; -E2BIG (the
 * write undone) when etcd would not take it.
 */
static int bulk_write_fleet(struct bulk *b, struct keystore_tx *tx)
{
        int r = 0;

        for (size_t i = 0; r >= 0 && i < b->n_keys; i++)
                if (!b->keys[i].reason)
                        r = fleet_batch_add(b->fleet, &b->keys[i].rec,
                                            b->verb->status ? FLEET_BATCH_CHANGED
                                                            : FLEET_BATCH_DELETED);
        if (r >= 0 && (b->verb->status == KEY_STATUS_REVOKED || !b->verb->status))
                r = fleet_batch_add_descendants(b->fleet, tx, b->filter.now);
        if (r >= 0 && fleet_batch_ops(b->fleet) > FLEET_TXN_OPS)
                r = -E2BIG;
        return r;
}

static int bulk_write(struct change *ch, struct keystore_tx *tx)
{
        struct bulk *b = ch->userdata;
        struct keystore *ks = keystore_tx_keystore(tx);
        size_t n = 0;
        int r;

        /* A write may run again (after the map grew): nothing from before. */
        bulk_reset(b);
        if (b->fleet)
                fleet_batch_reset(b->fleet);
        r = keystore_tx_list(tx, &b->filter, bulk_consider, b);
        if (r < 0)
                return r;
        for (size_t i = 0; i < b->n_keys; i++)
                n += !b->keys[i].reason;
        snprintf(ch->detail_buf, sizeof(ch->detail_buf), "one of %zu keys of %s changed at once", n,
                 b->filter.owner);
        ch->detail = ch->detail_buf;

        for (size_t i = 0; i < b->n_keys; i++) {
                struct bulk_key *k = &b->keys[i];
                struct key_status_change sc = {.status = b->verb->status};
                struct key_record updated;
                void *storage = NULL;

                if (k->reason)
                        continue;
                r = change_audit(ch, tx, &k->rec);
                if (r < 0)
                        return r;
                if (!b->verb->status) {
                        r = keystore_delete_tree(ks, k->rec.id, NULL);
                        if (r < 0)
                                return r;
                        continue;
                }
                sc.by_admin = authz_status_by_admin(b->who, sc.status, k->rec.owner);
                r = keystore_change_status(ks, k->rec.id, &sc, &updated, &storage);
                if (r < 0)
                        return r;
                free(k->storage);
                k->rec = updated;
                k->storage = storage;
        }
        return b->fleet ? bulk_write_fleet(b, tx) : 0;
}

/* {"keys": [...], "refused": [...]}: the keys changed (or that would be), the keys left alone. */
static json_t *bulk_reply(struct request *q, const struct bulk *b)
{
        json_t *keys = json_array(), *refused = json_array();

        for (size_t i = 0; keys && refused && i < b->n_keys; i++) {
                const struct bulk_key *k = &b->keys[i];
                int r;

                if (k->reason)
                        r = json_array_append_new(refused, json_pack("{s:s, s:s, s:s}", "id",
                                                                     k->rec.id, "name", k->rec.name,
                                                                     "reason", k->reason));
                else
                        r = json_array_append_new(keys, api_key_json(q->api, &k->rec, q->now));
                if (r < 0)
                        break;
        }
        return json_pack("{s:o*, s:o*}", "keys", keys, "refused", refused);
}

static int bulk_answer(struct change *ch, int r)
{
        struct bulk *b = ch->userdata;
        struct request *q = &ch->q;

        if (r == -E2BIG) {
                char reason[512];
                size_t n = 0;

                for (size_t i = 0; i < b->n_keys; i++)
                        n += !b->keys[i].reason;
                snprintf(reason, sizeof(reason),
                         "in fleet mode a bulk change is one etcd transaction, and etcd takes at "
                         "most %d operations in one (--max-txn-ops); to %s these %zu keys of %s "
                         "takes more (each key is one, with every key created through a "
                         "revoked or deleted one, and a deleted key's name one more): change "
                         "them in parts (--name PREFIX, --status STATUS); nothing was changed",
                         FLEET_TXN_OPS, b->verb->name, n, b->filter.owner);
                r = api_reply_reason(q, ERR_POLICY, reason);
        } else if (r >= 0) {
                for (size_t i = 0; i < b->n_keys; i++)
                        if (!b->keys[i].reason)
                                change_journal(q, b->verb->name, &b->keys[i].rec, ch->detail);
                sessions_sweep(q->api);
                r = api_reply(q, bulk_reply(q, b));
        }
        bulk_free(b);
        ch->userdata = NULL;
        return r;
}

static void bulk_finish(struct change *ch, int r)
{
        r = ch->answer(ch, r);
        if (r < 0)
                api_reply_failed(&ch->q, r);
        connection_resume(ch->q.conn);
        change_free(ch);
}

/* etcd has the keys, and this replica too (or not: nothing was changed). */
static void bulk_published(int r, void *userdata)
{
        struct change *ch = userdata;

        if (r >= 0) {
                bulk_finish(ch, r);
                return;
        }
        log_warning("%s: not written to etcd: %s", ch->q.method, strerror(-r));
        (void)api_reply_reason(&ch->q, ERR_INTERNAL, fleet_write_error(r));
        bulk_free(ch->userdata);
        ch->userdata = NULL;
        connection_resume(ch->q.conn);
        change_free(ch);
}

/* On a fleet's manager: the write is done; the keys it changed go to etcd. */
static void bulk_written(struct write_op *op, int r)
{
        struct change *ch = (struct change *)op;
        struct bulk *b = ch->userdata;

        if (r >= 0 && fleet_batch_size(b->fleet) > 0) {
                r = fleet_publish_batch(ch->q.api->fleet, b->fleet, bulk_published, ch);
                if (r < 0)
                        bulk_published(r, ch);
                return;
        }
        bulk_finish(ch, r);
}

static int method_change_matching(struct request *q)
{
        static const struct param spec[] = {
            PARAM(action, JSON_STRING, true),
            PARAM(owner, JSON_STRING, true),
            PARAM(name_prefix, JSON_STRING, false),
            PARAM(status, JSON_STRING, false),
            PARAM(dry_run, JSON_TRUE, false),
            PARAM(auth, JSON_STRING, false),
            {NULL, 0, false, 0},
        };
        struct method_params p;
        struct bulk *b;
        struct change *ch;
        const char *reason;
        int r;

        if (api_decode_params(q, spec, &p) < 0)
                return 0;
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(bulk_verbs); i++)
                if (STREQ(p.action, bulk_verbs[i].name))
                        b->verb = &bulk_verbs[i];
        b->filter =
            (struct key_filter){.owner = p.owner, .name_prefix = p.name_prefix, .now = q->now};
        if (!b->verb) {
                bulk_free(b);
                return api_reply_invalid(q, "action");
        }
        if (p.status && (b->filter.status = key_status_from_string(p.status)) < 0) {
                bulk_free(b);
                return api_reply_invalid(q, "status");
        }
        /* Whether the caller may do this to the owner's keys at all, as
         * the call on any one of them would be asked first. */
        r = authz_check(&q->who, b->verb->authz, p.owner, &reason);
        if (r < 0) {
                bulk_free(b);
                return api_reply_authz(q, r, reason);
        }
        /* Hosts that follow a fleet refused it before (ManagedCentrally). */
        if (q->api->fleet && !p.dry_run && !(b->fleet = fleet_batch_new())) {
                bulk_free(b);
                return -ENOMEM;
        }

        if (p.dry_run) {
                json_t *reply;

                b->who = &q->who;
                r = keystore_list(q->api->ks, &b->filter, NULL, 0, bulk_consider, b, NULL);
                reply = r < 0 ? NULL : bulk_reply(q, b);
                bulk_free(b);
                return r < 0 ? r : api_reply(q, reply);
        }

        ch = change_new(q, b->verb->name, bulk_write, bulk_answer);
        if (!ch) {
                bulk_free(b);
                return -ENOMEM;
        }
        /* The filter's strings point into the parameters the change holds. */
        b->who = &ch->q.who;
        ch->userdata = b;
        if (b->fleet)
                ch->op.done = bulk_written;
        return change_submit(ch);
}

/*
 * CreateMany: every key checked and authorized by Create's own handler,
 * each as if it were the call (its refusals name the key's "index"), its
 * change collected here instead of written; then one write makes them all,
 * or none.
 */
struct create_batch {
        struct write_op op; /* first: the writer hands it back */
        struct request q;   /* the CreateMany call; q.params is referenced */
        struct change **changes;
        size_t n_changes, n_alloc;
        size_t failed;             /* 1 + the index of the key whose write failed */
        struct fleet_batch *fleet; /* on a fleet's manager: the keys for etcd */
};

int create_batch_add(struct create_batch *b, struct change *ch)
{
        if (b->n_changes == b->n_alloc) {
                size_t n = b->n_alloc ? b->n_alloc * 2 : 16;
                struct change **changes = reallocarray(b->changes, n, sizeof(*changes));
                if (!changes) {
                        change_free(ch);
                        return -ENOMEM;
                }
                b->changes = changes;
                b->n_alloc = n;
        }
        b->changes[b->n_changes++] = ch;
        return 0;
}

static void create_batch_free(struct create_batch *b)
{
        if (!b)
                return;
        for (size_t i = 0; i < b->n_changes; i++)
                change_free(b->changes[i]);
        free(b->changes);
        json_decref(b->q.params);
        fleet_batch_free(b->fleet);
        free(b);
}

static int create_batch_apply(struct keystore_tx *tx, struct write_op *op)
{
        struct create_batch *b = (struct create_batch *)op;

        b->failed = 0;
        for (size_t i = 0; i < b->n_changes; i++) {
                struct change *ch = b->changes[i];
                int r = ch->write(ch, tx);
                if (r < 0) {
                        b->failed = i + 1;
                        return r;
                }
        }
        return 0;
}

static void create_batch_answer(struct create_batch *b, int r)
{
        struct request *q = &b->q;
        json_t *created = NULL;

        if (r >= 0) {
                created = json_array();
                for (size_t i = 0; created && i < b->n_changes; i++) {
                        struct change *ch = b->changes[i];
                        change_journal(q, "create", &ch->rec, ch->rec.name);
                        if (json_array_append_new(created,
                                                  json_pack("{s:o, s:s}", "key",
                                                            api_key_json(q->api, &ch->rec, q->now),
                                                            "token", ch->token)) < 0) {
                                json_decref(created);
                                created = NULL;
                        }
                }
                if (created)
                        (void)api_reply(q, json_pack("{s:o}", "created", created));
                else
                        api_reply_failed(q, -ENOMEM);
        } else if (b->failed) {
                /* Create's answer to it, which names its index (NameTaken,
                 * a full allowance). */
                struct change *ch = b->changes[b->failed - 1];
                r = ch->answer(ch, r);
                if (r < 0)
                        api_reply_failed(&ch->q, r);
        } else
                api_reply_failed(q, r);
        connection_resume(q->conn);
        create_batch_free(b);
}

/* etcd has the keys, and this replica too (or not: nothing was created). */
static void create_batch_published(int r, void *userdata)
{
        struct create_batch *b = userdata;

        if (r >= 0) {
                create_batch_answer(b, r);
                return;
        }
        if (r == -EEXIST && fleet_batch_taken(b->fleet)) {
                /* Another manager gave the name first: Create's NameTaken,
                 * with its index, as on one host. */
                b->failed = fleet_batch_taken(b->fleet);
                create_batch_answer(b, r);
                return;
        }
        log_warning("%s: not written to etcd: %s", b->q.method, strerror(-r));
        (void)api_reply_reason(&b->q, ERR_INTERNAL, fleet_write_error(r));
        connection_resume(b->q.conn);
        create_batch_free(b);
}

static void create_batch_done(struct write_op *op, int r)
{
        struct create_batch *b = (struct create_batch *)op;

        /* On a fleet's manager: the keys go to etcd, answered once back. */
        if (r >= 0 && b->fleet && b->n_changes > 0) {
                for (size_t i = 0; r >= 0 && i < b->n_changes; i++)
                        r = fleet_batch_add(b->fleet, &b->changes[i]->rec, FLEET_BATCH_CREATED);
                if (r >= 0)
                        r = fleet_publish_batch(b->q.api->fleet, b->fleet, create_batch_published,
                                                b);
                if (r < 0)
                        create_batch_published(r, b);
                return;
        }
        create_batch_answer(b, r);
}

/* CreateMany's parameters: `keys`, an array of objects, and `auth`. */
static int create_many_check(struct request *q, json_t **ret_keys)
{
        const char *name;
        json_t *v;

        json_object_foreach(q->params, name, v)
        {
                if (STREQ(name, "keys") && json_is_array(v))
                        continue;
                if (STREQ(name, "auth") && (json_is_string(v) || json_is_null(v)))
                        continue;
                return api_reply_invalid(q, name), -EINVAL;
        }
        *ret_keys = json_object_get(q->params, "keys");
        if (!*ret_keys)
                return api_reply_invalid(q, "keys"), -EINVAL;
        return 0;
}

static int method_create_many(struct request *q)
{
        const struct method *create = NULL;
        struct create_batch *b;
        json_t *keys, *params;
        size_t i;
        int r;

        if (create_many_check(q, &keys) < 0)
                return 0;
        /* A fleet's manager writes them to etcd in one Txn: a key and its
         * name are two of its operations.  (Hosts that follow refused the
         * call before: ManagedCentrally.) */
        if (q->api->fleet && 2 * json_array_size(keys) > FLEET_TXN_OPS) {
                char reason[384];

                snprintf(reason, sizeof(reason),
                         "in fleet mode the keys are created in one etcd transaction, and etcd "
                         "takes at most %d operations in one (--max-txn-ops): %d keys at most, "
                         "not %zu; split them into parts of %d keys; nothing was created",
                         FLEET_TXN_OPS, FLEET_TXN_OPS / 2, json_array_size(keys),
                         FLEET_TXN_OPS / 2);
                return api_reply_reason(q, ERR_POLICY, reason);
        }
        for (const struct method *m = keys_methods; m->name; m++)
                if (STREQ(m->name, KEYS_METHOD_CREATE))
                        create = m;
        if (!create)
                return -ENOENT;
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->q = *q;
        json_incref(b->q.params);
        if (q->api->fleet && !(b->fleet = fleet_batch_new())) {
                create_batch_free(b);
                return -ENOMEM;
        }

        json_array_foreach(keys, i, params)
        {
                struct request item = *q;
                size_t before = b->n_changes;

                item.params = params;
                item.item = i + 1;
                item.batch = b;
                /* The principal is the call's: a key's own `auth` would
                 * read as if it were used. */
                if (!json_is_object(params) || json_object_get(params, "auth")) {
                        (void)api_reply_invalid(&item, json_is_object(params) ? "auth" : "keys");
                        create_batch_free(b);
                        return 0;
                }
                r = create->fn(&item);
                if (r < 0 || b->n_changes == before) {
                        /* Refused (answered), or failed (answered here). */
                        create_batch_free(b);
                        return r;
                }
        }
        api_flush_audit_queue(q->api);
        connection_defer(q->conn);
        b->op.apply = create_batch_apply;
        b->op.done = create_batch_done;
        writer_submit(q->api->writer, &b->op);
        return 0;
}

const struct method bulk_methods[] = {
    {KEYS_METHOD_CHANGE_MATCHING, method_change_matching, true, false},
    {KEYS_METHOD_CREATE_MANY, method_create_many, true, false},
    {NULL, NULL, false, false},
};
