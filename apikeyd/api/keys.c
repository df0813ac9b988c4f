/* SPDX-License-Identifier: MIT */
/*
 * The methods on keys: Create, List, Get, Update, Disable, Enable, Revoke
 * and Delete.  Each checks its parameters, asks authz.c and reads the
 * keystore on the loop; what it writes goes through change.c.
 */
#include <errno.h>
#include <stdio.h>

#include <sodium.h>

#include "change.h"
#include "field_rules.h"
#include "key_limits.h"
#include "methods.h"
#include "sessions.h"
#include "text.h"
#include "timeutil.h"

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

/* Sources, pointing into the JSON tree; -EINVAL if too many. */
static int parse_sources(json_t *arr, const char **ret, size_t *ret_n)
{
        size_t i;
        json_t *e;

        if (json_array_size(arr) > KEY_SOURCES_MAX)
                return -EINVAL;
        json_array_foreach(arr, i, e) ret[i] = json_string_value(e);
        *ret_n = json_array_size(arr);
        return 0;
}

/* The "sources" parameter, or a reply saying why not (-EINVAL). */
static int sources_param(struct request *q, json_t *arr, const char **ret, size_t *ret_n)
{
        char buf[FIELD_REASON_MAX], problem[64];
        struct text t;

        if (parse_sources(arr, ret, ret_n) == 0)
                return 0;
        text_init(&t, problem, sizeof(problem));
        text_add(&t, "it has ");
        text_add_uint(&t, json_array_size(arr));
        text_add(&t, " entries");
        (void)api_reply_invalid_reason(q, "sources", field_reason("sources", problem, buf));
        return -EINVAL;
}

/* The "not_before" parameter (not_before_parse()), or a reply saying why not (-EINVAL). */
static int not_before_param(struct request *q, const char *s, uint64_t *ret)
{
        char buf[FIELD_REASON_MAX];
        int r = not_before_parse(s, q->now, ret);

        if (r == 0)
                return 0;
        (void)api_reply_invalid_reason(
            q, "not_before",
            field_reason("not_before",
                         r == -ERANGE ? "it is not in the future, or too far ahead to be a time"
                                      : "it is not a duration, a date, a time or \"now\"",
                         buf));
        return -EINVAL;
}

/*
 * Role and permissions from the "role" and "permissions" parameters: a
 * role alone implies its set; permissions alone mean a custom role.
 */
static int parse_role(struct request *q, const struct method_params *p, uint8_t *ret_role,
                      uint8_t *ret_perms)
{
        const char *role_s = p->role;
        json_t *perms_j = p->permissions;
        char buf[FIELD_REASON_MAX];
        uint8_t perms = 0;
        int role;

        if (json_is_array(perms_j) && (api_parse_permissions(perms_j, &perms) < 0 || perms == 0)) {
                (void)api_reply_invalid_reason(q, "permissions",
                                               field_reason("permissions",
                                                            perms_j && json_array_size(perms_j) == 0
                                                                ? "none were given"
                                                                : "one of them is not a permission",
                                                            buf));
                return -EINVAL;
        }
        if (role_s) {
                role = key_role_from_string(role_s);
                if (role < 0) {
                        (void)api_reply_invalid_reason(
                            q, "role", field_reason("role", "it is not a role", buf));
                        return -EINVAL;
                }
        } else
                role = json_is_array(perms_j) ? KEY_ROLE_CUSTOM : KEY_ROLE_READONLY;

        if (role == KEY_ROLE_CUSTOM) {
                if (!json_is_array(perms_j)) {
                        (void)api_reply_invalid_reason(
                            q, "permissions",
                            field_reason("permissions",
                                         "none were given, and the role custom needs them", buf));
                        return -EINVAL;
                }
        } else {
                uint8_t implied = key_role_permissions((enum key_role)role);
                if (json_is_array(perms_j) && perms != implied) {
                        (void)api_reply_invalid_reason(
                            q, "permissions",
                            field_reason("permissions",
                                         role == KEY_ROLE_ADMIN
                                             ? "the role admin has every permission, not these"
                                             : "the role readonly has read alone, not these",
                                         buf));
                        return -EINVAL;
                }
                perms = implied;
        }
        *ret_role = (uint8_t)role;
        *ret_perms = perms;
        return 0;
}

