/* SPDX-License-Identifier: MIT */
/* The write path of the management methods; see change.h. */
#include <errno.h>
#include <stdio.h>

#include <sodium.h>

#include "change.h"
#include "fleet.h"
#include "log.h"
#include "state.h"

void change_free(struct change *ch)
{
        if (!ch)
                return;
        json_decref(ch->q.params);
        free(ch->storage);
        free(ch->updated_storage);
        sodium_memzero(ch->token, sizeof(ch->token));
        sodium_memzero(ch->secret, sizeof(ch->secret));
        free(ch);
}

static int change_apply(struct keystore_tx *tx, struct write_op *op)
{
        struct change *ch = (struct change *)op;

        return ch->write ? ch->write(ch, tx) : 0;
}

static void change_finish(struct change *ch, int r)
{
        r = ch->answer(ch, r);
        if (r < 0)
                api_reply_failed(&ch->q, r);
        connection_resume(ch->q.conn);
        change_free(ch);
}

static void change_published(int r, void *userdata)
{
        struct change *ch = userdata;

        /* The name taken by another manager first: answered as on one host. */
        if (r >= 0 || r == -EEXIST) {
                change_finish(ch, r);
                return;
        }
        log_warning("%s: not written to etcd: %s", ch->q.method, strerror(-r));
        (void)connection_reply_error(ch->q.conn, KEYS_ERROR_INTERNAL_ERROR,
                                     json_pack("{s:s}", "reason", fleet_write_error(r)));
        connection_resume(ch->q.conn);
        change_free(ch);
}

static void change_done(struct write_op *op, int r)
{
        struct change *ch = (struct change *)op;
        static const char *const key_changes[] = {"create", "update", "disable",
                                                  "enable", "revoke", "delete"};
        bool publish = false, descendants;

        /* A rotation changes two keys' expiries: look at them all. */
        if (r >= 0)
                expiry_key_changed(ch->q.api, STREQ(ch->action, "rotate") ? NULL
                                              : ch->updated.id[0]         ? &ch->updated
                                                                          : &ch->rec);
        /* A fleet's manager: the change goes to etcd, and is answered once back. */
        for (size_t i = 0; r >= 0 && ch->q.api->fleet && i < ELEMENTSOF(key_changes); i++)
                publish |= STREQ(ch->action, key_changes[i]);
        descendants = STREQ(ch->action, "revoke") || STREQ(ch->action, "delete");
        if (publish) {
                r = fleet_publish(ch->q.api->fleet, ch->rec.id,
                                  STREQ(ch->action, "create") ? NULL : &ch->rec, descendants,
                                  change_published, ch);
                if (r < 0)
                        change_published(r, ch);
                return;
        }
        change_finish(ch, r);
}

struct change *change_new(struct request *q, const char *action,
                          int (*write)(struct change *, struct keystore_tx *),
                          int (*answer)(struct change *, int))
{
        struct change *ch = calloc(1, sizeof(*ch));

        if (!ch)
                return NULL;
        ch->q = *q;
        json_incref(ch->q.params);
        ch->action = action;
        ch->write = write;
        ch->answer = answer;
        ch->op.apply = change_apply;
        ch->op.done = change_done;
        return ch;
}

/* Hand the change to the writer: the call is answered when it is done. */
int change_submit(struct change *ch)
{
        struct api *a = ch->q.api;

        /* One key of a CreateMany: written with the others (bulk.c). */
        if (ch->q.batch)
                return create_batch_add(ch->q.batch, ch);
        /* Earlier failed verifies first, so the audit log stays in time order. */
        api_flush_audit_queue(a);
        connection_defer(ch->q.conn);
        writer_submit(a->writer, &ch->op);
        return 0;
}

/* On the writer's thread: the change's audit record, in its transaction. */
int change_audit(struct change *ch, struct keystore_tx *tx, const struct key_record *rec)
{
        struct audit_event ev = {
            .time = ch->q.now,
            .actor = ch->q.who.actor,
            .action = ch->action,
            .key_id = rec ? rec->id : NULL,
            .result = "ok",
            .detail = ch->detail,
            .admin = ch->q.who.admin,
        };

        return keystore_tx_audit(tx, &ev);
}

/* The MESSAGE_ID= of a change, by its action. */
static const char *change_message_id(const char *action)
{
        if (STREQ(action, "create"))
                return MESSAGE_ID_KEY_CREATED;
        if (STREQ(action, "revoke"))
                return MESSAGE_ID_KEY_REVOKED;
        if (STREQ(action, "delete"))
                return MESSAGE_ID_KEY_DELETED;
        if (STREQ(action, "rotate-shared-secret"))
                return MESSAGE_ID_SHARED_SECRET_ROTATED;
        if (STREQ(action, "reset-lockout") || STREQ(action, "reset-all-lockouts"))
                return MESSAGE_ID_LOCKOUT_RESET;
        return MESSAGE_ID_KEY_CHANGED; /* update, disable, enable */
}

void change_journal(struct request *q, const char *action, const struct key_record *rec,
                    const char *detail)
{
        const struct caller *who = connection_caller(q->conn);
        struct audit_fields f = {.n = 0};
        char message[512];

        api_field(&f, change_message_id(action), "");
        api_field(&f, "APIKEY_ACTION=", action);
        if (rec) {
                api_field(&f, "APIKEY_ID=", rec->id);
                api_field(&f, "APIKEY_OWNER=", rec->owner);
        }
        api_field(&f, "APIKEY_ACTOR=", q->who.actor);
        api_field_uint(&f, "APIKEY_CALLER_UID=", who->uid);
        api_field_uint(&f, "APIKEY_CALLER_PID=", (unsigned long)who->pid);
        snprintf(message, sizeof(message), "%s: %s key %s%s%s%s%s", q->who.actor, action,
                 rec ? rec->id : "-", rec ? " of " : "", rec ? rec->owner : "", detail ? ": " : "",
                 detail ? detail : "");
        log_fields(LOG_NOTICE, message, f.v, f.n);
}
