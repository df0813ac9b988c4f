/* SPDX-License-Identifier: MIT */
/*
 * apikeyctl's key commands: create (the token printed once), list (sorted
 * here, the whole list fetched first), show, update, disable, enable,
 * revoke, delete (each naming its key by id or by name), sessions (the
 * login sessions opened with keys), and verify (the token read from
 * standard input, the daemon's code printed and explained).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl_args.h"
#include "ctl_call.h"
#include "ctl_commands.h"
#include "ctl_show.h"
#include "ctl_table.h"
#include "keys_proto.h"
#include "macro.h"
#include "text_check.h"
#include "timeutil.h"
#include "token.h"

int cmd_create(struct ctl *c, struct args *a)
{
        json_auto_t *p = NULL;
        json_auto_t *reply = NULL;
        const char *token, *id, *owner, *role;
        json_t *k;
        char when[RELATIVE_FORMAT_MAX];
        uint64_t exp;
        int r;

        if (a->from)
                return cmd_create_from(c, a);
        if (a->n_pos == 0)
                return usage_error(a, "missing argument: create NAME [OPTIONS], or create --from "
                                      "FILE");
        p = json_pack("{s:s}", "name", a->pos[0]);
        if (!p)
                return -ENOMEM;
        if (a->owner && json_object_set_new(p, "owner", json_string(a->owner)))
                return -ENOMEM;
        r = add_key_fields(a, p);
        if (r < 0)
                return r;
        r = ctl_call(c, KEYS_METHOD_CREATE, json_incref(p), &reply);
        if (r < 0)
                return r;
        k = json_object_get(reply, "key");
        token = param_str(reply, "token");
        if (!json_is_object(k) || !token || !(id = param_str(k, "id")))
                return bad_reply(c, "Create");
        if (c->json)
                return print_json(reply);

        owner = param_str(k, "owner");
        role = param_str(k, "role");
        exp = key_time(k, "expires_at");
        if (exp)
                format_relative(exp, now_usec(), when, sizeof(when));
        fprintf(stderr, "Created key %s '%s' for %s (%s, %s%s).\n", id, a->pos[0],
                owner ? owner : "?", role ? role : "?", exp ? "expires " : "never expires",
                exp ? when : "");
        r = write_stdout(token, strlen(token));
        if (r >= 0)
                r = write_stdout("\n", 1);
        if (r < 0) {
                err("cannot write the token to standard output: %s; revoke key %s and create "
                    "another",
                    strerror(-r), id);
                return r;
        }
        fprintf(stderr, "Store this token now: it is shown only this once, and it cannot be "
                        "shown again.\n");
        return 0;
}

/* Every key List gives for the filters in `a`, page after page. */
static int fetch_keys(struct ctl *c, const struct args *a, json_t **ret)
{
        static const char *const statuses[] = {"enabled", "disabled", "revoked", "expired", NULL};
        json_auto_t *all = json_array();
        _cleanup_free_ char *cursor = NULL;
        char status[16] = "";
        uint64_t d;
        int r;

        if (!all)
                return -ENOMEM;
        /* Enabled, ENABLED: a status is a word, not a case. */
        if (a->status && strlen(a->status) < sizeof(status))
                for (size_t i = 0; a->status[i]; i++)
                        status[i] = (char)(a->status[i] >= 'A' && a->status[i] <= 'Z'
                                               ? a->status[i] - 'A' + 'a'
                                               : a->status[i]);
        if (a->status && !one_of(status, statuses))
                return usage_error(a,
                                   "--status must be enabled, disabled, revoked or expired, "
                                   "not '%s'",
                                   a->status);
        if (a->expiring && (duration_parse(a->expiring, &d) < 0 || d == 0))
                return usage_error(a, "--expiring '%s' is not a duration (7d, 12h, 2w)",
                                   a->expiring);
        for (;;) {
                json_auto_t *p = json_object(), *reply = NULL;
                json_t *keys, *cur;

                if (!p)
                        return -ENOMEM;
                if ((a->owner && json_object_set_new(p, "owner", json_string(a->owner))) ||
                    (a->status && json_object_set_new(p, "status", json_string(status))) ||
                    (a->name && json_object_set_new(p, "name_prefix", json_string(a->name))) ||
                    (a->expiring &&
                     json_object_set_new(p, "expiring_within", json_string(a->expiring))) ||
                    (cursor && json_object_set_new(p, "cursor", json_string(cursor))))
                        return -ENOMEM;
                r = ctl_call(c, KEYS_METHOD_LIST, json_incref(p), &reply);
                if (r < 0)
                        return r;
                keys = json_object_get(reply, "keys");
                cur = json_object_get(reply, "cursor");
                if (!json_is_array(keys) || (cur && !json_is_string(cur)))
                        return bad_reply(c, "List");
                if (json_array_extend(all, keys) < 0)
                        return -ENOMEM;
                if (!cur || !*json_string_value(cur))
                        break;
                /* A cursor that does not move would page forever. */
                if (cursor && STREQ(cursor, json_string_value(cur)))
                        return bad_reply(c, "List");
                free(cursor);
                cursor = strdup(json_string_value(cur));
                if (!cursor)
                        return -ENOMEM;
        }
        *ret = json_incref(all);
        return 0;
}

