/* SPDX-License-Identifier: MIT */
/*
 * apikeyctl's commands about the daemon rather than one key: status, the
 * audit log, lockouts after failed verifies, and the shared secret that
 * signs Verify answers.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl_args.h"
#include "ctl_call.h"
#include "ctl_commands.h"
#include "ctl_show.h"
#include "ctl_table.h"
#include "keys_proto.h"
#include "macro.h"
#include "timeutil.h"

#define AUDIT_PAGE 1000

int cmd_shared_secret(struct ctl *c, struct args *a)
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
        /* The actor and the detail are cut first, then the result and the
         * key left out: time and action always stay. */
        table_set_flexible(t, 1, true);
        table_set_flexible(t, 5, true);
        table_set_drop_rank(t, 4, 2);
        table_set_drop_rank(t, 3, 1);
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
        table_print(t, stdout, terminal_columns());
        if (isatty(STDOUT_FILENO))
                printf("\n%zu event%s.\n", table_rows(t), table_rows(t) == 1 ? "" : "s");
        return 0;
}

int cmd_audit(struct ctl *c, struct args *a)
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
        /* The name and the source are cut first, then the source and the
         * time it began left out. */
        table_set_flexible(t, 1, true);
        table_set_flexible(t, 5, true);
        table_set_drop_rank(t, 5, 2);
        table_set_drop_rank(t, 3, 1);
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
        table_print(t, stdout, terminal_columns());
        if (isatty(STDOUT_FILENO))
                printf("\n%zu name%s with failed verifies.\n", table_rows(t),
                       table_rows(t) == 1 ? "" : "s");
        return 0;
}

int cmd_lockout(struct ctl *c, struct args *a)
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

/* Fleet mode's lines of `status`: who this host is, what it follows, how fresh it is. */
static int print_fleet(json_t *fleet)
{
        char host[256], state[256], pepper[128];
        const char *error = param_str(fleet, "last_error");
        json_t *stale = json_object_get(fleet, "stale_ms");
        int r;

        if (!json_is_object(fleet))
                return 0;
        snprintf(host, sizeof(host), "host %s, %s, etcd at %s",
                 param_str(fleet, "host") ? param_str(fleet, "host") : "?",
                 json_is_true(json_object_get(fleet, "manage")) ? "manages keys"
                                                                : "keys managed centrally",
                 param_str(fleet, "endpoint") ? param_str(fleet, "endpoint") : "?");
        if (json_is_integer(stale))
                snprintf(state, sizeof(state), "%s, revision %lld applied, last contact %.1fs ago",
                         json_is_true(json_object_get(fleet, "online")) ? "online" : "OFFLINE",
                         (long long)json_integer_value(json_object_get(fleet, "applied_revision")),
                         (double)json_integer_value(stale) / 1000.0);
        else
                snprintf(state, sizeof(state), "%s, revision %lld applied, never in contact",
                         json_is_true(json_object_get(fleet, "online")) ? "online" : "OFFLINE",
                         (long long)json_integer_value(json_object_get(fleet, "applied_revision")));
        snprintf(pepper, sizeof(pepper), "%s",
                 param_str(fleet, "pepper") ? param_str(fleet, "pepper") : "?");
        r = print_field("Fleet", host);
        if (r >= 0)
                r = print_field("Fleet state", state);
        if (r >= 0)
                r = print_field("Pepper", pepper);
        if (r >= 0 && error)
                r = print_field("Fleet error", error);
        if (r >= 0 && json_is_integer(json_object_get(fleet, "joining"))) {
                snprintf(state, sizeof(state),
                         "%lld keys of this host alone, not in etcd yet: not following it "
                         "(apikeyctl fleet push)",
                         (long long)json_integer_value(json_object_get(fleet, "joining")));
                r = print_field("Joining", state);
        }
        if (r >= 0 && json_is_array(json_object_get(fleet, "hosts"))) {
                json_t *hosts = json_object_get(fleet, "hosts"), *h;
                json_int_t mine = json_integer_value(json_object_get(fleet, "applied_revision"));
                char line[512];
                size_t i, behind = 0, used;

                used =
                    (size_t)snprintf(line, sizeof(line), "%zu reporting", json_array_size(hosts));
                json_array_foreach(hosts, i, h)
                {
                        json_int_t rev = json_integer_value(json_object_get(h, "applied_revision"));

                        if (rev >= mine)
                                continue;
                        if (behind++ < 5 && used < sizeof(line))
                                used += (size_t)snprintf(
                                    line + used, sizeof(line) - used, "%s%s at revision %lld",
                                    behind == 1 ? "; behind: " : ", ",
                                    param_str(h, "host") ? param_str(h, "host") : "?",
                                    (long long)rev);
                }
                if (behind > 5 && used < sizeof(line))
                        snprintf(line + used, sizeof(line) - used, " and %zu more", behind - 5);
                r = print_field("Hosts", line);
        }
        return r;
}

/* The keys expiring within 7 days, and the day too many of them expire on (expiry_cliff). */
static int print_expiring(const json_t *reply)
{
        const json_t *n = json_object_get(reply, "expiring");
        const json_t *cliff = json_object_get(reply, "expiry_cliff");
        char line[256];
        int r;

        if (!json_is_integer(n))
                return 0; /* an older daemon */
        snprintf(line, sizeof(line), "%lld within 7 days", (long long)json_integer_value(n));
        r = print_field("Expiring", line);
        if (r < 0 || !json_is_object(cliff) || !param_str(cliff, "day"))
                return r;
        snprintf(line, sizeof(line),
                 "%lld keys expire on %s, more than %lld (expiry_cliff): renew them on different "
                 "days",
                 (long long)json_integer_value(json_object_get(cliff, "keys")),
                 param_str(cliff, "day"),
                 (long long)json_integer_value(json_object_get(cliff, "threshold")));
        return print_field("Warning", line);
}

/* The push takes a round trip to etcd a key: more than a call's usual 10 seconds. */
#define FLEET_PUSH_TIMEOUT_SEC 600

int cmd_fleet(struct ctl *c, struct args *a)
{
        json_auto_t *reply = NULL;
        json_t *output, *line;
        size_t i;
        int r;

        if (!STREQ(a->pos[0], "push"))
                return usage_error(a, "expected 'push', not '%s'", a->pos[0]);
        c->timeout_sec = FLEET_PUSH_TIMEOUT_SEC;
        r = ctl_call(c, KEYS_METHOD_FLEET_PUSH, json_object(), &reply);
        if (r < 0)
                return r;
        output = json_object_get(reply, "output");
        if (!json_is_array(output))
                return bad_reply(c, "FleetPush");
        if (c->json)
                return print_json(reply);
        json_array_foreach(output, i, line)
        {
                if (json_is_string(line))
                        printf("%s\n", json_string_value(line));
        }
        printf("This host follows the fleet's keys in etcd now.\n");
        return 0;
}

int cmd_status(struct ctl *c, struct args *a)
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
        r = print_expiring(reply);
        if (r < 0)
                return r;
        return print_fleet(json_object_get(reply, "fleet"));
}
