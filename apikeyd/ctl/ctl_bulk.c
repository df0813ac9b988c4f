/* SPDX-License-Identifier: MIT */
/*
 * apikeyctl's bulk changes: disable, enable, revoke and delete with
 * --owner USER [--name PREFIX] [--status S] instead of a KEY, through
 * ChangeMatching.  The keys are counted first (a dry run), the person at a
 * terminal is asked, then the daemon changes them in one transaction;
 * --dry-run lists them and stops there.
 *
 * And create --from FILE: the keys of a file of JSON lines, through
 * CreateMany, all or none, their tokens printed as JSON lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl_args.h"
#include "ctl_call.h"
#include "ctl_commands.h"
#include "ctl_jsonl.h"
#include "ctl_show.h"
#include "keys_proto.h"
#include "macro.h"

struct bulk_words {
        const char *action, *done, *would, *warning;
};

static const struct bulk_words bulk_words[] = {
    {"disable", "Disabled", "disable", "They stop working until they are enabled again."},
    {"enable", "Enabled", "enable", "They work again."},
    {"revoke", "Revoked", "revoke", "A revoked key never works again."},
    {"delete", "Deleted", "delete", "This cannot be undone."},
};

/* The keys the daemon left alone, and why, on standard error. */
static void print_refused(const json_t *refused)
{
        size_t i;
        json_t *r;

        if (json_array_size(refused) == 0)
                return;
        fprintf(stderr, "Left alone (%zu):\n", json_array_size(refused));
        json_array_foreach(refused, i, r)
        {
                const char *id = param_str(r, "id"), *name = param_str(r, "name"),
                           *reason = param_str(r, "reason");
                fprintf(stderr, "  %s '%s': %s\n", id ? id : "?", name ? name : "?",
                        reason ? reason : "?");
        }
}

static json_t *bulk_params(const struct args *a, const char *action, const char *status,
                           bool dry_run)
{
        json_t *p =
            json_pack("{s:s, s:s, s:b}", "action", action, "owner", a->owner, "dry_run", dry_run);

        if (p && a->name && json_object_set_new(p, "name_prefix", json_string(a->name)) < 0)
                return json_decref(p), NULL;
        if (p && status && json_object_set_new(p, "status", json_string(status)) < 0)
                return json_decref(p), NULL;
        return p;
}

int cmd_bulk(struct ctl *c, struct args *a, const char *action)
{
        static const char *const statuses[] = {"enabled", "disabled", "revoked", "expired", NULL};
        const struct bulk_words *w = NULL;
        json_auto_t *reply = NULL;
        json_t *keys, *k;
        char status[16] = "";
        size_t n, i;
        int r;

        for (i = 0; i < ELEMENTSOF(bulk_words); i++)
                if (STREQ(bulk_words[i].action, action))
                        w = &bulk_words[i];
        if (!w)
                return -EINVAL;
        if (a->n_pos > 0 && (a->owner || a->name || a->status || a->dry_run))
                return usage_error(a, "give a KEY, or --owner USER for every matching key of an "
                                      "owner, not both");
        if (!a->owner)
                return usage_error(a,
                                   "missing argument: %s KEY, or --owner USER for every key of "
                                   "an owner",
                                   action);
        if (a->status && strlen(a->status) < sizeof(status))
                for (i = 0; a->status[i]; i++)
                        status[i] = (char)(a->status[i] >= 'A' && a->status[i] <= 'Z'
                                               ? a->status[i] - 'A' + 'a'
                                               : a->status[i]);
        if (a->status && !one_of(status, statuses))
                return usage_error(a,
                                   "--status must be enabled, disabled, revoked or expired, "
                                   "not '%s'",
                                   a->status);

        /* Counted first: the question names how many, and --dry-run stops here. */
        r = ctl_call(c, KEYS_METHOD_CHANGE_MATCHING,
                     bulk_params(a, action, a->status ? status : NULL, true), &reply);
        if (r < 0)
                return r;
        keys = json_object_get(reply, "keys");
        if (!json_is_array(keys) || !json_is_array(json_object_get(reply, "refused")))
                return bad_reply(c, "ChangeMatching");
        n = json_array_size(keys);
        if (a->dry_run) {
                if (c->json)
                        return print_json(reply);
                if (n == 0)
                        printf("No keys of %s to %s.\n", a->owner, action);
                else {
                        printf("Would %s %zu key%s of %s:\n", w->would, n, n == 1 ? "" : "s",
                               a->owner);
                        r = list_table(keys);
                }
                print_refused(json_object_get(reply, "refused"));
                return r;
        }
        if (n == 0) {
                print_refused(json_object_get(reply, "refused"));
                if (c->json)
                        return print_json(reply);
                printf("No keys of %s to %s; nothing changed.\n", a->owner, action);
                return 0;
        }
        r = confirm(a, "%c%s %zu key%s of %s? %s ('--dry-run' lists them.)", w->done[0], action + 1,
                    n, n == 1 ? "" : "s", a->owner, w->warning);
        if (r < 0)
                return r;

        json_decref(reply);
        reply = NULL;
        r = ctl_call(c, KEYS_METHOD_CHANGE_MATCHING,
                     bulk_params(a, action, a->status ? status : NULL, false), &reply);
        if (r < 0)
                return r;
        keys = json_object_get(reply, "keys");
        if (!json_is_array(keys))
                return bad_reply(c, "ChangeMatching");
        print_refused(json_object_get(reply, "refused"));
        if (c->json)
                return print_json(reply);
        json_array_foreach(keys, i, k)
        {
                const char *id = param_str(k, "id"), *name = param_str(k, "name");
                printf("%s key %s '%s'.\n", w->done, id ? id : "?", name ? name : "?");
        }
        n = json_array_size(keys);
        printf("%s %zu key%s of %s.\n", w->done, n, n == 1 ? "" : "s", a->owner);
        return 0;
}

