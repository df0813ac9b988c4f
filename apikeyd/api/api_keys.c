/* SPDX-License-Identifier: MIT */
/* The Varlink methods; see api_keys.h and io.apikeyd.Keys.varlink. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include <sodium.h>

#include "api_internal.h"
#include "api_keys.h"
#include "authz.h"
#include "log.h"
#include "json_scan.h"
#include "text.h"
#include "text_check.h"
#include "timeutil.h"
#include "verify_call.h"

const char *api_str_param(const struct request *q, const char *name)
{
        json_t *v = json_object_get(q->params, name);
        return json_is_string(v) ? json_string_value(v) : NULL;
}

/*
 * Check the call's parameters against `spec`: unknown names, wrong types
 * and missing required ones are answered with InvalidParameter naming the
 * parameter.  null counts as absent.
 */
int api_check_params(struct request *q, const struct param *spec)
{
        const char *key;
        json_t *v;

        json_object_foreach(q->params, key, v)
        {
                const struct param *p;
                for (p = spec; p->name; p++)
                        if (STREQ(p->name, key))
                                break;
                if (!p->name || json_is_null(v))
                        goto check;
                if (json_typeof(v) != p->type)
                        goto bad;
                /* Every text a caller sends, by the one check; the token's own
                 * shape check answers for it (BAD_FORMAT), in both decoders. */
                if (p->type == JSON_STRING && !STREQ(key, "token") &&
                    !text_valid(json_string_value(v), SIZE_MAX))
                        goto bad;
                if (p->type == JSON_ARRAY) {
                        size_t i;
                        json_t *e;
                        json_array_foreach(v, i, e)
                        {
                                if (!json_is_string(e) ||
                                    !text_valid(json_string_value(e), SIZE_MAX))
                                        goto bad;
                        }
                }
                continue;
        check:
                if (!p->name)
                        goto bad;
                continue;
        bad:
                (void)connection_reply_invalid_parameter(q->conn, key);
                return -EINVAL;
        }
        for (const struct param *p = spec; p->name; p++) {
                v = json_object_get(q->params, p->name);
                if (p->required && (!v || json_is_null(v))) {
                        (void)connection_reply_invalid_parameter(q->conn, p->name);
                        return -EINVAL;
                }
        }
        return 0;
}

static int reply_error_reason(struct request *q, const char *error, const char *reason)
{
        return connection_reply_error(q->conn, error, json_pack("{s:s}", "reason", reason));
}

static int reply_no_such_key(struct request *q, const char *id)
{
        return connection_reply_error(q->conn, ERR_NO_SUCH_KEY, json_pack("{s:s}", "id", id));
}

int api_reply_internal(struct request *q, const char *what, int r)
{
        log_error("%s failed: %s", what, strerror(-r));
        return reply_error_reason(q, ERR_INTERNAL,
                                  r == -EBADMSG ? "keystore record is corrupt" : "keystore error");
}

/* "rotate-shared-secret" for io.apikeyd.Keys.RotateSharedSecret. */
static void method_action(const char *method, char *buf, size_t size)
{
        const char *name = method ? strrchr(method, '.') : NULL;
        size_t n = 0;

        for (name = name ? name + 1 : "call"; *name && n + 2 < size; name++) {
                if (*name >= 'A' && *name <= 'Z') {
                        if (n > 0)
                                buf[n++] = '-';
                        buf[n++] = (char)(*name - 'A' + 'a');
                } else
                        buf[n++] = *name;
        }
        buf[n] = '\0';
}

/*
 * A refused call: a journal entry (at most API_REFUSALS_LOGGED_PER_SEC a
 * second, the rest counted in the next one) and an audit record queued
 * with the failed verifies, written in the same batches and as bounded:
 * refusing is not a way to make the daemon write, or to flood the log
 * beyond the ordinary part (keystore.h).
 */
static void audit_refusal(struct request *q, const char *result, const char *reason)
{
        struct api *a = q->api;
        const struct caller *who = connection_caller(q->conn);
        struct queued_verify *qv = NULL;
        char action[32], uid_actor[32];
        const char *actor = q->who.actor;
        uint64_t second = q->now / USEC_PER_SEC;
        struct audit_fields f = {.n = 0};
        char message[768];

        method_action(q->method, action, sizeof(action));
        if (!actor[0]) {
                /* Refused before the principal was known (the key in auth). */
                snprintf(uid_actor, sizeof(uid_actor), "uid=%u", (unsigned)who->uid);
                actor = uid_actor;
        }
        /* Refusals take half the queue at most: a flood of them never keeps
         * the failed verifies that follow out of the audit log. */
        if (a->n_audit_queue < API_AUDIT_QUEUE_MAX / 2)
                qv = api_audit_queue_add(a);
        else
                a->audit_dropped++;
        if (qv) {
                *qv = (struct queued_verify){.time = q->now};
                str_copy(qv->actor, sizeof(qv->actor), actor);
                str_copy(qv->action, sizeof(qv->action), action);
                str_copy(qv->key_id, sizeof(qv->key_id), q->key_id);
                str_copy(qv->result, sizeof(qv->result), result);
                str_copy(qv->detail, sizeof(qv->detail), reason);
        }

        if (second != a->refusals_second) {
                a->refusals_second = second;
                a->refusals_logged = 0;
        }
        if (a->refusals_logged >= API_REFUSALS_LOGGED_PER_SEC) {
                a->refusals_suppressed++;
                return;
        }
        a->refusals_logged++;
        api_field(&f, "APIKEY_ACTION=", action);
        api_field(&f, "APIKEY_CODE=", result);
        if (q->key_id[0])
                api_field(&f, "APIKEY_ID=", q->key_id);
        api_field(&f, "APIKEY_ACTOR=", actor);
        api_field_uint(&f, "APIKEY_CALLER_UID=", who->uid);
        api_field_uint(&f, "APIKEY_CALLER_PID=", (unsigned long)who->pid);
        if (a->refusals_suppressed)
                api_field_uint(&f, "APIKEY_SUPPRESSED=", a->refusals_suppressed);
        snprintf(message, sizeof(message), "%s: %s%s%s refused (%s): %s%s", actor, action,
                 q->key_id[0] ? " key " : "", q->key_id, result, reason,
                 a->refusals_suppressed ? " (and more refused calls before it, not logged)" : "");
        a->refusals_suppressed = 0;
        log_fields(LOG_NOTICE, message, f.v, f.n);
}

static int reply_authz(struct request *q, int r, const char *reason)
{
        audit_refusal(q, r == -EDQUOT ? "policy" : "denied", reason);
        return reply_error_reason(q, r == -EDQUOT ? ERR_POLICY : ERR_DENIED, reason);
}

static json_t *string_array(const char *const *v, size_t n)
{
        json_t *a = json_array();

        for (size_t i = 0; a && i < n; i++)
                json_array_append_new(a, json_string(v[i]));
        return a;
}

static json_t *permissions_json(uint8_t perms)
{
        json_t *a = json_array();

        for (unsigned bit = 1; a && bit <= KEY_PERM_INVITE; bit <<= 1)
                if (perms & bit)
                        json_array_append_new(a, json_string(key_perm_to_string(bit)));
        return a;
}

static void set_time(json_t *o, const char *name, uint64_t t)
{
        char buf[TIMESTAMP_MAX];

        if (t && timestamp_format(t, buf) >= 0)
                json_object_set_new(o, name, json_string(buf));
}

static void set_string(json_t *o, const char *name, const char *s)
{
        if (s)
                json_object_set_new(o, name, json_string(s));
}

/* A key's last use as the API shows it: one noted since the last flush wins. */
struct last_use {
        uint64_t at;
        const char *service, *from;
};

static struct last_use key_last_use(const struct api *a, const struct key_record *rec)
{
        const struct lastused_entry *pending = lastused_find(&a->lastused, rec->id);

        if (pending && pending->at > rec->last_used_at)
                return (struct last_use){
                    .at = pending->at,
                    .service = pending->service[0] ? pending->service : NULL,
                    .from = pending->from[0] ? pending->from : NULL,
                };
        return (struct last_use){
            .at = rec->last_used_at,
            .service = rec->last_used_service,
            .from = rec->last_used_from,
        };
}

