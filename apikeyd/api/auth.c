/* SPDX-License-Identifier: MIT */
/*
 * Who is calling: the principal of a call, from the connecting process's
 * credentials or from the API key given in `auth` (checked as Verify
 * checks a token, under the same lockout).
 */
#include <errno.h>

#include "request.h"
#include "token_check.h"

/* Resolve the caller: the connecting process, or the key in `auth`. */
int request_init(struct request *q, struct api *a, struct connection *c, json_t *params)
{
        json_t *auth = json_object_get(params, "auth");
        int r;

        *q = (struct request){
            .api = a, .conn = c, .params = params, .now = now_usec(), .method = q->method};
        if (!auth || json_is_null(auth)) {
                /* Resolved once per connection: its credentials (groups too)
                 * are the kernel's from when it connected, and the names
                 * behind them cost user and group database lookups. */
                struct principal *who = connection_get_data(c);
                if (!who) {
                        who = malloc(sizeof(*who));
                        if (!who || authz_principal_from_caller(connection_caller(c),
                                                                a->config->admin_group, who) < 0) {
                                free(who);
                                return api_reply_reason(q, ERR_INTERNAL, "out of memory"), -ENOMEM;
                        }
                        connection_set_data(c, who);
                }
                q->who = *who;
                return 0;
        }
        if (!json_is_string(auth)) {
                (void)connection_reply_invalid_parameter(c, "auth");
                return -EINVAL;
        }

        _cleanup_key_view_ struct key_view view = {0};
        const char *reason;
        enum verify_code code =
            api_check_auth_token(q, json_string_value(auth), json_string_length(auth), &view);

        api_erase_json_string(auth);
        if (code == VERIFY_CODE_UNAVAILABLE) {
                (void)api_reply_reason(q, ERR_INTERNAL,
                                       "the API key given in auth could not be read from the "
                                       "keystore");
                return -EIO;
        }
        /* A key that did not verify is counted, logged and audited as a failed
         * verify already (api_check_auth_token): no second record of it. */
        if (code != VERIFY_CODE_VALID) {
                (void)api_reply_reason(
                    q, ERR_DENIED,
                    code == VERIFY_CODE_RATE_LIMITED
                        ? "the API key given in auth is locked out after too many failed "
                          "attempts from this caller; try again later"
                    : code == VERIFY_CODE_BAD_FORMAT ? "the API key given in auth is malformed"
                                                     : "the API key given in auth is not valid");
                return -EPERM;
        }
        char blocked_id[TOKEN_ID_LEN + 1];
        unsigned depth = 0;
        int blocked = keystore_lineage(a->ks, &view.rec, q->now, blocked_id, &depth);
        if (blocked < 0) {
                (void)api_reply_internal(q, "reading the keys an API key was created through",
                                         blocked);
                return blocked;
        }
        str_copy(q->key_id, sizeof(q->key_id), view.rec.id);
        r = authz_principal_from_key(&view.rec, blocked > 0, depth, connection_caller(c)->uid,
                                     q->now, &q->who, &reason);
        if (r < 0) {
                (void)api_reply_authz(q, -EPERM, reason);
                return r;
        }
        q->key_id[0] = '\0';
        return 0;
}
