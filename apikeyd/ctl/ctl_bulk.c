/* SPDX-License-Identifier: MIT */
/*
 * apikeyctl's bulk changes: disable, enable, revoke and delete with
 * --owner USER [--name PREFIX] [--status S] instead of a KEY, through
 * ChangeMatching.  The keys are counted first (a dry run), the person at a
 * terminal is asked, then the daemon changes them in one transaction;
 * --dry-run lists them and stops there.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "ctl_args.h"
#include "ctl_call.h"
#include "ctl_commands.h"
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