static int count_owned(struct api *a, const char *owner, bool invited, uint64_t now, uint64_t *ret);

/* The owner of `rec` has as many keys of its kind as users may have. */
static int refuse_max_keys(struct request *q, const struct key_record *rec, uint64_t max)
{
        char buf[KEY_OWNER_MAX * 2 + 256];

        if (!(rec->flags & KEY_FLAG_NO_LOGIN))
                return api_reply_authz(q, -EDQUOT, AUTHZ_REASON_USER_MAX_KEYS);
        return api_reply_authz(q, -EDQUOT,
                               authz_invited_max_keys_reason(rec->owner, max, buf, sizeof(buf)));
}

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

static int create_write(struct change *ch, struct keystore_tx *tx)
{
        struct keystore *ks = keystore_tx_keystore(tx);
        int r;

        for (int attempt = 0;; attempt++) {
                /* The id is taken (a chance in 62^12): another id, so another token. */
                if (attempt > 0) {
                        r = new_token(ch->q.api, &ch->rec, ch->token);
                        if (r < 0)
                                return r;
                }
                r = keystore_put_key_limited(ks, &ch->rec, ch->max_owned);
                if (r != -ENOTUNIQ || attempt >= 3)
                        break;
        }
        return r < 0 ? r : change_audit(ch, tx, &ch->rec);
}

static int create_answer(struct change *ch, int r)
{
        struct request *q = &ch->q;
        json_t *reply;

        if (r == -EEXIST)
                return api_reply_error(
                    q, ERR_NAME_TAKEN,
                    json_pack("{s:s, s:s}", "owner", ch->rec.owner, "name", ch->rec.name));
        if (r == -EDQUOT && ch->max_owned)
                return refuse_max_keys(q, &ch->rec, ch->max_owned);
        if (r < 0)
                return r;
        change_journal(q, "create", &ch->rec, ch->rec.name);
        reply = json_pack("{s:o, s:s}", "key", api_key_json(q->api, &ch->rec, q->now), "token",
                          ch->token);
        return api_reply(q, reply);
}

