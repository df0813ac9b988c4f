/* SPDX-License-Identifier: MIT */
/* Refusals of a key's fields, in words; see field_rules.h. */
#include <errno.h>
#include <string.h>

#include "field_rules.h"
#include "sources.h"
#include "text.h"
#include "text_check.h"

#define NO_CONTROLS "without control characters (such as a newline or a tab)"

/* "create, read, write, delete, invite": every permission, in their order. */
static void add_all_permissions(struct text *t)
{
        for (unsigned bit = 1; bit <= KEY_PERM_INVITE; bit <<= 1) {
                text_add(t, bit > 1 ? ", " : "");
                text_add(t, key_perm_to_string((enum key_perm)bit));
        }
}

static void add_rule(struct text *t, const char *field)
{
        if (STREQ(field, "name")) {
                text_add(t, "a key's name is 1 to ");
                text_add_uint(t, KEY_NAME_MAX);
                text_add(t, " bytes of UTF-8 text " NO_CONTROLS);
        } else if (STREQ(field, "description")) {
                text_add(t, "a description is at most ");
                text_add_uint(t, KEY_DESCRIPTION_MAX);
                text_add(t, " bytes of UTF-8 text " NO_CONTROLS);
        } else if (STREQ(field, "owner")) {
                text_add(t, "an owner is 1 to ");
                text_add_uint(t, KEY_OWNER_MAX);
                text_add(t, " ASCII letters, digits, '.', '_', '-' and '@', the first a letter, "
                            "a digit or '_', optionally ending in '$', not digits alone");
        } else if (STREQ(field, "scope")) {
                text_add(t, "a scope is at most ");
                text_add_uint(t, KEY_SCOPE_MAX);
                text_add(t, " services, each 1 to ");
                text_add_uint(t, KEY_SCOPE_ENTRY_MAX);
                text_add(t, " ASCII letters, digits, '.', '_' and '-', the first a letter, a "
                            "digit or '_', none twice");
        } else if (STREQ(field, "role")) {
                text_add(t, "a role is admin (every permission), readonly (read) or custom "
                            "(the permissions given)");
        } else if (STREQ(field, "permissions")) {
                text_add(t, "permissions are one or more of ");
                add_all_permissions(t);
                text_add(t, ", for the role custom (admin has them all, readonly has read)");
        } else if (STREQ(field, "expires")) {
                text_add(t, "expires is a duration (45s, 90m, 12h, 30d, 2w), an ISO 8601 date "
                            "or time in the future (2027-01-31, 2027-01-31T12:00:00Z) or "
                            "\"never\"");
        } else if (STREQ(field, "not_before")) {
                text_add(t, "not_before is a duration from now (45s, 90m, 12h, 30d, 2w), an ISO "
                            "8601 date or time in the future (2027-01-31T09:00:00Z), or \"now\" "
                            "for none; before the key's expiry");
        } else if (STREQ(field, "sources")) {
                text_add(t, "sources are at most ");
                text_add_uint(t, KEY_SOURCES_MAX);
                text_add(t, " entries, each an IPv4 or IPv6 address (192.0.2.7), a CIDR block "
                            "with its host bits zero (10.0.0.0/8, 2001:db8::/32) or a host name "
                            "(build.example.com), none twice");
        }
}

static bool has_rule(const char *field)
{
        static const char *const fields[] = {"name",    "description", "owner",
                                             "scope",   "role",        "permissions",
                                             "expires", "not_before",  "sources"};

        for (size_t i = 0; field && i < ELEMENTSOF(fields); i++)
                if (STREQ(fields[i], field))
                        return true;
        return false;
}

const char *field_rule(const char *field, char buf[static FIELD_REASON_MAX])
{
        struct text t;

        if (!has_rule(field))
                return NULL;
        text_init(&t, buf, FIELD_REASON_MAX);
        add_rule(&t, field);
        return buf;
}

const char *field_reason(const char *field, const char *problem, char buf[static FIELD_REASON_MAX])
{
        struct text t;

        if (!has_rule(field))
                return NULL;
        text_init(&t, buf, FIELD_REASON_MAX);
        text_add(&t, problem);
        text_add(&t, "; ");
        add_rule(&t, field);
        return buf;
}

const char *field_reason_not_text(const char *field, char buf[static FIELD_REASON_MAX])
{
        return field_reason(field,
                            "it holds a control character (such as a newline or a tab) or bytes "
                            "that are not UTF-8",
                            buf);
}

/* What is wrong with a text that must be 1 (`required`) or 0 to `max` bytes. */
static void add_text_problem(struct text *t, const char *s, size_t max, bool required)
{
        size_t n = s ? strlen(s) : 0;

        if (n == 0 && required)
                text_add(t, "it is empty");
        else if (n > max) {
                text_add(t, "it is ");
                text_add_uint(t, n);
                text_add(t, " bytes long, more than ");
                text_add_uint(t, max);
        } else if (!text_valid(s, max))
                text_add(t, "it holds a control character (such as a newline or a tab) or bytes "
                            "that are not UTF-8");
}

/*
 * The first character of a name that the name syntax refuses, by position:
 * letters, digits and '_' anywhere, `extra` after the first character, '$'
 * (`dollar`) as the last.
 */
