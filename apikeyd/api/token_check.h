/* SPDX-License-Identifier: MIT */
/*
 * Checking a presented token (token_check.c), for verify.c and auth.c;
 * the lockout names' bound for admin.c, which resets them.
 */
#pragma once

#include "request.h"
#include "verify_call.h"

/* A Verify call's parameters, from either decoder. */
struct verify_args {
        const char *token;
        size_t token_len;
        const char *text[_VERIFY_TEXT_MAX]; /* NULL when absent */
        uint8_t need;
        uint8_t text_plain; /* bit i: text[i] is known to be valid text (the fast decoder's) */
        bool brief;         /* a valid answer names the key (key_id, expires_at), without the Key */
        /* Run again once a use is written (key_limits.c): what that settled. */
        bool settled;
        enum verify_code settled_code;
};

#define V_SERVICE(v) ((v)->text[VERIFY_SERVICE])
#define V_USER(v)    ((v)->text[VERIFY_USER])
#define V_RHOST(v)   ((v)->text[VERIFY_RHOST])

/*
 * Check a token's secret: the code, and when the secret matched, the
 * record as a view (`*view`, which the caller ends; see keystore_view()).
 */
enum verify_code api_check_token(struct api *a, const char *token, size_t len,
                                 struct key_view *view, bool *ret_matched,
                                 char ret_id[TOKEN_ID_LEN + 1]);
/* The lockout around a check, for Verify and for `auth` (token_check.c says how). */
enum verify_code api_lockout_apply(struct request *q, const char *user, const char *rhost,
                                   const char *ruser, enum verify_code code, bool matched,
                                   const char *tok_id);
/* The audit of a refused Verify, or of a refused `auth` key (`action` "auth", `v` NULL). */
void api_audit_token_refusal(struct request *q, const char *action, const struct verify_args *v,
                             enum verify_code code, const char *id, const char *owner);
/* The `auth` key of a management call, checked as Verify checks a token. */
enum verify_code api_check_auth_token(struct request *q, const char *token, size_t len,
                                      struct key_view *view);

/* Lockout names: a source ("uid:<n>", "from:<user>@<rhost>",
 * "from:<ruser>@(local)") of at most this many characters, or
 * "key:<id>@<source>". */
#define LOCKOUT_SOURCE_MAX 160