/* The keys a --from file may hold: the daemon's own limit on a call is lower. */
#define FROM_FILE_MAX (16u * 1024u * 1024u)

/* All of `path` ("-": standard input) into `*ret` (NUL-terminated), `*ret_len`. */
static int read_all(const char *path, char **ret, size_t *ret_len)
{
        _cleanup_close_ int owned = -1;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, alloc = 0;
        int fd = STDIN_FILENO;

        if (!STREQ(path, "-")) {
                fd = owned = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        return -errno;
        }
        for (;;) {
                ssize_t n;

                if (len == alloc) {
                        char *p;
                        if (alloc >= FROM_FILE_MAX)
                                return -EFBIG;
                        alloc = alloc ? alloc * 2 : 65536;
                        p = realloc(buf, alloc + 1);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                }
                n = read(fd, buf + len, alloc - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        buf[len] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

int cmd_create_from(struct ctl *c, struct args *a)
{
        const char *what = STREQ(a->from, "-") ? "standard input" : a->from;
        _cleanup_(jsonl_done) struct jsonl j = {.objects = NULL};
        _cleanup_free_ char *buf = NULL;
        json_auto_t *reply = NULL;
        char why[JSONL_ERROR_MAX];
        json_t *created, *item;
        size_t len = 0, line, i;
        int r;

        if (a->n_pos > 0 || a->owner || a->description || a->role || a->permissions || a->scope ||
            a->expires)
                return usage_error(a, "--from FILE gives every key's parameters; give no NAME or "
                                      "other option with it");
        r = read_all(a->from, &buf, &len);
        if (r == -EFBIG) {
                err("%s is larger than %u bytes; nothing was created", what, FROM_FILE_MAX);
                return r;
        }
        if (r < 0) {
                err("cannot read %s: %s", what, strerror(-r));
                return r;
        }
        r = jsonl_parse(buf, len, &j, &line, why);
        if (r == -EBADMSG) {
                err("%s, line %zu: %s; each line must be one JSON object of Create's parameters "
                    "(name, description, owner, role, permissions, scope, expires); nothing was "
                    "created",
                    what, line, why);
                return r;
        }
        if (r < 0)
                return r;
        if (j.n == 0) {
                err("%s describes no keys; nothing was created", what);
                return -ENODATA;
        }

        r = ctl_call(c, KEYS_METHOD_CREATE_MANY, json_pack("{s:O}", "keys", j.objects), &reply);
        if (r == ERR_REFUSED) {
                json_t *index = json_object_get(c->last_error, "index");
                json_int_t at = json_integer_value(index);
                if (json_is_integer(index) && at >= 0 && (size_t)at < j.n)
                        err("that is %s, line %zu; nothing was created", what, j.lines[at]);
                else if (json_object_get(c->last_error, "limit"))
                        err("%s is one call: split it into smaller files (each is created "
                            "whole or not at all), or raise max_message_size in apikeyd.conf; "
                            "nothing was created",
                            what);
                return r;
        }
        if (r < 0)
                return r;
        created = json_object_get(reply, "created");
        if (!json_is_array(created) || json_array_size(created) != j.n)
                return bad_reply(c, "CreateMany");
        /* The tokens, the only time they exist: one JSON line per key, as
         * create --json=short prints one. */
        json_array_foreach(created, i, item)
        {
                char *s = json_dumps(item, JSON_COMPACT);
                if (!s)
                        return -ENOMEM;
                r = write_stdout(s, strlen(s));
                if (r >= 0)
                        r = write_stdout("\n", 1);
                erase(s, strlen(s));
                free(s);
                if (r < 0) {
                        err("cannot write the tokens to standard output: %s; revoke the %zu keys "
                            "just created and create them again",
                            strerror(-r), j.n);
                        return r;
                }
        }
        fprintf(stderr,
                "Created %zu key%s. Store these tokens now: they are shown only this once, and "
                "they cannot be shown again.\n",
                j.n, j.n == 1 ? "" : "s");
        return 0;
}
