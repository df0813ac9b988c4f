/* SPDX-License-Identifier: MIT */
/*
 * apikeyctl: every method of io.apikeyd.Keys from a shell, for a person at
 * a terminal (tables, local and relative times, confirmation before what
 * cannot be undone) and for a script (--json, exit codes that tell a
 * refusal from an unreachable daemon).
 *
 * Tokens are secrets: they are never taken from the command line (where ps
 * shows them), only from standard input (verify) or a private file
 * (--auth-file); every buffer that held one is erased, and they are written
 * with write(2) so no stdio buffer keeps a copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>

#include <jansson.h>

#include "ctl_call.h"
#include "ctl_args.h"
#include "ctl_show.h"
#include "ctl_table.h"
#include "keys_proto.h"
#include "macro.h"
#include "text_check.h"
#include "timeutil.h"
#include "token.h"
#include "varlink.h"

/* Kept in step with the daemon's version by a test. */
#define APIKEYCTL_VERSION "0.1.0"
#define DEFAULT_SOCKET    "/run/apikeyd/io.apikeyd.Keys"
#define AUDIT_PAGE        1000

/* Exit codes: documented in apikeyctl(1), EXIT STATUS. */
enum {
        EXIT_OK = 0,
        EXIT_LOCAL = 1,       /* a failure on this side: a file, memory, not confirmed */
        EXIT_USAGE = 2,       /* the command line is wrong */
        EXIT_REFUSED = 3,     /* the daemon answered with an error */
        EXIT_UNREACHABLE = 4, /* no usable answer from the daemon */
        EXIT_NOT_VALID = 5,   /* verify: the token is not valid */
};

static int exit_code(int r)
{
        switch (r) {
        case 0:
                return EXIT_OK;
        case ERR_USAGE:
                return EXIT_USAGE;
        case ERR_REFUSED:
                return EXIT_REFUSED;
        case ERR_UNREACHABLE:
                return EXIT_UNREACHABLE;
        case ERR_NOT_VALID:
                return EXIT_NOT_VALID;
        default:
                return EXIT_LOCAL;
        }
}

/* ---------------------------------------------------------------- commands */

