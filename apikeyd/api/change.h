/* SPDX-License-Identifier: MIT */
/*
 * The write path of the management methods (change.c): a change checked
 * on the loop, made by the writer's thread together with its audit record,
 * answered on the loop once it is synced.  For the method families that
 * write (keys.c, admin.c).
 */
#pragma once

#include "request.h"

/*
 * A management change is audited twice: a record in the audit database,
 * written in the change's own transaction (change_audit, on the writer's
 * thread), and a journal entry with structured fields once it is done
 * (change_journal).
 */

/*
 * A management change on its way to the keystore.  It is checked and
 * authorized on the loop; the writer's thread makes it, together with its
 * audit record, and whatever depends on what is stored (the key exists,
 * is not revoked, the name is free, the owner's key count) is checked
 * there, in the write's transaction, so racing changes get the answers
 * they would get one after the other.  The reply is sent on the loop once
 * the change is committed and synced; the connection's further calls wait
 * until then.
 */
struct change {
        struct write_op op; /* first: the writer hands it back */
        struct request q;   /* q.params is referenced: the strings below point into it */
        const char *action; /* for the audit record and the journal */
        const char *detail;
        char detail_buf[512]; /* behind detail, when made for this change */
        int (*write)(struct change *ch, struct keystore_tx *tx); /* writer's thread; NULL: none */
        /* On the loop, with what write returned: 0 once it has replied, or a
         * negative errno (answered InternalError by change.c). */
        int (*answer)(struct change *ch, int r);
        struct key_record rec; /* Create: the new key; else the key as loaded */
        void *storage;         /* behind rec when loaded */
        struct key_record updated;
        void *updated_storage;
        struct key_update upd;
        struct key_limits limits;     /* Update: max_uses, rate_limit */
        struct key_rotation rotation; /* Rotate */
        const char *scope[KEY_SCOPE_MAX];
        const char *sources[KEY_SOURCES_MAX];
        enum key_status status;
        struct key_status_change sc;
        size_t n_revoked;     /* Delete: keys created through it, revoked with it */
        char revoked_buf[64]; /* revoked_detail() */
        uint64_t max_owned;
        char token[TOKEN_MAX_LEN + 1];
        uint8_t secret[SHARED_SECRET_SIZE];
        bool any;
        char name[LOCKOUT_NAME_MAX + 2];
        char key_id[TOKEN_ID_LEN + 1];
        uint64_t since, after;
        size_t limit;
        void *userdata; /* a method's own state (bulk.c): its answer frees it */
};

/*
 * A change for the call `q` (copied; its parameters referenced): `write`
 * runs on the writer's thread (NULL: nothing to write, the change only
 * waits for what was handed over before it), `answer` on the loop.  NULL
 * when out of memory.
 */
struct change *change_new(struct request *q, const char *action,
                          int (*write)(struct change *, struct keystore_tx *),
                          int (*answer)(struct change *, int));
/* Hand the change to the writer: the call is answered when it is done. */
int change_submit(struct change *ch);
/* A change that is not submitted (its token and secret erased). */
void change_free(struct change *ch);
/* A Create's change in a CreateMany, kept for the batch's one write (bulk.c): 0, -ENOMEM. */
int create_batch_add(struct create_batch *b, struct change *ch);
/* On the writer's thread: the change's audit record, in its transaction. */
int change_audit(struct change *ch, struct keystore_tx *tx, const struct key_record *rec);
/* The journal entry of a change that is done. */
void change_journal(struct request *q, const char *action, const struct key_record *rec,
                    const char *detail);