/* --sort: what a person looks for first in each order. */
enum sort_by { SORT_CREATED, SORT_NAME, SORT_OWNER, SORT_EXPIRES, SORT_LAST_USED, _SORT_MAX };

static const char *const sort_names[_SORT_MAX + 1] = {
    [SORT_CREATED] = "created", [SORT_NAME] = "name",           [SORT_OWNER] = "owner",
    [SORT_EXPIRES] = "expires", [SORT_LAST_USED] = "last-used", [_SORT_MAX] = NULL,
};

struct sort_item {
        json_t *key;
        const char *id, *name, *owner;
        uint64_t created, expires, last_used; /* 0: not set */
};

static int cmp_str(const char *a, const char *b)
{
        return strcoll(a ? a : "", b ? b : "");
}

/* Newer first; 0 (never) after every time. */
static int cmp_newest(uint64_t a, uint64_t b)
{
        return a == b ? 0 : a > b ? -1 : 1;
}

/* Sooner first; 0 (never) after every time. */
static int cmp_soonest(uint64_t a, uint64_t b)
{
        if (a == b)
                return 0;
        if (a == 0 || b == 0)
                return a == 0 ? 1 : -1;
        return a < b ? -1 : 1;
}

static int cmp_keys(const void *x, const void *y, void *by)
{
        const struct sort_item *a = x, *b = y;
        int r = 0;

        switch (*(const enum sort_by *)by) {
        case SORT_NAME:
                r = cmp_str(a->name, b->name);
                break;
        case SORT_OWNER:
                r = cmp_str(a->owner, b->owner);
                if (r == 0)
                        r = cmp_str(a->name, b->name);
                break;
        case SORT_EXPIRES:
                r = cmp_soonest(a->expires, b->expires);
                break;
        case SORT_LAST_USED:
                r = cmp_newest(a->last_used, b->last_used);
                break;
        case SORT_CREATED:
        case _SORT_MAX:
                break;
        }
        /* Ties, and keys made in the same second (times are in seconds):
         * newest first, then by name and id, so the order is the same on
         * every run. */
        if (r == 0)
                r = cmp_newest(a->created, b->created);
        if (r == 0)
                r = cmp_str(a->name, b->name);
        if (r == 0)
                r = cmp_str(a->id, b->id);
        return r;
}

static int parse_sort(const struct args *a, enum sort_by *ret)
{
        if (!a->sort) {
                *ret = SORT_CREATED;
                return 0;
        }
        for (enum sort_by i = 0; i < _SORT_MAX; i++)
                if (strcasecmp(a->sort, sort_names[i]) == 0) {
                        *ret = i;
                        return 0;
                }
        return usage_error(a, "--sort must be created, name, owner, expires or last-used, not '%s'",
                           a->sort);
}

/* `keys` in the order `by`, in place. */
static int sort_keys(json_t *keys, enum sort_by by)
{
        size_t i, n = json_array_size(keys);
        _cleanup_free_ struct sort_item *items = calloc(n ? n : 1, sizeof(*items));
        json_t *k;

        if (!items)
                return -ENOMEM;
        json_array_foreach(keys, i, k)
        {
                items[i] = (struct sort_item){
                    .key = json_incref(k),
                    .id = param_str(k, "id"),
                    .name = param_str(k, "name"),
                    .owner = param_str(k, "owner"),
                    .created = key_time(k, "created_at"),
                    .expires = key_time(k, "expires_at"),
                    .last_used = key_time(k, "last_used_at"),
                };
        }
        qsort_r(items, n, sizeof(*items), cmp_keys, &by);
        json_array_clear(keys);
        for (i = 0; i < n; i++)
                if (json_array_append_new(keys, items[i].key) < 0) {
                        while (++i < n)
                                json_decref(items[i].key);
                        return -ENOMEM;
                }
        return 0;
}

