/* SPDX-License-Identifier: MIT */
/* How apikeyctl prints keys and times; see ctl_show.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl_call.h"
#include "ctl_show.h"
#include "ctl_table.h"
#include "macro.h"
#include "timeutil.h"

/* ------------------------------------------------------------------ times */

uint64_t key_time(const json_t *o, const char *name)
{
        const char *s = param_str(o, name);
        uint64_t t;

        return s && timestamp_parse(s, &t) >= 0 ? t : 0;
}

/* "Sun 2027-01-31 23:59:59 CET": the local time, with its zone. */
void format_local(uint64_t t, char *ret, size_t size)
{
        time_t sec = (time_t)(t / USEC_PER_SEC);
        struct tm tm;

        if (!localtime_r(&sec, &tm) || strftime(ret, size, "%a %Y-%m-%d %H:%M:%S %Z", &tm) == 0)
                snprintf(ret, size, "@%llu", (unsigned long long)sec);
}

void format_relative(uint64_t t, uint64_t now, char *ret, size_t size)
{
        if (relative_format(t, now, ret, size) < 0)
                snprintf(ret, size, "?");
}

/* "Sun 2027-01-31 23:59:59 CET (in 29 days)" */
void format_both(uint64_t t, uint64_t now, char *ret, size_t size)
{
        char local[128], rel[RELATIVE_FORMAT_MAX];

        format_local(t, local, sizeof(local));
        format_relative(t, now, rel, sizeof(rel));
        snprintf(ret, size, "%s (%s)", local, rel);
}

/* ---------------------------------------------------------------- keys */

/* A JSON array of strings joined with `sep`; `empty` when it has none. */
char *join(const json_t *arr, const char *sep, const char *empty)
{
        size_t i, len = 0;
        json_t *e;
        char *s, *p;

        json_array_foreach(arr, i, e) len += json_string_length(e) + strlen(sep);
        if (len == 0)
                return strdup(empty);
        s = p = malloc(len + 1);
        if (!s)
                return NULL;
        json_array_foreach(arr, i, e)
        {
                if (i > 0)
                        p = stpcpy(p, sep);
                p = stpcpy(p, json_string_value(e) ? json_string_value(e) : "");
        }
        *p = '\0';
        return s;
}

/*
 * When a key was last used, and for what: "3 minutes ago (sshd from
 * 192.0.2.1)" in a table, with the local time too in `show`; "Never".
 * On a fleet's manager, the host too: "(sshd from 192.0.2.1 on web3)".
 */
static void format_last_used(const json_t *k, uint64_t now, bool local, char *ret, size_t size)
{
        uint64_t t = key_time(k, "last_used_at");
        const char *service = param_str(k, "last_used_service");
        const char *from = param_str(k, "last_used_from");
        const char *host = param_str(k, "last_used_host"); /* a fleet's manager */
        char when[256], where[3 * 256 + 16] = "";

        if (t == 0) {
                snprintf(ret, size, "Never");
                return;
        }
        if (local)
                format_both(t, now, when, sizeof(when));
        else
                format_relative(t, now, when, sizeof(when));
        if (service)
                snprintf(where, sizeof(where), "%s%s%s", service, from ? " from " : "",
                         from ? from : "");
        else if (from)
                snprintf(where, sizeof(where), "from %s", from);
        if (host)
                snprintf(where + strlen(where), sizeof(where) - strlen(where), "%son %s",
                         where[0] ? " " : "", host);
        if (!where[0])
                snprintf(ret, size, "%s", when);
        else if (local)
                snprintf(ret, size, "%s, %s", when, where);
        else
                snprintf(ret, size, "%s (%s)", when, where);
}

static char *format_role(const json_t *k)
{
        const char *role = param_str(k, "role");
        _cleanup_free_ char *perms = NULL;
        char *s;

        if (!role || !STREQ(role, "custom"))
                return strdup(role ? role : "?");
        perms = join(json_object_get(k, "permissions"), ",", "none");
        if (!perms || asprintf(&s, "custom: %s", perms) < 0)
                return NULL;
        return s;
}