/* A record as the API shows it, with any last use not yet flushed. */
static json_t *key_json(const struct api *a, const struct key_record *rec, uint64_t now)
{
        struct last_use lu = key_last_use(a, rec);
        json_t *o;

        o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:s}", "id", rec->id, "name", rec->name,
                      "owner", rec->owner, "role", key_role_to_string(rec->role), "permissions",
                      permissions_json(rec->permissions), "scope",
                      string_array(rec->scope, rec->n_scope), "status",
                      key_status_to_string(record_effective_status(rec, now)));
        if (!o)
                return NULL;
        set_string(o, "description", rec->description);
        set_time(o, "expires_at", rec->expires_at);
        set_time(o, "created_at", rec->created_at);
        set_string(o, "created_by", rec->created_by);
        set_time(o, "last_used_at", lu.at);
        set_string(o, "last_used_service", lu.service);
        set_string(o, "last_used_from", lu.from);
        set_string(o, "parent", rec->parent[0] ? rec->parent : NULL);
        if (rec->flags & KEY_FLAG_NO_LOGIN)
                json_object_set_new(o, "no_login", json_true());
        if (rec->flags & KEY_FLAG_ADMIN_DISABLED)
                json_object_set_new(o, "disabled_by_admin", json_true());
        return o;
}

static void write_time(struct json_out *o, const char *name, uint64_t t)
{
        char buf[TIMESTAMP_MAX + 1]; /* in quotes, in place of its NUL */

        if (t && timestamp_format(t, buf + 1) >= 0) {
                /* Digits, '-', ':', 'T' and 'Z': nothing to escape. */
                buf[0] = '"';
                buf[TIMESTAMP_MAX] = '"';
                json_out_name(o, name, false);
                json_out_raw(o, buf, TIMESTAMP_MAX + 1);
        }
}

static void write_string(struct json_out *o, const char *name, const char *s)
{
        if (s) {
                json_out_name(o, name, false);
                json_out_string(o, s);
        }
}

/*
 * The same object as key_json(), written straight to text for the Verify
 * answer; a test compares the two on every field.
 */
void api_key_write(struct json_out *o, const struct api *a, const struct key_record *rec,
                   uint64_t now)
{
        struct last_use lu = key_last_use(a, rec);
        bool first = true;

        json_out_lit(o, "{\"id\":");
        json_out_string(o, rec->id);
        write_string(o, "name", rec->name);
        write_string(o, "owner", rec->owner);
        write_string(o, "role", key_role_to_string(rec->role));
        json_out_lit(o, ",\"permissions\":[");
        for (unsigned bit = 1; bit <= KEY_PERM_INVITE; bit <<= 1)
                if (rec->permissions & bit) {
                        if (!first)
                                json_out_raw(o, ",", 1);
                        json_out_string(o, key_perm_to_string(bit));
                        first = false;
                }
        json_out_lit(o, "],\"scope\":[");
        for (size_t i = 0; i < rec->n_scope; i++) {
                if (i > 0)
                        json_out_raw(o, ",", 1);
                json_out_string(o, rec->scope[i]);
        }
        json_out_raw(o, "]", 1);
        write_string(o, "status", key_status_to_string(record_effective_status(rec, now)));
        write_string(o, "description", rec->description);
        write_time(o, "expires_at", rec->expires_at);
        write_time(o, "created_at", rec->created_at);
        write_string(o, "created_by", rec->created_by);
        write_time(o, "last_used_at", lu.at);
        write_string(o, "last_used_service", lu.service);
        write_string(o, "last_used_from", lu.from);
        write_string(o, "parent", rec->parent[0] ? rec->parent : NULL);
        if (rec->flags & KEY_FLAG_NO_LOGIN)
                json_out_lit(o, ",\"no_login\":true");
        if (rec->flags & KEY_FLAG_ADMIN_DISABLED)
                json_out_lit(o, ",\"disabled_by_admin\":true");
        json_out_raw(o, "}", 1);
}

static int reply_key(struct request *q, const struct key_record *rec)
{
        return connection_reply(q->conn, json_pack("{s:o}", "key", key_json(q->api, rec, q->now)),
                                false);
}

/* Erase a secret held in a JSON string before the tree is freed. */
void api_erase_json_string(json_t *v)
{
        if (json_is_string(v))
                erase((char *)json_string_value(v), json_string_length(v));
}

/* Parse "permissions" into a bit set; -EINVAL for an unknown name. */
int api_parse_permissions(json_t *arr, uint8_t *ret)
{
        size_t i;
        json_t *e;
        uint8_t perms = 0;

        json_array_foreach(arr, i, e)
        {
                int p = key_perm_from_string(json_string_value(e));
                if (p < 0)
                        return -EINVAL;
                perms |= (uint8_t)p;
        }
        *ret = perms;
        return 0;
}

/* Scope entries, pointing into the JSON tree; -EINVAL if too many. */
static int parse_scope(json_t *arr, const char **ret, size_t *ret_n)
{
        size_t i;
        json_t *e;

        if (json_array_size(arr) > KEY_SCOPE_MAX)
                return -EINVAL;
        json_array_foreach(arr, i, e) ret[i] = json_string_value(e);
        *ret_n = json_array_size(arr);
        return 0;
}

/*
 * Role and permissions from the "role" and "permissions" parameters: a
 * role alone implies its set; permissions alone mean a custom role.
 */
static int parse_role(struct request *q, uint8_t *ret_role, uint8_t *ret_perms)
{
        const char *role_s = api_str_param(q, "role");
        json_t *perms_j = json_object_get(q->params, "permissions");
        uint8_t perms = 0;
        int role;

        if (json_is_array(perms_j) && (api_parse_permissions(perms_j, &perms) < 0 || perms == 0)) {
                (void)connection_reply_invalid_parameter(q->conn, "permissions");
                return -EINVAL;
        }
        if (role_s) {
                role = key_role_from_string(role_s);
                if (role < 0) {
                        (void)connection_reply_invalid_parameter(q->conn, "role");
                        return -EINVAL;
                }
        } else
                role = json_is_array(perms_j) ? KEY_ROLE_CUSTOM : KEY_ROLE_READONLY;

        if (role == KEY_ROLE_CUSTOM) {
                if (!json_is_array(perms_j)) {
                        (void)connection_reply_invalid_parameter(q->conn, "permissions");
                        return -EINVAL;
                }
        } else {
                uint8_t implied = key_role_permissions((enum key_role)role);
                if (json_is_array(perms_j) && perms != implied) {
                        (void)connection_reply_invalid_parameter(q->conn, "permissions");
                        return -EINVAL;
                }
                perms = implied;
        }
        *ret_role = (uint8_t)role;
        *ret_perms = perms;
        return 0;
}

/* Resolve the caller: the connecting process, or the key in `auth`. */
static int request_init(struct request *q, struct api *a, struct connection *c, json_t *params)
{
        json_t *auth = json_object_get(params, "auth");
        int r;

        *q = (struct request){
            .api = a, .conn = c, .params = params, .now = now_usec(), .method = q->method};
        if (!auth || json_is_null(auth)) {
                /* Resolved once per connection: its credentials (groups too)
                 * are the kernel's from when it connected, and the names
                 * behind them cost user and group database lookups. */
                struct principal *who = connection_get_data(c);
                if (!who) {
                        who = malloc(sizeof(*who));
                        if (!who || authz_principal_from_caller(connection_caller(c),
                                                                a->config->admin_group, who) < 0) {
                                free(who);
                                return reply_error_reason(q, ERR_INTERNAL, "out of memory"),
                                       -ENOMEM;
                        }
                        connection_set_data(c, who);
                }
                q->who = *who;
                return 0;
        }
        if (!json_is_string(auth)) {
                (void)connection_reply_invalid_parameter(c, "auth");
                return -EINVAL;
        }

        _cleanup_key_view_ struct key_view view = {0};
        const char *reason;
        enum verify_code code =
            api_verify_auth(q, json_string_value(auth), json_string_length(auth), &view);

        api_erase_json_string(auth);
        if (code == VERIFY_CODE_UNAVAILABLE) {
                (void)reply_error_reason(q, ERR_INTERNAL,
                                         "the API key given in auth could not be read from the "
                                         "keystore");
                return -EIO;
        }
        /* A key that did not verify is counted, logged and audited as a failed
         * verify already (api_verify_auth): no second record of it. */
        if (code != VERIFY_CODE_VALID) {
                (void)reply_error_reason(
                    q, ERR_DENIED,
                    code == VERIFY_CODE_RATE_LIMITED
                        ? "the API key given in auth is locked out after too many failed "
                          "attempts from this caller; try again later"
                    : code == VERIFY_CODE_BAD_FORMAT ? "the API key given in auth is malformed"
                                                     : "the API key given in auth is not valid");
                return -EPERM;
        }
        char blocked_id[TOKEN_ID_LEN + 1];
        unsigned depth = 0;
        int blocked = keystore_lineage(a->ks, &view.rec, q->now, blocked_id, &depth);
        if (blocked < 0) {
                (void)api_reply_internal(q, "reading the keys an API key was created through",
                                         blocked);
                return blocked;
        }
        str_copy(q->key_id, sizeof(q->key_id), view.rec.id);
        r = authz_principal_from_key(&view.rec, blocked > 0, depth, connection_caller(c)->uid,
                                     q->now, &q->who, &reason);
        if (r < 0) {
                (void)reply_authz(q, -EPERM, reason);
                return r;
        }
        q->key_id[0] = '\0';
        return 0;
}

