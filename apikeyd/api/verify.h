/* SPDX-License-Identifier: MIT */
/* What verify.c offers beside its method table: the fast path's end, for dispatch.c. */
#pragma once

#include "request.h"

/*
 * For api_fast_path() (dispatch.h): a plain Verify call in `msg` answered
 * (1), declined (0, nothing replied), or taken but not answered (a
 * negative errno, as a method's).
 */
int verify_fast_path(struct request *q, const char *msg, size_t len);

/*
 * For key_limits.c: a Verify whose key's use was written, answered as any
 * other (`v->settled` says how the write came out).  0 once answered.
 */
struct verify_args;
int verify_settle(struct request *q, const struct verify_args *v);