int cmd_list(struct ctl *c, struct args *a)
{
        json_auto_t *keys = NULL;
        enum sort_by by = SORT_CREATED;
        size_t i;
        json_t *k;
        int r;

        r = parse_sort(a, &by);
        if (r < 0)
                return r;
        r = fetch_keys(c, a, &keys);
        if (r < 0)
                return r;
        r = sort_keys(keys, by);
        if (r < 0)
                return r;
        if (a->quiet) {
                json_array_foreach(keys, i, k)
                {
                        const char *id = param_str(k, "id");
                        if (id && token_id_valid(id))
                                printf("%s\n", id);
                }
                return 0;
        }
        if (c->json)
                return print_json(keys);
        if (json_array_size(keys) == 0) {
                /* A header over nothing would leave the reader wondering. */
                printf(a->status || a->owner || a->expiring || a->name
                           ? "No keys match the filters given.\n"
                           : "No keys.\n");
                return 0;
        }
        return list_table(keys);
}

/*
 * The key the user named: `arg` as it is when it has the shape of an id,
 * else the one key of that name among those List gives the caller (names
 * are unique per owner, so an admin may see several).  `*ret_key` is the
 * key when it was looked up by name, else NULL.  None: ERR_REFUSED, as for
 * an unknown id; several: ERR_USAGE, the candidates listed.
 */
static int resolve_key(struct ctl *c, const struct args *a, const char *arg,
                       char ret_id[static TOKEN_ID_LEN + 1], json_t **ret_key)
{
        struct args by_name = {.command = a->command, .name = arg};
        json_auto_t *keys = NULL, *found = json_array();
        size_t i;
        json_t *k;
        int r;

        *ret_key = NULL;
        if (token_id_valid(arg)) {
                memcpy(ret_id, arg, TOKEN_ID_LEN + 1);
                return 0;
        }
        if (!found)
                return -ENOMEM;
        if (!arg[0])
                return usage_error(a, "'' is not a key id (12 letters and digits) or a key name");
        /* Not echoed: control characters would reach the terminal. */
        if (!text_valid(arg, SIZE_MAX))
                return usage_error(a, "that is not a key id (12 letters and digits) or a key "
                                      "name: it holds control characters or is not UTF-8");
        r = fetch_keys(c, &by_name, &keys);
        if (r < 0)
                return r;
        json_array_foreach(keys, i, k)
        {
                const char *name = param_str(k, "name"), *id = param_str(k, "id");
                if (name && STREQ(name, arg) && id && token_id_valid(id) &&
                    json_array_append(found, k) < 0)
                        return -ENOMEM;
        }
        if (json_array_size(found) == 1) {
                k = json_array_get(found, 0);
                memcpy(ret_id, param_str(k, "id"), TOKEN_ID_LEN + 1);
                *ret_key = json_incref(k);
                return 0;
        }
        if (json_array_size(found) == 0) {
                err("no key named '%s' among the keys you may see ('apikeyctl list' shows them)",
                    arg);
                return ERR_REFUSED;
        }

        static const char *const headers[] = {"ID", "OWNER", "STATUS", "CREATED"};
        _cleanup_table_ struct table *t = NULL;

        r = sort_keys(found, SORT_CREATED);
        if (r >= 0)
                r = table_new(ELEMENTSOF(headers), headers, &t);
        if (r < 0)
                return r;
        json_array_foreach(found, i, k)
        {
                char created[128] = "?";
                uint64_t at = key_time(k, "created_at");
                if (at)
                        format_local(at, created, sizeof(created));
                const char *row[] = {param_str(k, "id"), param_str(k, "owner"),
                                     param_str(k, "status"), created};
                r = table_add_row(t, row);
                if (r < 0)
                        return r;
        }
        err("%zu keys are named '%s'; name the one you mean by its id:", json_array_size(found),
            arg);
        table_print(t, stderr, 0);
        return ERR_USAGE;
}