static int method_create(struct request *q)
{
        static const struct param spec[] = {
            KEY_PARAM(name, JSON_STRING, true),
            KEY_PARAM(description, JSON_STRING, false),
            KEY_PARAM(owner, JSON_STRING, false),
            KEY_PARAM(role, JSON_STRING, false),
            KEY_PARAM(permissions, JSON_ARRAY, false),
            KEY_PARAM(scope, JSON_ARRAY, false),
            KEY_PARAM(sources, JSON_ARRAY, false),
            KEY_PARAM(not_before, JSON_STRING, false),
            KEY_PARAM(expires, JSON_STRING, false),
            KEY_PARAM(max_uses, JSON_INTEGER, false),
            KEY_PARAM(rate_limit, JSON_STRING, false),
            PARAM(auth, JSON_STRING, false),
            {NULL, 0, false, 0},
        };
        struct api *a = q->api;
        struct method_params p;
        struct key_limits lim;
        struct key_record rec = {0};
        char token[TOKEN_MAX_LEN + 1];
        uint8_t role, perms, flags;
        uint64_t n_owned = 0;
        const char *expires, *reason, *field = NULL;
        char reason_buf[FIELD_REASON_MAX];
        struct change *ch;
        int r;
        struct authz_policy policy = {
            .admin_group = a->config->admin_group,
            .users_may_create = a->config->users_may_create,
            .user_max_keys = a->config->user_max_keys,
            .user_max_lifetime = a->config->user_max_lifetime_usec,
            .user_default_lifetime = a->config->user_default_lifetime_usec,
            .max_lifetime = a->config->max_lifetime_usec,
        };

        if (api_decode_params(q, spec, &p) < 0 || parse_role(q, &p, &role, &perms) < 0 ||
            limits_parse(q, &p, &lim) < 0)
                return 0;
        rec.max_uses = lim.max_uses;
        rec.rate_limit_count = lim.rate_limit_count;
        rec.rate_limit_window = lim.rate_limit_window;
        if (!(lim.fields & KEY_LIMIT_RATE))
                authz_default_rate_limit(&q->who, &rec.rate_limit_count, &rec.rate_limit_window);
        rec.name = p.name;
        rec.description = p.description;
        if (rec.description && !rec.description[0])
                rec.description = NULL;
        rec.owner = p.owner;
        if (!rec.owner)
                rec.owner = q->who.owner;
        if (!rec.owner[0])
                return api_reply_invalid_reason(
                    q, "owner",
                    field_reason("owner",
                                 p.owner ? "it is empty"
                                         : "none was given, and the calling uid has no user name",
                                 reason_buf));
        rec.role = role;
        rec.permissions = perms;
        if (parse_scope(p.scope, rec.scope, &rec.n_scope) < 0)
                return api_reply_invalid_reason(
                    q, "scope", field_reason_scope_count(json_array_size(p.scope), reason_buf));
        bool default_scope = !p.scope;
        if (default_scope)
                rec.n_scope = authz_default_scope(&q->who, rec.scope);

        expires = p.expires;
        if (expires) {
                r = expiry_parse(expires, q->now, &rec.expires_at);
                if (r < 0)
                        return api_reply_invalid_reason(q, "expires",
                                                        field_reason_expires(r, reason_buf));
        } else
                rec.expires_at = authz_default_expiry(&q->who, &policy, q->now);

        /* Conditions: those given, else the acting key's (authz.h). */
        uint64_t inherited_not_before;
        const char *inherited_sources[KEY_SOURCES_MAX];
        size_t n_inherited_sources;
        authz_default_conditions(&q->who, &inherited_not_before, inherited_sources,
                                 &n_inherited_sources);
        if (p.not_before && not_before_param(q, p.not_before, &rec.not_before) < 0)
                return 0;
        if (!p.not_before)
                rec.not_before = inherited_not_before;
        if (p.sources && sources_param(q, p.sources, rec.sources, &rec.n_sources) < 0)
                return 0;
        bool default_sources = !p.sources;
        if (default_sources) {
                rec.n_sources = n_inherited_sources;
                for (size_t i = 0; i < n_inherited_sources; i++)
                        rec.sources[i] = inherited_sources[i];
        }

        /* Every value is checked before who may do what is: a bad value is
         * the caller's mistake to fix whatever their rights. */
        rec.status = KEY_STATUS_ENABLED;
        rec.created_at = q->now;
        rec.created_by = q->who.actor;
        token_generate_id(rec.id);
        if (record_check(&rec, &field) < 0)
                return api_reply_invalid_reason(q, field,
                                                field_reason_record(field, &rec, reason_buf));

        if (!q->who.admin) {
                /* Of the kind the key would be: for another owner, an invited one. */
                r = count_owned(a, rec.owner, !STREQ(rec.owner, q->who.owner), q->now, &n_owned);
                if (r < 0)
                        return r;
        }
        struct authz_grant grant = {
            .fields = AUTHZ_GRANT_ALL,
            .owner = rec.owner,
            .role = role,
            .permissions = perms,
            .scope = rec.scope,
            .n_scope = rec.n_scope,
            .expires_at = rec.expires_at,
            .not_before = rec.not_before,
            .sources = rec.sources,
            .n_sources = rec.n_sources,
            .rate_limit_count = rec.rate_limit_count,
            .rate_limit_window = rec.rate_limit_window,
        };
        r = authz_check_create(&q->who, &policy, &grant, q->now, n_owned, &flags, &reason);
        rec.flags = flags;
        if (r == -EDQUOT && STREQ(reason, AUTHZ_REASON_INVITED_MAX_KEYS))
                return refuse_max_keys(q, &rec, policy.user_max_keys);
        if (r < 0)
                return api_reply_authz(q, r, reason);
        /* Created through the key the call acts with: it dies with it. */
        if (q->who.by_key)
                memcpy(rec.parent, q->who.key_id, sizeof(rec.parent));

        r = new_token(a, &rec, token);
        if (r < 0)
                return r;
        ch = change_new(q, "create", create_write, create_answer);
        if (!ch) {
                erase(token, sizeof(token));
                return -ENOMEM;
        }
        ch->rec = rec;
        /* These pointed into the request on the handler's stack. */
        if (rec.owner == q->who.owner)
                ch->rec.owner = ch->q.who.owner;
        ch->rec.created_by = ch->q.who.actor;
        if (default_scope)
                for (size_t i = 0; i < rec.n_scope; i++)
                        ch->rec.scope[i] = ch->q.who.scope[i];
        if (default_sources)
                for (size_t i = 0; i < rec.n_sources; i++)
                        ch->rec.sources[i] = ch->q.who.sources[i];
        ch->detail = ch->rec.name;
        ch->max_owned = q->who.admin ? 0 : a->config->user_max_keys;
        memcpy(ch->token, token, sizeof(token));
        erase(token, sizeof(token));
        return change_submit(ch);
}

