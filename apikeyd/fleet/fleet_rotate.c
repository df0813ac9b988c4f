/* SPDX-License-Identifier: MIT */
/*
 * A manager's Rotate (fleet_publish_rotation() in fleet.h): the records of
 * one rotation, as the local keystore has them after its one write,
 * written to etcd in one Txn, as fleet_publish_batch() writes a bulk
 * change: each record's compare on the mod revision this replica saw
 * (absent for the successor) and its put (fleet_publish_key()), and the
 * name index: the predecessor's new name "<name> (old <id>)" taken only if
 * absent, and the name it gave up pointed at the successor.  That entry
 * needs no compare of its own: it is the predecessor's as long as the
 * predecessor's record is unchanged, which its compare asks (a rename of
 * the key elsewhere changes that record).  etcd refuses a Txn that writes
 * one key twice, so the name given up is put, never removed and put again.
 *
 * The Txn goes through a waiter (fleet_publish.c), as every write does:
 * another member after a failed try, a check of what etcd holds after a
 * try that may have been written, the read of the predecessor's new name
 * when a compare fails (another manager's key has it: -EEXIST), answered
 * once this replica has applied its revision, and a resync that puts back
 * what etcd has when it fails.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet_internal.h"
#include "log.h"
#include "timeutil.h"

struct children {
        const char *parent;
        char (*ids)[TOKEN_ID_LEN + 1];
        size_t n, allocated;
};

static int collect_child(const struct key_record *rec, void *userdata)
{
        struct children *c = userdata;

        if (!STREQ(rec->parent, c->parent))
                return 0;
        if (c->n == c->allocated) {
                size_t want = c->allocated ? c->allocated * 2 : 16;
                char(*ids)[TOKEN_ID_LEN + 1] = reallocarray(c->ids, want, sizeof(*ids));

                if (!ids)
                        return -ENOMEM;
                c->ids = ids;
                c->allocated = want;
        }
        str_copy(c->ids[c->n++], TOKEN_ID_LEN + 1, rec->id);
        return 0;
}

/* The name the predecessor gave up, now the successor's: put, checked as written. */
static int publish_name_given_up(struct fleet *f, const char *new_id, json_t *success,
                                 json_t *check)
{
        _cleanup_free_ void *storage = NULL;
        _cleanup_free_ char *key = NULL, *key_b64 = NULL, *id_b64 = NULL;
        struct key_record rec;
        int r;

        r = keystore_get(f->ks, new_id, &rec, &storage);
        if (r < 0)
                return r;
        if (asprintf(&key, "%s/names/%s/%s", f->cfg->fleet_prefix, rec.owner, rec.name) < 0) {
                key = NULL;
                return -ENOMEM;
        }
        key_b64 = etcd_base64(key, strlen(key));
        id_b64 = etcd_base64(new_id, strlen(new_id));
        if (!key_b64 || !id_b64)
                return -ENOMEM;
        if (json_array_append_new(success, json_pack("{s:{s:s, s:s}}", "request_put", "key",
                                                     key_b64, "value", id_b64)) < 0 ||
            json_array_append_new(check, json_pack("{s:s, s:s, s:s, s:s}", "key", key_b64, "target",
                                                   "VALUE", "result", "EQUAL", "value", id_b64)) <
                0)
                return -ENOMEM;
        return 0;
}

int fleet_publish_rotation(struct fleet *f, const char *old_id, const char *new_id,
                           const char *retired_id, fleet_published_fn done, void *userdata)
{
        struct children c = {.parent = new_id};
        json_t *txn = NULL, *check = NULL, *compare, *success, *check_compare;
        _cleanup_free_ char *body = NULL, *check_body = NULL, *taken = NULL;
        struct key_filter all = {.now = now_usec()};
        const char *ids[3] = {new_id, old_id, retired_id && retired_id[0] ? retired_id : NULL};
        int r;

        if (!f || !f->cfg->fleet_manage)
                return -EOPNOTSUPP;
        /* The keys created through the predecessor, the successor's now. */
        r = keystore_list(f->ks, &all, NULL, 0, collect_child, &c, NULL);
        if (r >= 0 && fleet_rotation_ops(c.n, ids[2] != NULL) > FLEET_TXN_OPS)
                r = -E2BIG;
        txn = json_pack("{s:[], s:[]}", "compare", "success");
        check = json_pack("{s:[]}", "compare");
        if (r >= 0 && (!txn || !check))
                r = -ENOMEM;
        compare = json_object_get(txn, "compare");
        success = json_object_get(txn, "success");
        check_compare = json_object_get(check, "compare");
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(ids); i++)
                if (ids[i])
                        r = fleet_publish_key(f, ids[i], compare, success, check_compare);
        for (size_t i = 0; r >= 0 && i < c.n; i++)
                r = fleet_publish_key(f, c.ids[i], compare, success, check_compare);
        /* The predecessor's new name, only if absent (`was` NULL: taken, none left). */
        if (r >= 0)
                r = fleet_publish_key_name(f, old_id, NULL, compare, success, check_compare,
                                           &taken);
        if (r >= 0)
                r = publish_name_given_up(f, new_id, success, check_compare);
        if (r >= 0 && (!(body = json_dumps(txn, JSON_COMPACT)) ||
                       !(check_body = json_dumps(check, JSON_COMPACT))))
                r = -ENOMEM;
        if (r >= 0)
                /* The name read on a failed compare is the predecessor's. */
                r = fleet_txn_send(f, &body, &check_body, &taken, old_id, done, userdata);
        if (r < 0 && !f->stopping)
                /* Not written: the replica goes back to what etcd has. */
                fleet_restart(f, true);
        if (r >= 0)
                log_debug("fleet: rotation of %s to %s (%zu keys moved with it) to etcd in one "
                          "transaction",
                          old_id, new_id, c.n);
        json_decref(txn);
        json_decref(check);
        free(c.ids);
        return r;
}