int cmd_show(struct ctl *c, struct args *a)
{
        json_auto_t *reply = NULL, *named = NULL;
        char id[TOKEN_ID_LEN + 1];
        json_t *k;
        int r;

        r = resolve_key(c, a, a->pos[0], id, &named);
        if (r < 0)
                return r;
        r = ctl_call(c, KEYS_METHOD_GET, id_params(id), &reply);
        if (r < 0)
                return r;
        k = json_object_get(reply, "key");
        if (!json_is_object(k))
                return bad_reply(c, "Get");
        r = output_key(c, k);
        if (r < 0 || c->json)
                return r;
        /* The keys created through it: they die with it. */
        json_t *children = json_object_get(reply, "children");
        if (json_array_size(children) > 0) {
                _cleanup_free_ char *ids = join(children, ", ", "");
                _cleanup_free_ char *line = NULL;
                json_int_t total = json_integer_value(json_object_get(reply, "children_total"));
                if (!ids || asprintf(&line, "%s (%lld in all)", ids, (long long)total) < 0)
                        return -ENOMEM;
                r = print_field("Children", line);
        }
        if (r >= 0) {
                /* Where it is in use right now. */
                json_auto_t *live = NULL;
                char n[32];
                r = ctl_call(c, KEYS_METHOD_LIST_SESSIONS, id_params(id), &live);
                if (r < 0)
                        return r;
                snprintf(n, sizeof(n), "%zu live",
                         json_array_size(json_object_get(live, "sessions")));
                r = print_field("Sessions", n);
        }
        return r;
}

static int sessions_table(const json_t *sessions)
{
        static const char *const headers[] = {"KEY", "USER",  "SERVICE", "FROM",
                                              "TTY", "SINCE", "PID"};
        _cleanup_table_ struct table *t = NULL;
        size_t i;
        json_t *e;
        int r;

        r = table_new(ELEMENTSOF(headers), headers, &t);
        if (r < 0)
                return r;
        json_array_foreach(sessions, i, e)
        {
                char since[128] = "?", pid[32];
                uint64_t at = key_time(e, "since");
                const char *rhost = param_str(e, "rhost"), *tty = param_str(e, "tty");

                if (at)
                        format_local(at, since, sizeof(since));
                snprintf(pid, sizeof(pid), "%lld",
                         (long long)json_integer_value(json_object_get(e, "pid")));
                const char *row[] = {param_str(e, "key_id"),
                                     param_str(e, "user"),
                                     param_str(e, "service"),
                                     rhost ? rhost : "-",
                                     tty ? tty : "-",
                                     since,
                                     pid};
                r = table_add_row(t, row);
                if (r < 0)
                        return r;
        }
        table_print(t, stdout, terminal_columns());
        if (isatty(STDOUT_FILENO))
                printf("\n%zu live session%s.\n", table_rows(t), table_rows(t) == 1 ? "" : "s");
        return 0;
}

int cmd_sessions(struct ctl *c, struct args *a)
{
        json_auto_t *reply = NULL, *named = NULL;
        char id[TOKEN_ID_LEN + 1];
        json_t *sessions;
        int r;

        if (a->n_pos == 1) {
                r = resolve_key(c, a, a->pos[0], id, &named);
                if (r < 0)
                        return r;
        }
        r = ctl_call(c, KEYS_METHOD_LIST_SESSIONS, a->n_pos == 1 ? id_params(id) : json_object(),
                     &reply);
        if (r < 0)
                return r;
        sessions = json_object_get(reply, "sessions");
        if (!json_is_array(sessions))
                return bad_reply(c, "ListSessions");
        return c->json ? print_json(sessions) : sessions_table(sessions);
}

static int usage_table(const json_t *uses)
{
        static const char *const headers[] = {"TIME", "CODE", "SERVICE", "FROM", "TTY"};
        _cleanup_table_ struct table *t = NULL;
        size_t i;
        json_t *e;
        int r;

        r = table_new(ELEMENTSOF(headers), headers, &t);
        if (r < 0)
                return r;
        json_array_foreach(uses, i, e)
        {
                char at[128] = "?";
                uint64_t when = key_time(e, "time");
                const char *service = param_str(e, "service"), *rhost = param_str(e, "rhost");
                const char *tty = param_str(e, "tty"), *code = param_str(e, "code");
                const char *row[] = {at, code ? code : "?", service ? service : "-",
                                     rhost ? rhost : "local", tty ? tty : "-"};

                if (when)
                        format_local(when, at, sizeof(at));
                r = table_add_row(t, row);
                if (r < 0)
                        return r;
        }
        table_print(t, stdout, terminal_columns());
        if (isatty(STDOUT_FILENO))
                printf("\n%zu use%s, newest first.\n", table_rows(t),
                       table_rows(t) == 1 ? "" : "s");
        return 0;
}