static int cmd_create(struct ctl *c, struct args *a)
{
        json_auto_t *p = json_pack("{s:s}", "name", a->pos[0]);
        json_auto_t *reply = NULL;
        const char *token, *id, *owner, *role;
        json_t *k;
        char when[RELATIVE_FORMAT_MAX];
        uint64_t exp;
        int r;

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

static int fetch_keys(struct ctl *c, const struct args *a, json_t **ret)
{
        static const char *const statuses[] = {"enabled", "disabled", "revoked", "expired", NULL};
        json_auto_t *all = json_array();
        _cleanup_free_ char *cursor = NULL;
        uint64_t d;
        int r;

        if (!all)
                return -ENOMEM;
        if (a->status && !one_of(a->status, statuses))
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
                    (a->status && json_object_set_new(p, "status", json_string(a->status))) ||
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

static int cmd_list(struct ctl *c, struct args *a)
{
        json_auto_t *keys = NULL;
        size_t i;
        json_t *k;
        int r;

        r = fetch_keys(c, a, &keys);
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
        return list_table(keys);
}

static int cmd_show(struct ctl *c, struct args *a)
{
        json_auto_t *reply = NULL;
        json_t *k;
        int r;

        r = check_id(a, a->pos[0]);
        if (r < 0)
                return r;
        r = ctl_call(c, KEYS_METHOD_GET, id_params(a->pos[0]), &reply);
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
        return r;
}

static int cmd_update(struct ctl *c, struct args *a)
{
        json_auto_t *p = id_params(a->pos[0]);
        json_auto_t *reply = NULL;
        json_t *k;
        int r;

        r = check_id(a, a->pos[0]);
        if (r < 0)
                return r;
        if (!p)
                return -ENOMEM;
        if (a->name && json_object_set_new(p, "name", json_string(a->name)))
                return -ENOMEM;
        r = add_key_fields(a, p);
        if (r < 0)
                return r;
        if (json_object_size(p) == 1)
                return usage_error(a, "nothing to change: give --name, --description, --scope, "
                                      "--role, --permissions or --expires");
        r = ctl_call(c, KEYS_METHOD_UPDATE, json_incref(p), &reply);
        if (r < 0)
                return r;
        k = json_object_get(reply, "key");
        if (!json_is_object(k))
                return bad_reply(c, "Update");
        return output_key(c, k);
}

/* disable, enable, revoke: one method, the key back. */
static int set_status(struct ctl *c, struct args *a, const char *method, const char *done)
{
        json_auto_t *reply = NULL;
        const char *name, *owner;
        json_t *k;
        int r;

        r = check_id(a, a->pos[0]);
        if (r < 0)
                return r;
        if (STREQ(method, KEYS_METHOD_REVOKE)) {
                r = confirm(a, "Revoke key %s? A revoked key never works again.", a->pos[0]);
                if (r < 0)
                        return r;
        }
        r = ctl_call(c, method, id_params(a->pos[0]), &reply);
        if (r < 0)
                return r;
        k = json_object_get(reply, "key");
        if (!json_is_object(k))
                return bad_reply(c, method + STRLEN(KEYS_INTERFACE "."));
        if (c->json)
                return print_json(k);
        name = param_str(k, "name");
        owner = param_str(k, "owner");
        printf("%s key %s '%s' of %s.\n", done, a->pos[0], name ? name : "?", owner ? owner : "?");
        return 0;
}

static int cmd_disable(struct ctl *c, struct args *a)
{
        return set_status(c, a, KEYS_METHOD_DISABLE, "Disabled");
}

static int cmd_enable(struct ctl *c, struct args *a)
{
        return set_status(c, a, KEYS_METHOD_ENABLE, "Enabled");
}

static int cmd_revoke(struct ctl *c, struct args *a)
{
        return set_status(c, a, KEYS_METHOD_REVOKE, "Revoked");
}

static int cmd_delete(struct ctl *c, struct args *a)
{
        json_auto_t *reply = NULL;
        int r;

        r = check_id(a, a->pos[0]);
        if (r < 0)
                return r;
        if (!a->yes && isatty(STDIN_FILENO)) {
                /* Name the key in the question: ids are easy to mix up. */
                json_auto_t *got = NULL;
                json_t *k;
                r = ctl_call(c, KEYS_METHOD_GET, id_params(a->pos[0]), &got);
                if (r < 0)
                        return r;
                k = json_object_get(got, "key");
                r = confirm(a, "Delete key %s '%s' of %s? This cannot be undone.", a->pos[0],
                            param_str(k, "name") ? param_str(k, "name") : "?",
                            param_str(k, "owner") ? param_str(k, "owner") : "?");
                if (r < 0)
                        return r;
        }
        r = ctl_call(c, KEYS_METHOD_DELETE, id_params(a->pos[0]), &reply);
        if (r < 0)
                return r;
        if (c->json)
                return print_json(reply);
        printf("Deleted key %s.\n", a->pos[0]);
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
                return "too many failed attempts; try again later";
        case VERIFY_CODE_NOT_FOR_LOGIN:
                return "the key was created by an invite, for scripts and services: it cannot "
                       "log in";
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

static int cmd_verify(struct ctl *c, struct args *a)
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

static int cmd_shared_secret(struct ctl *c, struct args *a)
{
        json_auto_t *reply = NULL;
        const char *secret;
        bool rotate;
        int r;

        if (STREQ(a->pos[0], "show"))
                rotate = false;
        else if (STREQ(a->pos[0], "rotate"))
                rotate = true;
        else
                return usage_error(a, "expected 'show' or 'rotate', not '%s'", a->pos[0]);
        if (rotate) {
                r = confirm(a, "Rotate the shared secret? Integrations that check Verify "
                               "signatures need the new one.");
                if (r < 0)
                        return r;
        }
        r = ctl_call(c, rotate ? KEYS_METHOD_ROTATE_SHARED_SECRET : KEYS_METHOD_GET_SHARED_SECRET,
                     json_object(), &reply);
        if (r < 0)
                return r;
        secret = param_str(reply, "secret");
        if (!secret)
                return bad_reply(c, rotate ? "RotateSharedSecret" : "GetSharedSecret");
        if (c->json)
                return print_json(reply);
        r = write_stdout(secret, strlen(secret));
        if (r >= 0)
                r = write_stdout("\n", 1);
        if (r < 0)
                return r;
        if (rotate)
                fprintf(stderr, "The shared secret was replaced; give integrations the new "
                                "one.\n");
        return 0;
}

static int audit_table(const json_t *events)
{
        static const char *const headers[] = {"TIME", "ACTOR", "ACTION", "KEY", "RESULT", "DETAIL"};
        _cleanup_table_ struct table *t = NULL;
        size_t i;
        json_t *e;
        int r;

        r = table_new(ELEMENTSOF(headers), headers, &t);
        if (r < 0)
                return r;
        table_set_flexible(t, 1, true);
        table_set_flexible(t, 5, true);
        json_array_foreach(events, i, e)
        {
                char when[128];
                uint64_t at = key_time(e, "time");

                if (at)
                        format_local(at, when, sizeof(when));
                else
                        snprintf(when, sizeof(when), "?");
                const char *row[] = {
                    when,
                    param_str(e, "actor"),
                    param_str(e, "action"),
                    param_str(e, "key_id") ? param_str(e, "key_id") : "-",
                    param_str(e, "result"),
                    param_str(e, "detail"),
                };
                r = table_add_row(t, row);
                if (r < 0)
                        return r;
        }
        table_print(t, stdout, 0);
        if (isatty(STDOUT_FILENO))
                printf("\n%zu event%s.\n", table_rows(t), table_rows(t) == 1 ? "" : "s");
        return 0;
}

static int cmd_audit(struct ctl *c, struct args *a)
{
        json_auto_t *all = json_array();
        json_int_t after = 0;
        uint64_t t;
        int r;

        if (!all)
                return -ENOMEM;
        if (a->since && duration_parse(a->since, &t) < 0 && timestamp_parse(a->since, &t) < 0)
                return usage_error(a,
                                   "--since '%s' is not a duration (1h: that long ago) or a "
                                   "time (2027-01-31, 2027-01-31T12:00Z)",
                                   a->since);
        if (a->key) {
                r = check_id(a, a->key);
                if (r < 0)
                        return r;
        }
        for (;;) {
                json_auto_t *p = json_pack("{s:I, s:i}", "after", after, "limit", AUDIT_PAGE);
                json_auto_t *reply = NULL;
                json_t *events, *last;

                if (!p || (a->since && json_object_set_new(p, "since", json_string(a->since))) ||
                    (a->key && json_object_set_new(p, "key_id", json_string(a->key))))
                        return -ENOMEM;
                r = ctl_call(c, KEYS_METHOD_LIST_AUDIT, json_incref(p), &reply);
                if (r < 0)
                        return r;
                events = json_object_get(reply, "events");
                if (!json_is_array(events))
                        return bad_reply(c, "ListAudit");
                if (json_array_extend(all, events) < 0)
                        return -ENOMEM;
                if (json_array_size(events) < AUDIT_PAGE)
                        break;
                last = json_object_get(json_array_get(events, json_array_size(events) - 1), "seq");
                if (!json_is_integer(last) || json_integer_value(last) <= after)
                        return bad_reply(c, "ListAudit");
                after = json_integer_value(last);
        }
        if (c->json)
                return print_json(all);
        return audit_table(all);
}

static int lockout_table(const json_t *lockouts)
{
        static const char *const headers[] = {"KIND",  "NAME",         "FAILURES",
                                              "SINCE", "LOCKED UNTIL", "SOURCE"};
        _cleanup_table_ struct table *t = NULL;
        size_t i;
        json_t *e;
        int r;

        r = table_new(ELEMENTSOF(headers), headers, &t);
        if (r < 0)
                return r;
        table_set_flexible(t, 1, true);
        json_array_foreach(lockouts, i, e)
        {
                char since[128] = "?", until[128] = "-", failures[32];
                uint64_t at = key_time(e, "since"), end = key_time(e, "locked_until");

                if (at)
                        format_local(at, since, sizeof(since));
                if (end)
                        format_local(end, until, sizeof(until));
                snprintf(failures, sizeof(failures), "%lld",
                         (long long)json_integer_value(json_object_get(e, "failures")));
                const char *source = param_str(e, "source");
                const char *row[] = {
                    param_str(e, "kind"), param_str(e, "name"), failures, since, until,
                    source ? source : "-"};
                r = table_add_row(t, row);
                if (r < 0)
                        return r;
        }
        table_print(t, stdout, 0);
        if (isatty(STDOUT_FILENO))
                printf("\n%zu name%s with failed verifies.\n", table_rows(t),
                       table_rows(t) == 1 ? "" : "s");
        return 0;
}

static int cmd_lockout(struct ctl *c, struct args *a)
{
        json_auto_t *reply = NULL;
        json_t *p;
        int r;

        if (STREQ(a->pos[0], "list")) {
                if (a->n_pos != 1)
                        return usage_error(a, "'lockout list' takes no arguments");
                r = ctl_call(c, KEYS_METHOD_LIST_LOCKOUTS, json_object(), &reply);
                if (r < 0)
                        return r;
                json_t *lockouts = json_object_get(reply, "lockouts");
                if (!json_is_array(lockouts))
                        return bad_reply(c, "ListLockouts");
                return c->json ? print_json(lockouts) : lockout_table(lockouts);
        }
        if (!STREQ(a->pos[0], "reset"))
                return usage_error(a, "expected 'list' or 'reset', not '%s'", a->pos[0]);
        if (a->n_pos == 2)
                return usage_error(a, "'lockout reset' takes a KIND and a NAME "
                                      "(key ID [SOURCE], from USER@HOST, uid UID), or nothing "
                                      "for all");
        if (a->n_pos >= 3) {
                if (!STREQ(a->pos[1], "key") && !STREQ(a->pos[1], "from") &&
                    !STREQ(a->pos[1], "uid"))
                        return usage_error(a, "the kind is key, from or uid, not '%s'", a->pos[1]);
                if (a->n_pos == 4 && !STREQ(a->pos[1], "key"))
                        return usage_error(a, "only a key is reset for one SOURCE");
                p = json_pack("{s:s, s:s}", "kind", a->pos[1], "name", a->pos[2]);
                if (p && a->n_pos == 4)
                        json_object_set_new(p, "source", json_string(a->pos[3]));
        } else {
                r = confirm(a, "Forget every count of failed verifies and lift every lockout?");
                if (r < 0)
                        return r;
                p = json_object();
        }
        if (!p)
                return -ENOMEM;
        r = ctl_call(c, KEYS_METHOD_RESET_LOCKOUT, p, &reply);
        if (r < 0)
                return r;
        if (c->json)
                return print_json(reply);
        if (a->n_pos >= 3)
                printf(json_is_true(json_object_get(reply, "reset"))
                           ? "Reset the failed verifies of %s %s%s%s%s.\n"
                           : "No failed verifies were counted for %s %s%s%s%s.\n",
                       a->pos[1], a->pos[2], a->n_pos == 4 ? " (source " : "",
                       a->n_pos == 4 ? a->pos[3] : "", a->n_pos == 4 ? ")" : "");
        else
                printf("Reset every lockout.\n");
        return 0;
}

static int cmd_status(struct ctl *c, struct args *a)
{
        json_auto_t *reply = NULL;
        json_t *keys;
        uint64_t t;
        int r;

        r = ctl_call(c, KEYS_METHOD_GET_STATUS, json_object(), &reply);
        if (r < 0)
                return r;
        keys = json_object_get(reply, "keys");
        if (!json_is_object(keys) || !param_str(reply, "version"))
                return bad_reply(c, "GetStatus");
        if (c->json)
                return print_json(reply);

        char version[64], started[256] = "?", socket_line[PATH_MAX + 32], counts[256];
        char connections[32];
        const char *socket_path = param_str(reply, "socket");

        snprintf(version, sizeof(version), "apikeyd %s", param_str(reply, "version"));
        t = key_time(reply, "started_at");
        if (t)
                format_both(t, now_usec(), started, sizeof(started));
        snprintf(socket_line, sizeof(socket_line), "%s%s", socket_path ? socket_path : c->socket,
                 socket_path ? "" : " (passed by systemd)");
        snprintf(connections, sizeof(connections), "%lld",
                 (long long)json_integer_value(json_object_get(reply, "connections")));
        snprintf(counts, sizeof(counts),
                 "%lld enabled, %lld disabled, %lld revoked, %lld expired (%s)",
                 (long long)json_integer_value(json_object_get(keys, "enabled")),
                 (long long)json_integer_value(json_object_get(keys, "disabled")),
                 (long long)json_integer_value(json_object_get(keys, "revoked")),
                 (long long)json_integer_value(json_object_get(keys, "expired")),
                 json_is_true(json_object_get(reply, "admin")) ? "all keys" : "your keys");
        const char *const fields[][2] = {
            {"Daemon", version},          {"Started", started},
            {"Socket", socket_line},      {"State dir", param_str(reply, "state_dir")},
            {"Connections", connections}, {"Keys", counts},
        };
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                r = print_field(fields[i][0], fields[i][1]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ----------------------------------------------------------- command table */

enum {
        OPT_SOCKET = 0x100,
        OPT_JSON,
        OPT_AUTH_FILE,
        OPT_VERSION,
        OPT_OWNER,
        OPT_DESCRIPTION,
        OPT_ROLE,
        OPT_PERMISSIONS,
        OPT_SCOPE,
        OPT_EXPIRES,
        OPT_STATUS,
        OPT_EXPIRING,
        OPT_NAME,
        OPT_SERVICE,
        OPT_USER,
        OPT_RHOST,
        OPT_SINCE,
        OPT_KEY,
};

#define N_GLOBAL_OPTIONS 5
static const struct option all_options[] = {
    {"socket", required_argument, NULL, OPT_SOCKET},
    {"json", no_argument, NULL, OPT_JSON},
    {"auth-file", required_argument, NULL, OPT_AUTH_FILE},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    /* per command from here on */
    {"owner", required_argument, NULL, OPT_OWNER},
    {"description", required_argument, NULL, OPT_DESCRIPTION},
    {"role", required_argument, NULL, OPT_ROLE},
    {"permissions", required_argument, NULL, OPT_PERMISSIONS},
    {"scope", required_argument, NULL, OPT_SCOPE},
    {"expires", required_argument, NULL, OPT_EXPIRES},
    {"status", required_argument, NULL, OPT_STATUS},
    {"expiring", required_argument, NULL, OPT_EXPIRING},
    {"name", required_argument, NULL, OPT_NAME},
    {"service", required_argument, NULL, OPT_SERVICE},
    {"user", required_argument, NULL, OPT_USER},
    {"rhost", required_argument, NULL, OPT_RHOST},
    {"since", required_argument, NULL, OPT_SINCE},
    {"key", required_argument, NULL, OPT_KEY},
    {"yes", no_argument, NULL, 'y'},
    {"quiet", no_argument, NULL, 'q'},
};

struct command {
        const char *name;
        const char *brief; /* for the list of commands */
        const char *synopsis;
        const char *summary;
        const char *options; /* names in all_options, space-separated */
        const char *help;    /* the options' help text */
        int min_pos, max_pos;
        int (*run)(struct ctl *c, struct args *a);
};

static const struct command commands[] = {
    {"create", "create a key, print its token once", "NAME [OPTIONS]",
     "Create a key and print its token. The token is shown only this once.",
     "owner description role permissions scope expires",
     "  --owner USER            owner of the key (default: you; only admins may name\n"
     "                          another user)\n"
     "  --description TEXT      what the key is for\n"
     "  --role ROLE             admin, readonly or custom (default: readonly, or\n"
     "                          custom when --permissions is given)\n"
     "  --permissions LIST      comma-separated: create,read,write,delete,invite\n"
     "  --scope LIST            services the key may be used for, comma-separated\n"
     "                          (sshd,sudo,...); default: any\n"
     "  --expires WHEN          a duration (30d, 12h, 2w), a date (2027-01-31, valid\n"
     "                          through that day, UTC), a time with a zone, or never;\n"
     "                          default: the policy's (never for admins)\n",
     1, 1, cmd_create},
    {"list", "list keys", "[OPTIONS]", "List keys: all of them for admins, your own otherwise.",
     "status owner expiring name quiet",
     "  --status STATUS         only keys that are enabled, disabled, revoked or\n"
     "                          expired\n"
     "  --owner USER            only keys of this owner\n"
     "  --expiring DURATION     only keys expiring within this time (7d)\n"
     "  --name PREFIX           only keys whose name starts with PREFIX\n"
     "  -q, --quiet             print only the key ids, one per line\n",
     0, 0, cmd_list},
    {"show", "show one key", "ID", "Show one key.", "", "", 1, 1, cmd_show},
    {"update", "change fields of a key", "ID [OPTIONS]",
     "Change fields of a key; those not given stay as they are.",
     "name description scope role permissions expires",
     "  --name NAME             a new name\n"
     "  --description TEXT      a new description (\"\" removes it)\n"
     "  --scope LIST            services, comma-separated (\"\" means any)\n"
     "  --role ROLE             admin, readonly or custom\n"
     "  --permissions LIST      comma-separated: create,read,write,delete,invite\n"
     "  --expires WHEN          a duration, a date, a time with a zone, or never\n",
     1, 1, cmd_update},
    {"disable", "stop a key until it is enabled again", "ID",
     "Stop a key from working until it is enabled again.", "", "", 1, 1, cmd_disable},
    {"enable", "let a disabled key work again", "ID",
     "Let a disabled key work again (a revoked key stays revoked).", "", "", 1, 1, cmd_enable},
    {"revoke", "stop a key for good", "ID [--yes]",
     "Stop a key for good; it stays listed as revoked.", "yes",
     "  -y, --yes               do not ask for confirmation on a terminal\n", 1, 1, cmd_revoke},
    {"delete", "remove a key", "ID [--yes]", "Remove a key; this cannot be undone.", "yes",
     "  -y, --yes               do not ask for confirmation on a terminal\n", 1, 1, cmd_delete},
    {"verify", "check a token read from standard input", "[OPTIONS] < TOKEN",
     "Read a token from standard input, print the daemon's code (VALID, NOT_FOUND,\n"
     "DISABLED, ...) and exit 0 only when it is VALID.",
     "service user rhost permissions",
     "  --service NAME          check the key's scope for this service\n"
     "  --user USER             check that the key belongs to this user\n"
     "  --rhost HOST            the remote host, recorded as where the key was used\n"
     "  --permissions LIST      check that the key holds these permissions\n",
     0, 0, cmd_verify},
    {"shared-secret", "print or replace the signing secret", "show|rotate [--yes]",
     "Print the shared secret that signs Verify answers, or replace it (admins only).", "yes",
     "  -y, --yes               rotate without asking on a terminal\n", 1, 1, cmd_shared_secret},
    {"audit", "show the audit log", "[OPTIONS]",
     "Show the audit log in the order it was recorded (admins only).", "since key",
     "  --since WHEN            events at or after a time (2027-01-31T12:00Z), or\n"
     "                          within a duration (1h: the last hour)\n"
     "  --key ID                events of this key only\n",
     0, 0, cmd_audit},
    {"lockout", "show or lift lockouts after failed verifies", "list | reset [KIND NAME [SOURCE]]",
     "List the names failed verifies are counted under: sources (user@host pairs,\n"
     "calling uids) and key ids from a source; or forget the counts of one source\n"
     "with its keys (lockout reset from alice@192.0.2.7, lockout reset uid 1000), of\n"
     "a key from every source or one (lockout reset key 7Hq2LmX9aB3z [uid:1000]),\n"
     "or of all. Admins only.",
     "yes", "  -y, --yes               reset all without asking on a terminal\n", 1, 4,
     cmd_lockout},
    {"status", "show the daemon's state", "",
     "Show the daemon's version, socket, state directory and key counts.", "", "", 0, 0,
     cmd_status},
};

static const struct command *find_command(const char *name)
{
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (STREQ(commands[i].name, name))
                        return &commands[i];
        return NULL;
}

static void help_global(void)
{
        printf("Usage: %s [OPTIONS] COMMAND ...\n"
               "\n"
               "Manage the API keys that apikeyd keeps.\n"
               "\n"
               "Commands:\n",
               program);
        for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
                char usage[64];
                snprintf(usage, sizeof(usage), "%s%s%s", commands[i].name,
                         commands[i].synopsis[0] ? " " : "", commands[i].synopsis);
                printf("  %-34s %s\n", usage, commands[i].brief);
        }
        printf("\n"
               "Options:\n"
               "  --socket PATH           the daemon's socket (default $APIKEYD_SOCKET, else\n"
               "                          " DEFAULT_SOCKET ")\n"
               "  --json                  print JSON (times in ISO 8601 UTC)\n"
               "  --auth-file FILE        act with the API key in FILE (mode 0600)\n"
               "  -h, --help              show this help, or a command's help after it\n"
               "  --version               show the version\n"
               "\n"
               "Exit status: 0 success, 1 local failure, 2 usage error, 3 refused by the\n"
               "daemon, 4 daemon unreachable, 5 verify: token not valid.\n"
               "See '%s COMMAND --help' and apikeyctl(1).\n",
               program);
}

static void help_command(const struct command *cmd)
{
        printf("Usage: %s [GLOBAL OPTIONS] %s%s%s\n\n%s\n", program, cmd->name,
               cmd->synopsis[0] ? " " : "", cmd->synopsis, cmd->summary);
        if (cmd->help[0])
                printf("\nOptions:\n%s", cmd->help);
        printf("\nGlobal options: --socket PATH, --json, --auth-file FILE; see '%s --help'.\n",
               program);
}

/* Edit distance, for "did you mean" on a mistyped command. */
static size_t distance(const char *a, const char *b)
{
        size_t la = strlen(a), lb = strlen(b), prev[32], cur[32];

        if (la >= ELEMENTSOF(prev) || lb >= ELEMENTSOF(prev))
                return SIZE_MAX;
        for (size_t j = 0; j <= lb; j++)
                prev[j] = j;
        for (size_t i = 1; i <= la; i++) {
                cur[0] = i;
                for (size_t j = 1; j <= lb; j++) {
                        size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
                        size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
                        cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
                }
                memcpy(prev, cur, sizeof(prev));
        }
        return prev[lb];
}

static int unknown_command(const char *name)
{
        const char *best = NULL;
        size_t best_d = 3;

        for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
                size_t d = distance(name, commands[i].name);
                if (d < best_d) {
                        best_d = d;
                        best = commands[i].name;
                }
        }
        if (strchr(name, '_') || strlen(name) > 40)
                err("unknown command");
        else if (best)
                err("unknown command '%s'; did you mean '%s'?", name, best);
        else
                err("unknown command '%s'", name);
        fprintf(stderr, "Try '%s --help' for the list of commands.\n", program);
        return ERR_USAGE;
}

static bool option_allowed(const struct command *cmd, const char *name)
{
        size_t n = strlen(name);

        for (const char *p = cmd->options; (p = strstr(p, name)); p += n)
                if ((p == cmd->options || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
                        return true;
        return false;
}

enum parse_result { PARSE_RUN, PARSE_HELP, PARSE_VERSION };

/*
 * Parse options for `cmd` (NULL: the global options before the command,
 * stopping at the first argument).  Positional arguments are left in
 * argv[optind..].
 */
static int parse_options(int argc, char **argv, const struct command *cmd, struct ctl *c,
                         struct args *a, enum parse_result *ret)
{
        struct option longopts[ELEMENTSOF(all_options) + 1];
        char shortopts[8], *s = shortopts;
        size_t n = 0;
        int opt;

        *s++ = cmd ? ':' : '+';
        if (!cmd)
                *s++ = ':';
        *s++ = 'h';
        for (size_t i = 0; i < ELEMENTSOF(all_options); i++)
                if (i < N_GLOBAL_OPTIONS || (cmd && option_allowed(cmd, all_options[i].name))) {
                        longopts[n++] = all_options[i];
                        if (all_options[i].val == 'y' || all_options[i].val == 'q')
                                *s++ = (char)all_options[i].val;
                }
        longopts[n] = (struct option){NULL, 0, NULL, 0};
        *s = '\0';

        *ret = PARSE_RUN;
        optind = 0;
        opterr = 0;
        while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) >= 0) {
                switch (opt) {
                case OPT_SOCKET:
                        c->socket = optarg;
                        break;
                case OPT_JSON:
                        c->json = true;
                        break;
                case OPT_AUTH_FILE:
                        c->auth_file = optarg;
                        break;
                case 'h':
                        *ret = PARSE_HELP;
                        break;
                case OPT_VERSION:
                        *ret = PARSE_VERSION;
                        break;
                case OPT_OWNER:
                        a->owner = optarg;
                        break;
                case OPT_DESCRIPTION:
                        a->description = optarg;
                        break;
                case OPT_ROLE:
                        a->role = optarg;
                        break;
                case OPT_PERMISSIONS:
                        a->permissions = optarg;
                        break;
                case OPT_SCOPE:
                        a->scope = optarg;
                        break;
                case OPT_EXPIRES:
                        a->expires = optarg;
                        break;
                case OPT_STATUS:
                        a->status = optarg;
                        break;
                case OPT_EXPIRING:
                        a->expiring = optarg;
                        break;
                case OPT_NAME:
                        a->name = optarg;
                        break;
                case OPT_SERVICE:
                        a->service = optarg;
                        break;
                case OPT_USER:
                        a->user = optarg;
                        break;
                case OPT_RHOST:
                        a->rhost = optarg;
                        break;
                case OPT_SINCE:
                        a->since = optarg;
                        break;
                case OPT_KEY:
                        a->key = optarg;
                        break;
                case 'y':
                        a->yes = true;
                        break;
                case 'q':
                        a->quiet = true;
                        break;
                case ':':
                        return usage_error(a, "option '%s' needs a value", argv[optind - 1]);
                default:
                        if (optopt > ' ' && optopt < 0x7f)
                                return usage_error(a, "unknown option '-%c'", optopt);
                        return usage_error(a, "unknown option '%s'", argv[optind - 1]);
                }
        }
        return 0;
}

static int run(int argc, char **argv, struct ctl *c)
{
        struct args a = {.command = NULL};
        const struct command *cmd;
        enum parse_result pr;
        int r, first;

        for (int i = 1; i < argc; i++)
                if (contains_token(argv[i])) {
                        err("an API key was given on the command line, where other users can "
                            "read it (ps, /proc); pass it on standard input (verify) or in a "
                            "file (--auth-file), and consider this one exposed");
                        return ERR_USAGE;
                }

        r = parse_options(argc, argv, NULL, c, &a, &pr);
        if (r < 0)
                return r;
        if (pr == PARSE_VERSION) {
                printf("apikeyctl %s\n", APIKEYCTL_VERSION);
                return 0;
        }
        first = optind;
        if (first >= argc) {
                if (pr == PARSE_HELP) {
                        help_global();
                        return 0;
                }
                err("no command given");
                fprintf(stderr, "Try '%s --help' for the list of commands.\n", program);
                return ERR_USAGE;
        }
        if (STREQ(argv[first], "help")) {
                if (first + 1 >= argc || STREQ(argv[first + 1], "--help") ||
                    STREQ(argv[first + 1], "-h") || STREQ(argv[first + 1], "help")) {
                        help_global();
                        return 0;
                }
                cmd = find_command(argv[first + 1]);
                if (!cmd)
                        return unknown_command(argv[first + 1]);
                help_command(cmd);
                return 0;
        }
        cmd = find_command(argv[first]);
        if (!cmd)
                return unknown_command(argv[first]);
        if (pr == PARSE_HELP) {
                help_command(cmd);
                return 0;
        }
        a.command = cmd->name;

        r = parse_options(argc - first, argv + first, cmd, c, &a, &pr);
        if (r < 0)
                return r;
        if (pr == PARSE_HELP) {
                help_command(cmd);
                return 0;
        }
        if (pr == PARSE_VERSION) {
                printf("apikeyctl %s\n", APIKEYCTL_VERSION);
                return 0;
        }
        a.pos = argv + first + optind;
        a.n_pos = argc - first - optind;
        if (!c->socket)
                c->socket = getenv("APIKEYD_SOCKET");
        if (!c->socket || !*c->socket)
                c->socket = DEFAULT_SOCKET;
        if (STREQ(cmd->name, "verify") && a.n_pos > 0)
                return cmd->run(c, &a); /* it says why a token is never an argument */
        if (a.n_pos < cmd->min_pos)
                return usage_error(&a, "missing argument: %s %s", cmd->name, cmd->synopsis);
        if (a.n_pos > cmd->max_pos)
                return usage_error(&a, "unexpected argument '%s'", a.pos[cmd->max_pos]);
        if (a.quiet && c->json)
                return usage_error(&a, "--quiet and --json exclude each other");
        if (c->auth_file) {
                r = read_auth_file(c);
                if (r < 0)
                        return r;
        }
        r = cmd->run(c, &a);
        if (r == -ENOMEM)
                err("out of memory");
        if (fflush(stdout) != 0 && r >= 0) {
                err("cannot write to standard output: %s", strerror(errno));
                r = -EIO;
        }
        return r;
}

static void ctl_done(struct ctl *c)
{
        erase_and_free(c->auth);
        c->auth = NULL;
        closep(&c->fd);
}

int main(int argc, char **argv)
{
        _cleanup_(ctl_done) struct ctl c = {.fd = -1};

        setlocale(LC_ALL, "");
        tzset();
        json_set_alloc_funcs(malloc, erasing_free);
        return exit_code(run(argc, argv, &c));
}
