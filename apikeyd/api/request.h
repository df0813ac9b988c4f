/* SPDX-License-Identifier: MIT */
/*
 * One call as the method families see it (struct request), and what they
 * share to handle it: checking parameters, the errors they reply with,
 * the key object (as jansson builds it for the management methods and as
 * text for the Verify answer, side by side in request.c), and the journal
 * fields of an audit event.  For every file of the API that handles a
 * call (keys.c, verify.c, admin.c, auth.c, token_check.c, change.c,
 * dispatch.c); request.c and auth.c implement it.
 */
#pragma once

#include <stddef.h>

#include <jansson.h>

#include "api.h"
#include "authz.h"
#include "json_scan.h"
#include "keys_proto.h"
#include "keystore.h"

/* Short names for the errors the methods reply with (keys_proto.h). */
#define ERR_NO_SUCH_KEY KEYS_ERROR_NO_SUCH_KEY
#define ERR_NAME_TAKEN  KEYS_ERROR_NAME_TAKEN
#define ERR_DENIED      KEYS_ERROR_PERMISSION_DENIED
#define ERR_REVOKED     KEYS_ERROR_KEY_REVOKED
#define ERR_POLICY      KEYS_ERROR_POLICY_VIOLATION
#define ERR_INTERNAL    KEYS_ERROR_INTERNAL_ERROR
#define ERR_INVALID     VARLINK_ERROR_INVALID_PARAMETER

/* An integer parameter, decoded: whether the call gave it, and its value. */
struct param_int {
        bool set;
        json_int_t value;
};

/*
 * The parameters of a call, decoded once by api_decode_params(): a field
 * for each name a method table lists, NULL (or not set) when the call
 * left it out or sent null.  Strings and arrays point into the call's
 * JSON tree; arrays hold strings, each checked as text.
 */
struct method_params {
        const char *id, *name, *description, *owner, *role, *expires, *auth;
        json_t *permissions, *scope;
        const char *status, *name_prefix, *expiring_within, *cursor;
        struct param_int limit, after;
        const char *key_id, *since, *kind, *source, *interface;
        const char *token, *service, *user, *rhost, *tty, *ruser;
        const char *session;
        const char *not_before;
        json_t *sources;
        bool brief;
        const char *action; /* ChangeMatching */
        bool dry_run;
        struct param_int max_uses; /* Create, Update */
        const char *rate_limit;
        const char *grace; /* Rotate */
        bool retire_on_first_use;
};

enum param_flags {
        PARAM_REQUIRED = 1u << 0,
        PARAM_KEY_FIELD = 1u << 1, /* sets a key's field: a refusal says its rule (field_rules.h) */
};

/* One parameter a method accepts: its name, JSON type and field. */
struct param {
        const char *name;
        json_type
            type; /* JSON_STRING, JSON_ARRAY (of strings), JSON_INTEGER, JSON_TRUE (a boolean) */
        unsigned flags; /* enum param_flags */
        size_t offset;  /* of its field in struct method_params (api_decode_params) */
};

/* An entry of a method's table: the parameter `field` of struct method_params. */
#define PARAM(field, type, required)                                                               \
        {                                                                                          \
#field, type, (required) ? PARAM_REQUIRED : 0u,                                    \
                    offsetof(struct method_params, field)                                          \
        }

/* The same, for a parameter that sets a key's field (Create, Update). */
#define KEY_PARAM(field, type, required)                                                           \
        {                                                                                          \
#field, type, ((required) ? PARAM_REQUIRED : 0u) | PARAM_KEY_FIELD,                \
                    offsetof(struct method_params, field)                                          \
        }

struct request {
        struct api *api;
        struct connection *conn;
        json_t *params;
        struct principal who;
        uint64_t now;
        const char *method;            /* its name, for the audit of a refusal */
        char key_id[TOKEN_ID_LEN + 1]; /* the key a refusal concerns, if any */
        /* CreateMany (bulk.c): 1 + the index of the key being checked, which
         * every refusal names as "index"; 0 otherwise.  And the batch that
         * change_submit() hands the key's change to instead of the writer. */
        size_t item;
        struct create_batch *batch;
};

/* Journal fields of an audit event, as "NAME=value" strings in `buf`. */
struct audit_fields {
        char buf[12][KEY_OWNER_MAX + KEY_FIELD_MAX];
        const char *v[12];
        size_t n;
};

/* Parameters (request.c, where each is described). */
int api_check_params(struct request *q, const struct param *spec);
int api_decode_params(struct request *q, const struct param *spec, struct method_params *ret);
void api_erase_json_string(json_t *v);
int api_parse_permissions(json_t *arr, uint8_t *ret);

/*
 * Replies (request.c).  Each answers the call and returns 0, what a
 * method returns once it has replied: a reply that cannot be sent is the
 * server's to deal with (the connection is closed), not the method's.
 */
int api_reply(struct request *q, json_t *parameters);
int api_reply_raw(struct request *q, const char *msg, size_t len);
int api_reply_error(struct request *q, const char *error, json_t *parameters);
int api_reply_invalid(struct request *q, const char *parameter);
/* InvalidParameter naming `parameter`, with `reason` beside it unless NULL. */
int api_reply_invalid_reason(struct request *q, const char *parameter, const char *reason);
int api_reply_reason(struct request *q, const char *error, const char *reason);
int api_reply_no_such_key(struct request *q, const char *id);
int api_reply_internal(struct request *q, const char *what, int r);
/*
 * The one answer to a method that failed without replying (a negative
 * errno from its handler, or from the answer of its change): InternalError
 * with the reason api_reply_internal() gives, and a log line naming the
 * method.  Called by dispatch.c and change.c only.
 */
void api_reply_failed(struct request *q, int r);
/* A refusal by authz (-EDQUOT: PolicyViolation, else PermissionDenied), audited. */
int api_reply_authz(struct request *q, int r, const char *reason);
int api_reply_key(struct request *q, const struct key_record *rec);

/* The key object (request.c): built with jansson, or written straight as text. */
json_t *api_key_json(const struct api *a, const struct key_record *rec, uint64_t now);
void api_key_write(struct json_out *o, const struct api *a, const struct key_record *rec,
                   uint64_t now);
void api_set_string(json_t *o, const char *name, const char *s);

void api_field(struct audit_fields *f, const char *prefix, const char *value);
void api_field_uint(struct audit_fields *f, const char *prefix, unsigned long value);

/*
 * For the methods on one key beside keys.c's (rotate.c), from keys.c: the
 * key named by `id` loaded and the caller's right to do `action` to it
 * checked (0, or a negative errno once answered); and a fresh id for
 * `rec` with its token and the token's hash in `rec`.
 */
int api_load_key(struct request *q, const char *id, enum authz_action action,
                 struct key_record *rec, void **storage);
int api_new_token(struct api *a, struct key_record *rec, char token[static TOKEN_MAX_LEN + 1]);

/*
 * Who is calling (auth.c): the connecting process, or the key given in
 * `auth`.  0, or a negative errno once the call is answered (an invalid,
 * refused or unreadable key).
 */
int request_init(struct request *q, struct api *a, struct connection *c, json_t *params);