int cmd_usage(struct ctl *c, struct args *a)
{
        json_auto_t *reply = NULL, *named = NULL;
        char id[TOKEN_ID_LEN + 1];
        json_t *uses;
        int r;

        r = resolve_key(c, a, a->pos[0], id, &named);
        if (r < 0)
                return r;
        r = ctl_call(c, KEYS_METHOD_GET_USAGE, id_params(id), &reply);
        if (r < 0)
                return r;
        uses = json_object_get(reply, "uses");
        if (!json_is_array(uses))
                return bad_reply(c, "GetUsage");
        return c->json ? print_json(uses) : usage_table(uses);
}

int cmd_update(struct ctl *c, struct args *a)
{
        json_auto_t *p = json_object(), *reply = NULL, *named = NULL;
        char id[TOKEN_ID_LEN + 1];
        json_t *k;
        int r;

        if (!p)
                return -ENOMEM;
        if (a->name && json_object_set_new(p, "name", json_string(a->name)))
                return -ENOMEM;
        r = add_key_fields(a, p);
        if (r < 0)
                return r;
        if (json_object_size(p) == 0)
                return usage_error(a, "nothing to change: give --name, --description, --scope, "
                                      "--sources, --not-before, --role, --permissions, "
                                      "--expires, --max-uses or --rate-limit");
        /* Checked before the name is looked up: a typo needs no daemon. */
        r = resolve_key(c, a, a->pos[0], id, &named);
        if (r < 0)
                return r;
        if (json_object_set_new(p, "id", json_string(id)))
                return -ENOMEM;
        r = ctl_call(c, KEYS_METHOD_UPDATE, json_incref(p), &reply);
        if (r < 0)
                return r;
        k = json_object_get(reply, "key");
        if (!json_is_object(k))
                return bad_reply(c, "Update");
        return output_key(c, k);
}

int cmd_rotate(struct ctl *c, struct args *a)
{
        json_auto_t *p = json_object(), *reply = NULL, *named = NULL;
        char id[TOKEN_ID_LEN + 1], when[RELATIVE_FORMAT_MAX];
        const char *token, *new_id, *name;
        json_t *k, *prev;
        uint64_t d, end;
        int r;

        if (!p)
                return -ENOMEM;
        if (a->grace && !STREQ(a->grace, "0") && duration_parse(a->grace, &d) < 0)
                return usage_error(a, "--grace '%s' is not a duration (7d, 12h, 0)", a->grace);
        r = resolve_key(c, a, a->pos[0], id, &named);
        if (r < 0)
                return r;
        if (json_object_set_new(p, "id", json_string(id)) ||
            (a->grace && json_object_set_new(p, "grace", json_string(a->grace))) ||
            (a->retire_on_first_use && json_object_set_new(p, "retire_on_first_use", json_true())))
                return -ENOMEM;
        r = ctl_call(c, KEYS_METHOD_ROTATE, json_incref(p), &reply);
        if (r < 0)
                return r;
        k = json_object_get(reply, "key");
        prev = json_object_get(reply, "previous");
        token = param_str(reply, "token");
        if (!json_is_object(k) || !json_is_object(prev) || !token || !(new_id = param_str(k, "id")))
                return bad_reply(c, "Rotate");
        if (c->json)
                return print_json(reply);

        name = param_str(k, "name");
        end = key_time(prev, "expires_at");
        if (end > now_usec())
                format_relative(end, now_usec(), when, sizeof(when));
        fprintf(stderr, "Rotated key %s to %s '%s'. The old key works %s%s%s.\n", id, new_id,
                name ? name : "?", end > now_usec() ? "until its grace ends " : "no more",
                end > now_usec() ? when : "",
                end > now_usec() && a->retire_on_first_use ? ", or the new key is first used" : "");
        r = write_stdout(token, strlen(token));
        if (r >= 0)
                r = write_stdout("\n", 1);
        if (r < 0) {
                err("cannot write the token to standard output: %s; revoke key %s and rotate "
                    "key %s again",
                    strerror(-r), new_id, id);
                return r;
        }
        fprintf(stderr, "Store this token now: it is shown only this once, and it cannot be "
                        "shown again.\n");
        return 0;
}