struct count_state {
        bool invited;
        uint64_t n;
};

static int count_one(const struct key_record *rec, void *userdata)
{
        struct count_state *c = userdata;

        if (rec->status != KEY_STATUS_REVOKED && !!(rec->flags & KEY_FLAG_NO_LOGIN) == c->invited)
                c->n++;
        return 0;
}

/*
 * The keys of `owner` that are not revoked and were created through
 * invite for them (`invited`), or not: each kind has its own allowance
 * (keystore_put_key_limited() counts the same way).
 */
static int count_owned(struct api *a, const char *owner, bool invited, uint64_t now, uint64_t *ret)
{
        struct key_filter f = {.owner = owner, .now = now};
        struct count_state c = {.invited = invited};
        int r = keystore_list(a->ks, &f, NULL, 0, count_one, &c, NULL);

        *ret = c.n;
        return r;
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
        json_t *k = api_key_json(ls->q->api, rec, ls->q->now);

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
            PARAM(owner, JSON_STRING, false),       PARAM(status, JSON_STRING, false),
            PARAM(name_prefix, JSON_STRING, false), PARAM(expiring_within, JSON_STRING, false),
            PARAM(limit, JSON_INTEGER, false),      PARAM(cursor, JSON_STRING, false),
            PARAM(auth, JSON_STRING, false),        {NULL, 0, false, 0},
        };
        struct key_filter f = {.now = q->now};
        struct method_params p;
        const char *status, *within, *cursor, *reason;
        json_int_t limit = API_LIST_MAX;
        char next[TOKEN_ID_LEN + 1] = "";
        struct list_state ls = {.q = q};
        json_t *reply;
        int r;

        if (api_decode_params(q, spec, &p) < 0)
                return 0;
        status = p.status;
        within = p.expiring_within;
        cursor = p.cursor;
        f.owner = p.owner;
        f.name_prefix = p.name_prefix;
        if (status && (f.status = key_status_from_string(status)) < 0)
                return api_reply_invalid(q, "status");
        if (within && (duration_parse(within, &f.expiring_within) < 0 || f.expiring_within == 0))
                return api_reply_invalid(q, "expiring_within");
        if (p.limit.set) {
                limit = p.limit.value;
                if (limit < 1 || limit > API_LIST_MAX)
                        return api_reply_invalid(q, "limit");
        }
        if (cursor && cursor[0] && !token_id_valid(cursor))
                return api_reply_invalid(q, "cursor");

        if (!q->who.admin) {
                if (f.owner && !STREQ(f.owner, q->who.owner))
                        return api_reply_authz(q, -EPERM,
                                               "only admins may list other owners' keys");
                f.owner = q->who.owner;
        }
        r = authz_check(&q->who, AUTHZ_READ, f.owner, &reason);
        if (r < 0)
                return api_reply_authz(q, r, reason);

        if (!connection_wants_more(q->conn))
                ls.keys = json_array();
        r = keystore_list(q->api->ks, &f, cursor, (size_t)limit, list_one, &ls, next);
        if (r < 0) {
                json_decref(ls.keys);
                json_decref(ls.held);
                return r;
        }
        if (ls.keys)
                reply = json_pack("{s:o}", "keys", ls.keys);
        else
                reply =
                    ls.held ? json_pack("{s:[o]}", "keys", ls.held) : json_pack("{s:[]}", "keys");
        if (reply && next[0])
                json_object_set_new(reply, "cursor", json_string(next));
        return api_reply(q, reply);
}

