/* SPDX-License-Identifier: MIT */
/*
 * A call to its handler: the method looked up by name in the families'
 * tables, the caller resolved, the handler run, and a handler's failure
 * answered.
 */
#include "authz.h"
#include "dispatch.h"
#include "fleet.h"
#include "methods.h"
#include "timeutil.h"
#include "verify.h"

/* In the order api_method_name() counts them. */
/* clang-format off */
static const struct method *const families[] = {
    service_methods,
    keys_methods,
    verify_methods,
    admin_methods,
    session_methods,
    bulk_methods,
    backup_methods,
    fleet_methods,
    rotate_methods,
    usage_methods,
};
/* clang-format on */

static const struct method *method_find(const char *name)
{
        for (size_t f = 0; f < ELEMENTSOF(families); f++)
                for (const struct method *m = families[f]; m->name; m++)
                        if (STREQ(m->name, name))
                                return m;
        return NULL;
}

/*
 * Whether the interface part of `method` (all before its last dot) is one
 * the daemon has.  A name without a dot names no interface: it is an
 * unknown method, not a call to a missing interface.
 */
static bool method_interface_known(const char *method, size_t *ret_len)
{
        const char *dot = strrchr(method, '.');

        *ret_len = dot ? (size_t)(dot - method) : 0;
        if (!dot)
                return true;
        return (*ret_len == STRLEN(KEYS_INTERFACE) &&
                memcmp(method, KEYS_INTERFACE, *ret_len) == 0) ||
               (*ret_len == STRLEN(VARLINK_SERVICE_INTERFACE) &&
                memcmp(method, VARLINK_SERVICE_INTERFACE, *ret_len) == 0);
}

const char *api_method_name(size_t i)
{
        for (size_t f = 0; f < ELEMENTSOF(families); f++)
                for (const struct method *m = families[f]; m->name; m++)
                        if (i-- == 0)
                                return m->name;
        return NULL;
}

/* The calls that change keys, which a fleet host without fleet_manage refuses. */
static bool method_changes_keys(const char *name)
{
        static const char *const changes[] = {
            KEYS_METHOD_CREATE, KEYS_METHOD_UPDATE, KEYS_METHOD_DISABLE, KEYS_METHOD_ENABLE,
            KEYS_METHOD_REVOKE, KEYS_METHOD_DELETE, KEYS_METHOD_ROTATE,
        };

        /* The bulk ones (bulk.c). */
        if (STREQ(name, KEYS_METHOD_CHANGE_MATCHING) || STREQ(name, KEYS_METHOD_CREATE_MANY))
                return true;

        for (size_t i = 0; i < ELEMENTSOF(changes); i++)
                if (STREQ(name, changes[i]))
                        return true;
        return false;
}

void api_dispatch(struct connection *c, struct varlink_call *call, void *userdata)
{
        struct api *a = userdata;
        const struct method *m = method_find(call->method);
        struct request q;
        int r;

        if (!m) {
                size_t len;

                if (!method_interface_known(call->method, &len))
                        (void)connection_reply_error(
                            c, VARLINK_ERROR_INTERFACE_NOT_FOUND,
                            json_pack("{s:s#}", "interface", call->method, (int)len));
                else
                        (void)connection_reply_error(c, VARLINK_ERROR_METHOD_NOT_FOUND,
                                                     json_pack("{s:s}", "method", call->method));
                return;
        }
        /* No method hands its connection over to another protocol: a call
         * asking to, refused like `more` on a method that does not stream,
         * rather than answered as if the flag were not there. */
        if (call->upgrade) {
                (void)connection_reply_error(c, VARLINK_ERROR_INVALID_PARAMETER,
                                             json_pack("{s:s}", "parameter", "upgrade"));
                return;
        }
        if (call->more && !m->more) {
                (void)connection_reply_error(c, VARLINK_ERROR_INVALID_PARAMETER,
                                             json_pack("{s:s}", "parameter", "more"));
                return;
        }
        if (fleet_joining(a->fleet) && method_changes_keys(m->name)) {
                (void)connection_reply_error(
                    c, KEYS_ERROR_INTERNAL_ERROR,
                    json_pack("{s:s}", "reason",
                              "this host's own keys are not in the fleet's etcd yet "
                              "(apikeyctl fleet push moves them there)"));
                return;
        }
        if (fleet_refuses_changes(a->fleet) && method_changes_keys(m->name)) {
                (void)connection_reply_error(c, KEYS_ERROR_MANAGED_CENTRALLY,
                                             json_pack("{s:s, s:s}", "prefix",
                                                       a->config->fleet_prefix, "endpoints",
                                                       a->config->fleet_endpoints));
                return;
        }
        if (a->fleet && !fleet_refuses_changes(a->fleet) && method_changes_keys(m->name) &&
            !fleet_can_write(a->fleet)) {
                (void)connection_reply_error(
                    c, KEYS_ERROR_INTERNAL_ERROR,
                    json_pack("{s:s}", "reason",
                              "no etcd member with a leader can be reached (apikeyctl status "
                              "says why); nothing was changed"));
                return;
        }
        q.method = m->name;
        if (m->needs_principal || json_object_get(call->parameters, "auth")) {
                if (request_init(&q, a, c, call->parameters) < 0)
                        return;
        } else
                q = (struct request){.api = a,
                                     .conn = c,
                                     .params = call->parameters,
                                     .now = now_usec(),
                                     .method = m->name};
        r = m->fn(&q);
        if (r < 0)
                api_reply_failed(&q, r);
}

bool api_fast_path(struct connection *c, const char *msg, size_t len, void *userdata)
{
        struct request q;
        int r;

        /* Field by field rather than zeroed whole: Verify reads no principal,
         * and the principal (with a key's scope) is most of the struct's
         * 2.7 KiB, which zeroing on every verify would cost. */
        q.api = userdata;
        q.conn = c;
        q.params = NULL;
        q.now = now_usec();
        q.method = KEYS_METHOD_VERIFY;
        q.key_id[0] = '\0';
        q.item = 0;
        q.batch = NULL;
        authz_principal_none(&q.who);
        r = verify_fast_path(&q, msg, len);

        if (r < 0)
                api_reply_failed(&q, r);
        return r != 0;
}