/* disable, enable, revoke: one method, the key back. */
static int set_status(struct ctl *c, struct args *a, const char *method, const char *done)
{
        json_auto_t *reply = NULL, *named = NULL;
        char id[TOKEN_ID_LEN + 1];
        const char *name, *owner;
        json_t *k;
        int r;

        r = resolve_key(c, a, a->pos[0], id, &named);
        if (r < 0)
                return r;
        if (STREQ(method, KEYS_METHOD_REVOKE)) {
                if (named)
                        r = confirm(a, "Revoke key %s '%s' of %s? A revoked key never works again.",
                                    id, param_str(named, "name"),
                                    param_str(named, "owner") ? param_str(named, "owner") : "?");
                else
                        r = confirm(a, "Revoke key %s? A revoked key never works again.", id);
                if (r < 0)
                        return r;
        }
        r = ctl_call(c, method, id_params(id), &reply);
        if (r < 0)
                return r;
        k = json_object_get(reply, "key");
        if (!json_is_object(k))
                return bad_reply(c, method + STRLEN(KEYS_INTERFACE "."));
        if (c->json)
                return print_json(k);
        name = param_str(k, "name");
        owner = param_str(k, "owner");
        printf("%s key %s '%s' of %s.\n", done, id, name ? name : "?", owner ? owner : "?");
        return 0;
}

/* Every matching key of an owner rather than one KEY (ctl_bulk.c). */
static bool wants_bulk(const struct args *a)
{
        return a->n_pos == 0 || a->owner || a->name || a->status || a->dry_run;
}

int cmd_disable(struct ctl *c, struct args *a)
{
        if (wants_bulk(a))
                return cmd_bulk(c, a, "disable");
        return set_status(c, a, KEYS_METHOD_DISABLE, "Disabled");
}

int cmd_enable(struct ctl *c, struct args *a)
{
        if (wants_bulk(a))
                return cmd_bulk(c, a, "enable");
        return set_status(c, a, KEYS_METHOD_ENABLE, "Enabled");
}

int cmd_revoke(struct ctl *c, struct args *a)
{
        if (wants_bulk(a))
                return cmd_bulk(c, a, "revoke");
        return set_status(c, a, KEYS_METHOD_REVOKE, "Revoked");
}

int cmd_delete(struct ctl *c, struct args *a)
{
        json_auto_t *reply = NULL, *named = NULL;
        char id[TOKEN_ID_LEN + 1];
        int r;

        if (wants_bulk(a))
                return cmd_bulk(c, a, "delete");
        r = resolve_key(c, a, a->pos[0], id, &named);
        if (r < 0)
                return r;
        if (!a->yes && isatty(STDIN_FILENO)) {
                /* Name the key in the question: ids are easy to mix up. */
                json_auto_t *got = NULL;
                json_t *k = named;
                if (!k) {
                        r = ctl_call(c, KEYS_METHOD_GET, id_params(id), &got);
                        if (r < 0)
                                return r;
                        k = json_object_get(got, "key");
                }
                r = confirm(a, "Delete key %s '%s' of %s? This cannot be undone.", id,
                            param_str(k, "name") ? param_str(k, "name") : "?",
                            param_str(k, "owner") ? param_str(k, "owner") : "?");
                if (r < 0)
                        return r;
        }
        r = ctl_call(c, KEYS_METHOD_DELETE, id_params(id), &reply);
        if (r < 0)
                return r;
        if (c->json)
                return print_json(reply);
        printf("Deleted key %s.\n", id);
        return 0;
}

/* Why a token is not valid, for the user.  No default: a new code is a
 * -Wswitch error here until it is explained. */