/* Load the key named by "id" and check that the caller may do `action` to it. */
static int load_key(struct request *q, const char *id, enum authz_action action,
                    struct key_record *rec, void **storage)
{
        const char *reason;
        int r;

        if (!token_id_valid(id)) {
                (void)connection_reply_invalid_parameter(q->conn, "id");
                return -EINVAL;
        }
        r = keystore_get(q->api->ks, id, rec, storage);
        if (r == -ENOENT) {
                (void)api_reply_no_such_key(q, id);
                return r;
        }
        if (r < 0) {
                (void)api_reply_internal(q, "reading a key", r);
                return r;
        }
        str_copy(q->key_id, sizeof(q->key_id), rec->id); /* for a refusal, here or later */
        r = authz_check(&q->who, action, rec->owner, &reason);
        if (r < 0) {
                (void)api_reply_authz(q, r, reason);
                return r;
        }
        return 0;
}

int api_load_key(struct request *q, const char *id, enum authz_action action,
                 struct key_record *rec, void **storage)
{
        return load_key(q, id, action, rec, storage);
}

int api_new_token(struct api *a, struct key_record *rec, char token[static TOKEN_MAX_LEN + 1])
{
        return new_token(a, rec, token);
}

static const struct param id_only[] = {
    PARAM(id, JSON_STRING, true),
    PARAM(auth, JSON_STRING, false),
    {NULL, 0, false, 0},
};

static int method_get(struct request *q)
{
        _cleanup_free_ void *storage = NULL;
        struct key_record rec;
        struct method_params p;

        char children[API_CHILDREN_MAX][TOKEN_ID_LEN + 1];
        size_t n = 0;
        json_t *reply;
        int r;

        if (api_decode_params(q, id_only, &p) < 0 ||
            load_key(q, p.id, AUTHZ_READ, &rec, &storage) < 0)
                return 0;
        r = keystore_children(q->api->ks, rec.id, children, API_CHILDREN_MAX, &n);
        if (r < 0)
                return r;
        reply = json_pack("{s:o}", "key", api_key_json(q->api, &rec, q->now));
        if (reply && n > 0) {
                json_t *ids = json_array();
                for (size_t i = 0; ids && i < n && i < API_CHILDREN_MAX; i++)
                        json_array_append_new(ids, json_string(children[i]));
                json_object_set_new(reply, "children", ids);
                json_object_set_new(reply, "children_total", json_integer((json_int_t)n));
        }
        return api_reply(q, reply);
}

/*
 * The start of a write that changes a key in place: what an earlier run of
 * it left (a write may run again after the map grew) is dropped, and the
 * change is audited in the same transaction.
 */
static int change_key_begin(struct change *ch, struct keystore_tx *tx)
{
        free(ch->updated_storage);
        ch->updated_storage = NULL;
        return change_audit(ch, tx, &ch->rec);
}