/* One "Label: value" line of `show` and `status`, safe for the terminal. */
int print_field(const char *label, const char *value)
{
        _cleanup_free_ char *v = strdup(value ? value : "?");

        if (!v)
                return -ENOMEM;
        text_sanitize(v);
        printf("%11s: %s\n", label, v);
        return 0;
}

/*
 * The lines of rotation and limits, each "" when the key has none:
 * "7Hq2LmX9aB3z (its grace ends at its first use)", "3 of 5", "100/1m".
 */
static void show_lifecycle(const json_t *k, char *replaces, char *replaced, char *uses, char *rate,
                           size_t size)
{
        const char *from = param_str(k, "replaces"), *to = param_str(k, "replaced_by");
        json_t *max = json_object_get(k, "max_uses"), *left = json_object_get(k, "uses_left");

        if (from)
                snprintf(replaces, size, "%s%s", from,
                         json_is_true(json_object_get(k, "retire_on_first_use"))
                             ? " (which stops working at this key's first use)"
                             : "");
        if (to)
                snprintf(replaced, size, "%s (this key works until it expires)", to);
        if (json_is_integer(max) && json_is_integer(left))
                snprintf(uses, size, "%lld of %lld", (long long)json_integer_value(left),
                         (long long)json_integer_value(max));
        if (param_str(k, "rate_limit"))
                snprintf(rate, size, "%s (VALID verifies a window)", param_str(k, "rate_limit"));
}

