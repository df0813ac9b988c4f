/* SPDX-License-Identifier: MIT */
/*
 * The methods that administer the daemon rather than a key: the shared
 * secret (Get, Rotate), ListAudit, GetStatus, ListLockouts, ResetLockout;
 * and org.varlink.service's GetInfo and GetInterfaceDescription.
 */
#include <errno.h>
#include <stdio.h>

#include <sodium.h>

#include "change.h"
#include "fleet.h"
#include "log.h"
#include "methods.h"
#include "state.h"
#include "timeutil.h"
#include "token_check.h"

static int count_status(const struct key_record *rec, void *userdata)
{
        uint64_t *counts = userdata;

        counts[record_effective_status(rec, now_usec())]++;
        return 0;
}

static int reply_shared_secret(struct request *q, const uint8_t *secret)
{
        char b64[sodium_base64_ENCODED_LEN(SHARED_SECRET_SIZE, sodium_base64_VARIANT_ORIGINAL)];
        json_t *reply;

        sodium_bin2base64(b64, sizeof(b64), secret, SHARED_SECRET_SIZE,
                          sodium_base64_VARIANT_ORIGINAL);
        reply = json_pack("{s:s}", "secret", b64);
        sodium_memzero(b64, sizeof(b64));
        return api_reply(q, reply);
}

/*
 * The new secret's file written durably (synced, renamed, the directory
 * synced), then the audit record committed in the change's transaction:
 * what is answered is on disk.
 */
static int rotate_write(struct change *ch, struct keystore_tx *tx)
{
        _cleanup_free_ char *err = NULL;
        int r = shared_secret_store(ch->q.api->state_dir, ch->secret, &err);

        if (r < 0) {
                log_error("%s", err ? err : strerror(-r));
                return r;
        }
        return change_audit(ch, tx, NULL);
}

static int rotate_answer(struct change *ch, int r)
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
                return r;
        }
        /* Verify answers are signed with the new secret from now on. */
        memcpy(a->shared_secret, ch->secret, sizeof(ch->secret));
        r = api_sign_state_reset(a);
        if (r < 0) {
                /* Stored, but not in use: answers would go on signed with the old one. */
                log_error("the new shared secret is stored but not in use");
                return r;
        }
        change_journal(&ch->q, "rotate-shared-secret", NULL, NULL);
        return reply_shared_secret(&ch->q, a->shared_secret);
}

static int shared_secret(struct request *q, bool rotate)
{
        static const struct param spec[] = {PARAM(auth, JSON_STRING, false), {NULL, 0, false, 0}};
        struct api *a = q->api;
        struct change *ch;
        const char *reason;
        int r;

        if (api_check_params(q, spec) < 0)
                return 0;
        r = authz_check(&q->who, AUTHZ_SHARED_SECRET, NULL, &reason);
        if (r < 0)
                return api_reply_authz(q, r, reason);
        if (!rotate)
                return reply_shared_secret(q, a->shared_secret);
        ch = change_new(q, "rotate-shared-secret", rotate_write, rotate_answer);
        if (!ch)
                return -ENOMEM;
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
        api_set_string(o, "key_id", ev->key_id);
        api_set_string(o, "detail", ev->detail);
        return json_array_append_new(events, o) < 0 ? -ENOMEM : 0;
}

static int list_audit_answer(struct change *ch, int r)
{
        struct request *q = &ch->q;
        json_t *events;

        events = json_array();
        if (!events)
                return -ENOMEM;
        r = keystore_list_audit(q->api->ks, ch->after, ch->since, ch->key_id[0] ? ch->key_id : NULL,
                                ch->limit, audit_one, events);
        if (r < 0) {
                json_decref(events);
                return r;
        }
        return api_reply(q, json_pack("{s:o}", "events", events));
}

static int method_list_audit(struct request *q)
{
        static const struct param spec[] = {
            PARAM(key_id, JSON_STRING, false), PARAM(since, JSON_STRING, false),
            PARAM(after, JSON_INTEGER, false), PARAM(limit, JSON_INTEGER, false),
            PARAM(auth, JSON_STRING, false),   {NULL, 0, false, 0},
        };
        struct method_params p;
        const char *key_id, *since_s, *reason;
        json_int_t limit = API_LIST_MAX, after = 0;
        uint64_t since = 0, d;
        struct change *ch;
        int r;

        if (api_decode_params(q, spec, &p) < 0)
                return 0;
        key_id = p.key_id;
        since_s = p.since;
        if (key_id && !token_id_valid(key_id))
                return api_reply_invalid(q, "key_id");
        if (since_s) {
                /* A duration means that long ago; else a point in time. */
                if (duration_parse(since_s, &d) == 0 && d <= q->now)
                        since = q->now - d;
                else if (timestamp_parse(since_s, &since) < 0)
                        return api_reply_invalid(q, "since");
        }
        if (p.after.set && (after = p.after.value) < 0)
                return api_reply_invalid(q, "after");
        if (p.limit.set && ((limit = p.limit.value) < 1 || limit > API_LIST_MAX))
                return api_reply_invalid(q, "limit");
        /* The audit log names every owner and caller: admins only. */
        r = authz_check(&q->who, AUTHZ_AUDIT, NULL, &reason);
        if (r < 0)
                return api_reply_authz(q, r, reason);
        /* Read once every write handed over before it (the failed verifies
         * queued until now among them) is in the keystore. */
        ch = change_new(q, "list-audit", NULL, list_audit_answer);
        if (!ch)
                return -ENOMEM;
        str_copy(ch->key_id, sizeof(ch->key_id), key_id);
        ch->after = (uint64_t)after;
        ch->since = since;
        ch->limit = (size_t)limit;
        return change_submit(ch);
}