static int update_write(struct change *ch, struct keystore_tx *tx)
{
        int r = change_key_begin(ch, tx);

        if (r < 0)
                return r;
        r = keystore_update_key(keystore_tx_keystore(tx), ch->rec.id, &ch->upd, &ch->updated,
                                &ch->updated_storage);
        if (r < 0 || !ch->limits.fields)
                return r;
        free(ch->updated_storage);
        ch->updated_storage = NULL;
        return keystore_set_limits(keystore_tx_keystore(tx), ch->rec.id, &ch->limits, &ch->updated,
                                   &ch->updated_storage);
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

static void detail_not_before(char buf[static TIMESTAMP_MAX], uint64_t at)
{
        if (at == 0 || timestamp_format(at, buf) < 0)
                str_copy(buf, TIMESTAMP_MAX, at ? "?" : "none");
}

static bool sources_equal(const struct key_record *old, const struct key_update *upd)
{
        if (old->n_sources != upd->n_sources)
                return false;
        for (size_t i = 0; i < old->n_sources; i++)
                if (!STREQ(old->sources[i], upd->sources[i]))
                        return false;
        return true;
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
        if ((upd->fields & KEY_UPDATE_NOT_BEFORE) && old->not_before != upd->not_before) {
                detail_not_before(from_t, old->not_before);
                detail_not_before(to_t, upd->not_before);
                detail_change(&t, "not_before", from_t, to_t);
        }
        if ((upd->fields & KEY_UPDATE_SOURCES) && !sources_equal(old, upd)) {
                detail_scope(from, sizeof(from), old->sources, old->n_sources);
                detail_scope(to, sizeof(to), upd->sources, upd->n_sources);
                detail_change(&t, "sources", from, to);
        }
        if (t.len == 0)
                text_add(&t, "nothing changed");
}

static int changed_answer(struct change *ch, int r);

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
            PARAM(id, JSON_STRING, true),
            KEY_PARAM(name, JSON_STRING, false),
            KEY_PARAM(description, JSON_STRING, false),
            KEY_PARAM(scope, JSON_ARRAY, false),
            KEY_PARAM(role, JSON_STRING, false),
            KEY_PARAM(permissions, JSON_ARRAY, false),
            KEY_PARAM(sources, JSON_ARRAY, false),
            KEY_PARAM(not_before, JSON_STRING, false),
            KEY_PARAM(expires, JSON_STRING, false),
            KEY_PARAM(max_uses, JSON_INTEGER, false),
            KEY_PARAM(rate_limit, JSON_STRING, false),
            PARAM(auth, JSON_STRING, false),
            {NULL, 0, false, 0},
        };
        struct method_params p;
        struct key_limits lim;
        struct api *a = q->api;
        _cleanup_free_ void *storage = NULL;
        struct key_record rec;
        struct key_update upd = {0};
        const char *scope[KEY_SCOPE_MAX], *sources[KEY_SOURCES_MAX], *expires, *reason;
        char reason_buf[FIELD_REASON_MAX];
        struct change *ch;
        json_t *scope_j;
        int r;

        if (api_decode_params(q, spec, &p) < 0 || limits_parse(q, &p, &lim) < 0 ||
            load_key(q, p.id, AUTHZ_UPDATE, &rec, &storage) < 0)
                return 0;

        if ((upd.name = p.name))
                upd.fields |= KEY_UPDATE_NAME;
        if (p.description) {
                upd.fields |= KEY_UPDATE_DESCRIPTION;
                upd.description = p.description;
                if (!upd.description[0])
                        upd.description = NULL;
        }
        scope_j = p.scope;
        if (json_is_array(scope_j)) {
                if (parse_scope(scope_j, scope, &upd.n_scope) < 0)
                        return api_reply_invalid_reason(
                            q, "scope",
                            field_reason_scope_count(json_array_size(scope_j), reason_buf));
                upd.scope = scope;
                upd.fields |= KEY_UPDATE_SCOPE;
        }
        upd.role = rec.role;
        upd.permissions = rec.permissions;
        if (p.role || p.permissions) {
                if (parse_role(q, &p, &upd.role, &upd.permissions) < 0)
                        return 0;
                upd.fields |= KEY_UPDATE_PERMISSIONS;
        }
        upd.expires_at = rec.expires_at;
        if ((expires = p.expires)) {
                r = expiry_parse(expires, q->now, &upd.expires_at);
                if (r < 0)
                        return api_reply_invalid_reason(q, "expires",
                                                        field_reason_expires(r, reason_buf));
                upd.fields |= KEY_UPDATE_EXPIRES;
        }
        upd.not_before = rec.not_before;
        if (p.not_before) {
                if (not_before_param(q, p.not_before, &upd.not_before) < 0)
                        return 0;
                upd.fields |= KEY_UPDATE_NOT_BEFORE;
        }
        if (json_is_array(p.sources)) {
                if (sources_param(q, p.sources, sources, &upd.n_sources) < 0)
                        return 0;
                upd.sources = sources;
                upd.fields |= KEY_UPDATE_SOURCES;
        }
        /* The same rules as for a new key, so an update cannot raise a key
         * beyond what its changer could have created (nor a key itself). */
        struct authz_policy policy = {
            .admin_group = a->config->admin_group,
            .user_max_lifetime = a->config->user_max_lifetime_usec,
            .max_lifetime = a->config->max_lifetime_usec,
        };
        struct authz_grant grant = {
            .fields = ((upd.fields & KEY_UPDATE_PERMISSIONS) ? AUTHZ_GRANT_ROLE : 0) |
                      ((upd.fields & KEY_UPDATE_SCOPE) ? AUTHZ_GRANT_SCOPE : 0) |
                      ((upd.fields & KEY_UPDATE_EXPIRES) ? AUTHZ_GRANT_EXPIRES : 0) |
                      ((upd.fields & KEY_UPDATE_NOT_BEFORE) ? AUTHZ_GRANT_NOT_BEFORE : 0) |
                      ((upd.fields & KEY_UPDATE_SOURCES) ? AUTHZ_GRANT_SOURCES : 0) |
                      ((lim.fields & KEY_LIMIT_RATE) ? AUTHZ_GRANT_RATE : 0) |
                      ((lim.fields & KEY_LIMIT_MAX_USES) ? AUTHZ_GRANT_MAX_USES : 0),
            .owner = rec.owner,
            .role = upd.role,
            .permissions = upd.permissions,
            .scope = upd.scope,
            .n_scope = upd.n_scope,
            .expires_at = upd.expires_at,
            .not_before = upd.not_before,
            .sources = upd.sources,
            .n_sources = upd.n_sources,
            .rate_limit_count = lim.rate_limit_count,
            .rate_limit_window = lim.rate_limit_window,
            .max_uses = lim.max_uses,
            .before = &rec,
        };
        r = authz_check_grant(&q->who, &policy, &grant, q->now, NULL, &reason);
        if (r < 0)
                return api_reply_authz(q, r, reason);

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
        next.not_before = upd.not_before;
        if (upd.fields & KEY_UPDATE_SOURCES) {
                next.n_sources = upd.n_sources;
                for (size_t i = 0; i < upd.n_sources; i++)
                        next.sources[i] = upd.sources[i];
        }
        if (record_check(&next, &field) < 0)
                return api_reply_invalid_reason(q, field,
                                                field_reason_record(field, &next, reason_buf));

        ch = change_new(q, "update", update_write, changed_answer);
        if (!ch)
                return -ENOMEM;
        update_detail(&rec, &upd, ch->detail_buf, sizeof(ch->detail_buf));
        limits_detail(&rec, &lim, ch->detail_buf, sizeof(ch->detail_buf));
        ch->limits = lim;
        ch->detail = ch->detail_buf;
        ch->rec = rec;
        ch->storage = TAKE_PTR(storage);
        ch->upd = upd;
        if (upd.fields & KEY_UPDATE_SCOPE) {
                memcpy(ch->scope, scope, upd.n_scope * sizeof(scope[0]));
                ch->upd.scope = ch->scope;
        }
        if (upd.fields & KEY_UPDATE_SOURCES) {
                memcpy(ch->sources, sources, upd.n_sources * sizeof(sources[0]));
                ch->upd.sources = ch->sources;
        }
        return change_submit(ch);
}

