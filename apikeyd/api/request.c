/* SPDX-License-Identifier: MIT */
/*
 * What every method needs around its own work: the call's parameters
 * checked against its list, the replies (errors, refusals audited, the
 * key), and the key object in its two forms side by side: key_json for
 * the management methods, api_key_write for the Verify answer.
 */
#include <errno.h>
#include <stdio.h>

#include "field_rules.h"
#include "fleet.h"
#include "key_limits.h"
#include "log.h"
#include "request.h"
#include "state.h"
#include "text.h"
#include "text_check.h"
#include "timeutil.h"

/*
 * Check the call's parameters against `spec`: unknown names, wrong types
 * and missing required ones are answered with InvalidParameter naming the
 * parameter, and so is a string that is not text (text_valid()): for a
 * key's field (PARAM_KEY_FIELD), with a `reason` that says so and gives the
 * field's rule.  null counts as absent.
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
                if (json_typeof(v) != p->type &&
                    !(p->type == JSON_TRUE && json_is_boolean(v))) /* JSON_TRUE: a boolean */
                        goto bad;
                /* Every text a caller sends, by the one check; the token's own
                 * shape check answers for it (BAD_FORMAT), in both decoders. */
                if (p->type == JSON_STRING && !STREQ(key, "token") &&
                    !text_valid(json_string_value(v), SIZE_MAX))
                        goto not_text;
                if (p->type == JSON_ARRAY) {
                        size_t i;
                        json_t *e;
                        json_array_foreach(v, i, e)
                        {
                                if (!json_is_string(e))
                                        goto bad;
                                if (!text_valid(json_string_value(e), SIZE_MAX))
                                        goto not_text;
                        }
                }
                continue;
        check:
                if (!p->name)
                        goto bad;
                continue;
        not_text:
                if (p->flags & PARAM_KEY_FIELD) {
                        char buf[FIELD_REASON_MAX];
                        (void)api_reply_invalid_reason(q, key, field_reason_not_text(key, buf));
                        return -EINVAL;
                }
        bad:
                (void)api_reply_invalid(q, key);
                return -EINVAL;
        }
        for (const struct param *p = spec; p->name; p++) {
                v = json_object_get(q->params, p->name);
                if ((p->flags & PARAM_REQUIRED) && (!v || json_is_null(v))) {
                        (void)api_reply_invalid(q, p->name);
                        return -EINVAL;
                }
        }
        return 0;
}

/*
 * Check the call's parameters against `spec` as api_check_params() does,
 * then fill `*ret` from them: each parameter into the field its entry
 * names (PARAM()), the rest zero.  0, or -EINVAL once InvalidParameter
 * naming the parameter is sent.
 */
int api_decode_params(struct request *q, const struct param *spec, struct method_params *ret)
{
        int r = api_check_params(q, spec);

        *ret = (struct method_params){0};
        if (r < 0)
                return r;
        for (const struct param *p = spec; p->name; p++) {
                json_t *v = json_object_get(q->params, p->name);
                char *field = (char *)ret + p->offset;

                /* An integer sent as null reads as given, 0, as the methods
                 * have always read it (a null limit is refused as 0 is). */
                if (!v || (json_is_null(v) && p->type != JSON_INTEGER))
                        continue;
                if (p->type == JSON_STRING)
                        *(const char **)(void *)field = json_string_value(v);
                else if (p->type == JSON_ARRAY)
                        *(json_t **)(void *)field = v;
                else if (p->type == JSON_TRUE)
                        *(bool *)(void *)field = json_is_true(v);
                else
                        *(struct param_int *)(void *)field =
                            (struct param_int){.set = true, .value = json_integer_value(v)};
        }
        return 0;
}

/*
 * A call answered, not refused, that acted with a key in `auth`: a use of
 * that key, noted as a valid Verify's is, for the service such a key must
 * be scoped to.  A refused or mistaken call is no use, as a Verify that is
 * not VALID is none.
 */
static void note_auth_use(struct request *q)
{
        int r;

        if (!q->who.by_key)
                return;
        r = lastused_note(&q->api->lastused, q->who.key_id, q->now, "apikeyd", NULL);
        if (r < 0)
                log_warning("noting the last use of key %s failed: %s", q->who.key_id,
                            strerror(-r));
}

int api_reply(struct request *q, json_t *parameters)
{
        note_auth_use(q);
        (void)connection_reply(q->conn, parameters, false);
        return 0;
}

int api_reply_raw(struct request *q, const char *msg, size_t len)
{
        note_auth_use(q);
        (void)connection_reply_raw(q->conn, msg, len);
        return 0;
}

int api_reply_error(struct request *q, const char *error, json_t *parameters)
{
        /* One key of a CreateMany: which one. */
        if (q->item && !parameters)
                parameters = json_object();
        if (q->item && parameters)
                json_object_set_new(parameters, "index", json_integer((json_int_t)q->item - 1));
        (void)connection_reply_error(q->conn, error, parameters);
        return 0;
}

