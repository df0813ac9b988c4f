/* SPDX-License-Identifier: MIT */
/* The command line's values checked, and the user asked; see ctl_args.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl_args.h"
#include "ctl_call.h"
#include "macro.h"
#include "text_check.h"
#include "timeutil.h"
#include "token.h"

int check_id(const struct args *a, const char *id)
{
        if (token_id_valid(id))
                return 0;
        /* Ids have no '_': echoing what does might print part of a token. */
        if (strchr(id, '_') || strlen(id) > 40)
                return usage_error(a, "that is not a key id (12 letters and digits)");
        return usage_error(a, "'%s' is not a key id (12 letters and digits)", id);
}

/* "a,b,c" as a JSON array; "" is the empty array. */
json_t *split_list(const char *s)
{
        json_t *arr = json_array();
        const char *p = s;

        while (arr && *p) {
                size_t n = strcspn(p, ",");
                size_t start = 0, end = n;
                while (start < end && p[start] == ' ')
                        start++;
                while (end > start && p[end - 1] == ' ')
                        end--;
                if (end > start && json_array_append_new(arr, json_stringn(p + start, end - start)))
                        goto fail;
                p += n;
                if (*p == ',')
                        p++;
        }
        return arr;
fail:
        json_decref(arr);
        return NULL;
}

int check_permissions(const struct args *a, const json_t *perms)
{
        static const char *const known[] = {"create", "read", "write", "delete", "invite"};
        size_t i;
        json_t *e;

        if (json_array_size(perms) == 0)
                return usage_error(a, "--permissions needs at least one of create, read, "
                                      "write, delete, invite");
        json_array_foreach(perms, i, e)
        {
                bool ok = false;
                for (size_t j = 0; j < ELEMENTSOF(known); j++)
                        ok = ok || STREQ(json_string_value(e), known[j]);
                if (!ok)
                        return usage_error(a,
                                           "--permissions: unknown permission '%s' (known: "
                                           "create, read, write, delete, invite)",
                                           json_string_value(e));
        }
        return 0;
}

/*
 * --scope: services separated by commas, spaces around each ignored; ""
 * is the empty list (any service).  An empty entry ("sshd,,sudo", a comma
 * at either end), an entry that is not a service name or one given twice
 * is refused here, naming it, not dropped or sent; the daemon judges the
 * length and the number of entries.
 */
static int parse_scope(const struct args *a, json_t **ret)
{
        json_auto_t *arr = json_array();
        const char *s = a->scope;

        if (!arr)
                return -ENOMEM;
        for (const char *p = s; s[strspn(s, " ")] != '\0'; p++) {
                size_t n = strcspn(p, ","), start = 0, end = n;
                _cleanup_free_ char *entry = NULL;
                size_t i;
                json_t *e;

                while (start < end && p[start] == ' ')
                        start++;
                while (end > start && p[end - 1] == ' ')
                        end--;
                entry = strndup(p + start, end - start);
                if (!entry)
                        return -ENOMEM;
                if (!entry[0])
                        return usage_error(a,
                                           "--scope '%s' has an empty entry: separate services "
                                           "with single commas",
                                           s);
                if (!text_name_valid(entry, SIZE_MAX))
                        return usage_error(a,
                                           "--scope entry '%s' is not a service name (ASCII "
                                           "letters, digits, '.', '_' and '-', no spaces)",
                                           entry);
                json_array_foreach(arr, i, e)
                {
                        if (STREQ(json_string_value(e), entry))
                                return usage_error(a, "--scope names '%s' twice", entry);
                }
                if (json_array_append_new(arr, json_string(entry)))
                        return -ENOMEM;
                p += n;
                if (*p == '\0')
                        break;
        }
        *ret = TAKE_PTR(arr);
        return 0;
}

bool one_of(const char *s, const char *const *set)
{
        for (; *set; set++)
                if (STREQ(s, *set))
                        return true;
        return false;
}

static int check_expires(const struct args *a, const char *s)
{
        uint64_t t;
        int r = expiry_parse(s, now_usec(), &t);

        if (r == -ERANGE)
                return usage_error(a, "--expires '%s' is not in the future", s);
        if (r < 0)
                return usage_error(a,
                                   "--expires '%s' is not a duration (30d, 12h, 2w), a date "
                                   "(2027-01-31), a time with a zone (2027-01-31T12:00Z) or "
                                   "'never'",
                                   s);
        return 0;
}