static int method_get_status(struct request *q)
{
        static const struct param spec[] = {PARAM(auth, JSON_STRING, false), {NULL, 0, false, 0}};
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
                return r;
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
        if (reply && a->fleet)
                json_object_set_new(reply, "fleet", fleet_status(a->fleet));
        if (reply && (r = expiry_status(q, reply)) < 0) {
                json_decref(reply);
                return r;
        }
        return api_reply(q, reply);
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
        static const struct param spec[] = {PARAM(auth, JSON_STRING, false), {NULL, 0, false, 0}};
        const char *reason;
        json_t *arr;
        int r;

        if (api_check_params(q, spec) < 0)
                return 0;
        r = authz_check(&q->who, AUTHZ_LOCKOUT, NULL, &reason);
        if (r < 0)
                return api_reply_authz(q, r, reason);
        arr = json_array();
        if (!arr)
                return -ENOMEM;
        r = lockout_foreach(&q->api->lockout, q->now, lockout_one, (void *[]){q, arr});
        if (r < 0) {
                json_decref(arr);
                return r;
        }
        return api_reply(q, json_pack("{s:o}", "lockouts", arr));
}

static int reset_lockout_answer(struct change *ch, int r)
{
        change_journal(&ch->q, ch->action, NULL, ch->detail);
        return api_reply(&ch->q, json_pack("{s:b}", "reset", ch->any));
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
            PARAM(kind, JSON_STRING, false),
            PARAM(name, JSON_STRING, false),
            PARAM(source, JSON_STRING, false),
            PARAM(auth, JSON_STRING, false),
            {NULL, 0, false, 0},
        };
        struct method_params p;
        const char *kind, *name, *source, *reason;
        char full[LOCKOUT_NAME_MAX + 2];
        struct change *ch;
        bool any;
        int r;

        if (api_decode_params(q, spec, &p) < 0)
                return 0;
        kind = p.kind;
        name = p.name;
        source = p.source;
        if (kind && !STREQ(kind, "key") && !STREQ(kind, "from") && !STREQ(kind, "uid"))
                return api_reply_invalid(q, "kind");
        if (!kind != !name)
                return api_reply_invalid(q, kind ? "name" : "kind");
        if (source &&
            (!kind || !STREQ(kind, "key") || !source[0] || strlen(source) > LOCKOUT_SOURCE_MAX))
                return api_reply_invalid(q, "source");
        r = authz_check(&q->who, AUTHZ_LOCKOUT, NULL, &reason);
        if (r < 0)
                return api_reply_authz(q, r, reason);
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
                        return api_reply_invalid(q, "name");
                any = lockout_reset_if(&q->api->lockout, lockout_reset_match, full) > 0;
        }
        /* Answered once the counts as they are now are in the keystore. */
        ch = change_new(q, kind ? "reset-lockout" : "reset-all-lockouts", NULL,
                        reset_lockout_answer);
        if (!ch) {
                api_save_lockout(q->api);
                return -ENOMEM;
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
        static const struct param spec[] = {{NULL, 0, false, 0}};

        if (api_check_params(q, spec) < 0)
                return 0;
        return api_reply(q, json_pack("{s:s, s:s, s:s, s:s, s:[s, s]}", "vendor", "apikeyd",
                                      "product", "apikeyd", "version", APIKEYD_VERSION, "url",
                                      "https://github.com/apikeyd/apikeyd", "interfaces",
                                      VARLINK_SERVICE_INTERFACE, KEYS_INTERFACE));
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
        static const struct param spec[] = {PARAM(interface, JSON_STRING, true),
                                            {NULL, 0, false, 0}};
        struct method_params p;
        const char *iface;

        if (api_decode_params(q, spec, &p) < 0)
                return 0;
        iface = p.interface;
        if (STREQ(iface, KEYS_INTERFACE))
                return api_reply(q,
                                 json_pack("{s:s}", "description", apikeyd_interface_description));
        if (STREQ(iface, VARLINK_SERVICE_INTERFACE))
                return api_reply(q, json_pack("{s:s}", "description", api_service_description));
        return api_reply_error(q, VARLINK_ERROR_INTERFACE_NOT_FOUND,
                               json_pack("{s:s}", "interface", iface));
}

const struct method service_methods[] = {
    {VARLINK_METHOD_GET_INFO, method_get_info, false, false},
    {VARLINK_METHOD_GET_INTERFACE_DESCRIPTION, method_get_interface_description, false, false},
    {NULL, NULL, false, false},
};

const struct method admin_methods[] = {
    {KEYS_METHOD_GET_SHARED_SECRET, method_get_shared_secret, true, false},
    {KEYS_METHOD_ROTATE_SHARED_SECRET, method_rotate_shared_secret, true, false},
    {KEYS_METHOD_LIST_AUDIT, method_list_audit, true, false},
    {KEYS_METHOD_GET_STATUS, method_get_status, true, false},
    {KEYS_METHOD_LIST_LOCKOUTS, method_list_lockouts, true, false},
    {KEYS_METHOD_RESET_LOCKOUT, method_reset_lockout, true, false},
    {NULL, NULL, false, false},
};
