/* SPDX-License-Identifier: MIT */
/*
 * FleetPush: on a host that joins a fleet with keys of its own
 * (fleet_joining()), move them into etcd and follow it from there; the
 * call is answered when the push is done (fleet_push_start()).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fleet.h"
#include "log.h"
#include "methods.h"
#include "request.h"
#include "state.h"

/* The push's output, a string a line (empty lines left out). */
static json_t *output_lines(const char *out)
{
        json_t *lines = json_array();

        for (const char *p = out; lines && *p;) {
                size_t len = strcspn(p, "\n");

                if (len > 0)
                        json_array_append_new(lines, json_stringn(p, len));
                p += len + (p[len] == '\n');
        }
        return lines;
}

static int refuse(struct request *q, const char *reason)
{
        return api_reply_error(q, KEYS_ERROR_FLEET_PUSH_FAILED,
                               json_pack("{s:s}", "reason", reason));
}

static void pushed(int r, const char *output, void *userdata)
{
        struct request *q = userdata;
        const char *last = output;

        if (r >= 0)
                (void)api_reply(q, json_pack("{s:o}", "output", output_lines(output)));
        else if (r == -ESHUTDOWN)
                (void)refuse(q, "the daemon is stopping; the push goes on from where it was "
                                "with the next one");
        else {
                _cleanup_free_ char *reason = NULL;

                /* The push's own words: its last line says why it stopped. */
                for (const char *p = output; *p; p++)
                        if (*p == '\n' && p[1])
                                last = p + 1;
                if (asprintf(&reason, "the push failed: %.*s", (int)strcspn(last, "\n"),
                             *last ? last : "it printed nothing") < 0)
                        reason = NULL;
                (void)refuse(q, reason ? reason : "the push failed");
        }
        connection_resume(q->conn);
        free(q);
}

static int method_fleet_push(struct request *q)
{
        static const struct param spec[] = {PARAM(auth, JSON_STRING, false), {NULL, 0, false, 0}};
        struct api *a = q->api;
        struct request *held;
        int r;

        if (api_check_params(q, spec) < 0)
                return 0;
        if (!q->who.admin)
                return api_reply_authz(q, -EPERM,
                                       "only admins may push this host's keys into the fleet");
        if (!a->fleet)
                return refuse(q, "fleet mode is off here (no fleet_endpoints in the config)");
        held = malloc(sizeof(*held));
        if (!held)
                return -ENOMEM;
        *held = *q;
        held->params = NULL; /* not kept past this call */
        r = fleet_push_start(a->fleet, pushed, held);
        if (r < 0) {
                free(held);
                if (r == -EALREADY)
                        return refuse(q, "this host's keystore is the fleet's replica already: "
                                         "it holds no keys of its own to push");
                if (r == -EBUSY)
                        return refuse(q, "a push is running already");
                log_error("FleetPush: cannot start the push: %s", strerror(-r));
                return r;
        }
        connection_defer(q->conn);
        return 0;
}

const struct method fleet_methods[] = {
    {KEYS_METHOD_FLEET_PUSH, method_fleet_push, true, false},
    {NULL, NULL, false, false},
};