int api_reply_invalid(struct request *q, const char *parameter)
{
        if (q->item)
                return api_reply_error(q, ERR_INVALID, json_pack("{s:s}", "parameter", parameter));
        (void)connection_reply_invalid_parameter(q->conn, parameter);
        return 0;
}

int api_reply_invalid_reason(struct request *q, const char *parameter, const char *reason)
{
        if (!reason)
                return api_reply_invalid(q, parameter);
        return api_reply_error(q, ERR_INVALID,
                               json_pack("{s:s, s:s}", "parameter", parameter, "reason", reason));
}

int api_reply_reason(struct request *q, const char *error, const char *reason)
{
        return api_reply_error(q, error, json_pack("{s:s}", "reason", reason));
}

int api_reply_no_such_key(struct request *q, const char *id)
{
        return api_reply_error(q, ERR_NO_SUCH_KEY, json_pack("{s:s}", "id", id));
}

int api_reply_internal(struct request *q, const char *what, int r)
{
        log_event(LOG_ERR, MESSAGE_ID_STORAGE_ERROR, "%s failed: %s", what, strerror(-r));
        return api_reply_reason(q, ERR_INTERNAL,
                                r == -EBADMSG ? "keystore record is corrupt" : "keystore error");
}

void api_reply_failed(struct request *q, int r)
{
        (void)api_reply_internal(q, q->method ? q->method : "a call", r);
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
        api_field(&f, MESSAGE_ID_CALL_REFUSED, "");
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

int api_reply_authz(struct request *q, int r, const char *reason)
{
        audit_refusal(q, r == -EDQUOT ? "policy" : "denied", reason);
        return api_reply_reason(q, r == -EDQUOT ? ERR_POLICY : ERR_DENIED, reason);
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

void api_set_string(json_t *o, const char *name, const char *s)
{
        if (s)
                json_object_set_new(o, name, json_string(s));
}

/* A key's last use as the API shows it: one noted since the last flush wins. */
struct last_use {
        uint64_t at;
        const char *service, *from;
        const char *host; /* fleet mode, on a manager: the host that used it last */
};

static struct last_use key_last_use(const struct api *a, const struct key_record *rec)
{
        const struct lastused_entry *pending = lastused_find(&a->lastused, rec->id);
        struct last_use lu;

        if (pending && pending->at > rec->last_used_at)
                lu = (struct last_use){
                    .at = pending->at,
                    .service = pending->service[0] ? pending->service : NULL,
                    .from = pending->from[0] ? pending->from : NULL,
                };
        else
                lu = (struct last_use){
                    .at = rec->last_used_at,
                    .service = rec->last_used_service,
                    .from = rec->last_used_from,
                };
        fleet_merge_last_use(a->fleet, rec->id, &lu.at, &lu.service, &lu.from, &lu.host);
        return lu;
}

/* A record as the API shows it, with any last use not yet flushed. */
json_t *api_key_json(const struct api *a, const struct key_record *rec, uint64_t now)
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
        if (rec->n_sources > 0)
                json_object_set_new(o, "sources", string_array(rec->sources, rec->n_sources));
        api_set_string(o, "description", rec->description);
        set_time(o, "expires_at", rec->expires_at);
        set_time(o, "not_before", rec->not_before);
        set_time(o, "created_at", rec->created_at);
        api_set_string(o, "created_by", rec->created_by);
        set_time(o, "last_used_at", lu.at);
        api_set_string(o, "last_used_service", lu.service);
        api_set_string(o, "last_used_from", lu.from);
        api_set_string(o, "last_used_host", lu.host);
        api_set_string(o, "parent", rec->parent[0] ? rec->parent : NULL);
        if (rec->flags & KEY_FLAG_NO_LOGIN)
                json_object_set_new(o, "no_login", json_true());
        if (rec->flags & KEY_FLAG_ADMIN_DISABLED)
                json_object_set_new(o, "disabled_by_admin", json_true());
        api_set_string(o, "disabled_reason", rec->disabled_reason);
        limits_key_json(o, rec);
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
 * The same object as api_key_json(), written straight to text for the Verify
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
        if (rec->n_sources > 0) {
                json_out_lit(o, ",\"sources\":[");
                for (size_t i = 0; i < rec->n_sources; i++) {
                        if (i > 0)
                                json_out_raw(o, ",", 1);
                        json_out_string(o, rec->sources[i]);
                }
                json_out_raw(o, "]", 1);
        }
        write_string(o, "description", rec->description);
        write_time(o, "expires_at", rec->expires_at);
        write_time(o, "not_before", rec->not_before);
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
        write_string(o, "disabled_reason", rec->disabled_reason);
        limits_key_write(o, rec);
        json_out_raw(o, "}", 1);
}

int api_reply_key(struct request *q, const struct key_record *rec)
{
        return api_reply(q, json_pack("{s:o}", "key", api_key_json(q->api, rec, q->now)));
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