/* One journal field: `prefix` ("NAME=") and the value, cut to fit. */
void api_field(struct audit_fields *f, const char *prefix, const char *value)
{
        struct text t;

        if (f->n >= ELEMENTSOF(f->buf))
                return;
        text_init(&t, f->buf[f->n], sizeof(f->buf[f->n]));
        text_add(&t, prefix);
        text_add(&t, value);
        f->v[f->n] = f->buf[f->n];
        f->n++;
}

void api_field_uint(struct audit_fields *f, const char *prefix, unsigned long value)
{
        char digits[24];

        api_field(f, prefix, uint_text(value, digits));
}

/*
 * A management change is audited twice: a record in the audit database,
 * written in the change's own transaction (change_audit, on the writer's
 * thread), and a journal entry with structured fields once it is done
 * (audit_journal).
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
        int (*write)(struct change *ch, struct keystore *ks); /* writer's thread; NULL: none */
        void (*answer)(struct change *ch, int r);             /* loop */
        struct key_record rec; /* Create: the new key; else the key as loaded */
        void *storage;         /* behind rec when loaded */
        struct key_record updated;
        void *updated_storage;
        struct key_update upd;
        const char *scope[KEY_SCOPE_MAX];
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
};

static void change_free(struct change *ch)
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

static int change_apply(struct keystore *ks, struct write_op *op)
{
        struct change *ch = (struct change *)op;

        return ch->write ? ch->write(ch, ks) : 0;
}

static void change_done(struct write_op *op, int r)
{
        struct change *ch = (struct change *)op;

        ch->answer(ch, r);
        connection_resume(ch->q.conn);
        change_free(ch);
}

static struct change *change_new(struct request *q, const char *action,
                                 int (*write)(struct change *, struct keystore *),
                                 void (*answer)(struct change *, int))
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
static int change_submit(struct change *ch)
{
        struct api *a = ch->q.api;

        /* Earlier failed verifies first, so the audit log stays in time order. */
        api_flush_audit_queue(a);
        connection_defer(ch->q.conn);
        writer_submit(a->writer, &ch->op);
        return 0;
}

/* On the writer's thread: attach the change's audit record to its write. */
static int change_audit(struct change *ch, struct keystore *ks, const struct key_record *rec)
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

        return keystore_audit_next(ks, &ev);
}

