/* SPDX-License-Identifier: MIT */
/*
 * What the files of the Varlink methods share (api_keys.c: parameters,
 * replies, the key object, changes, the management methods and the
 * dispatch table; api_verify.c: the Verify path and the fast decoder's
 * entry; api_state.c: what is kept in memory and written in batches):
 * not an interface of its own.
 */
#pragma once

#include <jansson.h>

#include "api_keys.h"
#include "authz.h"
#include "json_scan.h"
#include "keys_proto.h"
#include "keystore.h"

/* Short names for the errors the methods reply with (keys_proto.h). */
#define ERR_NO_SUCH_KEY    KEYS_ERROR_NO_SUCH_KEY
#define ERR_NAME_TAKEN     KEYS_ERROR_NAME_TAKEN
#define ERR_DENIED         KEYS_ERROR_PERMISSION_DENIED
#define ERR_REVOKED        KEYS_ERROR_KEY_REVOKED
#define ERR_POLICY         KEYS_ERROR_POLICY_VIOLATION
#define ERR_INTERNAL       KEYS_ERROR_INTERNAL_ERROR
#define ERR_INVALID        VARLINK_ERROR_INVALID_PARAMETER
#define META_SHARED_SECRET "shared_secret"
#define META_LOCKOUT       "lockout"

/* One parameter a method accepts: its name and JSON type. */
struct param {
        const char *name;
        json_type type; /* JSON_STRING, JSON_ARRAY (of strings), JSON_INTEGER */
        bool required;
};

struct request {
        struct api *api;
        struct connection *conn;
        json_t *params;
        struct principal who;
        uint64_t now;
        const char *method;            /* its name, for the audit of a refusal */
        char key_id[TOKEN_ID_LEN + 1]; /* the key a refusal concerns, if any */
};

/* Journal fields of an audit event, as "NAME=value" strings in `buf`. */
struct audit_fields {
        char buf[8][KEY_OWNER_MAX + KEY_FIELD_MAX];
        const char *v[8];
        size_t n;
};

/* api_keys.c, where each is described */
const char *api_str_param(const struct request *q, const char *name);
int api_check_params(struct request *q, const struct param *spec);
int api_reply_internal(struct request *q, const char *what, int r);
void api_erase_json_string(json_t *v);
int api_parse_permissions(json_t *arr, uint8_t *ret);
void api_key_write(struct json_out *o, const struct api *a, const struct key_record *rec,
                   uint64_t now);
void api_field(struct audit_fields *f, const char *prefix, const char *value);
void api_field_uint(struct audit_fields *f, const char *prefix, unsigned long value);

/* The signing state keyed anew from the shared secret (api_keys.c). */
int api_sign_state_reset(struct api *a);

/* api_state.c: hand the queued failed verifies, or the lockout counts, to the writer. */
void api_flush_audit_queue(struct api *a);
/* The next free entry of the audit queue, or NULL (counted) when it is full. */
struct queued_verify *api_audit_queue_add(struct api *a);
void api_save_lockout(struct api *a);

/* api_verify.c */
enum verify_code api_verify_token(struct api *a, const char *token, size_t len,
                                  struct key_view *view, bool *ret_matched,
                                  char ret_id[TOKEN_ID_LEN + 1]);
enum verify_code api_verify_auth(struct request *q, const char *token, size_t len,
                                 struct key_view *view);
enum verify_code api_lockout_apply(struct request *q, const char *user, const char *rhost,
                                   const char *ruser, enum verify_code code, bool matched,
                                   const char *tok_id);
/* Lockout names (api_verify.c): a source ("uid:<n>", "from:<user>@<rhost>",
 * "from:<ruser>@(local)") of at most this many characters, or
 * "key:<id>@<source>". */
#define LOCKOUT_SOURCE_MAX 160
int api_method_verify(struct request *q);