static const char *verify_explanation(enum verify_code code)
{
        switch (code) {
        case VERIFY_CODE_NOT_FOUND:
                return "no key matches this token (unknown key, or a wrong secret)";
        case VERIFY_CODE_DISABLED:
                return "the key is disabled";
        case VERIFY_CODE_REVOKED:
                return "the key is revoked";
        case VERIFY_CODE_EXPIRED:
                return "the key has expired";
        case VERIFY_CODE_WRONG_USER:
                return "the key belongs to another user";
        case VERIFY_CODE_OUT_OF_SCOPE:
                return "the key's scope does not include this service";
        case VERIFY_CODE_INSUFFICIENT_PERMISSIONS:
                return "the key lacks a permission asked for";
        case VERIFY_CODE_RATE_LIMITED:
                return "too many attempts (failed guesses, or more than the key's rate_limit); "
                       "try again later";
        case VERIFY_CODE_NOT_FOR_LOGIN:
                return "the key was created by an invite, for scripts and services: it cannot "
                       "log in";
        case VERIFY_CODE_USAGE_EXCEEDED:
                return "the key has no uses left (max_uses)";
        case VERIFY_CODE_NOT_YET_VALID:
                return "the key is not valid yet (not_before)";
        case VERIFY_CODE_SOURCE_DENIED:
                return "the key may not be used from this host (sources)";
        case VERIFY_CODE_UNAVAILABLE:
                return "the daemon could not decide (see its log); try again later";
        case VERIFY_CODE_VALID:      /* with valid false: a reply that contradicts itself */
        case VERIFY_CODE_BAD_FORMAT: /* from the daemon: a prefix it does not take */
        case _VERIFY_CODE_MAX:
        case _VERIFY_CODE_INVALID: /* a newer daemon's */
                break;
        }
        return "the token is not valid";
}

int cmd_verify(struct ctl *c, struct args *a)
{
        _cleanup_(token_input_erase) struct token_input in = {.len = 0};
        json_auto_t *p = json_object(), *reply = NULL;
        enum token_error te;
        struct token t;
        const char *code;
        enum verify_code vc;
        json_t *valid;
        int r;

        if (a->n_pos > 0) {
                err("verify reads the token from standard input, never from the command line, "
                    "where other users can see it (ps); run 'apikeyctl verify < FILE'");
                return ERR_USAGE;
        }
        if (!p)
                return -ENOMEM;
        if ((a->service && json_object_set_new(p, "service", json_string(a->service))) ||
            (a->user && json_object_set_new(p, "user", json_string(a->user))) ||
            (a->rhost && json_object_set_new(p, "rhost", json_string(a->rhost))))
                return -ENOMEM;
        if (a->permissions) {
                json_t *perms = split_list(a->permissions);
                if (!perms || json_object_set_new(p, "permissions", perms))
                        return -ENOMEM;
                r = check_permissions(a, perms);
                if (r < 0)
                        return r;
        }
        r = read_token(a, &in);
        if (r < 0)
                return r;

        /* A typo is answered here, as the PAM module does: no need to ask. */
        if (token_parse(in.data, in.len, NULL, &t, &te) < 0) {
                if (c->json) {
                        json_auto_t *o = json_pack("{s:b, s:s}", "valid", 0, "code",
                                                   verify_code_to_string(VERIFY_CODE_BAD_FORMAT));
                        if (!o || print_json(o) < 0)
                                return -ENOMEM;
                } else
                        printf("%s\n", verify_code_to_string(VERIFY_CODE_BAD_FORMAT));
                fflush(stdout);
                err("not an API key: %s", token_error_to_string(te));
                return ERR_NOT_VALID;
        }
        if (json_object_set_new(p, "token", json_stringn(in.data, in.len)))
                return -ENOMEM;
        token_input_erase(&in);

        r = ctl_call(c, KEYS_METHOD_VERIFY, json_incref(p), &reply);
        if (r < 0)
                return r;
        code = param_str(reply, "code");
        valid = json_object_get(reply, "valid");
        if (!code || !json_is_boolean(valid))
                return bad_reply(c, "Verify");
        if (c->json)
                r = print_json(reply);
        else
                printf("%s\n", code);
        if (r < 0)
                return r;
        vc = verify_code_from_string(code);
        if (json_is_true(valid) && vc == VERIFY_CODE_VALID)
                return 0;
        fflush(stdout);
        err("%s", verify_explanation(vc));
        /* No decision is not a refusal: a script may try again. */
        return vc == VERIFY_CODE_UNAVAILABLE ? ERR_UNREACHABLE : ERR_NOT_VALID;
}