static void add_bad_char(struct text *t, const char *s, const char *extra, bool dollar)
{
        size_t i, n = strlen(s);

        for (i = 0; i < n; i++) {
                char c = s[i];
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '_' || (i > 0 && strchr(extra, c)) ||
                          (dollar && c == '$' && i > 0 && i == n - 1);
                if (!ok)
                        break;
        }
        if (i == n)
                return;
        text_add(t, "its character ");
        text_add_uint(t, i + 1);
        if ((unsigned char)s[i] >= 0x80)
                text_add(t, " is not ASCII");
        else {
                char c[2] = {s[i], '\0'};
                text_add(t, " ('");
                text_add(t, c);
                text_add(t, i == 0 ? "') cannot begin it" : "') is not allowed there");
        }
}

/* What is wrong with an owner that text_owner_valid() refuses. */
static void add_owner_problem(struct text *t, const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > KEY_OWNER_MAX || !text_valid(s, KEY_OWNER_MAX))
                add_text_problem(t, s, KEY_OWNER_MAX, true);
        else if (strspn(s, "0123456789") == n)
                text_add(t, "it is digits alone, which reads as a uid");
        else
                add_bad_char(t, s, ".-@", true);
}

/* What is wrong with the first scope entry that record_check() refuses. */
static void add_scope_problem(struct text *t, const struct key_record *rec)
{
        for (size_t i = 0; i < rec->n_scope; i++) {
                const char *s = rec->scope[i];
                bool twice = false;

                for (size_t j = 0; j < i; j++)
                        twice = twice || STREQ(s, rec->scope[j]);
                if (!twice && text_name_valid(s, KEY_SCOPE_ENTRY_MAX))
                        continue;
                text_add(t, "entry ");
                text_add_uint(t, i + 1);
                text_add(t, ": ");
                if (twice)
                        text_add(t, "it is given twice");
                else if (!s[0] || strlen(s) > KEY_SCOPE_ENTRY_MAX ||
                         !text_valid(s, KEY_SCOPE_ENTRY_MAX))
                        add_text_problem(t, s, KEY_SCOPE_ENTRY_MAX, true);
                else
                        add_bad_char(t, s, ".-", false);
                return;
        }
        if (rec->n_scope > KEY_SCOPE_MAX) {
                text_add(t, "it has ");
                text_add_uint(t, rec->n_scope);
                text_add(t, " entries");
        }
}

/* What is wrong with the first entry of the sources that record_check() refuses. */
static void add_sources_problem(struct text *t, const struct key_record *rec)
{
        char problem[SOURCE_PROBLEM_MAX];
        size_t i = 0;

        if (rec->n_sources > KEY_SOURCES_MAX) {
                text_add(t, "it has ");
                text_add_uint(t, rec->n_sources);
                text_add(t, " entries");
                return;
        }
        for (; i < rec->n_sources; i++)
                if (!rec->sources[i][0] || strlen(rec->sources[i]) > KEY_SOURCE_ENTRY_MAX ||
                    !text_valid(rec->sources[i], KEY_SOURCE_ENTRY_MAX)) {
                        text_add(t, "entry ");
                        text_add_uint(t, i + 1);
                        text_add(t, ": ");
                        add_text_problem(t, rec->sources[i], KEY_SOURCE_ENTRY_MAX, true);
                        return;
                }
        if (sources_check(rec->sources, rec->n_sources, &i, problem) < 0) {
                text_add(t, "entry ");
                text_add_uint(t, i + 1);
                text_add(t, " (");
                text_add(t, rec->sources[i]);
                text_add(t, "): ");
                text_add(t, problem);
        }
}

const char *field_reason_record(const char *field, const struct key_record *rec,
                                char buf[static FIELD_REASON_MAX])
{
        struct text t;

        if (!has_rule(field))
                return NULL;
        text_init(&t, buf, FIELD_REASON_MAX);
        if (STREQ(field, "name"))
                add_text_problem(&t, rec->name, KEY_NAME_MAX, true);
        else if (STREQ(field, "description"))
                add_text_problem(&t, rec->description, KEY_DESCRIPTION_MAX, false);
        else if (STREQ(field, "owner"))
                add_owner_problem(&t, rec->owner);
        else if (STREQ(field, "scope"))
                add_scope_problem(&t, rec);
        else if (STREQ(field, "sources"))
                add_sources_problem(&t, rec);
        else if (STREQ(field, "not_before") && rec->expires_at &&
                 rec->not_before >= rec->expires_at)
                text_add(&t, "it is not before the key's expiry");
        text_add(&t, t.len ? "; " : "");
        add_rule(&t, field);
        return buf;
}

const char *field_reason_scope_count(size_t n, char buf[static FIELD_REASON_MAX])
{
        char problem[64];
        struct text t;

        text_init(&t, problem, sizeof(problem));
        text_add(&t, "it has ");
        text_add_uint(&t, n);
        text_add(&t, " entries");
        return field_reason("scope", problem, buf);
}

const char *field_reason_expires(int r, char buf[static FIELD_REASON_MAX])
{
        return field_reason("expires",
                            r == -ERANGE ? "it is not in the future, or too far ahead to be a time"
                                         : "it is not a duration, a date, a time or \"never\"",
                            buf);
}