static int set_status_write(struct change *ch, struct keystore_tx *tx)
{
        int r = change_key_begin(ch, tx);

        if (r < 0)
                return r;
        ch->sc = (struct key_status_change){
            .status = ch->status,
            .by_admin = authz_status_by_admin(&ch->q.who, ch->status, ch->rec.owner),
        };
        return keystore_change_status(keystore_tx_keystore(tx), ch->rec.id, &ch->sc, &ch->updated,
                                      &ch->updated_storage);
}

/* The answer to Update, Disable, Enable and Revoke. */
static int changed_answer(struct change *ch, int r)
{
        struct request *q = &ch->q;

        if (r == -ESTALE)
                return api_reply_error(q, ERR_REVOKED, json_pack("{s:s}", "id", ch->rec.id));
        if (r == -EEXIST)
                return api_reply_error(
                    q, ERR_NAME_TAKEN,
                    json_pack("{s:s, s:s}", "owner", ch->rec.owner, "name", ch->upd.name));
        if (r == -ENOENT)
                return api_reply_no_such_key(q, ch->rec.id);
        if (r == -EPERM && ch->status == KEY_STATUS_ENABLED)
                return api_reply_authz(q, r, AUTHZ_REASON_ADMIN_DISABLED);
        if (r < 0)
                return r;
        const char *detail = revoked_detail(ch, ch->sc.ret_revoked);
        change_journal(q, ch->action, &ch->updated, detail ? detail : ch->detail);
        sessions_sweep(q->api);
        return api_reply_key(q, &ch->updated);
}

