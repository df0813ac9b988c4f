/* SPDX-License-Identifier: MIT */
/*
 * What verify.c offers beside its method table: the checks of a token that
 * Verify makes, for auth.c (the key of a management call) and admin.c (the
 * lockout names it resets), and the fast path's decoder end, for dispatch.c.
 */
#pragma once

#include "request.h"

enum verify_code api_verify_token(struct api *a, const char *token, size_t len,
                                  struct key_view *view, bool *ret_matched,
                                  char ret_id[TOKEN_ID_LEN + 1]);
enum verify_code api_verify_auth(struct request *q, const char *token, size_t len,
                                 struct key_view *view);
enum verify_code api_lockout_apply(struct request *q, const char *user, const char *rhost,
                                   const char *ruser, enum verify_code code, bool matched,
                                   const char *tok_id);
/* Lockout names: a source ("uid:<n>", "from:<user>@<rhost>",
 * "from:<ruser>@(local)") of at most this many characters, or
 * "key:<id>@<source>". */
#define LOCKOUT_SOURCE_MAX 160

/*
 * For api_fast_path() (dispatch.h): a plain Verify call in `msg` answered
 * (1), declined (0, nothing replied), or taken but not answered (a
 * negative errno, as a method's).
 */
int verify_fast_path(struct request *q, const char *msg, size_t len);