static void audit_journal(struct request *q, const char *action, const struct key_record *rec,
                          const char *detail)
{
        const struct caller *who = connection_caller(q->conn);
        struct audit_fields f = {.n = 0};
        char message[512];

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

static int count_status(const struct key_record *rec, void *userdata)
{
        uint64_t *counts = userdata;

        counts[record_effective_status(rec, now_usec())]++;
        return 0;
}

static int count_owned(struct api *a, const char *owner, uint64_t now, uint64_t *ret);

/* A fresh id for `rec`, its token and the token's hash. */
static int new_token(struct api *a, struct key_record *rec, char token[static TOKEN_MAX_LEN + 1])
{
        struct token t;
        int r;

        token_generate_id(rec->id);
        r = token_generate(a->config->token_prefix, rec->id, token);
        if (r < 0 || token_parse(token, (size_t)r, NULL, &t, NULL) < 0) {
                erase(token, TOKEN_MAX_LEN + 1);
                return -EIO;
        }
        token_hash(a->pepper, &t, rec->hash);
        sodium_memzero(&t, sizeof(t));
        return 0;
}

static int create_write(struct change *ch, struct keystore *ks)
{
        int r;

        for (int attempt = 0;; attempt++) {
                /* The id is taken (a chance in 62^12): another id, so another token. */
                if (attempt > 0) {
                        r = new_token(ch->q.api, &ch->rec, ch->token);
                        if (r < 0)
                                return r;
                }
                r = change_audit(ch, ks, &ch->rec);
                if (r < 0)
                        return r;
                r = keystore_put_key_limited(ks, &ch->rec, ch->max_owned);
                if (r != -ENOTUNIQ || attempt >= 3)
                        return r;
        }
}

static void create_answer(struct change *ch, int r)
{
        struct request *q = &ch->q;
        json_t *reply;

        if (r == -EEXIST)
                (void)connection_reply_error(
                    q->conn, ERR_NAME_TAKEN,
                    json_pack("{s:s, s:s}", "owner", ch->rec.owner, "name", ch->rec.name));
        else if (r == -EDQUOT && ch->max_owned)
                (void)reply_authz(q, r, AUTHZ_REASON_USER_MAX_KEYS);
        else if (r < 0)
                (void)api_reply_internal(q, "storing a new key", r);
        else {
                audit_journal(q, "create", &ch->rec, ch->rec.name);
                reply = json_pack("{s:o, s:s}", "key", key_json(q->api, &ch->rec, q->now), "token",
                                  ch->token);
                (void)connection_reply(q->conn, reply, false);
        }
}

static int method_create(struct request *q)
{
        static const struct param spec[] = {
            {"name", JSON_STRING, true},
            {"description", JSON_STRING, false},
            {"owner", JSON_STRING, false},
            {"role", JSON_STRING, false},
            {"permissions", JSON_ARRAY, false},
            {"scope", JSON_ARRAY, false},
            {"expires", JSON_STRING, false},
            {"auth", JSON_STRING, false},
            {NULL, 0, false},
        };
        struct api *a = q->api;
        struct key_record rec = {0};
        char token[TOKEN_MAX_LEN + 1];
        uint8_t role, perms, flags;
        uint64_t n_owned = 0;
        const char *expires, *reason, *field = NULL;
        struct change *ch;
        int r;
        struct authz_policy policy = {
            .admin_group = a->config->admin_group,
            .users_may_create = a->config->users_may_create,
            .user_max_keys = a->config->user_max_keys,
            .user_max_lifetime = a->config->user_max_lifetime_usec,
            .user_default_lifetime = a->config->user_default_lifetime_usec,
        };

        if (api_check_params(q, spec) < 0 || parse_role(q, &role, &perms) < 0)
                return 0;
        rec.name = api_str_param(q, "name");
        rec.description = api_str_param(q, "description");
        if (rec.description && !rec.description[0])
                rec.description = NULL;
        rec.owner = api_str_param(q, "owner");
        if (!rec.owner)
                rec.owner = q->who.owner;
        if (!rec.owner[0])
                return connection_reply_invalid_parameter(q->conn, "owner");
        rec.role = role;
        rec.permissions = perms;
        if (parse_scope(json_object_get(q->params, "scope"), rec.scope, &rec.n_scope) < 0)
                return connection_reply_invalid_parameter(q->conn, "scope");
        bool default_scope = !json_is_array(json_object_get(q->params, "scope"));
        if (default_scope)
                rec.n_scope = authz_default_scope(&q->who, rec.scope);

        expires = api_str_param(q, "expires");
        if (expires) {
                if (expiry_parse(expires, q->now, &rec.expires_at) < 0)
                        return connection_reply_invalid_parameter(q->conn, "expires");
        } else
                rec.expires_at = authz_default_expiry(&q->who, &policy, q->now);

        /* Every value is checked before who may do what is: a bad value is
         * the caller's mistake to fix whatever their rights. */
        rec.status = KEY_STATUS_ENABLED;
        rec.created_at = q->now;
        rec.created_by = q->who.actor;
        token_generate_id(rec.id);
        if (record_check(&rec, &field) < 0)
                return connection_reply_invalid_parameter(q->conn, field);

        if (!q->who.admin) {
                r = count_owned(a, rec.owner, q->now, &n_owned);
                if (r < 0)
                        return api_reply_internal(q, "counting keys", r);
        }
        struct authz_grant grant = {
            .fields = AUTHZ_GRANT_ALL,
            .owner = rec.owner,
            .role = role,
            .permissions = perms,
            .scope = rec.scope,
            .n_scope = rec.n_scope,
            .expires_at = rec.expires_at,
        };
        r = authz_check_create(&q->who, &policy, &grant, q->now, n_owned, &flags, &reason);
        if (r < 0)
                return reply_authz(q, r, reason);
        rec.flags = flags;
        /* Created through the key the call acts with: it dies with it. */
        if (q->who.by_key)
                memcpy(rec.parent, q->who.key_id, sizeof(rec.parent));

        r = new_token(a, &rec, token);
        if (r < 0)
                return api_reply_internal(q, "generating a token", r);
        ch = change_new(q, "create", create_write, create_answer);
        if (!ch) {
                erase(token, sizeof(token));
                return api_reply_internal(q, "storing a new key", -ENOMEM);
        }
        ch->rec = rec;
        /* These pointed into the request on the handler's stack. */
        if (rec.owner == q->who.owner)
                ch->rec.owner = ch->q.who.owner;
        ch->rec.created_by = ch->q.who.actor;
        if (default_scope)
                for (size_t i = 0; i < rec.n_scope; i++)
                        ch->rec.scope[i] = ch->q.who.scope[i];
        ch->detail = ch->rec.name;
        ch->max_owned = q->who.admin ? 0 : a->config->user_max_keys;
        memcpy(ch->token, token, sizeof(token));
        erase(token, sizeof(token));
        return change_submit(ch);
}

static int count_one(const struct key_record *rec, void *userdata)
{
        uint64_t *n = userdata;

        if (rec->status != KEY_STATUS_REVOKED)
                (*n)++;
        return 0;
}

static int count_owned(struct api *a, const char *owner, uint64_t now, uint64_t *ret)
{
        struct key_filter f = {.owner = owner, .now = now};

        *ret = 0;
        return keystore_list(a->ks, &f, NULL, 0, count_one, ret, NULL);
}

/* The keyed hash state after the key block, so each signature starts from it. */
int api_sign_state_reset(struct api *a)
{
        if (!a->sign_state) {
                a->sign_state = sodium_malloc(sizeof(*a->sign_state));
                if (!a->sign_state)
                        return -ENOMEM;
        }
        return crypto_generichash_init(a->sign_state, a->shared_secret, SHARED_SECRET_SIZE,
                                       API_SIGNATURE_SIZE) < 0
                   ? -EINVAL
                   : 0;
}

struct list_state {
        struct request *q;
        json_t *keys; /* when replying in one piece */
        json_t *held; /* when streaming: the key not yet sent */
        int error;
};

static int list_one(const struct key_record *rec, void *userdata)
{
        struct list_state *ls = userdata;
        json_t *k = key_json(ls->q->api, rec, ls->q->now);

        if (!k)
                return -ENOMEM;
        if (ls->keys)
                return json_array_append_new(ls->keys, k) < 0 ? -ENOMEM : 0;
        if (ls->held) {
                int r = connection_reply(ls->q->conn, json_pack("{s:[o]}", "keys", ls->held), true);
                if (r < 0) {
                        json_decref(k);
                        ls->held = NULL;
                        return r;
                }
        }
        ls->held = k;
        return 0;
}

static int method_list(struct request *q)
{
        static const struct param spec[] = {
            {"owner", JSON_STRING, false},       {"status", JSON_STRING, false},
            {"name_prefix", JSON_STRING, false}, {"expiring_within", JSON_STRING, false},
            {"limit", JSON_INTEGER, false},      {"cursor", JSON_STRING, false},
            {"auth", JSON_STRING, false},        {NULL, 0, false},
        };
        struct key_filter f = {.now = q->now};
        const char *status = api_str_param(q, "status"),
                   *within = api_str_param(q, "expiring_within");
        const char *cursor = api_str_param(q, "cursor"), *reason;
        json_t *limit_j = json_object_get(q->params, "limit");
        json_int_t limit = API_LIST_MAX;
        char next[TOKEN_ID_LEN + 1] = "";
        struct list_state ls = {.q = q};
        json_t *reply;
        int r;

        if (api_check_params(q, spec) < 0)
                return 0;
        f.owner = api_str_param(q, "owner");
        f.name_prefix = api_str_param(q, "name_prefix");
        if (status && (f.status = key_status_from_string(status)) < 0)
                return connection_reply_invalid_parameter(q->conn, "status");
        if (within && (duration_parse(within, &f.expiring_within) < 0 || f.expiring_within == 0))
                return connection_reply_invalid_parameter(q->conn, "expiring_within");
        if (limit_j) {
                limit = json_integer_value(limit_j);
                if (limit < 1 || limit > API_LIST_MAX)
                        return connection_reply_invalid_parameter(q->conn, "limit");
        }
        if (cursor && cursor[0] && !token_id_valid(cursor))
                return connection_reply_invalid_parameter(q->conn, "cursor");

        if (!q->who.admin) {
                if (f.owner && !STREQ(f.owner, q->who.owner))
                        return reply_authz(q, -EPERM, "only admins may list other owners' keys");
                f.owner = q->who.owner;
        }
        r = authz_check(&q->who, AUTHZ_READ, f.owner, &reason);
        if (r < 0)
                return reply_authz(q, r, reason);

        if (!connection_wants_more(q->conn))
                ls.keys = json_array();
        r = keystore_list(q->api->ks, &f, cursor, (size_t)limit, list_one, &ls, next);
        if (r < 0) {
                json_decref(ls.keys);
                json_decref(ls.held);
                return api_reply_internal(q, "listing keys", r);
        }
        if (ls.keys)
                reply = json_pack("{s:o}", "keys", ls.keys);
        else
                reply =
                    ls.held ? json_pack("{s:[o]}", "keys", ls.held) : json_pack("{s:[]}", "keys");
        if (reply && next[0])
                json_object_set_new(reply, "cursor", json_string(next));
        return connection_reply(q->conn, reply, false);
}

/* Load the key named by "id" and check that the caller may do `action` to it. */
static int load_key(struct request *q, enum authz_action action, struct key_record *rec,
                    void **storage)
{
        const char *id = api_str_param(q, "id"), *reason;
        int r;

        if (!token_id_valid(id)) {
                (void)connection_reply_invalid_parameter(q->conn, "id");
                return -EINVAL;
        }
        r = keystore_get(q->api->ks, id, rec, storage);
        if (r == -ENOENT) {
                (void)reply_no_such_key(q, id);
                return r;
        }
        if (r < 0) {
                (void)api_reply_internal(q, "reading a key", r);
                return r;
        }
        str_copy(q->key_id, sizeof(q->key_id), rec->id); /* for a refusal, here or later */
        r = authz_check(&q->who, action, rec->owner, &reason);
        if (r < 0) {
                (void)reply_authz(q, r, reason);
                return r;
        }
        return 0;
}

static const struct param id_only[] = {
    {"id", JSON_STRING, true},
    {"auth", JSON_STRING, false},
    {NULL, 0, false},
};

static int method_get(struct request *q)
{
        _cleanup_free_ void *storage = NULL;
        struct key_record rec;

        char children[API_CHILDREN_MAX][TOKEN_ID_LEN + 1];
        size_t n = 0;
        json_t *reply;
        int r;

        if (api_check_params(q, id_only) < 0 || load_key(q, AUTHZ_READ, &rec, &storage) < 0)
                return 0;
        r = keystore_children(q->api->ks, rec.id, children, API_CHILDREN_MAX, &n);
        if (r < 0)
                return api_reply_internal(q, "reading the keys created through a key", r);
        reply = json_pack("{s:o}", "key", key_json(q->api, &rec, q->now));
        if (reply && n > 0) {
                json_t *ids = json_array();
                for (size_t i = 0; ids && i < n && i < API_CHILDREN_MAX; i++)
                        json_array_append_new(ids, json_string(children[i]));
                json_object_set_new(reply, "children", ids);
                json_object_set_new(reply, "children_total", json_integer((json_int_t)n));
        }
        return connection_reply(q->conn, reply, false);
}

/*
 * The start of a write that changes a key in place: what an earlier run of
 * it left (a write may run again after the map grew) is dropped, and the
 * change is audited in the same transaction.
 */
static int change_key_begin(struct change *ch, struct keystore *ks)
{
        free(ch->updated_storage);
        ch->updated_storage = NULL;
        return change_audit(ch, ks, &ch->rec);
}

static int update_write(struct change *ch, struct keystore *ks)
{
        int r = change_key_begin(ch, ks);

        if (r < 0)
                return r;
        return keystore_update_key(ks, ch->rec.id, &ch->upd, &ch->updated, &ch->updated_storage);
}

/* Values up to this long are shown in an update's audit detail; longer ones by name only. */
#define DETAIL_VALUE_MAX 64

static void detail_change(struct text *t, const char *field, const char *from, const char *to)
{
        text_add(t, t->len ? ", " : "");
        text_add(t, field);
        if (from && to && strlen(from) <= DETAIL_VALUE_MAX && strlen(to) <= DETAIL_VALUE_MAX) {
                text_add(t, ": ");
                text_add(t, from);
                text_add(t, " -> ");
                text_add(t, to);
        }
}

static void detail_scope(char *buf, size_t size, const char *const *scope, size_t n)
{
        struct text t;

        text_init(&t, buf, size);
        text_add(&t, n ? "" : "any");
        for (size_t i = 0; i < n; i++) {
                text_add(&t, i ? "," : "");
                text_add(&t, scope[i]);
        }
}

static bool scope_equal(const struct key_record *old, const struct key_update *upd)
{
        if (old->n_scope != upd->n_scope)
                return false;
        for (size_t i = 0; i < old->n_scope; i++)
                if (!STREQ(old->scope[i], upd->scope[i]))
                        return false;
        return true;
}

static void detail_permissions(char *buf, size_t size, uint8_t perms)
{
        struct text t;

        text_init(&t, buf, size);
        for (unsigned bit = 1; bit <= KEY_PERM_INVITE; bit <<= 1)
                if (perms & bit) {
                        text_add(&t, t.len ? "," : "");
                        text_add(&t, key_perm_to_string(bit));
                }
}

static void detail_expiry(char buf[static TIMESTAMP_MAX], uint64_t at)
{
        if (at == 0 || timestamp_format(at, buf) < 0)
                str_copy(buf, TIMESTAMP_MAX, at ? "?" : "never");
}

/*
 * What an update changes, for its audit event and journal entry: the
 * fields whose values differ, old -> new where both are short ("name: ci
 * -> deploy, scope: any -> sshd, expires: never -> 2027-01-31T12:00:00Z"),
 * the description by name only; "nothing changed" when none does.
 */
static void update_detail(const struct key_record *old, const struct key_update *upd, char *buf,
                          size_t size)
{
        char from[DETAIL_VALUE_MAX * 2], to[DETAIL_VALUE_MAX * 2];
        char from_t[TIMESTAMP_MAX], to_t[TIMESTAMP_MAX];
        struct text t;

        text_init(&t, buf, size);
        if ((upd->fields & KEY_UPDATE_NAME) && !STREQ(old->name, upd->name))
                detail_change(&t, "name", old->name, upd->name);
        if ((upd->fields & KEY_UPDATE_DESCRIPTION) &&
            !STREQ(old->description ? old->description : "",
                   upd->description ? upd->description : ""))
                detail_change(&t, "description", NULL, NULL);
        if ((upd->fields & KEY_UPDATE_SCOPE) && !scope_equal(old, upd)) {
                detail_scope(from, sizeof(from), old->scope, old->n_scope);
                detail_scope(to, sizeof(to), upd->scope, upd->n_scope);
                detail_change(&t, "scope", from, to);
        }
        if ((upd->fields & KEY_UPDATE_PERMISSIONS) && old->role != upd->role)
                detail_change(&t, "role", key_role_to_string(old->role),
                              key_role_to_string(upd->role));
        if ((upd->fields & KEY_UPDATE_PERMISSIONS) && old->permissions != upd->permissions) {
                detail_permissions(from, sizeof(from), old->permissions);
                detail_permissions(to, sizeof(to), upd->permissions);
                detail_change(&t, "permissions", from, to);
        }
        if ((upd->fields & KEY_UPDATE_EXPIRES) && old->expires_at != upd->expires_at) {
                detail_expiry(from_t, old->expires_at);
                detail_expiry(to_t, upd->expires_at);
                detail_change(&t, "expires", from_t, to_t);
        }
        if (t.len == 0)
                text_add(&t, "nothing changed");
}

static void changed_answer(struct change *ch, int r);

/* "and N keys created through it" for the journal, or NULL. */
static const char *revoked_detail(struct change *ch, size_t n)
{
        struct text t;

        if (n == 0)
                return NULL;
        text_init(&t, ch->revoked_buf, sizeof(ch->revoked_buf));
        text_add(&t, "revoked ");
        text_add_uint(&t, n);
        text_add(&t, n == 1 ? " key created through it" : " keys created through it");
        return ch->revoked_buf;
}

static int method_update(struct request *q)
{
        static const struct param spec[] = {
            {"id", JSON_STRING, true},
            {"name", JSON_STRING, false},
            {"description", JSON_STRING, false},
            {"scope", JSON_ARRAY, false},
            {"role", JSON_STRING, false},
            {"permissions", JSON_ARRAY, false},
            {"expires", JSON_STRING, false},
            {"auth", JSON_STRING, false},
            {NULL, 0, false},
        };
        struct api *a = q->api;
        _cleanup_free_ void *storage = NULL;
        struct key_record rec;
        struct key_update upd = {0};
        const char *scope[KEY_SCOPE_MAX], *expires, *reason;
        struct change *ch;
        json_t *scope_j;
        int r;

        if (api_check_params(q, spec) < 0 || load_key(q, AUTHZ_UPDATE, &rec, &storage) < 0)
                return 0;

        if ((upd.name = api_str_param(q, "name")))
                upd.fields |= KEY_UPDATE_NAME;
        if (json_is_string(json_object_get(q->params, "description"))) {
                upd.fields |= KEY_UPDATE_DESCRIPTION;
                upd.description = api_str_param(q, "description");
                if (!upd.description[0])
                        upd.description = NULL;
        }
        scope_j = json_object_get(q->params, "scope");
        if (json_is_array(scope_j)) {
                if (parse_scope(scope_j, scope, &upd.n_scope) < 0)
                        return connection_reply_invalid_parameter(q->conn, "scope");
                upd.scope = scope;
                upd.fields |= KEY_UPDATE_SCOPE;
        }
        upd.role = rec.role;
        upd.permissions = rec.permissions;
        if (api_str_param(q, "role") || json_is_array(json_object_get(q->params, "permissions"))) {
                if (parse_role(q, &upd.role, &upd.permissions) < 0)
                        return 0;
                upd.fields |= KEY_UPDATE_PERMISSIONS;
        }
        upd.expires_at = rec.expires_at;
        if ((expires = api_str_param(q, "expires"))) {
                if (expiry_parse(expires, q->now, &upd.expires_at) < 0)
                        return connection_reply_invalid_parameter(q->conn, "expires");
                upd.fields |= KEY_UPDATE_EXPIRES;
        }
        /* The same rules as for a new key, so an update cannot raise a key
         * beyond what its changer could have created (nor a key itself). */
        struct authz_policy policy = {
            .admin_group = a->config->admin_group,
            .user_max_lifetime = a->config->user_max_lifetime_usec,
        };
        struct authz_grant grant = {
            .fields = ((upd.fields & KEY_UPDATE_PERMISSIONS) ? AUTHZ_GRANT_ROLE : 0) |
                      ((upd.fields & KEY_UPDATE_SCOPE) ? AUTHZ_GRANT_SCOPE : 0) |
                      ((upd.fields & KEY_UPDATE_EXPIRES) ? AUTHZ_GRANT_EXPIRES : 0),
            .owner = rec.owner,
            .role = upd.role,
            .permissions = upd.permissions,
            .scope = upd.scope,
            .n_scope = upd.n_scope,
            .expires_at = upd.expires_at,
        };
        r = authz_check_grant(&q->who, &policy, &grant, q->now, NULL, &reason);
        if (r < 0)
                return reply_authz(q, r, reason);

        /* The record as it would be, checked field by field before anything is written. */
        struct key_record next = rec;
        const char *field = NULL;
        if (upd.fields & KEY_UPDATE_NAME)
                next.name = upd.name;
        if (upd.fields & KEY_UPDATE_DESCRIPTION)
                next.description = upd.description;
        if (upd.fields & KEY_UPDATE_SCOPE) {
                next.n_scope = upd.n_scope;
                for (size_t i = 0; i < upd.n_scope; i++)
                        next.scope[i] = upd.scope[i];
        }
        next.role = upd.role;
        next.permissions = upd.permissions;
        next.expires_at = upd.expires_at;
        if (record_check(&next, &field) < 0)
                return connection_reply_invalid_parameter(q->conn, field);

        ch = change_new(q, "update", update_write, changed_answer);
        if (!ch)
                return api_reply_internal(q, "updating a key", -ENOMEM);
        update_detail(&rec, &upd, ch->detail_buf, sizeof(ch->detail_buf));
        ch->detail = ch->detail_buf;
        ch->rec = rec;
        ch->storage = TAKE_PTR(storage);
        ch->upd = upd;
        if (upd.fields & KEY_UPDATE_SCOPE) {
                memcpy(ch->scope, scope, upd.n_scope * sizeof(scope[0]));
                ch->upd.scope = ch->scope;
        }
        return change_submit(ch);
}

static int set_status_write(struct change *ch, struct keystore *ks)
{
        int r = change_key_begin(ch, ks);

        if (r < 0)
                return r;
        ch->sc = (struct key_status_change){
            .status = ch->status,
            .by_admin = authz_status_by_admin(&ch->q.who, ch->status, ch->rec.owner),
        };
        return keystore_change_status(ks, ch->rec.id, &ch->sc, &ch->updated, &ch->updated_storage);
}

/* The answer to Update, Disable, Enable and Revoke. */
static void changed_answer(struct change *ch, int r)
{
        struct request *q = &ch->q;

        if (r == -ESTALE)
                (void)connection_reply_error(q->conn, ERR_REVOKED,
                                             json_pack("{s:s}", "id", ch->rec.id));
        else if (r == -EEXIST)
                (void)connection_reply_error(
                    q->conn, ERR_NAME_TAKEN,
                    json_pack("{s:s, s:s}", "owner", ch->rec.owner, "name", ch->upd.name));
        else if (r == -ENOENT)
                (void)reply_no_such_key(q, ch->rec.id);
        else if (r == -EPERM && ch->status == KEY_STATUS_ENABLED)
                (void)reply_authz(q, r, AUTHZ_REASON_ADMIN_DISABLED);
        else if (r < 0)
                (void)api_reply_internal(q, ch->status ? ch->action : "updating a key", r);
        else {
                const char *detail = revoked_detail(ch, ch->sc.ret_revoked);
                audit_journal(q, ch->action, &ch->updated, detail ? detail : ch->detail);
                (void)reply_key(q, &ch->updated);
        }
}

static int set_status(struct request *q, enum authz_action action, enum key_status status,
                      const char *verb)
{
        _cleanup_free_ void *storage = NULL;
        struct key_record rec;
        struct change *ch;

        const char *reason;
        int r;

        if (api_check_params(q, id_only) < 0 || load_key(q, action, &rec, &storage) < 0)
                return 0;
        if (status == KEY_STATUS_ENABLED && (r = authz_check_enable(&q->who, &rec, &reason)) < 0)
                return reply_authz(q, r, reason);
        ch = change_new(q, verb, set_status_write, changed_answer);
        if (!ch)
                return api_reply_internal(q, verb, -ENOMEM);
        ch->rec = rec;
        ch->storage = TAKE_PTR(storage);
        ch->status = status;
        return change_submit(ch);
}

static int method_disable(struct request *q)
{
        return set_status(q, AUTHZ_TOGGLE, KEY_STATUS_DISABLED, "disable");
}

static int method_enable(struct request *q)
{
        return set_status(q, AUTHZ_TOGGLE, KEY_STATUS_ENABLED, "enable");
}

static int method_revoke(struct request *q)
{
        return set_status(q, AUTHZ_REVOKE, KEY_STATUS_REVOKED, "revoke");
}

static int delete_write(struct change *ch, struct keystore *ks)
{
        int r = change_audit(ch, ks, &ch->rec);

        return r < 0 ? r : keystore_delete_tree(ks, ch->rec.id, &ch->n_revoked);
}

static void delete_answer(struct change *ch, int r)
{
        struct request *q = &ch->q;

        if (r == -ENOENT)
                (void)reply_no_such_key(q, ch->rec.id);
        else if (r < 0)
                (void)api_reply_internal(q, "deleting a key", r);
        else {
                audit_journal(q, "delete", &ch->rec, revoked_detail(ch, ch->n_revoked));
                (void)connection_reply(q->conn, NULL, false);
        }
}

static int method_delete(struct request *q)
{
        _cleanup_free_ void *storage = NULL;
        struct key_record rec;
        struct change *ch;

        if (api_check_params(q, id_only) < 0 || load_key(q, AUTHZ_DELETE, &rec, &storage) < 0)
                return 0;
        ch = change_new(q, "delete", delete_write, delete_answer);
        if (!ch)
                return api_reply_internal(q, "deleting a key", -ENOMEM);
        ch->rec = rec;
        ch->storage = TAKE_PTR(storage);
        return change_submit(ch);
}

static int reply_shared_secret(struct request *q, const uint8_t *secret)
{
        char b64[sodium_base64_ENCODED_LEN(SHARED_SECRET_SIZE, sodium_base64_VARIANT_ORIGINAL)];
        json_t *reply;

        sodium_bin2base64(b64, sizeof(b64), secret, SHARED_SECRET_SIZE,
                          sodium_base64_VARIANT_ORIGINAL);
        reply = json_pack("{s:s}", "secret", b64);
        sodium_memzero(b64, sizeof(b64));
        return connection_reply(q->conn, reply, false);
}

/*
 * The new secret's file written durably (synced, renamed, the directory
 * synced), then the audit record committed: what is answered is on disk.
 * No key changes, so the record is a write of its own; attached with
 * change_audit() it would wait for a key write that never comes.
 */
static int rotate_write(struct change *ch, struct keystore *ks)
{
        _cleanup_free_ char *err = NULL;
        const struct audit_event ev = {
            .time = ch->q.now,
            .actor = ch->q.who.actor,
            .action = ch->action,
            .result = "ok",
            .detail = ch->detail,
            .admin = ch->q.who.admin,
        };
        int r = shared_secret_store(ch->q.api->state_dir, ch->secret, &err);

        if (r < 0) {
                log_error("%s", err ? err : strerror(-r));
                return r;
        }
        return keystore_append_audit(ks, &ev);
}

static void rotate_answer(struct change *ch, int r)
{
        struct api *a = ch->q.api;
        uint8_t *now_kept;

        if (r < 0) {
                /* The file written, its audit record not committed: the file rules. */
                now_kept = sodium_malloc(SHARED_SECRET_SIZE);
                if (now_kept && shared_secret_load(a->state_dir, false, now_kept, NULL) >= 0 &&
                    sodium_memcmp(now_kept, ch->secret, SHARED_SECRET_SIZE) == 0) {
                        memcpy(a->shared_secret, now_kept, SHARED_SECRET_SIZE);
                        if (api_sign_state_reset(a) < 0)
                                log_error("the new shared secret is stored but not in use");
                }
                sodium_free(now_kept);
                (void)api_reply_internal(&ch->q, "storing the shared secret", r);
                return;
        }
        /* Verify answers are signed with the new secret from now on. */
        memcpy(a->shared_secret, ch->secret, sizeof(ch->secret));
        r = api_sign_state_reset(a);
        if (r < 0) {
                /* Stored, but not in use: answers would go on signed with the old one. */
                (void)api_reply_internal(&ch->q, "keying the verify signature", r);
                return;
        }
        audit_journal(&ch->q, "rotate-shared-secret", NULL, NULL);
        (void)reply_shared_secret(&ch->q, a->shared_secret);
}

static int shared_secret(struct request *q, bool rotate)
{
        static const struct param spec[] = {{"auth", JSON_STRING, false}, {NULL, 0, false}};
        struct api *a = q->api;
        struct change *ch;
        const char *reason;
        int r;

        if (api_check_params(q, spec) < 0)
                return 0;
        r = authz_check(&q->who, AUTHZ_SHARED_SECRET, NULL, &reason);
        if (r < 0)
                return reply_authz(q, r, reason);
        if (!rotate)
                return reply_shared_secret(q, a->shared_secret);
        ch = change_new(q, "rotate-shared-secret", rotate_write, rotate_answer);
        if (!ch)
                return api_reply_internal(q, "storing the shared secret", -ENOMEM);
        randombytes_buf(ch->secret, sizeof(ch->secret));
        return change_submit(ch);
}

static int audit_one(const struct audit_event *ev, void *userdata)
{
        json_t *events = userdata, *o;
        char at[TIMESTAMP_MAX] = "";

        (void)timestamp_format(ev->time, at);
        o = json_pack("{s:I, s:s, s:s, s:s, s:s}", "seq", (json_int_t)ev->seq, "time", at, "actor",
                      ev->actor ? ev->actor : "", "action", ev->action ? ev->action : "", "result",
                      ev->result ? ev->result : "");
        if (!o)
                return -ENOMEM;
        set_string(o, "key_id", ev->key_id);
        set_string(o, "detail", ev->detail);
        return json_array_append_new(events, o) < 0 ? -ENOMEM : 0;
}

static void list_audit_answer(struct change *ch, int r)
{
        struct request *q = &ch->q;
        json_t *events;

        events = json_array();
        if (!events) {
                (void)api_reply_internal(q, "reading the audit log", -ENOMEM);
                return;
        }
        r = keystore_list_audit(q->api->ks, ch->after, ch->since, ch->key_id[0] ? ch->key_id : NULL,
                                ch->limit, audit_one, events);
        if (r < 0) {
                json_decref(events);
                (void)api_reply_internal(q, "reading the audit log", r);
                return;
        }
        (void)connection_reply(q->conn, json_pack("{s:o}", "events", events), false);
}

static int method_list_audit(struct request *q)
{
        static const struct param spec[] = {
            {"key_id", JSON_STRING, false}, {"since", JSON_STRING, false},
            {"after", JSON_INTEGER, false}, {"limit", JSON_INTEGER, false},
            {"auth", JSON_STRING, false},   {NULL, 0, false},
        };
        const char *key_id = api_str_param(q, "key_id"), *since_s = api_str_param(q, "since"),
                   *reason;
        json_t *after_j = json_object_get(q->params, "after");
        json_t *limit_j = json_object_get(q->params, "limit");
        json_int_t limit = API_LIST_MAX, after = 0;
        uint64_t since = 0, d;
        struct change *ch;
        int r;

        if (api_check_params(q, spec) < 0)
                return 0;
        if (key_id && !token_id_valid(key_id))
                return connection_reply_invalid_parameter(q->conn, "key_id");
        if (since_s) {
                /* A duration means that long ago; else a point in time. */
                if (duration_parse(since_s, &d) == 0 && d <= q->now)
                        since = q->now - d;
                else if (timestamp_parse(since_s, &since) < 0)
                        return connection_reply_invalid_parameter(q->conn, "since");
        }
        if (after_j && (after = json_integer_value(after_j)) < 0)
                return connection_reply_invalid_parameter(q->conn, "after");
        if (limit_j && ((limit = json_integer_value(limit_j)) < 1 || limit > API_LIST_MAX))
                return connection_reply_invalid_parameter(q->conn, "limit");
        /* The audit log names every owner and caller: admins only. */
        r = authz_check(&q->who, AUTHZ_AUDIT, NULL, &reason);
        if (r < 0)
                return reply_authz(q, r, reason);
        /* Read once every write handed over before it (the failed verifies
         * queued until now among them) is in the keystore. */
        ch = change_new(q, "list-audit", NULL, list_audit_answer);
        if (!ch)
                return api_reply_internal(q, "reading the audit log", -ENOMEM);
        str_copy(ch->key_id, sizeof(ch->key_id), key_id);
        ch->after = (uint64_t)after;
        ch->since = since;
        ch->limit = (size_t)limit;
        return change_submit(ch);
}

static int method_get_status(struct request *q)
{
        static const struct param spec[] = {{"auth", JSON_STRING, false}, {NULL, 0, false}};
        struct api *a = q->api;
        uint64_t counts[5] = {0};
        char started[TIMESTAMP_MAX] = "";
        json_t *reply;
        int r;

        if (api_check_params(q, spec) < 0)
                return 0;
        /* Admins see every key counted; users their own. */
        if (q->who.admin)
                r = keystore_count(a->ks, q->now, counts);
        else {
                struct key_filter f = {.owner = q->who.owner, .now = q->now};
                r = q->who.owner[0] ? keystore_list(a->ks, &f, NULL, 0, count_status, counts, NULL)
                                    : 0;
        }
        if (r < 0)
                return api_reply_internal(q, "counting keys", r);
        (void)timestamp_format(a->started_at, started);
        reply = json_pack("{s:s, s:s, s:s, s:b, s:I, s:{s:I, s:I, s:I, s:I}}", "version",
                          APIKEYD_VERSION, "started_at", started, "state_dir", a->state_dir,
                          "admin", q->who.admin, "connections",
                          (json_int_t)(a->server ? server_connection_count(a->server) : 0), "keys",
                          "enabled", (json_int_t)counts[KEY_STATUS_ENABLED], "disabled",
                          (json_int_t)counts[KEY_STATUS_DISABLED], "revoked",
                          (json_int_t)counts[KEY_STATUS_REVOKED], "expired",
                          (json_int_t)counts[KEY_STATUS_EXPIRED]);
        if (reply && a->socket_path)
                json_object_set_new(reply, "socket", json_string(a->socket_path));
        return connection_reply(q->conn, reply, false);
}

static int lockout_one(const struct lockout_entry *e, bool locked, void *userdata)
{
        struct request *q = ((void **)userdata)[0];
        json_t *arr = ((void **)userdata)[1], *o;
        const char *colon = strchr(e->name, ':');
        char since[TIMESTAMP_MAX] = "", until[TIMESTAMP_MAX] = "";
        /* "key:<id>@<source>": the key id and the source apart. */
        bool per_source = strncmp(e->name, "key:", 4) == 0 && strlen(e->name) > 4 + TOKEN_ID_LEN &&
                          e->name[4 + TOKEN_ID_LEN] == '@';

        (void)timestamp_format(e->since, since);
        o = json_pack("{s:s%, s:s%, s:I, s:s, s:b}", "kind", e->name,
                      (size_t)(colon ? colon - e->name : 0), "name", colon ? colon + 1 : e->name,
                      per_source ? (size_t)TOKEN_ID_LEN : strlen(colon ? colon + 1 : e->name),
                      "failures", (json_int_t)e->failures, "since", since, "locked", locked);
        if (!o)
                return -ENOMEM;
        if (per_source)
                json_object_set_new(o, "source", json_string(e->name + 4 + TOKEN_ID_LEN + 1));
        if (locked && timestamp_format(e->since + q->api->lockout.window, until) >= 0)
                json_object_set_new(o, "locked_until", json_string(until));
        return json_array_append_new(arr, o) < 0 ? -ENOMEM : 0;
}

static int method_list_lockouts(struct request *q)
{
        static const struct param spec[] = {{"auth", JSON_STRING, false}, {NULL, 0, false}};
        const char *reason;
        json_t *arr;
        int r;

        if (api_check_params(q, spec) < 0)
                return 0;
        r = authz_check(&q->who, AUTHZ_LOCKOUT, NULL, &reason);
        if (r < 0)
                return reply_authz(q, r, reason);
        arr = json_array();
        if (!arr)
                return api_reply_internal(q, "listing lockouts", -ENOMEM);
        r = lockout_foreach(&q->api->lockout, q->now, lockout_one, (void *[]){q, arr});
        if (r < 0) {
                json_decref(arr);
                return api_reply_internal(q, "listing lockouts", r);
        }
        return connection_reply(q->conn, json_pack("{s:o}", "lockouts", arr), false);
}

static void reset_lockout_answer(struct change *ch, int r)
{
        audit_journal(&ch->q, ch->action, NULL, ch->detail);
        (void)connection_reply(ch->q.conn, json_pack("{s:b}", "reset", ch->any), false);
}

/*
 * Which names a reset covers: "key:<id>@" followed by the source (or any
 * source when `full` is "key:<id>@"); a source and the keys tried from it.
 */
static bool lockout_reset_match(const char *name, void *userdata)
{
        const char *full = userdata;
        size_t n = strlen(full), len = strlen(name);

        if (strncmp(full, "key:", 4) == 0)
                return full[n - 1] == '@' ? strncmp(name, full, n) == 0 : STREQ(name, full);
        return STREQ(name, full) ||
               (strncmp(name, "key:", 4) == 0 && len == 4 + TOKEN_ID_LEN + 1 + n &&
                name[4 + TOKEN_ID_LEN] == '@' && STREQ(name + len - n, full));
}

static int method_reset_lockout(struct request *q)
{
        static const struct param spec[] = {
            {"kind", JSON_STRING, false},
            {"name", JSON_STRING, false},
            {"source", JSON_STRING, false},
            {"auth", JSON_STRING, false},
            {NULL, 0, false},
        };
        const char *kind = api_str_param(q, "kind"), *name = api_str_param(q, "name"),
                   *source = api_str_param(q, "source"), *reason;
        char full[LOCKOUT_NAME_MAX + 2];
        struct change *ch;
        bool any;
        int r;

        if (api_check_params(q, spec) < 0)
                return 0;
        if (kind && !STREQ(kind, "key") && !STREQ(kind, "from") && !STREQ(kind, "uid"))
                return connection_reply_invalid_parameter(q->conn, "kind");
        if (!kind != !name)
                return connection_reply_invalid_parameter(q->conn, kind ? "name" : "kind");
        if (source &&
            (!kind || !STREQ(kind, "key") || !source[0] || strlen(source) > LOCKOUT_SOURCE_MAX))
                return connection_reply_invalid_parameter(q->conn, "source");
        r = authz_check(&q->who, AUTHZ_LOCKOUT, NULL, &reason);
        if (r < 0)
                return reply_authz(q, r, reason);
        if (!kind) {
                lockout_reset_all(&q->api->lockout);
                any = true;
        } else {
                /* A key from one source, or from every source ("key:<id>@"). */
                if (STREQ(kind, "key"))
                        r = snprintf(full, sizeof(full), "key:%s@%s", name, source ? source : "");
                else
                        r = snprintf(full, sizeof(full), "%s:%s", kind, name);
                if (r < 0 || (size_t)r > LOCKOUT_NAME_MAX || !name[0] ||
                    (STREQ(kind, "key") && strlen(name) != TOKEN_ID_LEN))
                        return connection_reply_invalid_parameter(q->conn, "name");
                any = lockout_reset_if(&q->api->lockout, lockout_reset_match, full) > 0;
        }
        /* Answered once the counts as they are now are in the keystore. */
        ch = change_new(q, kind ? "reset-lockout" : "reset-all-lockouts", NULL,
                        reset_lockout_answer);
        if (!ch) {
                api_save_lockout(q->api);
                return api_reply_internal(q, "saving the lockout counts", -ENOMEM);
        }
        ch->any = any;
        if (kind) {
                /* Without the "@" that ends a key from every source. */
                size_t n = strlen(full) - (STREQ(kind, "key") && !source);
                snprintf(ch->name, sizeof(ch->name), "%.*s", (int)n, full);
                ch->detail = ch->name;
        }
        api_save_lockout(q->api);
        return change_submit(ch);
}

static int method_get_shared_secret(struct request *q)
{
        return shared_secret(q, false);
}

static int method_rotate_shared_secret(struct request *q)
{
        return shared_secret(q, true);
}

static int method_get_info(struct request *q)
{
        static const struct param spec[] = {{NULL, 0, false}};

        if (api_check_params(q, spec) < 0)
                return 0;
        return connection_reply(q->conn,
                                json_pack("{s:s, s:s, s:s, s:s, s:[s, s]}", "vendor", "apikeyd",
                                          "product", "apikeyd", "version", APIKEYD_VERSION, "url",
                                          "https://github.com/apikeyd/apikeyd", "interfaces",
                                          VARLINK_SERVICE_INTERFACE, KEYS_INTERFACE),
                                false);
}

const char api_service_description[] =
    "interface org.varlink.service\n"
    "method GetInfo() -> (vendor: string, product: string, version: string, url: string, "
    "interfaces: []string)\n"
    "method GetInterfaceDescription(interface: string) -> (description: string)\n"
    "error InterfaceNotFound (interface: string)\n"
    "error MethodNotFound (method: string)\n"
    "error MethodNotImplemented (method: string)\n"
    "error InvalidParameter (parameter: string)\n"
    "error PermissionDenied ()\n"
    "error ExpectedMore ()\n";

static int method_get_interface_description(struct request *q)
{
        static const struct param spec[] = {{"interface", JSON_STRING, true}, {NULL, 0, false}};
        const char *iface;

        if (api_check_params(q, spec) < 0)
                return 0;
        iface = api_str_param(q, "interface");
        if (STREQ(iface, KEYS_INTERFACE))
                return connection_reply(
                    q->conn, json_pack("{s:s}", "description", apikeyd_interface_description),
                    false);
        if (STREQ(iface, VARLINK_SERVICE_INTERFACE))
                return connection_reply(
                    q->conn, json_pack("{s:s}", "description", api_service_description), false);
        return connection_reply_error(q->conn, VARLINK_ERROR_INTERFACE_NOT_FOUND,
                                      json_pack("{s:s}", "interface", iface));
}

struct method {
        const char *name;
        int (*fn)(struct request *q);
        bool needs_principal;
};

static const struct method methods[] = {
    {VARLINK_METHOD_GET_INFO, method_get_info, false},
    {VARLINK_METHOD_GET_INTERFACE_DESCRIPTION, method_get_interface_description, false},
    {KEYS_METHOD_CREATE, method_create, true},
    {KEYS_METHOD_VERIFY, api_method_verify, false},
    {KEYS_METHOD_LIST, method_list, true},
    {KEYS_METHOD_GET, method_get, true},
    {KEYS_METHOD_UPDATE, method_update, true},
    {KEYS_METHOD_DISABLE, method_disable, true},
    {KEYS_METHOD_ENABLE, method_enable, true},
    {KEYS_METHOD_REVOKE, method_revoke, true},
    {KEYS_METHOD_DELETE, method_delete, true},
    {KEYS_METHOD_GET_SHARED_SECRET, method_get_shared_secret, true},
    {KEYS_METHOD_ROTATE_SHARED_SECRET, method_rotate_shared_secret, true},
    {KEYS_METHOD_LIST_AUDIT, method_list_audit, true},
    {KEYS_METHOD_GET_STATUS, method_get_status, true},
    {KEYS_METHOD_LIST_LOCKOUTS, method_list_lockouts, true},
    {KEYS_METHOD_RESET_LOCKOUT, method_reset_lockout, true},
};

const char *api_method_name(size_t i)
{
        return i < ELEMENTSOF(methods) ? methods[i].name : NULL;
}

void api_dispatch(struct connection *c, struct varlink_call *call, void *userdata)
{
        struct api *a = userdata;
        struct request q;

        for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
                if (!STREQ(methods[i].name, call->method))
                        continue;
                if (call->more && methods[i].fn != method_list) {
                        (void)connection_reply_error(c, VARLINK_ERROR_INVALID_PARAMETER,
                                                     json_pack("{s:s}", "parameter", "more"));
                        return;
                }
                q.method = methods[i].name;
                if (methods[i].needs_principal || json_object_get(call->parameters, "auth")) {
                        if (request_init(&q, a, c, call->parameters) < 0)
                                return;
                } else
                        q = (struct request){.api = a,
                                             .conn = c,
                                             .params = call->parameters,
                                             .now = now_usec(),
                                             .method = methods[i].name};
                (void)methods[i].fn(&q);
                return;
        }
        (void)connection_reply_error(c, VARLINK_ERROR_METHOD_NOT_FOUND,
                                     json_pack("{s:s}", "method", call->method));
}