static int set_status(struct request *q, enum authz_action action, enum key_status status,
                      const char *verb)
{
        _cleanup_free_ void *storage = NULL;
        struct key_record rec;
        struct method_params p;
        struct change *ch;

        const char *reason;
        int r;

        if (api_decode_params(q, id_only, &p) < 0 || load_key(q, p.id, action, &rec, &storage) < 0)
                return 0;
        if (status == KEY_STATUS_ENABLED && (r = authz_check_enable(&q->who, &rec, &reason)) < 0)
                return api_reply_authz(q, r, reason);
        ch = change_new(q, verb, set_status_write, changed_answer);
        if (!ch)
                return -ENOMEM;
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

static int delete_write(struct change *ch, struct keystore_tx *tx)
{
        int r = change_audit(ch, tx, &ch->rec);

        return r < 0 ? r
                     : keystore_delete_tree(keystore_tx_keystore(tx), ch->rec.id, &ch->n_revoked);
}

static int delete_answer(struct change *ch, int r)
{
        struct request *q = &ch->q;

        if (r == -ENOENT)
                return api_reply_no_such_key(q, ch->rec.id);
        if (r < 0)
                return r;
        change_journal(q, "delete", &ch->rec, revoked_detail(ch, ch->n_revoked));
        sessions_sweep(q->api);
        return api_reply(q, NULL);
}

static int method_delete(struct request *q)
{
        _cleanup_free_ void *storage = NULL;
        struct key_record rec;
        struct method_params p;
        struct change *ch;

        if (api_decode_params(q, id_only, &p) < 0 ||
            load_key(q, p.id, AUTHZ_DELETE, &rec, &storage) < 0)
                return 0;
        ch = change_new(q, "delete", delete_write, delete_answer);
        if (!ch)
                return -ENOMEM;
        ch->rec = rec;
        ch->storage = TAKE_PTR(storage);
        return change_submit(ch);
}

const struct method keys_methods[] = {
    {KEYS_METHOD_CREATE, method_create, true, false},
    {KEYS_METHOD_LIST, method_list, true, true},
    {KEYS_METHOD_GET, method_get, true, false},
    {KEYS_METHOD_UPDATE, method_update, true, false},
    {KEYS_METHOD_DISABLE, method_disable, true, false},
    {KEYS_METHOD_ENABLE, method_enable, true, false},
    {KEYS_METHOD_REVOKE, method_revoke, true, false},
    {KEYS_METHOD_DELETE, method_delete, true, false},
    {NULL, NULL, false, false},
};