static int show_key(const json_t *k)
{
        uint64_t now = now_usec(), t;
        _cleanup_free_ char *perms = join(json_object_get(k, "permissions"), ", ", "none");
        _cleanup_free_ char *scope = join(json_object_get(k, "scope"), ", ", "any service");
        _cleanup_free_ char *created = NULL, *status = NULL;
        const char *by = param_str(k, "created_by"), *parent = param_str(k, "parent");
        char expires[256], when[256], last[1024];

        if (!perms || !scope)
                return -ENOMEM;
        t = key_time(k, "expires_at");
        if (t)
                format_both(t, now, expires, sizeof(expires));
        else
                snprintf(expires, sizeof(expires), "never");
        format_both(key_time(k, "created_at"), now, when, sizeof(when));
        if (asprintf(&created, "%s%s%s", when, by ? " by " : "", by ? by : "") < 0)
                return -ENOMEM;
        format_last_used(k, now, true, last, sizeof(last));
        const char *reason = param_str(k, "disabled_reason");
        char replaces[128] = "", replaced[128] = "", uses[64] = "", rate[128] = "";
        show_lifecycle(k, replaces, replaced, uses, rate, sizeof(replaces));
        if (asprintf(&status, "%s%s%s%s", param_str(k, "status") ?: "?",
                     json_is_true(json_object_get(k, "disabled_by_admin"))
                         ? " (by an admin: only an admin may enable it)"
                         : "",
                     reason ? ", reason: " : "", reason ? reason : "") < 0)
                return -ENOMEM;
        /* Conditions, shown only when the key has them. */
        _cleanup_free_ char *sources = NULL;
        char not_before[256] = "";
        if (json_object_get(k, "sources") &&
            !(sources = join(json_object_get(k, "sources"), ", ", "anywhere")))
                return -ENOMEM;
        if ((t = key_time(k, "not_before")))
                format_both(t, now, not_before, sizeof(not_before));

        const char *const fields[][2] = {
            {"ID", param_str(k, "id")},
            {"Name", param_str(k, "name")},
            {"Description", param_str(k, "description")},
            {"Owner", param_str(k, "owner")},
            {"Role", param_str(k, "role")},
            {"Permissions", perms},
            {"Scope", scope},
            {"Sources", sources},
            {"Status", status},
            {"Login", json_is_true(json_object_get(k, "no_login"))
                          ? "no: created through invite, for scripts and services only"
                          : NULL},
            {"Not before", not_before[0] ? not_before : NULL},
            {"Expires", expires},
            {"Created", created},
            {"Through", parent},
            {"Replaces", replaces[0] ? replaces : NULL},
            {"Replaced by", replaced[0] ? replaced : NULL},
            {"Uses left", uses[0] ? uses : NULL},
            {"Rate limit", rate[0] ? rate : NULL},
            {"Last used", last},
        };
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                /* Optional lines are left out when they have nothing to say. */
                if ((STREQ(fields[i][0], "Description") || STREQ(fields[i][0], "Login") ||
                     STREQ(fields[i][0], "Through") || STREQ(fields[i][0], "Sources") ||
                     STREQ(fields[i][0], "Not before") || STREQ(fields[i][0], "Replaces") ||
                     STREQ(fields[i][0], "Replaced by") || STREQ(fields[i][0], "Uses left") ||
                     STREQ(fields[i][0], "Rate limit")) &&
                    !fields[i][1])
                        continue;
                int r = print_field(fields[i][0], fields[i][1]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Print a key the way the output mode asks. */
int output_key(const struct ctl *c, const json_t *k)
{
        if (c->json)
                return print_json(k);
        return show_key(k);
}

int list_table(const json_t *keys)
{
        static const char *const headers[] = {
            "ID", "NAME / DESCRIPTION", "OWNER", "ROLE", "SCOPE", "EXPIRES", "STATUS", "LAST USED",
        };
        static const size_t flexible[] = {1, 2, 3, 4, 7};
        /* Left out in this order when cutting is not enough: the id, the
         * name and the status always stay. */
        static const unsigned drop_rank[ELEMENTSOF(headers)] = {
            [7] = 5 /* LAST USED */, [4] = 4 /* SCOPE */,   [3] = 3 /* ROLE */,
            [2] = 2 /* OWNER */,     [5] = 1 /* EXPIRES */,
        };
        _cleanup_table_ struct table *t = NULL;
        uint64_t now = now_usec();
        size_t i;
        json_t *k;
        int r;

        r = table_new(ELEMENTSOF(headers), headers, &t);
        if (r < 0)
                return r;
        for (i = 0; i < ELEMENTSOF(flexible); i++)
                table_set_flexible(t, flexible[i], true);
        for (i = 0; i < ELEMENTSOF(drop_rank); i++)
                table_set_drop_rank(t, i, drop_rank[i]);

        json_array_foreach(keys, i, k)
        {
                _cleanup_free_ char *name = NULL, *role = format_role(k), *scope = NULL;
                const char *desc = param_str(k, "description");
                char expires[RELATIVE_FORMAT_MAX], last[512];
                uint64_t exp = key_time(k, "expires_at");

                scope = join(json_object_get(k, "scope"), ",", "any");
                if (asprintf(&name, "%s%s%s%s", param_str(k, "name") ? param_str(k, "name") : "?",
                             desc ? " (" : "", desc ? desc : "", desc ? ")" : "") < 0)
                        name = NULL;
                if (!name || !role || !scope)
                        return -ENOMEM;
                if (exp)
                        format_relative(exp, now, expires, sizeof(expires));
                else
                        snprintf(expires, sizeof(expires), "never");
                format_last_used(k, now, false, last, sizeof(last));
                /* "disabled (unused)": why the daemon disabled it; a rotated
                 * key still working: how long its grace has left. */
                char status[128 + RELATIVE_FORMAT_MAX];
                const char *reason = param_str(k, "disabled_reason");
                snprintf(status, sizeof(status), "%s%s%s%s", param_str(k, "status") ?: "?",
                         reason ? " (" : "", reason ? reason : "", reason ? ")" : "");
                if (param_str(k, "replaced_by") && STREQ(param_str(k, "status") ?: "", "enabled") &&
                    exp)
                        snprintf(status, sizeof(status), "rotated, grace ends %s", expires);
                const char *row[] = {
                    param_str(k, "id"),
                    name,
                    param_str(k, "owner"),
                    role,
                    scope,
                    expires,
                    status,
                    last,
                };
                r = table_add_row(t, row);
                if (r < 0)
                        return r;
        }

        r = table_print(t, stdout, terminal_columns());
        if (r < 0)
                return r;
        if (isatty(STDOUT_FILENO))
                printf("\n%zu key%s listed.\n", table_rows(t), table_rows(t) == 1 ? "" : "s");
        return 0;
}