static int check_not_before(const struct args *a, const char *s)
{
        uint64_t t;
        int r = not_before_parse(s, now_usec(), &t);

        if (r == -ERANGE)
                return usage_error(a, "--not-before '%s' is not in the future", s);
        if (r < 0)
                return usage_error(a,
                                   "--not-before '%s' is not a duration (2h, 30d), a date "
                                   "(2027-01-31, from its first instant, UTC), a time with a "
                                   "zone (2027-01-31T09:00:00Z) or 'now'",
                                   s);
        return 0;
}

/*
 * The fields create and update share: description, role, permissions,
 * scope, sources, not_before, expires, checked here so a typo is named
 * before anything is sent (the daemon judges the sources' syntax).
 */
/* --max-uses (a whole number) and --rate-limit (the daemon checks its form). */
static int add_limits(const struct args *a, json_t *p)
{
        char *end;
        unsigned long long n;

        if (a->max_uses) {
                errno = 0;
                n = strtoull(a->max_uses, &end, 10);
                if (!(a->max_uses[0] >= '0' && a->max_uses[0] <= '9') || *end || errno ||
                    n > INT64_MAX)
                        return usage_error(a,
                                           "--max-uses must be a whole number (0: no limit), "
                                           "not '%s'",
                                           a->max_uses);
                if (json_object_set_new(p, "max_uses", json_integer((json_int_t)n)))
                        return -ENOMEM;
        }
        if (a->rate_limit && json_object_set_new(p, "rate_limit", json_string(a->rate_limit)))
                return -ENOMEM;
        return 0;
}

int add_key_fields(const struct args *a, json_t *p)
{
        static const char *const roles[] = {"admin", "readonly", "custom", NULL};
        int r;

        if (a->description && json_object_set_new(p, "description", json_string(a->description)))
                return -ENOMEM;
        if (a->role) {
                if (!one_of(a->role, roles))
                        return usage_error(a, "--role must be admin, readonly or custom, not '%s'",
                                           a->role);
                if (json_object_set_new(p, "role", json_string(a->role)))
                        return -ENOMEM;
        }
        if (a->permissions) {
                json_t *perms = split_list(a->permissions);
                if (!perms)
                        return -ENOMEM;
                if (json_object_set_new(p, "permissions", perms))
                        return -ENOMEM;
                r = check_permissions(a, perms);
                if (r < 0)
                        return r;
        }
        if (a->scope) {
                json_t *scope = NULL;
                r = parse_scope(a, &scope);
                if (r < 0)
                        return r;
                if (json_object_set_new(p, "scope", scope))
                        return -ENOMEM;
        }
        if (a->sources) {
                json_t *sources = split_list(a->sources);
                if (!sources || json_object_set_new(p, "sources", sources))
                        return -ENOMEM;
        }
        if (a->not_before) {
                r = check_not_before(a, a->not_before);
                if (r < 0)
                        return r;
                if (json_object_set_new(p, "not_before", json_string(a->not_before)))
                        return -ENOMEM;
        }
        if (a->expires) {
                r = check_expires(a, a->expires);
                if (r < 0)
                        return r;
                if (json_object_set_new(p, "expires", json_string(a->expires)))
                        return -ENOMEM;
        }
        return add_limits(a, p);
}

/* Ask before what cannot be undone; only a person at a terminal is asked. */
int confirm(const struct args *a, const char *fmt, ...)
{
        char answer[16] = "";
        va_list ap;

        if (a->yes || !isatty(STDIN_FILENO))
                return 0;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs(" [y/N] ", stderr);
        fflush(stderr);
        if (fgets(answer, sizeof(answer), stdin) &&
            (STREQ(answer, "y\n") || STREQ(answer, "Y\n") || STREQ(answer, "yes\n")))
                return 0;
        if (!strchr(answer, '\n'))
                fputc('\n', stderr);
        fprintf(stderr, "Nothing changed.\n");
        return ERR_DECLINED;
}
